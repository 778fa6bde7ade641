/* Q4_1: min/max per block, then (x - m) * (1/d) + 0.5 truncated, in the
 * reference's operation order. */
#include "kernels/blocks.h"
#include "kernels/cpu/avx2/avx2.h"
#include "kernels/cpu/avx2/simd.h"
#include "kernels/cpu/ref/ref.h"

void qp_q4_1_quantize_row_avx2(const float *x, void *vy, int64_t n)
{
	struct qp_block_q4_1 *y = vy;
	const int64_t nb = n / QP_QK4_1;

	int nonfinite = 0;
	for (int64_t i = 0; i < nb; i++) {
		const float *xb = x + i * QP_QK4_1;
		__m256 v[4];
		for (int k = 0; k < 4; k++)
			v[k] = _mm256_loadu_ps(xb + 8 * k);
		float min, max;
		qp_avx2_block_minmax(xb, v, &min, &max);

		const float d = (max - min) / 15;
		const float id = d != 0.0f ? 1.0f / d : 0.0f;
		y[i].d = qp_fp32_to_fp16(d);
		y[i].m = qp_fp32_to_fp16(min);

		const __m256 vmin = _mm256_set1_ps(min);
		const __m256 vid = _mm256_set1_ps(id);
		const __m256 half = _mm256_set1_ps(0.5f);
		__m256i q[4];
		for (int k = 0; k < 4; k++)
			q[k] = _mm256_cvttps_epi32(_mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(v[k], vmin), vid), half));
		nonfinite |= qp_avx2_any_negative(q[0], q[1], q[2], q[3]);
		const __m256i b = _mm256_min_epi8(qp_avx2_low_bytes(q[0], q[1], q[2], q[3]), _mm256_set1_epi8(15));

		const __m128i lo = _mm256_castsi256_si128(b);
		const __m128i hi = _mm256_extracti128_si256(b, 1);
		const __m128i qs = _mm_or_si128(lo, _mm_and_si128(_mm_slli_epi16(hi, 4), _mm_set1_epi8((char)0xf0)));
		_mm_storeu_si128((__m128i *)y[i].qs, qs);
	}
	if (nonfinite)
		qp_avx2_redo_nonfinite(x, vy, nb, sizeof(struct qp_block_q4_1), qp_q4_1_quantize_row_ref);
}

void qp_q4_1_dequantize_row_avx2(const void *vx, float *y, int64_t n)
{
	const struct qp_block_q4_1 *x = vx;
	const int64_t nb = n / QP_QK4_1;

	for (int64_t i = 0; i < nb; i++) {
		const __m256 d = _mm256_set1_ps(qp_fp16_to_fp32(x[i].d));
		const __m256 m = _mm256_set1_ps(qp_fp16_to_fp32(x[i].m));
		__m256 f[4];
		qp_avx2_i8_to_ps(qp_avx2_nibbles(x[i].qs), f);
		/* multiply, then add: the reference's q*d + m is not fused */
		for (int k = 0; k < 4; k++)
			_mm256_storeu_ps(y + i * QP_QK4_1 + 8 * k, _mm256_add_ps(_mm256_mul_ps(f[k], d), m));
	}
}

void qp_q4_1_vec_dot_avx2(int64_t n, float *s, const void *vx, const void *vy)
{
	const struct qp_block_q4_1 *x = vx;
	const struct qp_block_q8_1 *y = vy;
	const int64_t nb = n / QP_QK8_1;

	__m256 acc = _mm256_setzero_ps();
	float offsets = 0.0f;
	for (int64_t i = 0; i < nb; i++) {
		const __m256i qx = qp_avx2_nibbles(x[i].qs);
		const __m256i qy = _mm256_loadu_si256((const __m256i *)y[i].qs);
		const __m256 d = _mm256_set1_ps(qp_fp16_to_fp32(x[i].d) * qp_fp16_to_fp32(y[i].d));
		acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(qp_avx2_dot_u8_i8(qx, qy)), acc);
		offsets += qp_fp16_to_fp32(x[i].m) * qp_fp16_to_fp32(y[i].s);
	}
	*s = qp_avx2_hsum_ps(acc) + offsets;
}
