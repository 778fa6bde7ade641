/* Q5_0: q4_0's scale search, with bit 4 of every q gathered into qh by a
 * byte movemask. */
#include "kernels/blocks.h"
#include "kernels/cpu/avx2/avx2.h"
#include "kernels/cpu/avx2/simd.h"
#include "kernels/cpu/ref/ref.h"

#include <string.h>

void qp_q5_0_quantize_row_avx2(const float *x, void *vy, int64_t n)
{
	struct qp_block_q5_0 *y = vy;
	const int64_t nb = n / QP_QK5_0;
	const __m256 sign = _mm256_set1_ps(-0.0f);

	int nonfinite = 0;
	for (int64_t i = 0; i < nb; i++) {
		const float *xb = x + i * QP_QK5_0;
		__m256 v[4], a[4];
		for (int k = 0; k < 4; k++) {
			v[k] = _mm256_loadu_ps(xb + 8 * k);
			a[k] = _mm256_andnot_ps(sign, v[k]);
		}
		const float amax = qp_avx2_hmax_ps(_mm256_max_ps(_mm256_max_ps(a[0], a[1]), _mm256_max_ps(a[2], a[3])));

		float max = 0.0f;
		if (amax > 0.0f) {
			const __m256 va = _mm256_set1_ps(amax);
			const uint32_t at = qp_avx2_mask32(_mm256_cmp_ps(a[0], va, _CMP_EQ_OQ), _mm256_cmp_ps(a[1], va, _CMP_EQ_OQ),
			                                   _mm256_cmp_ps(a[2], va, _CMP_EQ_OQ), _mm256_cmp_ps(a[3], va, _CMP_EQ_OQ));
			if (at)
				max = xb[__builtin_ctz(at)];
		}

		const float d = max / -16;
		const float id = d != 0.0f ? 1.0f / d : 0.0f;
		y[i].d = qp_fp32_to_fp16(d);

		const __m256 vid = _mm256_set1_ps(id);
		const __m256 off = _mm256_set1_ps(16.5f);
		__m256i q[4];
		for (int k = 0; k < 4; k++)
			q[k] = _mm256_cvttps_epi32(_mm256_add_ps(_mm256_mul_ps(v[k], vid), off));
		nonfinite |= qp_avx2_any_negative(q[0], q[1], q[2], q[3]);
		const __m256i b = _mm256_min_epi8(qp_avx2_low_bytes(q[0], q[1], q[2], q[3]), _mm256_set1_epi8(31));

		const __m128i low4 = _mm_set1_epi8(0x0f);
		const __m128i lo = _mm_and_si128(_mm256_castsi256_si128(b), low4);
		const __m128i hi = _mm_and_si128(_mm256_extracti128_si256(b, 1), low4);
		_mm_storeu_si128((__m128i *)y[i].qs, _mm_or_si128(lo, _mm_slli_epi16(hi, 4)));
		const uint32_t qh = qp_avx2_bit4_of_bytes(b);
		memcpy(y[i].qh, &qh, sizeof(qh));
	}
	if (nonfinite)
		qp_avx2_redo_nonfinite(x, vy, nb, sizeof(struct qp_block_q5_0), qp_q5_0_quantize_row_ref);
}

/* the 32 five-bit q of a block, in element order */
static inline __m256i q5_values(const struct qp_block_q5_0 *b)
{
	uint32_t qh;
	memcpy(&qh, b->qh, sizeof(qh));
	const __m256i high = _mm256_and_si256(qp_avx2_bits_to_bytes(qh), _mm256_set1_epi8(0x10));
	return _mm256_or_si256(qp_avx2_nibbles(b->qs), high);
}

void qp_q5_0_dequantize_row_avx2(const void *vx, float *y, int64_t n)
{
	const struct qp_block_q5_0 *x = vx;
	const int64_t nb = n / QP_QK5_0;

	for (int64_t i = 0; i < nb; i++) {
		const __m256 d = _mm256_set1_ps(qp_fp16_to_fp32(x[i].d));
		__m256 f[4];
		qp_avx2_i8_to_ps(_mm256_sub_epi8(q5_values(&x[i]), _mm256_set1_epi8(16)), f);
		for (int k = 0; k < 4; k++)
			_mm256_storeu_ps(y + i * QP_QK5_0 + 8 * k, _mm256_mul_ps(f[k], d));
	}
}

void qp_q5_0_vec_dot_avx2(int64_t n, float *s, const void *vx, const void *vy)
{
	const struct qp_block_q5_0 *x = vx;
	const struct qp_block_q8_0 *y = vy;
	const int64_t nb = n / QP_QK8_0;

	__m256 acc = _mm256_setzero_ps();
	for (int64_t i = 0; i < nb; i++) {
		const __m256i qx = _mm256_sub_epi8(q5_values(&x[i]), _mm256_set1_epi8(16));
		const __m256i qy = _mm256_loadu_si256((const __m256i *)y[i].qs);
		const __m256 d = _mm256_set1_ps(qp_fp16_to_fp32(x[i].d) * qp_fp16_to_fp32(y[i].d));
		acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(qp_avx2_dot_i8(qx, qy)), acc);
	}
	*s = qp_avx2_hsum_ps(acc);
}
