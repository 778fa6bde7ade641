/* Q3_K: 2-bit fields plus hmask's bit, biased by -4; see kquants.h.
 * Quantize fits the 16 sub-blocks eight at a time (kquants_search.h),
 * stores the scales as the reference does, then requantizes in lane layout
 * and packs. */
#include "kernels/blocks.h"
#include "kernels/cpu/avx2/avx2.h"
#include "kernels/cpu/avx2/kquants.h"
#include "kernels/cpu/avx2/kquants_search.h"
#include "kernels/cpu/ref/kquants.h"

/* The reference's finish_q3: every x again with the stored scales (a
 * sub-block whose scale is zero keeps its fitted levels lv, 0..7), then
 * bit 2 to hmask and bits 0-1 to qs. xv and lv in lane layout. */
static void finish_q3(const __m256 xv[2][16], __m256i lv[2][16], struct qp_block_q3_K *y)
{
	int8_t sc[16];
	qp_kq_q3_scales(y->scales, sc);
	const float dall = qp_fp16_to_fp32(y->d);
	const __m256i lo = _mm256_set1_epi32(-4), hi = _mm256_set1_epi32(3), bias = _mm256_set1_epi32(4);
	uint8_t L[QP_QK_K];
	for (int g = 0; g < 2; g++) {
		float d[8];
		for (int j = 0; j < 8; j++)
			d[j] = dall * sc[8 * g + j];
		const __m256 dv = _mm256_loadu_ps(d);
		const __m256i keep = _mm256_castps_si256(_mm256_cmp_ps(dv, _mm256_setzero_ps(), _CMP_EQ_OQ));
		for (int i = 0; i < 16; i++) {
			__m256i l = qp_avx2_nearest_int(_mm256_div_ps(xv[g][i], dv));
			l = _mm256_add_epi32(_mm256_max_epi32(lo, _mm256_min_epi32(hi, l)), bias);
			lv[g][i] = _mm256_blendv_epi8(l, lv[g][i], keep);
		}
		qp_avx2_levels_from_lanes(lv[g], 16, L + 128 * g);
	}
	/* element 32c + l with a level above 3 sets bit c of hmask[l] */
	const __m256i three = _mm256_set1_epi8(3);
	__m256i hm = _mm256_setzero_si256();
	for (int c = 0; c < 8; c++) {
		const __m256i v = _mm256_loadu_si256((const __m256i *)(L + 32 * c));
		hm = _mm256_or_si256(hm, _mm256_and_si256(_mm256_cmpgt_epi8(v, three), _mm256_set1_epi8((char)(1 << c))));
		_mm256_storeu_si256((__m256i *)(L + 32 * c), _mm256_and_si256(v, three));
	}
	_mm256_storeu_si256((__m256i *)y->hmask, hm);
	qp_avx2_pack_crumbs(L, y->qs);
}

void qp_q3_k_quantize_row_avx2(const float *x, void *vy, int64_t n)
{
	struct qp_block_q3_K *y = vy;
	for (int64_t i = 0; i < n / QP_QK_K; i++, x += QP_QK_K) {
		__m256 xv[2][16], sc[2];
		__m256i lv[2][16];
		float scales[16];
		for (int g = 0; g < 2; g++)
			qp_avx2_to_lanes(x + 128 * g, 16, xv[g]);
		qp_avx2_make_q3_quants_x8(2, 16, 4, &xv[0][0], &lv[0][0], sc);
		_mm256_storeu_ps(scales, sc[0]);
		_mm256_storeu_ps(scales + 8, sc[1]);
		qp_kq_q3_k_pack_scales(&y[i], scales);
		finish_q3(xv, lv, &y[i]);
	}
}

/* the reference's imatrix path: make_qx_quants weighted by
 * qw * sqrt(2 sigma^2 + x^2) */
void qp_q3_k_quantize_row_imat_avx2(const float *x, void *vy, int64_t n, const float *qw)
{
	struct qp_block_q3_K *y = vy;
	for (int64_t i = 0; i < n / QP_QK_K; i++, x += QP_QK_K, qw += QP_QK_K) {
		__m256 xv[2][16];
		__m256i lv[2][16];
		float scales[16], sw[16];
		/* one sum, in element order, as the reference adds it */
		float sumx2 = 0;
		for (int j = 0; j < QP_QK_K; j++)
			sumx2 += x[j] * x[j];
		const __m256 sigma2 = _mm256_set1_ps(2 * sumx2 / QP_QK_K);
		__m256 wv[2][16], sc[2];
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
		qp_avx2_make_qx_quants_x8(2, 16, 4, &xv[0][0], &wv[0][0], &lv[0][0], sc);
		_mm256_storeu_ps(scales, sc[0]);
		_mm256_storeu_ps(scales + 8, sc[1]);
		qp_kq_q3_k_pack_scales_imat(&y[i], scales, sw);
		finish_q3(xv, lv, &y[i]);
	}
}

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

/* fused: unpacked in registers, one float accumulator for the row (see
 * kquants.h) */
void qp_q3_k_vec_dot_avx2(int64_t n, float *s, const void *vx, const void *vy)
{
	const struct qp_block_q3_K *x = vx;
	const struct qp_block_q8_K *y = vy;
	__m256 acc = _mm256_setzero_ps();
	for (int64_t i = 0; i < n / QP_QK_K; i++)
		acc = qp_avx2_q3_k_block(&x[i], &y[i], acc);
	*s = qp_avx2_hsum_ps(acc);
}
