/* W8A8's int8 row codes and int32 dot (cpu/ref/i8.c defines both).
 *
 * Quantize keeps the reference's operations element by element: the same
 * division (divps is correctly rounded, as the scalar divss is), roundps
 * to nearest-even for rintf, maxps then minps for its two comparisons;
 * lanes beyond the last 32 go through the same scalar expressions.
 *
 * The dot sign-extends bytes to 16 bits and multiplies with pmaddwd: each
 * int32 lane gets pair sums of at most 2 * 128 * 128, so it is exact for
 * every int8 value, -128 included. The maddubs trick (|a| times b carrying
 * a's sign) is faster but wrong for b = -128 under a negative a and
 * saturates at two (-128)^2 pairs; the codes here never hold -128, but the
 * dot should not depend on who made its operands. */
#include <math.h>

#include "kernels/cpu/avx2/avx2.h"
#include "kernels/cpu/avx2/simd.h"

/* the reference's per-element expression, for the tail */
static inline int8_t code_of(float x, float s)
{
	float v = rintf(x / s);
	v = v > -127.0f ? v : -127.0f;
	v = v < 127.0f ? v : 127.0f;
	return (int8_t)v;
}

static inline __m256i codes8(__m256 x, __m256 s)
{
	const __m256 lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
	__m256 v = _mm256_round_ps(_mm256_div_ps(x, s), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
	/* maxps(v, lo) is v > lo ? v : lo, NaN giving lo, as the reference's */
	v = _mm256_min_ps(_mm256_max_ps(v, lo), hi);
	return _mm256_cvttps_epi32(v);
}

void qp_i8_quantize_row_avx2(const float *x, int8_t *q, float *scale, int64_t n)
{
	const __m256 sign = _mm256_set1_ps(-0.0f);
	__m256 m = _mm256_setzero_ps();
	int64_t i = 0;
	/* maxps(a, m) is a > m ? a : m: NaN lanes of a are skipped, as in the
	 * reference; with no NaN left the order of reduction is immaterial */
	for (; i + 8 <= n; i += 8)
		m = _mm256_max_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(x + i)), m);
	float amax = qp_avx2_hmax_ps(m);
	for (; i < n; i++) {
		const float a = fabsf(x[i]);
		amax = a > amax ? a : amax;
	}
	float s = amax / 127.0f;
	if (s == 0.0f)
		s = 1.0f;
	*scale = s;

	const __m256 vs = _mm256_set1_ps(s);
	i = 0;
	for (; i + 32 <= n; i += 32) {
		const __m256i c0 = codes8(_mm256_loadu_ps(x + i), vs);
		const __m256i c1 = codes8(_mm256_loadu_ps(x + i + 8), vs);
		const __m256i c2 = codes8(_mm256_loadu_ps(x + i + 16), vs);
		const __m256i c3 = codes8(_mm256_loadu_ps(x + i + 24), vs);
		_mm256_storeu_si256((__m256i *)(q + i), qp_avx2_low_bytes(c0, c1, c2, c3));
	}
	for (; i < n; i++)
		q[i] = code_of(x[i], s);
}

static inline __m256i madd16(const int8_t *a, const int8_t *b)
{
	const __m256i a16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)a));
	const __m256i b16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)b));
	return _mm256_madd_epi16(a16, b16);
}

int32_t qp_i8_dot_avx2(int64_t n, const int8_t *a, const int8_t *b)
{
	__m256i acc0 = _mm256_setzero_si256(), acc1 = _mm256_setzero_si256();
	int64_t i = 0;
	for (; i + 32 <= n; i += 32) {
		acc0 = _mm256_add_epi32(acc0, madd16(a + i, b + i));
		acc1 = _mm256_add_epi32(acc1, madd16(a + i + 16, b + i + 16));
	}
	if (i + 16 <= n) {
		acc0 = _mm256_add_epi32(acc0, madd16(a + i, b + i));
		i += 16;
	}
	int32_t sum = qp_avx2_hsum_epi32(_mm256_add_epi32(acc0, acc1));
	for (; i < n; i++)
		sum += (int32_t)a[i] * (int32_t)b[i];
	return sum;
}

/* Four rows against one x: x is sign-extended once per 16 elements for
 * all four, which is what bounds the single dot (pmovsxbw has one port),
 * so this does 64 products for 5 extensions where the dot needs 8. */
static void dot4(int64_t n, const int8_t *x, const int8_t *w, int64_t w_stride, int32_t out[4])
{
	const int8_t *w0 = w, *w1 = w + w_stride, *w2 = w + 2 * w_stride, *w3 = w + 3 * w_stride;
	__m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
	int64_t i = 0;
	for (; i + 16 <= n; i += 16) {
		const __m256i x16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(x + i)));
		a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(w0 + i))), x16));
		a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(w1 + i))), x16));
		a2 = _mm256_add_epi32(a2, _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(w2 + i))), x16));
		a3 = _mm256_add_epi32(a3, _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(w3 + i))), x16));
	}
	/* lane sums of a0..a3 side by side: integer adds are exact here, so
	 * their order is free */
	const __m256i h01 = _mm256_hadd_epi32(a0, a1), h23 = _mm256_hadd_epi32(a2, a3);
	const __m256i h = _mm256_hadd_epi32(h01, h23);
	const __m128i s = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
	_mm_storeu_si128((__m128i *)out, s);
	for (; i < n; i++) {
		out[0] += (int32_t)w0[i] * x[i];
		out[1] += (int32_t)w1[i] * x[i];
		out[2] += (int32_t)w2[i] * x[i];
		out[3] += (int32_t)w3[i] * x[i];
	}
}

void qp_i8_dot_rows_avx2(int64_t n, const int8_t *x, const int8_t *w, int64_t w_stride, int64_t n_rows,
                         int32_t *out)
{
	int64_t r = 0;
	for (; r + 4 <= n_rows; r += 4)
		dot4(n, x, w + r * w_stride, w_stride, out + r);
	for (; r < n_rows; r++)
		out[r] = qp_i8_dot_avx2(n, w + r * w_stride, x);
}
