/* Q2_K: 2-bit fields unpacked 32 at a time; see kquants.h. Quantize fits
 * the 16 sub-blocks eight at a time (kquants_search.h), stores scales and
 * minimums as the reference does, then requantizes in lane layout and
 * packs. */
#include "kernels/blocks.h"
#include "kernels/cpu/avx2/avx2.h"
#include "kernels/cpu/avx2/kquants.h"
#include "kernels/cpu/avx2/kquants_search.h"
#include "kernels/cpu/ref/kquants.h"

/* The reference's requantize_q2 and pack_q2: every x again with the stored
 * scale and minimum (a sub-block whose scale is zero keeps its fitted
 * levels lv), then four to a byte. xv and lv in lane layout. */
static void finish_q2(const __m256 xv[2][16], __m256i lv[2][16], struct qp_block_q2_K *y)
{
	const float dm = qp_fp16_to_fp32(y->d);
	const float mm = qp_fp16_to_fp32(y->dmin);
	const __m256i lo = _mm256_setzero_si256(), hi = _mm256_set1_epi32(3);
	uint8_t L[QP_QK_K];
	for (int g = 0; g < 2; g++) {
		float d[8], m[8];
		for (int j = 0; j < 8; j++) {
			d[j] = dm * (y->scales[8 * g + j] & 0xF);
			m[j] = mm * (y->scales[8 * g + j] >> 4);
		}
		const __m256 dv = _mm256_loadu_ps(d);
		const __m256 mv = _mm256_loadu_ps(m);
		const __m256i keep = _mm256_castps_si256(_mm256_cmp_ps(dv, _mm256_setzero_ps(), _CMP_EQ_OQ));
		for (int i = 0; i < 16; i++) {
			__m256i l = qp_avx2_nearest_int(_mm256_div_ps(_mm256_add_ps(xv[g][i], mv), dv));
			l = _mm256_max_epi32(lo, _mm256_min_epi32(hi, l));
			lv[g][i] = _mm256_blendv_epi8(l, lv[g][i], keep);
		}
		qp_avx2_levels_from_lanes(lv[g], 16, L + 128 * g);
	}
	qp_avx2_pack_crumbs(L, y->qs);
}

/* make_qkx2_quants weighted by |x|, mean absolute error */
void qp_q2_k_quantize_row_avx2(const float *x, void *vy, int64_t n)
{
	struct qp_block_q2_K *y = vy;
	const __m256 sign = _mm256_set1_ps(-0.0f);
	for (int64_t i = 0; i < n / QP_QK_K; i++, x += QP_QK_K) {
		__m256 xv[2][16], wv[2][16], sc[2], the_min[2];
		__m256i lv[2][16];
		float scales[16], mins[16];
		for (int g = 0; g < 2; g++) {
			qp_avx2_to_lanes(x + 128 * g, 16, xv[g]);
			for (int l = 0; l < 16; l++)
				wv[g][l] = _mm256_andnot_ps(sign, xv[g][l]);
		}
		qp_avx2_make_qkx_quants_x8(2, 16, 3, &xv[0][0], &wv[0][0], &lv[0][0], sc, the_min, -0.5f, 0.1f, 15, true,
		                           false);
		for (int g = 0; g < 2; g++) {
			_mm256_storeu_ps(scales + 8 * g, sc[g]);
			_mm256_storeu_ps(mins + 8 * g, the_min[g]);
		}
		qp_kq_q2_k_pack_scales(&y[i], scales, mins);
		finish_q2(xv, lv, &y[i]);
	}
}

/* the reference's imatrix path: make_qkx3_quants weighted by
 * qw * sqrt(sigma^2 + x^2), squared error */
void qp_q2_k_quantize_row_imat_avx2(const float *x, void *vy, int64_t n, const float *qw)
{
	struct qp_block_q2_K *y = vy;
	for (int64_t i = 0; i < n / QP_QK_K; i++, x += QP_QK_K, qw += QP_QK_K) {
		__m256 xv[2][16], wv[2][16], sc[2], the_min[2];
		__m256i lv[2][16];
		float scales[16], mins[16], sw[16];
		/* one sum, in element order, as the reference adds it */
		float sumx2 = 0;
		for (int j = 0; j < QP_QK_K; j++)
			sumx2 += x[j] * x[j];
		const __m256 sigma2 = _mm256_set1_ps(sumx2 / QP_QK_K);
		for (int g = 0; g < 2; g++) {
			qp_avx2_to_lanes(x + 128 * g, 16, xv[g]);
			qp_avx2_to_lanes(qw + 128 * g, 16, wv[g]);
			__m256 sumw = _mm256_setzero_ps();
			for (int l = 0; l < 16; l++) {
				const __m256 r = _mm256_sqrt_ps(_mm256_add_ps(sigma2, _mm256_mul_ps(xv[g][l], xv[g][l])));
				wv[g][l] = _mm256_mul_ps(wv[g][l], r);
				sumw = _mm256_add_ps(sumw, wv[g][l]);
			}
			_mm256_storeu_ps(sw + 8 * g, sumw);
		}
		qp_avx2_make_qkx_quants_x8(2, 16, 3, &xv[0][0], &wv[0][0], &lv[0][0], sc, the_min, -0.9f, 0.05f, 36, false,
		                           true);
		for (int g = 0; g < 2; g++) {
			_mm256_storeu_ps(scales + 8 * g, sc[g]);
			_mm256_storeu_ps(mins + 8 * g, the_min[g]);
		}
		qp_kq_q2_k_pack_scales_imat(&y[i], scales, mins, sw);
		finish_q2(xv, lv, &y[i]);
	}
}

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

/* fused: unpacked in registers, one float accumulator for the row (see
 * kquants.h) */
void qp_q2_k_vec_dot_avx2(int64_t n, float *s, const void *vx, const void *vy)
{
	const struct qp_block_q2_K *x = vx;
	const struct qp_block_q8_K *y = vy;
	__m256 acc = _mm256_setzero_ps();
	for (int64_t i = 0; i < n / QP_QK_K; i++)
		acc = qp_avx2_q2_k_block(&x[i], &y[i], acc);
	*s = qp_avx2_hsum_ps(acc);
}
