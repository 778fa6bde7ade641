/* Q4_K and Q5_K: nibbles (plus qh's bit) unpacked 32 at a time; see
 * kquants.h. Quantize fits the eight sub-blocks of a super-block at once
 * (kquants_search.h), two super-blocks side by side, stores the scales as
 * the reference does, then requantizes in lane layout and packs. */
#include "kernels/blocks.h"
#include "kernels/cpu/avx2/avx2.h"
#include "kernels/cpu/avx2/kquants.h"
#include "kernels/cpu/avx2/kquants_search.h"
#include "kernels/cpu/ref/kquants.h"

#include <stdbool.h>

/* The reference's finish_q4/finish_q5 for one super-block in lane layout
 * (xv, lv: sub-block j in lane j): every x again with the stored scale and
 * minimum, a sub-block whose scale is zero keeping its fitted levels; then
 * the levels in element order at L. */
static void requantize_q45(const uint8_t packed[12], uint16_t d16, uint16_t dmin16, int nmax, const __m256 xv[32],
                           __m256i lv[32], uint8_t L[QP_QK_K])
{
	const float dall = qp_fp16_to_fp32(d16);
	const float dmin = qp_fp16_to_fp32(dmin16);
	float d[8], dm[8];
	for (int j = 0; j < 8; j++) {
		uint8_t sc, m;
		qp_kq_scale_min_k4(j, packed, &sc, &m);
		d[j] = dall * sc;
		dm[j] = dmin * m;
	}
	const __m256 dv = _mm256_loadu_ps(d), dmv = _mm256_loadu_ps(dm);
	const __m256i keep = _mm256_castps_si256(_mm256_cmp_ps(dv, _mm256_setzero_ps(), _CMP_EQ_OQ));
	const __m256i lo = _mm256_setzero_si256(), hi = _mm256_set1_epi32(nmax);
	for (int i = 0; i < 32; i++) {
		__m256i l = qp_avx2_nearest_int(_mm256_div_ps(_mm256_add_ps(xv[i], dmv), dv));
		l = _mm256_max_epi32(lo, _mm256_min_epi32(hi, l));
		lv[i] = _mm256_blendv_epi8(l, lv[i], keep);
	}
	qp_avx2_levels_from_lanes(lv, 32, L);
}

/* levels 0..15, element order: element l of each 64 in the low nibble of
 * byte l of its 32, element l + 32 in the high one */
static void pack_q4(const uint8_t L[QP_QK_K], uint8_t qs[QP_QK_K / 2])
{
	for (int k = 0; k < 4; k++) {
		const __m256i a = _mm256_loadu_si256((const __m256i *)(L + 64 * k));
		const __m256i b = _mm256_loadu_si256((const __m256i *)(L + 64 * k + 32));
		/* b < 16: the 16-bit shift carries nothing across bytes */
		_mm256_storeu_si256((__m256i *)(qs + 32 * k), _mm256_or_si256(a, _mm256_slli_epi16(b, 4)));
	}
}

/* levels 0..31: bits 0-3 as q4_K's, bit 4 of element 64 k + l (l < 32) to
 * bit 2k of qh[l], of element 64 k + 32 + l to bit 2k + 1 */
static void pack_q5(const uint8_t L[QP_QK_K], uint8_t qs[QP_QK_K / 2], uint8_t qh[QP_QK_K / 8])
{
	const __m256i m4 = _mm256_set1_epi8(0x0f), fifteen = _mm256_set1_epi8(15);
	__m256i h = _mm256_setzero_si256();
	for (int k = 0; k < 4; k++) {
		const __m256i a = _mm256_loadu_si256((const __m256i *)(L + 64 * k));
		const __m256i b = _mm256_loadu_si256((const __m256i *)(L + 64 * k + 32));
		h = _mm256_or_si256(h, _mm256_and_si256(_mm256_cmpgt_epi8(a, fifteen), _mm256_set1_epi8((char)(1 << (2 * k)))));
		h = _mm256_or_si256(h, _mm256_and_si256(_mm256_cmpgt_epi8(b, fifteen), _mm256_set1_epi8((char)(2 << (2 * k)))));
		const __m256i lo = _mm256_and_si256(a, m4), hi = _mm256_and_si256(b, m4);
		_mm256_storeu_si256((__m256i *)(qs + 32 * k), _mm256_or_si256(lo, _mm256_slli_epi16(hi, 4)));
	}
	_mm256_storeu_si256((__m256i *)qh, h);
}

void qp_avx2_q45_lanes(const float *xb, const float *qwb, __m256 xv[32], __m256 wv[32], float sw[8])
{
	qp_avx2_to_lanes(xb, 32, xv);
	if (!qwb) {
		__m256 sum_x2 = _mm256_setzero_ps();
		for (int i = 0; i < 32; i++)
			sum_x2 = _mm256_add_ps(sum_x2, _mm256_mul_ps(xv[i], xv[i]));
		const __m256 av_x = _mm256_sqrt_ps(_mm256_div_ps(sum_x2, _mm256_set1_ps(32.0f)));
		for (int i = 0; i < 32; i++)
			wv[i] = _mm256_add_ps(av_x, _mm256_andnot_ps(_mm256_set1_ps(-0.0f), xv[i]));
		return;
	}
	/* one sum, in element order, as the reference adds it */
	float sum_x2 = 0;
	for (int l = 0; l < QP_QK_K; l++)
		sum_x2 += xb[l] * xb[l];
	const __m256 sigma2 = _mm256_set1_ps(2 * sum_x2 / QP_QK_K);
	qp_avx2_to_lanes(qwb, 32, wv);
	__m256 sumw = _mm256_setzero_ps();
	for (int l = 0; l < 32; l++) {
		wv[l] = _mm256_mul_ps(wv[l], _mm256_sqrt_ps(_mm256_add_ps(sigma2, _mm256_mul_ps(xv[l], xv[l]))));
		sumw = _mm256_add_ps(sumw, wv[l]);
	}
	_mm256_storeu_ps(sw, sumw);
}

void qp_avx2_q45_finish(bool q5, bool imat, const __m256 xv[32], __m256i lv[32], __m256 sc, __m256 mn,
                        const float sw[8], void *y)
{
	const int nmax = q5 ? 31 : 15;
	float scales[8], mins[8];
	uint8_t L[QP_QK_K];
	_mm256_storeu_ps(scales, sc);
	_mm256_storeu_ps(mins, mn);
	if (q5) {
		struct qp_block_q5_K *b = y;
		if (imat)
			qp_kq_q5_k_pack_scales_imat(b, scales, mins, sw);
		else
			qp_kq_q5_k_pack_scales(b, scales, mins);
		requantize_q45(b->scales, b->d, b->dmin, nmax, xv, lv, L);
		pack_q5(L, b->qs, b->qh);
	} else {
		struct qp_block_q4_K *b = y;
		if (imat)
			qp_kq_q4_k_pack_scales_imat(b, scales, mins, sw);
		else
			qp_kq_q4_k_pack_scales(b, scales, mins);
		requantize_q45(b->scales, b->d, b->dmin, nmax, xv, lv, L);
		pack_q4(L, b->qs);
	}
}

/* nb (1 or 2) consecutive q4_K (q5 false) or q5_K (q5 true) super-blocks:
 * block b is set b of the search, two at once keeping the adders busy */
static void quantize_q45(int nb, const float *x, const float *qw, bool q5, void *vy)
{
	const int nmax = q5 ? 31 : 15;
	const size_t size = q5 ? sizeof(struct qp_block_q5_K) : sizeof(struct qp_block_q4_K);
	__m256 xv[2][32], wv[2][32], sc[2], mn[2];
	__m256i lv[2][32];
	float sw[2][8];
	for (int b = 0; b < nb; b++)
		qp_avx2_q45_lanes(x + QP_QK_K * b, qw ? qw + QP_QK_K * b : NULL, xv[b], wv[b], sw[b]);
	if (!qw)
		qp_avx2_make_qkx_quants_x8(nb, 32, nmax, &xv[0][0], &wv[0][0], &lv[0][0], sc, mn, q5 ? -0.5f : -1.f, 0.1f,
		                           q5 ? 15 : 20, false, false);
	else
		qp_avx2_make_qkx_quants_x8(nb, 32, nmax, &xv[0][0], &wv[0][0], &lv[0][0], sc, mn, -0.9f, 0.05f, 36, false,
		                           true);
	for (int b = 0; b < nb; b++)
		qp_avx2_q45_finish(q5, qw != NULL, xv[b], lv[b], sc[b], mn[b], sw[b], (uint8_t *)vy + size * (size_t)b);
}

/* the row two super-blocks at a time */
void qp_avx2_q45_quantize_row(const float *x, void *vy, int64_t n, const float *qw, bool q5)
{
	const int64_t nb = n / QP_QK_K;
	const size_t size = q5 ? sizeof(struct qp_block_q5_K) : sizeof(struct qp_block_q4_K);
	for (int64_t i = 0; i < nb; i += 2)
		quantize_q45(nb - i < 2 ? 1 : 2, x + QP_QK_K * i, qw ? qw + QP_QK_K * i : NULL, q5,
		             (uint8_t *)vy + size * (size_t)i);
}

void qp_q4_k_quantize_row_avx2(const float *x, void *vy, int64_t n)
{
	qp_avx2_q45_quantize_row(x, vy, n, NULL, false);
}

void qp_q4_k_quantize_row_imat_avx2(const float *x, void *vy, int64_t n, const float *qw)
{
	qp_avx2_q45_quantize_row(x, vy, n, qw, false);
}

void qp_q5_k_quantize_row_avx2(const float *x, void *vy, int64_t n)
{
	qp_avx2_q45_quantize_row(x, vy, n, NULL, true);
}

void qp_q5_k_quantize_row_imat_avx2(const float *x, void *vy, int64_t n, const float *qw)
{
	qp_avx2_q45_quantize_row(x, vy, n, qw, true);
}

/* q[256] in 0..15 (0..31 with qh), element order; chunk k of 32 takes
 * bit k of qh */
static inline void unpack_q45(const uint8_t *qs, const uint8_t *qh, int8_t q[QP_QK_K])
{
	const __m256i m4 = _mm256_set1_epi8(0x0f);
	const __m256i hv = qh ? _mm256_loadu_si256((const __m256i *)qh) : _mm256_setzero_si256();
	for (int g = 0; g < 4; g++) {
		const __m256i v = _mm256_loadu_si256((const __m256i *)(qs + 32 * g));
		__m256i lo = _mm256_and_si256(v, m4);
		__m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
		if (qh) {
			lo = _mm256_or_si256(lo, _mm256_slli_epi16(qp_avx2_bit_k(hv, 2 * g), 4));
			hi = _mm256_or_si256(hi, _mm256_slli_epi16(qp_avx2_bit_k(hv, 2 * g + 1), 4));
		}
		_mm256_storeu_si256((__m256i *)(q + 64 * g), lo);
		_mm256_storeu_si256((__m256i *)(q + 64 * g + 32), hi);
	}
}

static void dequant_q45(const uint8_t *qs, const uint8_t *qh, const uint8_t *scales, uint16_t d16, uint16_t dmin16,
                        float *y)
{
	int8_t q[QP_QK_K];
	float a[16], b[16];
	unpack_q45(qs, qh, q);
	const float d = qp_fp16_to_fp32(d16);
	const float min = qp_fp16_to_fp32(dmin16);
	for (int j = 0; j < 8; j++) {
		uint8_t sc, m;
		qp_kq_scale_min_k4(j, scales, &sc, &m);
		a[2 * j] = a[2 * j + 1] = d * sc;
		b[2 * j] = b[2 * j + 1] = min * m;
	}
	qp_avx2_dequant_256(q, a, b, y);
}

void qp_q4_k_dequantize_row_avx2(const void *vx, float *y, int64_t n)
{
	const struct qp_block_q4_K *x = vx;
	for (int64_t i = 0; i < n / QP_QK_K; i++)
		dequant_q45(x[i].qs, NULL, x[i].scales, x[i].d, x[i].dmin, y + i * QP_QK_K);
}

/* fused: unpacked in registers, one float accumulator for the row (see
 * kquants.h) */
void qp_q4_k_vec_dot_avx2(int64_t n, float *s, const void *vx, const void *vy)
{
	const struct qp_block_q4_K *x = vx;
	const struct qp_block_q8_K *y = vy;
	__m256 acc = _mm256_setzero_ps();
	for (int64_t i = 0; i < n / QP_QK_K; i++)
		acc = qp_avx2_q45_k_block(x[i].d, x[i].dmin, x[i].scales, x[i].qs, NULL, &y[i], acc);
	*s = qp_avx2_hsum_ps(acc);
}

void qp_q5_k_dequantize_row_avx2(const void *vx, float *y, int64_t n)
{
	const struct qp_block_q5_K *x = vx;
	for (int64_t i = 0; i < n / QP_QK_K; i++)
		dequant_q45(x[i].qs, x[i].qh, x[i].scales, x[i].d, x[i].dmin, y + i * QP_QK_K);
}

/* fused, as q4_K's with qh's bit */
void qp_q5_k_vec_dot_avx2(int64_t n, float *s, const void *vx, const void *vy)
{
	const struct qp_block_q5_K *x = vx;
	const struct qp_block_q8_K *y = vy;
	__m256 acc = _mm256_setzero_ps();
	for (int64_t i = 0; i < n / QP_QK_K; i++)
		acc = qp_avx2_q45_k_block(x[i].d, x[i].dmin, x[i].scales, x[i].qs, x[i].qh, &y[i], acc);
	*s = qp_avx2_hsum_ps(acc);
}
