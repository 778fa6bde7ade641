/* BF16 in integer lanes: the same round-to-nearest-even and NaN quieting as
 * the reference, eight at a time. */
#include "kernels/blocks.h"
#include "kernels/cpu/avx2/avx2.h"
#include "kernels/cpu/avx2/simd.h"

void qp_bf16_quantize_row_avx2(const float *x, void *vy, int64_t n)
{
	uint16_t *y = vy;
	const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff);
	const __m256i inf = _mm256_set1_epi32(0x7f800000);
	const __m256i round = _mm256_set1_epi32(0x7fff);
	const __m256i one = _mm256_set1_epi32(1);
	const __m256i quiet = _mm256_set1_epi32(0x40);
	int64_t i = 0;
	for (; i + 8 <= n; i += 8) {
		const __m256i u = _mm256_castps_si256(_mm256_loadu_ps(x + i));
		const __m256i top = _mm256_srli_epi32(u, 16);
		/* both sides are below 2^31, so the signed compare is the
		 * reference's unsigned one */
		const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, abs_mask), inf);
		const __m256i lsb = _mm256_and_si256(top, one);
		const __m256i r = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, round), lsb), 16);
		const __m256i h = _mm256_blendv_epi8(r, _mm256_or_si256(top, quiet), nan);
		/* every lane is at most 0xffff, so the saturating pack is exact */
		const __m128i packed = _mm_packus_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
		_mm_storeu_si128((__m128i *)(y + i), packed);
	}
	for (; i < n; i++)
		y[i] = qp_fp32_to_bf16(x[i]);
}

static inline __m256 load_bf16(const uint16_t *p)
{
	const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
	return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}

void qp_bf16_dequantize_row_avx2(const void *vx, float *y, int64_t n)
{
	const uint16_t *x = vx;
	int64_t i = 0;
	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(y + i, load_bf16(x + i));
	for (; i < n; i++)
		y[i] = qp_bf16_to_fp32(x[i]);
}

void qp_bf16_vec_dot_avx2(int64_t n, float *s, const void *vx, const void *vy)
{
	const uint16_t *x = vx;
	const uint16_t *y = vy;
	__m256 acc0 = _mm256_setzero_ps();
	__m256 acc1 = _mm256_setzero_ps();
	int64_t i = 0;
	for (; i + 16 <= n; i += 16) {
		acc0 = _mm256_fmadd_ps(load_bf16(x + i), load_bf16(y + i), acc0);
		acc1 = _mm256_fmadd_ps(load_bf16(x + i + 8), load_bf16(y + i + 8), acc1);
	}
	for (; i + 8 <= n; i += 8)
		acc0 = _mm256_fmadd_ps(load_bf16(x + i), load_bf16(y + i), acc0);
	double sum = qp_avx2_hsum_ps(_mm256_add_ps(acc0, acc1));
	for (; i < n; i++)
		sum += (double)(qp_bf16_to_fp32(x[i]) * qp_bf16_to_fp32(y[i]));
	*s = (float)sum;
}
