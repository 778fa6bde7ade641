/* Q4_0. The scale needs the signed value of largest magnitude that comes
 * first in the block (the reference keeps the first on ties, and +x and -x
 * give scales of opposite sign), so the vector maximum of |x| is followed
 * by a search for its first lane. */
#include "kernels/blocks.h"
#include "kernels/cpu/avx2/avx2.h"
#include "kernels/cpu/avx2/simd.h"
#include "kernels/cpu/ref/ref.h"

void qp_q4_0_quantize_row_avx2(const float *x, void *vy, int64_t n)
{
	struct qp_block_q4_0 *y = vy;
	const int64_t nb = n / QP_QK4_0;
	const __m256 sign = _mm256_set1_ps(-0.0f);

	int nonfinite = 0;
	for (int64_t i = 0; i < nb; i++) {
		const float *xb = x + i * QP_QK4_0;
		const __m256 v0 = _mm256_loadu_ps(xb);
		const __m256 v1 = _mm256_loadu_ps(xb + 8);
		const __m256 v2 = _mm256_loadu_ps(xb + 16);
		const __m256 v3 = _mm256_loadu_ps(xb + 24);
		const __m256 a0 = _mm256_andnot_ps(sign, v0);
		const __m256 a1 = _mm256_andnot_ps(sign, v1);
		const __m256 a2 = _mm256_andnot_ps(sign, v2);
		const __m256 a3 = _mm256_andnot_ps(sign, v3);
		const float amax = qp_avx2_hmax_ps(_mm256_max_ps(_mm256_max_ps(a0, a1), _mm256_max_ps(a2, a3)));

		/* +0 when every element is zero, whatever their signs, as in
		 * the reference, whose max is only ever set by a nonzero */
		float max = 0.0f;
		if (amax > 0.0f) {
			const __m256 va = _mm256_set1_ps(amax);
			const uint32_t at = qp_avx2_mask32(_mm256_cmp_ps(a0, va, _CMP_EQ_OQ), _mm256_cmp_ps(a1, va, _CMP_EQ_OQ),
			                                   _mm256_cmp_ps(a2, va, _CMP_EQ_OQ), _mm256_cmp_ps(a3, va, _CMP_EQ_OQ));
			if (at)
				max = xb[__builtin_ctz(at)];
		}

		const float d = max / -8;
		const float id = d != 0.0f ? 1.0f / d : 0.0f;
		y[i].d = qp_fp32_to_fp16(d);

		const __m256 vid = _mm256_set1_ps(id);
		const __m256 off = _mm256_set1_ps(8.5f);
		const __m256i q0 = _mm256_cvttps_epi32(_mm256_add_ps(_mm256_mul_ps(v0, vid), off));
		const __m256i q1 = _mm256_cvttps_epi32(_mm256_add_ps(_mm256_mul_ps(v1, vid), off));
		const __m256i q2 = _mm256_cvttps_epi32(_mm256_add_ps(_mm256_mul_ps(v2, vid), off));
		const __m256i q3 = _mm256_cvttps_epi32(_mm256_add_ps(_mm256_mul_ps(v3, vid), off));
		nonfinite |= qp_avx2_any_negative(q0, q1, q2, q3);
		const __m256i b = _mm256_min_epi8(qp_avx2_low_bytes(q0, q1, q2, q3), _mm256_set1_epi8(15));

		/* only a negative (degenerate) q has high bits; the reference's
		 * xi0 | xi1 << 4 keeps them from xi0 and drops them from xi1 */
		const __m128i lo = _mm256_castsi256_si128(b);
		const __m128i hi = _mm256_extracti128_si256(b, 1);
		const __m128i qs = _mm_or_si128(lo, _mm_and_si128(_mm_slli_epi16(hi, 4), _mm_set1_epi8((char)0xf0)));
		_mm_storeu_si128((__m128i *)y[i].qs, qs);
	}
	if (nonfinite)
		qp_avx2_redo_nonfinite(x, vy, nb, sizeof(struct qp_block_q4_0), qp_q4_0_quantize_row_ref);
}

/* a block's 32 values q - 8 as signed bytes, in element order */
static inline __m256i values(const struct qp_block_q4_0 *b)
{
	return _mm256_sub_epi8(qp_avx2_nibbles(b->qs), _mm256_set1_epi8(8));
}

void qp_q4_0_dequantize_row_avx2(const void *vx, float *y, int64_t n)
{
	const struct qp_block_q4_0 *x = vx;
	const int64_t nb = n / QP_QK4_0;

	for (int64_t i = 0; i < nb; i++) {
		const __m256 d = _mm256_set1_ps(qp_fp16_to_fp32(x[i].d));
		const __m256i q = values(&x[i]);
		__m256 f[4];
		qp_avx2_i8_to_ps(q, f);
		for (int k = 0; k < 4; k++)
			_mm256_storeu_ps(y + i * QP_QK4_0 + 8 * k, _mm256_mul_ps(f[k], d));
	}
}
