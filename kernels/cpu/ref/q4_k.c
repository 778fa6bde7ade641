/* Q4_K: super-blocks of 256 in 8 sub-blocks of 32, x = d*sc*q - dmin*m,
 * q in 0..15, sc and m in 0..63. The reference fits each sub-block by
 * make_qkx2_quants (weights sqrt(mean x^2) + |x|, squared error),
 * quantizes scales and minimums to 6 bits against their maxima, then
 * requantizes every x with the stored values.
 *
 * Layout of qs: 32 bytes per 64 elements, element l in the low nibble of
 * byte l, element l+32 in the high one. */
#include "kernels/blocks.h"
#include "kernels/cpu/ref/kquants.h"
#include "kernels/cpu/ref/ref.h"

#include <assert.h>
#include <math.h>

/* requantize with the stored scales and pack the nibbles */
static void finish_q4(const float *x, struct qp_block_q4_K *y, uint8_t L[QP_QK_K])
{
	const float dall = qp_fp16_to_fp32(y->d);
	const float dmin = qp_fp16_to_fp32(y->dmin);
	for (int j = 0; j < QP_QK_K / 32; j++) {
		uint8_t sc, m;
		qp_kq_scale_min_k4(j, y->scales, &sc, &m);
		const float d = dall * sc;
		if (!d)
			continue;
		const float dm = dmin * m;
		for (int ii = 0; ii < 32; ii++) {
			int l = qp_kq_nearest_int((x[32 * j + ii] + dm) / d);
			l = l < 0 ? 0 : l > 15 ? 15 : l;
			L[32 * j + ii] = (uint8_t)l;
		}
	}
	uint8_t *q = y->qs;
	for (int j = 0; j < QP_QK_K; j += 64) {
		for (int l = 0; l < 32; l++)
			q[l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
		q += 32;
	}
}

/* The reference's scale step, given each sub-block's fit: scales and
 * minimums to 6 bits against their maxima, with d and dmin. Shared with
 * the AVX2 quantizer, which fits and requantizes faster. */
void qp_kq_q4_k_pack_scales(struct qp_block_q4_K *y, const float scales[8], const float mins[8])
{
	float max_scale = 0; /* the minimum is subtracted: scales are >= 0 */
	float max_min = 0;
	for (int j = 0; j < QP_QK_K / 32; j++) {
		if (scales[j] > max_scale)
			max_scale = scales[j];
		if (mins[j] > max_min)
			max_min = mins[j];
	}
	const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
	const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
	uint8_t ls[8], lm[8];
	for (int j = 0; j < QP_QK_K / 32; j++) {
		const uint8_t a = (uint8_t)qp_kq_nearest_int(inv_scale * scales[j]);
		const uint8_t b = (uint8_t)qp_kq_nearest_int(inv_min * mins[j]);
		ls[j] = a < 63 ? a : 63;
		lm[j] = b < 63 ? b : 63;
	}
	qp_kq_pack_scale_min_k4(y->scales, ls, lm);
	y->d = qp_fp32_to_fp16(max_scale / 63.f);
	y->dmin = qp_fp32_to_fp16(max_min / 63.f);
}

/* The imatrix path's scale step: scales and minimums fitted by
 * make_qp_quants weighted by each sub-block's total weight sw. Shared with
 * the AVX2 quantizer. */
void qp_kq_q4_k_pack_scales_imat(struct qp_block_q4_K *y, const float scales[8], const float mins[8],
                                 const float sw[8])
{
	uint8_t Ls[QP_QK_K / 32], Lm[QP_QK_K / 32];
	const float d_block = qp_kq_make_qp_quants(QP_QK_K / 32, 63, scales, Ls, sw);
	const float m_block = qp_kq_make_qp_quants(QP_QK_K / 32, 63, mins, Lm, sw);
	qp_kq_pack_scale_min_k4(y->scales, Ls, Lm);
	y->d = qp_fp32_to_fp16(d_block);
	y->dmin = qp_fp32_to_fp16(m_block);
}

void qp_q4_k_quantize_row_ref(const float *x, void *vy, int64_t n)
{
	struct qp_block_q4_K *y = vy;
	assert(n % QP_QK_K == 0);
	const int64_t nb = n / QP_QK_K;

	for (int64_t i = 0; i < nb; i++) {
		uint8_t L[QP_QK_K];
		float weights[32];
		float mins[QP_QK_K / 32];
		float scales[QP_QK_K / 32];
		for (int j = 0; j < QP_QK_K / 32; j++) {
			float sum_x2 = 0;
			for (int l = 0; l < 32; l++)
				sum_x2 += x[32 * j + l] * x[32 * j + l];
			const float av_x = sqrtf(sum_x2 / 32);
			for (int l = 0; l < 32; l++)
				weights[l] = av_x + fabsf(x[32 * j + l]);
			scales[j] = qp_kq_make_qkx2_quants(32, 15, x + 32 * j, weights, L + 32 * j, &mins[j], -1.f, 0.1f, 20, false);
		}

		qp_kq_q4_k_pack_scales(&y[i], scales, mins);
		finish_q4(x, &y[i], L);
		x += QP_QK_K;
	}
}

/* llama.cpp's quantize_row_q4_K_impl: make_qkx3_quants weighted by
 * qw * sqrt(2 sigma^2 + x^2), the scales and minimums fitted by
 * make_qp_quants weighted by each sub-block's total weight */
void qp_q4_k_quantize_row_imat_ref(const float *x, void *vy, int64_t n, const float *qw)
{
	struct qp_block_q4_K *y = vy;
	assert(n % QP_QK_K == 0);
	const int64_t nb = n / QP_QK_K;

	for (int64_t i = 0; i < nb; i++) {
		uint8_t L[QP_QK_K];
		float weights[32];
		float sw[QP_QK_K / 32];
		float mins[QP_QK_K / 32];
		float scales[QP_QK_K / 32];

		float sum_x2 = 0;
		for (int l = 0; l < QP_QK_K; l++)
			sum_x2 += x[l] * x[l];
		const float sigma2 = 2 * sum_x2 / QP_QK_K;
		for (int j = 0; j < QP_QK_K / 32; j++) {
			const float *q = qw + QP_QK_K * i + 32 * j;
			for (int l = 0; l < 32; l++)
				weights[l] = q[l] * sqrtf(sigma2 + x[32 * j + l] * x[32 * j + l]);
			float sumw = 0;
			for (int l = 0; l < 32; l++)
				sumw += weights[l];
			sw[j] = sumw;
			scales[j] = qp_kq_make_qkx3_quants(32, 15, x + 32 * j, weights, L + 32 * j, &mins[j], -0.9f, 0.05f, 36);
		}

		qp_kq_q4_k_pack_scales_imat(&y[i], scales, mins, sw);
		finish_q4(x, &y[i], L);
		x += QP_QK_K;
	}
}

void qp_q4_k_dequantize_row_ref(const void *vx, float *y, int64_t n)
{
	const struct qp_block_q4_K *x = vx;
	assert(n % QP_QK_K == 0);
	const int64_t nb = n / QP_QK_K;

	for (int64_t i = 0; i < nb; i++) {
		const uint8_t *q = x[i].qs;
		const float d = qp_fp16_to_fp32(x[i].d);
		const float min = qp_fp16_to_fp32(x[i].dmin);
		for (int is = 0; is < 8; is += 2) {
			uint8_t sc, m;
			qp_kq_scale_min_k4(is + 0, x[i].scales, &sc, &m);
			const float d1 = d * sc;
			const float m1 = min * m;
			qp_kq_scale_min_k4(is + 1, x[i].scales, &sc, &m);
			const float d2 = d * sc;
			const float m2 = min * m;
			for (int l = 0; l < 32; l++)
				*y++ = d1 * (q[l] & 0xF) - m1;
			for (int l = 0; l < 32; l++)
				*y++ = d2 * (q[l] >> 4) - m2;
			q += 32;
		}
	}
}

/* ggml's generic q4_K x q8_K dot, with its eight lane sums */
void qp_q4_k_vec_dot_ref(int64_t n, float *s, const void *vx, const void *vy)
{
	const struct qp_block_q4_K *x = vx;
	const struct qp_block_q8_K *y = vy;
	assert(n % QP_QK_K == 0);
	const int64_t nb = n / QP_QK_K;

	float sums[8] = {0};
	float sumf = 0;
	for (int64_t i = 0; i < nb; i++) {
		uint8_t scales[8], mins[8];
		for (int j = 0; j < 8; j++)
			qp_kq_scale_min_k4(j, x[i].scales, &scales[j], &mins[j]);
		int sumi = 0;
		for (int j = 0; j < QP_QK_K / 16; j++)
			sumi += y[i].bsums[j] * mins[j / 2];
		int32_t aux32[8] = {0};
		const uint8_t *q4 = x[i].qs;
		const int8_t *q8 = y[i].qs;
		for (int j = 0; j < QP_QK_K / 64; j++) {
			for (int k = 0; k < 32; k++)
				aux32[k % 8] += scales[2 * j] * (q8[64 * j + k] * (q4[32 * j + k] & 0xF));
			for (int k = 0; k < 32; k++)
				aux32[k % 8] += scales[2 * j + 1] * (q8[64 * j + 32 + k] * (q4[32 * j + k] >> 4));
		}
		const float d = qp_fp16_to_fp32(x[i].d) * y[i].d;
		for (int l = 0; l < 8; l++)
			sums[l] += d * aux32[l];
		const float dmin = qp_fp16_to_fp32(x[i].dmin) * y[i].d;
		sumf -= dmin * sumi;
	}
	for (int l = 0; l < 8; l++)
		sumf += sums[l];
	*s = sumf;
}
