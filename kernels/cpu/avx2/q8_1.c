/* Q8_1: q8_0's quantizer plus the block sum, taken from the stored bytes
 * as the reference takes it. */
#include "kernels/blocks.h"
#include "kernels/cpu/avx2/avx2.h"
#include "kernels/cpu/avx2/simd.h"
#include "kernels/cpu/ref/ref.h"

void qp_q8_1_quantize_row_avx2(const float *x, void *vy, int64_t n)
{
	struct qp_block_q8_1 *y = vy;
	const int64_t nb = n / QP_QK8_1;

	int nonfinite = 0;
	for (int64_t i = 0; i < nb; i++) {
		const float *xb = x + i * QP_QK8_1;
		const __m256 v0 = _mm256_loadu_ps(xb);
		const __m256 v1 = _mm256_loadu_ps(xb + 8);
		const __m256 v2 = _mm256_loadu_ps(xb + 16);
		const __m256 v3 = _mm256_loadu_ps(xb + 24);
		/* NaN or Inf: the second pass's */
		const uint32_t abits = qp_avx2_absmax_bits((const __m256[4]){v0, v1, v2, v3});
		nonfinite |= abits >= 0x7f800000u;
		const float amax = qp_f32_from_bits(abits);

		const float d = amax / 127;
		const float id = d != 0.0f ? 1.0f / d : 0.0f;
		y[i].d = qp_fp32_to_fp16(d);

		const __m256 vid = _mm256_set1_ps(id);
		const __m256i q0 = _mm256_cvttps_epi32(qp_avx2_roundf_ps(_mm256_mul_ps(v0, vid)));
		const __m256i q1 = _mm256_cvttps_epi32(qp_avx2_roundf_ps(_mm256_mul_ps(v1, vid)));
		const __m256i q2 = _mm256_cvttps_epi32(qp_avx2_roundf_ps(_mm256_mul_ps(v2, vid)));
		const __m256i q3 = _mm256_cvttps_epi32(qp_avx2_roundf_ps(_mm256_mul_ps(v3, vid)));
		const __m256i b = qp_avx2_low_bytes(q0, q1, q2, q3);
		_mm256_storeu_si256((__m256i *)y[i].qs, b);

		const __m256i pairs = _mm256_maddubs_epi16(_mm256_set1_epi8(1), b);
		const int sum = qp_avx2_hsum_epi32(_mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
		y[i].s = qp_fp32_to_fp16((float)sum * d);
	}
	if (nonfinite)
		qp_avx2_redo_nonfinite(x, vy, nb, sizeof(struct qp_block_q8_1), qp_q8_1_quantize_row_ref);
}

void qp_q8_1_dequantize_row_avx2(const void *vx, float *y, int64_t n)
{
	const struct qp_block_q8_1 *x = vx;
	const int64_t nb = n / QP_QK8_1;

	for (int64_t i = 0; i < nb; i++) {
		const __m256 d = _mm256_set1_ps(qp_fp16_to_fp32(x[i].d));
		__m256 f[4];
		qp_avx2_i8_to_ps(_mm256_loadu_si256((const __m256i *)x[i].qs), f);
		for (int k = 0; k < 4; k++)
			_mm256_storeu_ps(y + i * QP_QK8_1 + 8 * k, _mm256_mul_ps(f[k], d));
	}
}
