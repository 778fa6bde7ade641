/* Q6_K: nibbles of ql and crumbs of qh unpacked 32 at a time, biased by
 * -32; see kquants.h. */
#include "kernels/blocks.h"
#include "kernels/cpu/avx2/avx2.h"
#include "kernels/cpu/avx2/kquants.h"

/* q[256] in -32..31, element order */
static inline void unpack_q6(const struct qp_block_q6_K *x, int8_t q[QP_QK_K])
{
	const __m256i m4 = _mm256_set1_epi8(0x0f);
	const __m256i bias = _mm256_set1_epi8(32);
	for (int h = 0; h < 2; h++) {
		const __m256i l0 = _mm256_loadu_si256((const __m256i *)(x->ql + 64 * h));
		const __m256i l1 = _mm256_loadu_si256((const __m256i *)(x->ql + 64 * h + 32));
		const __m256i hv = _mm256_loadu_si256((const __m256i *)(x->qh + 32 * h));
		const __m256i lows[4] = {
			_mm256_and_si256(l0, m4),
			_mm256_and_si256(l1, m4),
			_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
			_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
		};
		for (int s = 0; s < 4; s++) {
			const __m256i v = _mm256_or_si256(lows[s], _mm256_slli_epi16(qp_avx2_crumbs(hv, s), 4));
			_mm256_storeu_si256((__m256i *)(q + 128 * h + 32 * s), _mm256_sub_epi8(v, bias));
		}
	}
}

void qp_q6_k_dequantize_row_avx2(const void *vx, float *y, int64_t n)
{
	const struct qp_block_q6_K *x = vx;
	static const float zero[16] = {0};
	for (int64_t i = 0; i < n / QP_QK_K; i++) {
		int8_t q[QP_QK_K];
		float a[16];
		unpack_q6(&x[i], q);
		const float d = qp_fp16_to_fp32(x[i].d);
		for (int j = 0; j < 16; j++)
			a[j] = d * x[i].scales[j];
		qp_avx2_dequant_256(q, a, zero, y + i * QP_QK_K);
	}
}

void qp_q6_k_vec_dot_avx2(int64_t n, float *s, const void *vx, const void *vy)
{
	const struct qp_block_q6_K *x = vx;
	const struct qp_block_q8_K *y = vy;
	float sumf = 0;
	for (int64_t i = 0; i < n / QP_QK_K; i++) {
		int8_t q[QP_QK_K];
		int16_t sc[16];
		unpack_q6(&x[i], q);
		for (int j = 0; j < 16; j++)
			sc[j] = x[i].scales[j];
		const int isum = qp_avx2_scaled_dot_256(q, y[i].qs, sc);
		sumf += (qp_fp16_to_fp32(x[i].d) * y[i].d) * isum;
	}
	*s = sumf;
}
