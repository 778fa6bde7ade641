/* Q2_K: super-blocks of 256 in 16 sub-blocks of 16, x = d*sc*q - dmin*m,
 * q in 0..3, sc and m in 0..15. The reference fits each sub-block's scale
 * and minimum by make_qkx2_quants (weights |x|, mean absolute error),
 * quantizes the 16 scales and 16 minimums to 4 bits against their maxima,
 * then requantizes every x with the stored values.
 *
 * Layout of qs: byte l of each 32-byte half holds, from bit 0 up, elements
 * l, l+32, l+64 and l+96 of that half's 128; sub-block j uses scales[j]. */
#include "kernels/blocks.h"
#include "kernels/cpu/ref/kquants.h"
#include "kernels/cpu/ref/ref.h"

#include <assert.h>
#include <math.h>

static void pack_q2(struct qp_block_q2_K *y, const uint8_t L[QP_QK_K])
{
	for (int j = 0; j < QP_QK_K; j += 128)
		for (int l = 0; l < 32; l++)
			y->qs[j / 4 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
}

/* every x again, with the scales and minimums as stored */
static void requantize_q2(const float *x, const struct qp_block_q2_K *y, float dm, float mm, uint8_t L[QP_QK_K])
{
	for (int j = 0; j < QP_QK_K / 16; j++) {
		const float d = dm * (y->scales[j] & 0xF);
		if (!d)
			continue;
		const float m = mm * (y->scales[j] >> 4);
		for (int ii = 0; ii < 16; ii++) {
			int l = qp_kq_nearest_int((x[16 * j + ii] + m) / d);
			l = l < 0 ? 0 : l > 3 ? 3 : l;
			L[16 * j + ii] = (uint8_t)l;
		}
	}
}

/* The reference's scales and minimums, 4 bits each against their maxima */
void qp_kq_q2_k_pack_scales(struct qp_block_q2_K *y, const float scales[16], const float mins[16])
{
	const float q4scale = 15.f;
	float max_scale = 0; /* the minimum is subtracted: scales are >= 0 */
	float max_min = 0;
	for (int j = 0; j < QP_QK_K / 16; j++) {
		if (scales[j] > max_scale)
			max_scale = scales[j];
		if (mins[j] > max_min)
			max_min = mins[j];
	}
	if (max_scale > 0) {
		const float iscale = q4scale / max_scale;
		for (int j = 0; j < QP_QK_K / 16; j++)
			y->scales[j] = (uint8_t)qp_kq_nearest_int(iscale * scales[j]);
		y->d = qp_fp32_to_fp16(max_scale / q4scale);
	} else {
		for (int j = 0; j < QP_QK_K / 16; j++)
			y->scales[j] = 0;
		y->d = qp_fp32_to_fp16(0.f);
	}
	if (max_min > 0) {
		const float iscale = q4scale / max_min;
		for (int j = 0; j < QP_QK_K / 16; j++) {
			const int l = qp_kq_nearest_int(iscale * mins[j]);
			y->scales[j] |= (uint8_t)((unsigned)l << 4);
		}
		y->dmin = qp_fp32_to_fp16(max_min / q4scale);
	} else {
		y->dmin = qp_fp32_to_fp16(0.f);
	}
}

/* The imatrix path's: both fitted by make_qp_quants, weighted by sw */
void qp_kq_q2_k_pack_scales_imat(struct qp_block_q2_K *y, const float scales[16], const float mins[16],
                                 const float sw[16])
{
	uint8_t Ls[QP_QK_K / 16], Lm[QP_QK_K / 16];
	const float dm0 = qp_kq_make_qp_quants(QP_QK_K / 16, 15, scales, Ls, sw);
	const float mm0 = qp_kq_make_qp_quants(QP_QK_K / 16, 15, mins, Lm, sw);
	y->d = qp_fp32_to_fp16(dm0);
	y->dmin = qp_fp32_to_fp16(mm0);
	for (int j = 0; j < QP_QK_K / 16; j++)
		y->scales[j] = (uint8_t)(Ls[j] | (Lm[j] << 4));
}

void qp_q2_k_quantize_row_ref(const float *x, void *vy, int64_t n)
{
	struct qp_block_q2_K *y = vy;
	assert(n % QP_QK_K == 0);
	const int64_t nb = n / QP_QK_K;

	for (int64_t i = 0; i < nb; i++) {
		uint8_t L[QP_QK_K];
		float mins[QP_QK_K / 16];
		float scales[QP_QK_K / 16];
		float weights[16];
		for (int j = 0; j < QP_QK_K / 16; j++) {
			for (int l = 0; l < 16; l++)
				weights[l] = fabsf(x[16 * j + l]);
			scales[j] = qp_kq_make_qkx2_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], -0.5f, 0.1f, 15, true);
		}
		qp_kq_q2_k_pack_scales(&y[i], scales, mins);
		requantize_q2(x, &y[i], qp_fp16_to_fp32(y[i].d), qp_fp16_to_fp32(y[i].dmin), L);
		pack_q2(&y[i], L);
		x += QP_QK_K;
	}
}

/* llama.cpp's quantize_row_q2_K_impl: weights qw * sqrt(sigma^2 + x^2),
 * squared error, and the sub-block scales themselves fitted by
 * make_qp_quants weighted by each sub-block's total weight */
void qp_q2_k_quantize_row_imat_ref(const float *x, void *vy, int64_t n, const float *qw)
{
	struct qp_block_q2_K *y = vy;
	assert(n % QP_QK_K == 0);
	const int64_t nb = n / QP_QK_K;

	for (int64_t i = 0; i < nb; i++) {
		uint8_t L[QP_QK_K];
		float mins[QP_QK_K / 16];
		float scales[QP_QK_K / 16];
		float sw[QP_QK_K / 16] = {0};
		float weight[16];

		float sumx2 = 0;
		for (int j = 0; j < QP_QK_K; j++)
			sumx2 += x[j] * x[j];
		const float sigma2 = sumx2 / QP_QK_K;
		for (int j = 0; j < QP_QK_K / 16; j++) {
			const float *q = qw + QP_QK_K * i + 16 * j;
			for (int l = 0; l < 16; l++)
				weight[l] = q[l] * sqrtf(sigma2 + x[16 * j + l] * x[16 * j + l]);
			for (int l = 0; l < 16; l++)
				sw[j] += weight[l];
			scales[j] = qp_kq_make_qkx3_quants(16, 3, x + 16 * j, weight, L + 16 * j, &mins[j], -0.9f, 0.05f, 36);
		}

		qp_kq_q2_k_pack_scales_imat(&y[i], scales, mins, sw);
		requantize_q2(x, &y[i], qp_fp16_to_fp32(y[i].d), qp_fp16_to_fp32(y[i].dmin), L);
		pack_q2(&y[i], L);
		x += QP_QK_K;
	}
}

void qp_q2_k_dequantize_row_ref(const void *vx, float *y, int64_t n)
{
	const struct qp_block_q2_K *x = vx;
	assert(n % QP_QK_K == 0);
	const int64_t nb = n / QP_QK_K;

	for (int64_t i = 0; i < nb; i++) {
		const float d = qp_fp16_to_fp32(x[i].d);
		const float min = qp_fp16_to_fp32(x[i].dmin);
		const uint8_t *q = x[i].qs;
		int is = 0;
		for (int k = 0; k < QP_QK_K; k += 128) {
			for (int shift = 0; shift < 8; shift += 2) {
				for (int h = 0; h < 2; h++) {
					const uint8_t sc = x[i].scales[is++];
					const float dl = d * (sc & 0xF);
					const float ml = min * (sc >> 4);
					for (int l = 0; l < 16; l++)
						*y++ = dl * ((q[16 * h + l] >> shift) & 3) - ml;
				}
			}
			q += 32;
		}
	}
}

/* ggml's generic q2_K x q8_K dot: integer sums per sub-block, the
 * minimums through q8_K's bsums */
void qp_q2_k_vec_dot_ref(int64_t n, float *s, const void *vx, const void *vy)
{
	const struct qp_block_q2_K *x = vx;
	const struct qp_block_q8_K *y = vy;
	assert(n % QP_QK_K == 0);
	const int64_t nb = n / QP_QK_K;

	float sumf = 0;
	for (int64_t i = 0; i < nb; i++) {
		const uint8_t *q2 = x[i].qs;
		const int8_t *q8 = y[i].qs;
		const uint8_t *sc = x[i].scales;
		int summs = 0;
		for (int j = 0; j < 16; j++)
			summs += y[i].bsums[j] * (sc[j] >> 4);
		const float dall = y[i].d * qp_fp16_to_fp32(x[i].d);
		const float dmin = y[i].d * qp_fp16_to_fp32(x[i].dmin);
		int isum = 0;
		int is = 0;
		for (int k = 0; k < QP_QK_K / 128; k++) {
			for (int shift = 0; shift < 8; shift += 2) {
				int d = sc[is++] & 0xF;
				int isuml = 0;
				for (int l = 0; l < 16; l++)
					isuml += q8[l] * ((q2[l] >> shift) & 3);
				isum += d * isuml;
				d = sc[is++] & 0xF;
				isuml = 0;
				for (int l = 16; l < 32; l++)
					isuml += q8[l] * ((q2[l] >> shift) & 3);
				isum += d * isuml;
				q8 += 32;
			}
			q2 += 32;
		}
		sumf += dall * isum - dmin * summs;
	}
	*s = sumf;
}
