/* Q2_K: 2-bit fields unpacked 32 at a time; see kquants.h. */
#include "kernels/blocks.h"
#include "kernels/cpu/avx2/avx2.h"
#include "kernels/cpu/avx2/kquants.h"

/* q[256] in 0..3, element order */
static inline void unpack_q2(const struct qp_block_q2_K *x, int8_t q[QP_QK_K])
{
	for (int h = 0; h < 2; h++) {
		const __m256i v = _mm256_loadu_si256((const __m256i *)(x->qs + 32 * h));
		for (int s = 0; s < 4; s++)
			_mm256_storeu_si256((__m256i *)(q + 128 * h + 32 * s), qp_avx2_crumbs(v, s));
	}
}

void qp_q2_k_dequantize_row_avx2(const void *vx, float *y, int64_t n)
{
	const struct qp_block_q2_K *x = vx;
	const int64_t nb = n / QP_QK_K;
	for (int64_t i = 0; i < nb; i++) {
		int8_t q[QP_QK_K];
		float a[16], b[16];
		unpack_q2(&x[i], q);
		const float d = qp_fp16_to_fp32(x[i].d);
		const float min = qp_fp16_to_fp32(x[i].dmin);
		for (int j = 0; j < 16; j++) {
			a[j] = d * (x[i].scales[j] & 0xF);
			b[j] = min * (x[i].scales[j] >> 4);
		}
		qp_avx2_dequant_256(q, a, b, y + i * QP_QK_K);
	}
}

void qp_q2_k_vec_dot_avx2(int64_t n, float *s, const void *vx, const void *vy)
{
	const struct qp_block_q2_K *x = vx;
	const struct qp_block_q8_K *y = vy;
	const int64_t nb = n / QP_QK_K;
	float sumf = 0;
	for (int64_t i = 0; i < nb; i++) {
		int8_t q[QP_QK_K];
		int16_t sc[16];
		unpack_q2(&x[i], q);
		int summs = 0;
		for (int j = 0; j < 16; j++) {
			sc[j] = (int16_t)(x[i].scales[j] & 0xF);
			summs += y[i].bsums[j] * (x[i].scales[j] >> 4);
		}
		const int isum = qp_avx2_scaled_dot_256(q, y[i].qs, sc);
		const float dall = y[i].d * qp_fp16_to_fp32(x[i].d);
		const float dmin = y[i].d * qp_fp16_to_fp32(x[i].dmin);
		sumf += dall * isum - dmin * summs;
	}
	*s = sumf;
}
