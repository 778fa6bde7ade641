/* Q6_K: super-blocks of 256 in 16 sub-blocks of 16, x = d*sc*(q-32),
 * q in 0..63, sc a signed byte. The reference fits each sub-block by
 * make_qx_quants (weights x^2, or the imatrix), quantizes the scales to
 * 8 bits against the one of largest magnitude, then requantizes every x.
 *
 * Layout: per 128 elements, 64 bytes of ql and 32 of qh; element
 * 32*k + l (k = 0..3) keeps its low nibble in ql[l + 32*(k%2)] (low
 * nibble for k < 2, high for k >= 2) and its top two bits at bit 2k of
 * qh[l]. */
#include "kernels/blocks.h"
#include "kernels/cpu/ref/kquants.h"
#include "kernels/cpu/ref/ref.h"

#include <assert.h>
#include <math.h>
#include <string.h>

/* The reference's scales: 8 bits against the one of largest magnitude */
bool qp_kq_q6_k_pack_scales(struct qp_block_q6_K *y, const float scales[16])
{
	float max_scale = 0;
	float max_abs_scale = 0;
	for (int ib = 0; ib < QP_QK_K / 16; ib++) {
		const float abs_scale = fabsf(scales[ib]);
		if (abs_scale > max_abs_scale) {
			max_abs_scale = abs_scale;
			max_scale = scales[ib];
		}
	}
	if (max_abs_scale < QP_KQ_GROUP_MAX_EPS) {
		memset(y, 0, sizeof(*y));
		y->d = qp_fp32_to_fp16(0.f);
		return false;
	}
	const float iscale = -128.f / max_scale;
	y->d = qp_fp32_to_fp16(1 / iscale);
	for (int ib = 0; ib < QP_QK_K / 16; ib++) {
		const int l = qp_kq_nearest_int(iscale * scales[ib]);
		y->scales[ib] = (int8_t)(l < 127 ? l : 127);
	}
	return true;
}

/* qw: the imatrix row, or NULL for llama.cpp's reference */
static void quantize_q6(const float *x, struct qp_block_q6_K *y, int64_t n, const float *qw)
{
	const int64_t nb = n / QP_QK_K;
	for (int64_t i = 0; i < nb; i++) {
		int8_t L[QP_QK_K];
		float scales[QP_QK_K / 16];
		for (int ib = 0; ib < QP_QK_K / 16; ib++) {
			const float *w = qw ? qw + QP_QK_K * i + 16 * ib : NULL;
			scales[ib] = qp_kq_make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib, w);
		}
		if (!qp_kq_q6_k_pack_scales(&y[i], scales)) {
			x += QP_QK_K;
			continue;
		}

		const float dall = qp_fp16_to_fp32(y[i].d);
		for (int j = 0; j < QP_QK_K / 16; j++) {
			const float d = dall * y[i].scales[j];
			if (!d)
				continue;
			for (int ii = 0; ii < 16; ii++) {
				int l = qp_kq_nearest_int(x[16 * j + ii] / d);
				l = l < -32 ? -32 : l > 31 ? 31 : l;
				L[16 * j + ii] = (int8_t)(l + 32);
			}
		}

		uint8_t *ql = y[i].ql;
		uint8_t *qh = y[i].qh;
		for (int j = 0; j < QP_QK_K; j += 128) {
			for (int l = 0; l < 32; l++) {
				const uint8_t q1 = L[j + l + 0] & 0xF;
				const uint8_t q2 = L[j + l + 32] & 0xF;
				const uint8_t q3 = L[j + l + 64] & 0xF;
				const uint8_t q4 = L[j + l + 96] & 0xF;
				ql[l + 0] = (uint8_t)(q1 | (q3 << 4));
				ql[l + 32] = (uint8_t)(q2 | (q4 << 4));
				qh[l] = (uint8_t)((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) |
				                  ((L[j + l + 96] >> 4) << 6));
			}
			ql += 64;
			qh += 32;
		}
		x += QP_QK_K;
	}
}

void qp_q6_k_quantize_row_ref(const float *x, void *vy, int64_t n)
{
	assert(n % QP_QK_K == 0);
	quantize_q6(x, vy, n, NULL);
}

/* llama.cpp's quantize_row_q6_K_impl: the imatrix itself weights the fit */
void qp_q6_k_quantize_row_imat_ref(const float *x, void *vy, int64_t n, const float *qw)
{
	assert(n % QP_QK_K == 0);
	quantize_q6(x, vy, n, qw);
}

void qp_q6_k_dequantize_row_ref(const void *vx, float *y, int64_t n)
{
	const struct qp_block_q6_K *x = vx;
	assert(n % QP_QK_K == 0);
	const int64_t nb = n / QP_QK_K;

	for (int64_t i = 0; i < nb; i++) {
		const float d = qp_fp16_to_fp32(x[i].d);
		const uint8_t *ql = x[i].ql;
		const uint8_t *qh = x[i].qh;
		const int8_t *sc = x[i].scales;
		for (int k = 0; k < QP_QK_K; k += 128) {
			for (int l = 0; l < 32; l++) {
				const int is = l / 16;
				const int q1 = ((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
				const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
				const int q3 = ((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
				const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
				y[l + 0] = d * sc[is + 0] * q1;
				y[l + 32] = d * sc[is + 2] * q2;
				y[l + 64] = d * sc[is + 4] * q3;
				y[l + 96] = d * sc[is + 6] * q4;
			}
			y += 128;
			ql += 64;
			qh += 32;
			sc += 8;
		}
	}
}

/* ggml's generic q6_K x q8_K dot, with its eight lane sums */
void qp_q6_k_vec_dot_ref(int64_t n, float *s, const void *vx, const void *vy)
{
	const struct qp_block_q6_K *x = vx;
	const struct qp_block_q8_K *y = vy;
	assert(n % QP_QK_K == 0);
	const int64_t nb = n / QP_QK_K;

	float sums[8] = {0};
	for (int64_t i = 0; i < nb; i++) {
		int8_t a[QP_QK_K];
		const uint8_t *q4 = x[i].ql;
		const uint8_t *qh = x[i].qh;
		for (int j = 0; j < QP_QK_K; j += 128) {
			for (int l = 0; l < 32; l++) {
				a[j + l + 0] = (int8_t)(((q4[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32);
				a[j + l + 32] = (int8_t)(((q4[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
				a[j + l + 64] = (int8_t)(((q4[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
				a[j + l + 96] = (int8_t)(((q4[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
			}
			q4 += 64;
			qh += 32;
		}
		int32_t aux32[8] = {0};
		const int8_t *q8 = y[i].qs;
		for (int j = 0; j < QP_QK_K; j++)
			aux32[j % 8] += x[i].scales[j / 16] * (q8[j] * a[j]);
		const float d = qp_fp16_to_fp32(x[i].d) * y[i].d;
		for (int l = 0; l < 8; l++)
			sums[l] += d * aux32[l];
	}
	float sumf = 0;
	for (int l = 0; l < 8; l++)
		sumf += sums[l];
	*s = sumf;
}
