/* Q8_0, one block of 32 per iteration. Quantize rounds half away from zero
 * as the reference's roundf does (llama.cpp's own AVX2 quantizer rounds to
 * even and computes the scale differently, so its blocks can differ from
 * the reference's; ours cannot). */
#include "kernels/blocks.h"
#include "kernels/cpu/avx2/avx2.h"
#include "kernels/cpu/avx2/simd.h"

void qp_q8_0_quantize_row_avx2(const float *x, void *vy, int64_t n)
{
	struct qp_block_q8_0 *y = vy;
	const int64_t nb = n / QP_QK8_0;
	const __m256 sign = _mm256_set1_ps(-0.0f);

	for (int64_t i = 0; i < nb; i++) {
		const float *xb = x + i * QP_QK8_0;
		const __m256 v0 = _mm256_loadu_ps(xb);
		const __m256 v1 = _mm256_loadu_ps(xb + 8);
		const __m256 v2 = _mm256_loadu_ps(xb + 16);
		const __m256 v3 = _mm256_loadu_ps(xb + 24);
		const __m256 am = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v0), _mm256_andnot_ps(sign, v1)),
		                                _mm256_max_ps(_mm256_andnot_ps(sign, v2), _mm256_andnot_ps(sign, v3)));
		const float amax = qp_avx2_hmax_ps(am);

		const float d = amax / 127;
		const float id = d != 0.0f ? 1.0f / d : 0.0f;
		y[i].d = qp_fp32_to_fp16(d);

		const __m256 vid = _mm256_set1_ps(id);
		const __m256i q0 = _mm256_cvttps_epi32(qp_avx2_roundf_ps(_mm256_mul_ps(v0, vid)));
		const __m256i q1 = _mm256_cvttps_epi32(qp_avx2_roundf_ps(_mm256_mul_ps(v1, vid)));
		const __m256i q2 = _mm256_cvttps_epi32(qp_avx2_roundf_ps(_mm256_mul_ps(v2, vid)));
		const __m256i q3 = _mm256_cvttps_epi32(qp_avx2_roundf_ps(_mm256_mul_ps(v3, vid)));
		_mm256_storeu_si256((__m256i *)y[i].qs, qp_avx2_low_bytes(q0, q1, q2, q3));
	}
}

void qp_q8_0_dequantize_row_avx2(const void *vx, float *y, int64_t n)
{
	const struct qp_block_q8_0 *x = vx;
	const int64_t nb = n / QP_QK8_0;

	for (int64_t i = 0; i < nb; i++) {
		const __m256 d = _mm256_set1_ps(qp_fp16_to_fp32(x[i].d));
		__m256 f[4];
		qp_avx2_i8_to_ps(_mm256_loadu_si256((const __m256i *)x[i].qs), f);
		for (int k = 0; k < 4; k++)
			_mm256_storeu_ps(y + i * QP_QK8_0 + 8 * k, _mm256_mul_ps(f[k], d));
	}
}

void qp_q8_0_vec_dot_avx2(int64_t n, float *s, const void *vx, const void *vy)
{
	const struct qp_block_q8_0 *x = vx;
	const struct qp_block_q8_0 *y = vy;
	const int64_t nb = n / QP_QK8_0;

	__m256 acc = _mm256_setzero_ps();
	for (int64_t i = 0; i < nb; i++) {
		const __m256i qx = _mm256_loadu_si256((const __m256i *)x[i].qs);
		const __m256i qy = _mm256_loadu_si256((const __m256i *)y[i].qs);
		const __m256 d = _mm256_set1_ps(qp_fp16_to_fp32(x[i].d) * qp_fp16_to_fp32(y[i].d));
		acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(qp_avx2_dot_i8(qx, qy)), acc);
	}
	*s = qp_avx2_hsum_ps(acc);
}
