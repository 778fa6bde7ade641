/* Q3_K: 2-bit fields plus hmask's bit, biased by -4; see kquants.h. */
#include "kernels/blocks.h"
#include "kernels/cpu/avx2/avx2.h"
#include "kernels/cpu/avx2/kquants.h"
#include "kernels/cpu/ref/kquants.h"

/* q[256] in -4..3, element order: chunk k of 32 takes bit k of hmask */
static inline void unpack_q3(const struct qp_block_q3_K *x, int8_t q[QP_QK_K])
{
	const __m256i hm = _mm256_loadu_si256((const __m256i *)x->hmask);
	const __m256i four = _mm256_set1_epi8(4);
	for (int h = 0; h < 2; h++) {
		const __m256i v = _mm256_loadu_si256((const __m256i *)(x->qs + 32 * h));
		for (int s = 0; s < 4; s++) {
			const __m256i hb = _mm256_slli_epi16(qp_avx2_bit_k(hm, 4 * h + s), 2);
			const __m256i v3 = _mm256_sub_epi8(_mm256_or_si256(qp_avx2_crumbs(v, s), hb), four);
			_mm256_storeu_si256((__m256i *)(q + 128 * h + 32 * s), v3);
		}
	}
}

void qp_q3_k_dequantize_row_avx2(const void *vx, float *y, int64_t n)
{
	const struct qp_block_q3_K *x = vx;
	const int64_t nb = n / QP_QK_K;
	static const float zero[16] = {0};
	for (int64_t i = 0; i < nb; i++) {
		int8_t q[QP_QK_K];
		int8_t sc[16];
		float a[16];
		unpack_q3(&x[i], q);
		qp_kq_q3_scales(x[i].scales, sc);
		const float d_all = qp_fp16_to_fp32(x[i].d);
		for (int j = 0; j < 16; j++)
			a[j] = d_all * sc[j];
		qp_avx2_dequant_256(q, a, zero, y + i * QP_QK_K);
	}
}

void qp_q3_k_vec_dot_avx2(int64_t n, float *s, const void *vx, const void *vy)
{
	const struct qp_block_q3_K *x = vx;
	const struct qp_block_q8_K *y = vy;
	const int64_t nb = n / QP_QK_K;
	float sumf = 0;
	for (int64_t i = 0; i < nb; i++) {
		int8_t q[QP_QK_K];
		int8_t sc8[16];
		int16_t sc[16];
		unpack_q3(&x[i], q);
		qp_kq_q3_scales(x[i].scales, sc8);
		for (int j = 0; j < 16; j++)
			sc[j] = sc8[j];
		const int isum = qp_avx2_scaled_dot_256(q, y[i].qs, sc);
		sumf += (qp_fp16_to_fp32(x[i].d) * y[i].d) * isum;
	}
	*s = sumf;
}
