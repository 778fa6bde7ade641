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
