/* Q3_K: super-blocks of 256 in 16 sub-blocks of 16, x = d*sc*(q-4),
 * q in 0..7, sc a 6-bit signed scale (stored +32). The reference fits each
 * sub-block by make_q3_quants (weights x^2), quantizes the 16 scales
 * against the one of largest magnitude, then requantizes every x.
 *
 * Layout: bits 0-1 of q as in q2_K's qs; bit 2 of element k goes to bit
 * k/32 of hmask[k%32]; the scales' low nibbles fill bytes 0-7 (sub-blocks
 * j and j+8 share byte j), their top two bits bytes 8-11. */
#include "kernels/blocks.h"
#include "kernels/cpu/ref/kquants.h"
#include "kernels/cpu/ref/ref.h"

#include <assert.h>
#include <math.h>
#include <string.h>

static void pack_q3_scale(uint8_t scales[12], int j, int l)
{
	if (j < 8)
		scales[j] = (uint8_t)(l & 0xF);
	else
		scales[j - 8] |= (uint8_t)((l & 0xF) << 4);
	l >>= 4;
	scales[j % 4 + 8] |= (uint8_t)(l << (2 * (j / 4)));
}

/* requantize with the stored scales (L in -4..3, +4), then split off the
 * high bits and pack */
static void finish_q3(const float *x, struct qp_block_q3_K *y, int8_t L[QP_QK_K])
{
	int8_t sc[16];
	qp_kq_q3_scales(y->scales, sc);
	const float dall = qp_fp16_to_fp32(y->d);
	for (int j = 0; j < QP_QK_K / 16; j++) {
		const float d = dall * sc[j];
		if (!d)
			continue;
		for (int ii = 0; ii < 16; ii++) {
			int l = qp_kq_nearest_int(x[16 * j + ii] / d);
			l = l < -4 ? -4 : l > 3 ? 3 : l;
			L[16 * j + ii] = (int8_t)(l + 4);
		}
	}

	/* the high bit of elements 0-31 goes to bit 0 of hmask[0..31], of
	 * elements 32-63 to bit 1, and so on */
	memset(y->hmask, 0, QP_QK_K / 8);
	for (int j = 0; j < QP_QK_K; j++) {
		if (L[j] > 3) {
			y->hmask[j % 32] |= (uint8_t)(1u << (j / 32));
			L[j] = (int8_t)(L[j] - 4);
		}
	}
	for (int j = 0; j < QP_QK_K; j += 128)
		for (int l = 0; l < 32; l++)
			y->qs[j / 4 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
}

/* The reference's scales: 6 bits against the one of largest magnitude */
void qp_kq_q3_k_pack_scales(struct qp_block_q3_K *y, const float scales[16])
{
	float max_scale = 0;
	float amax = 0;
	for (int j = 0; j < QP_QK_K / 16; j++) {
		const float scale = fabsf(scales[j]);
		if (scale > amax) {
			amax = scale;
			max_scale = scales[j];
		}
	}
	memset(y->scales, 0, 12);
	if (max_scale) {
		const float iscale = -32.f / max_scale;
		for (int j = 0; j < QP_QK_K / 16; j++) {
			/* llama.cpp narrows to int8_t before clamping */
			const int8_t l8 = (int8_t)qp_kq_nearest_int(iscale * scales[j]);
			const int l = (l8 < -32 ? -32 : l8 > 31 ? 31 : l8) + 32;
			pack_q3_scale(y->scales, j, l);
		}
		y->d = qp_fp32_to_fp16(1 / iscale);
	} else {
		y->d = qp_fp32_to_fp16(0.f);
	}
}

/* The imatrix path's: fitted by make_qx_quants, weighted by sw */
void qp_kq_q3_k_pack_scales_imat(struct qp_block_q3_K *y, const float scales[16], const float sw[16])
{
	int8_t Ls[QP_QK_K / 16];
	memset(y->scales, 0, 12);
	const float d_block = qp_kq_make_qx_quants(QP_QK_K / 16, 32, scales, Ls, sw);
	for (int j = 0; j < QP_QK_K / 16; j++)
		pack_q3_scale(y->scales, j, Ls[j]);
	y->d = qp_fp32_to_fp16(d_block);
}

void qp_q3_k_quantize_row_ref(const float *x, void *vy, int64_t n)
{
	struct qp_block_q3_K *y = vy;
	assert(n % QP_QK_K == 0);
	const int64_t nb = n / QP_QK_K;

	for (int64_t i = 0; i < nb; i++) {
		int8_t L[QP_QK_K];
		float scales[QP_QK_K / 16];
		for (int j = 0; j < QP_QK_K / 16; j++)
			scales[j] = qp_kq_make_q3_quants(16, 4, x + 16 * j, L + 16 * j);
		qp_kq_q3_k_pack_scales(&y[i], scales);
		finish_q3(x, &y[i], L);
		x += QP_QK_K;
	}
}

/* llama.cpp's quantize_row_q3_K_impl: make_qx_quants weighted by
 * qw * sqrt(2 sigma^2 + x^2), and the scales fitted by make_qx_quants
 * weighted by each sub-block's total weight */
void qp_q3_k_quantize_row_imat_ref(const float *x, void *vy, int64_t n, const float *qw)
{
	struct qp_block_q3_K *y = vy;
	assert(n % QP_QK_K == 0);
	const int64_t nb = n / QP_QK_K;

	for (int64_t i = 0; i < nb; i++) {
		int8_t L[QP_QK_K];
		float scales[QP_QK_K / 16];
		float weight[16];
		float sw[QP_QK_K / 16];

		float sumx2 = 0;
		for (int j = 0; j < QP_QK_K; j++)
			sumx2 += x[j] * x[j];
		const float sigma2 = 2 * sumx2 / QP_QK_K;
		for (int j = 0; j < QP_QK_K / 16; j++) {
			const float *q = qw + QP_QK_K * i + 16 * j;
			for (int l = 0; l < 16; l++)
				weight[l] = q[l] * sqrtf(sigma2 + x[16 * j + l] * x[16 * j + l]);
			float sumw = 0;
			for (int l = 0; l < 16; l++)
				sumw += weight[l];
			sw[j] = sumw;
			scales[j] = qp_kq_make_qx_quants(16, 4, x + 16 * j, L + 16 * j, weight);
		}

		qp_kq_q3_k_pack_scales_imat(&y[i], scales, sw);
		finish_q3(x, &y[i], L);
		x += QP_QK_K;
	}
}

void qp_q3_k_dequantize_row_ref(const void *vx, float *y, int64_t n)
{
	const struct qp_block_q3_K *x = vx;
	assert(n % QP_QK_K == 0);
	const int64_t nb = n / QP_QK_K;

	for (int64_t i = 0; i < nb; i++) {
		const float d_all = qp_fp16_to_fp32(x[i].d);
		int8_t scales[16];
		qp_kq_q3_scales(x[i].scales, scales);
		const uint8_t *q = x[i].qs;
		const uint8_t *hm = x[i].hmask;
		uint8_t m = 1;
		int is = 0;
		for (int k = 0; k < QP_QK_K; k += 128) {
			for (int shift = 0; shift < 8; shift += 2) {
				for (int h = 0; h < 2; h++) {
					const float dl = d_all * scales[is++];
					for (int l = 0; l < 16; l++) {
						const int ql = (q[16 * h + l] >> shift) & 3;
						*y++ = dl * (ql - ((hm[16 * h + l] & m) ? 0 : 4));
					}
				}
				m = (uint8_t)(m << 1);
			}
			q += 32;
		}
	}
}

/* ggml's generic q3_K x q8_K dot, with its eight lane sums */
void qp_q3_k_vec_dot_ref(int64_t n, float *s, const void *vx, const void *vy)
{
	const struct qp_block_q3_K *x = vx;
	const struct qp_block_q8_K *y = vy;
	assert(n % QP_QK_K == 0);
	const int64_t nb = n / QP_QK_K;

	float sums[8] = {0};
	for (int64_t i = 0; i < nb; i++) {
		int8_t a[QP_QK_K];
		const uint8_t *q3 = x[i].qs;
		const uint8_t *hm = x[i].hmask;
		int k = 0;
		for (int j = 0; j < QP_QK_K; j += 128) {
			for (int shift = 0; shift < 8; shift += 2, k++)
				for (int l = 0; l < 32; l++)
					a[j + 32 * (shift / 2) + l] =
						(int8_t)(((q3[l] >> shift) & 3) - ((hm[l] & (1u << k)) ? 0 : 4));
			q3 += 32;
		}
		int8_t scales[16];
		qp_kq_q3_scales(x[i].scales, scales);
		int32_t aux32[8] = {0};
		const int8_t *q8 = y[i].qs;
		for (int j = 0; j < QP_QK_K / 16; j++)
			for (int h = 0; h < 2; h++)
				for (int l = 0; l < 8; l++)
					aux32[l] += scales[j] * (q8[16 * j + 8 * h + l] * a[16 * j + 8 * h + l]);
		const float d = qp_fp16_to_fp32(x[i].d) * y[i].d;
		for (int l = 0; l < 8; l++)
			sums[l] += d * aux32[l];
	}
	float sumf = 0;
	for (int l = 0; l < 8; l++)
		sumf += sums[l];
	*s = sumf;
}
