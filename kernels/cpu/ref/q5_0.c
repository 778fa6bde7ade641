/* Q5_0: q4_0 with a fifth bit: d = (signed absmax) / -16,
 * q = trunc(x/d + 16.5), clamped to 31; bit 4 of every q goes to qh. */
#include "kernels/blocks.h"
#include "kernels/cpu/ref/ref.h"

#include <assert.h>
#include <math.h>
#include <string.h>

void qp_q5_0_quantize_row_ref(const float *x, void *vy, int64_t n)
{
	struct qp_block_q5_0 *y = vy;
	assert(n % QP_QK5_0 == 0);
	const int64_t nb = n / QP_QK5_0;

	for (int64_t i = 0; i < nb; i++) {
		const float *xb = x + i * QP_QK5_0;
		float amax = 0.0f;
		float max = 0.0f;
		for (int j = 0; j < QP_QK5_0; j++) {
			if (amax < fabsf(xb[j])) {
				amax = fabsf(xb[j]);
				max = xb[j];
			}
		}

		const float d = max / -16;
		const float id = d != 0.0f ? 1.0f / d : 0.0f;
		y[i].d = qp_fp32_to_fp16(d);

		uint32_t qh = 0;
		for (int j = 0; j < QP_QK5_0 / 2; j++) {
			const float v0 = xb[j] * id;
			const float v1 = xb[j + QP_QK5_0 / 2] * id;
			const int q0 = qp_ref_to_i8(v0 + 16.5f);
			const int q1 = qp_ref_to_i8(v1 + 16.5f);
			const uint8_t xi0 = (uint8_t)(q0 < 31 ? q0 : 31);
			const uint8_t xi1 = (uint8_t)(q1 < 31 ? q1 : 31);
			y[i].qs[j] = (uint8_t)((xi0 & 0x0f) | ((xi1 & 0x0f) << 4));
			qh |= (uint32_t)((xi0 >> 4) & 1u) << j;
			qh |= (uint32_t)((xi1 >> 4) & 1u) << (j + QP_QK5_0 / 2);
		}
		memcpy(y[i].qh, &qh, sizeof(qh));
	}
}

void qp_q5_0_dequantize_row_ref(const void *vx, float *y, int64_t n)
{
	const struct qp_block_q5_0 *x = vx;
	assert(n % QP_QK5_0 == 0);
	const int64_t nb = n / QP_QK5_0;

	for (int64_t i = 0; i < nb; i++) {
		const float d = qp_fp16_to_fp32(x[i].d);
		uint32_t qh;
		memcpy(&qh, x[i].qh, sizeof(qh));
		for (int j = 0; j < QP_QK5_0 / 2; j++) {
			const int h0 = (int)((qh >> j) & 1u) << 4;
			const int h1 = (int)((qh >> (j + QP_QK5_0 / 2)) & 1u) << 4;
			const int q0 = ((x[i].qs[j] & 0x0f) | h0) - 16;
			const int q1 = ((x[i].qs[j] >> 4) | h1) - 16;
			y[i * QP_QK5_0 + j] = q0 * d;
			y[i * QP_QK5_0 + j + QP_QK5_0 / 2] = q1 * d;
		}
	}
}

void qp_q5_0_vec_dot_ref(int64_t n, float *s, const void *vx, const void *vy)
{
	const struct qp_block_q5_0 *x = vx;
	const struct qp_block_q8_0 *y = vy;
	assert(n % QP_QK8_0 == 0);
	const int64_t nb = n / QP_QK8_0;

	float sum = 0.0f;
	for (int64_t i = 0; i < nb; i++) {
		uint32_t qh;
		memcpy(&qh, x[i].qh, sizeof(qh));
		int sumi0 = 0;
		int sumi1 = 0;
		for (int j = 0; j < QP_QK5_0 / 2; j++) {
			const int h0 = (int)((qh >> j) & 1u) << 4;
			const int h1 = (int)((qh >> (j + QP_QK5_0 / 2)) & 1u) << 4;
			sumi0 += (((x[i].qs[j] & 0x0f) | h0) - 16) * y[i].qs[j];
			sumi1 += (((x[i].qs[j] >> 4) | h1) - 16) * y[i].qs[j + QP_QK5_0 / 2];
		}
		const int sumi = sumi0 + sumi1;
		sum += (qp_fp16_to_fp32(x[i].d) * qp_fp16_to_fp32(y[i].d)) * sumi;
	}
	*s = sum;
}
