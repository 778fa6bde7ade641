/* Q5_1: q4_1 with a fifth bit: d = (max - min) / 31,
 * q = trunc((x - m)/d + 0.5), unclamped as in llama.cpp's reference (for
 * finite input (x - m)/d stays below 31.5); bit 4 of every q goes to qh. */
#include "kernels/blocks.h"
#include "kernels/cpu/ref/ref.h"

#include <assert.h>
#include <float.h>
#include <string.h>

void qp_q5_1_quantize_row_ref(const float *x, void *vy, int64_t n)
{
	struct qp_block_q5_1 *y = vy;
	assert(n % QP_QK5_1 == 0);
	const int64_t nb = n / QP_QK5_1;

	for (int64_t i = 0; i < nb; i++) {
		const float *xb = x + i * QP_QK5_1;
		float min = FLT_MAX;
		float max = -FLT_MAX;
		for (int j = 0; j < QP_QK5_1; j++) {
			if (xb[j] < min)
				min = xb[j];
			if (xb[j] > max)
				max = xb[j];
		}

		const float d = (max - min) / 31;
		const float id = d != 0.0f ? 1.0f / d : 0.0f;
		y[i].d = qp_fp32_to_fp16(d);
		y[i].m = qp_fp32_to_fp16(min);

		uint32_t qh = 0;
		for (int j = 0; j < QP_QK5_1 / 2; j++) {
			const float v0 = (xb[j] - min) * id;
			const float v1 = (xb[j + QP_QK5_1 / 2] - min) * id;
			const uint8_t xi0 = (uint8_t)qp_ref_to_u8(v0 + 0.5f);
			const uint8_t xi1 = (uint8_t)qp_ref_to_u8(v1 + 0.5f);
			y[i].qs[j] = (uint8_t)((xi0 & 0x0f) | ((xi1 & 0x0f) << 4));
			qh |= (uint32_t)((xi0 >> 4) & 1u) << j;
			qh |= (uint32_t)((xi1 >> 4) & 1u) << (j + QP_QK5_1 / 2);
		}
		memcpy(y[i].qh, &qh, sizeof(qh));
	}
}

void qp_q5_1_dequantize_row_ref(const void *vx, float *y, int64_t n)
{
	const struct qp_block_q5_1 *x = vx;
	assert(n % QP_QK5_1 == 0);
	const int64_t nb = n / QP_QK5_1;

	for (int64_t i = 0; i < nb; i++) {
		const float d = qp_fp16_to_fp32(x[i].d);
		const float m = qp_fp16_to_fp32(x[i].m);
		uint32_t qh;
		memcpy(&qh, x[i].qh, sizeof(qh));
		for (int j = 0; j < QP_QK5_1 / 2; j++) {
			const int h0 = (int)((qh >> j) & 1u) << 4;
			const int h1 = (int)((qh >> (j + QP_QK5_1 / 2)) & 1u) << 4;
			const int q0 = (x[i].qs[j] & 0x0f) | h0;
			const int q1 = (x[i].qs[j] >> 4) | h1;
			y[i * QP_QK5_1 + j] = q0 * d + m;
			y[i * QP_QK5_1 + j + QP_QK5_1 / 2] = q1 * d + m;
		}
	}
}

void qp_q5_1_vec_dot_ref(int64_t n, float *s, const void *vx, const void *vy)
{
	const struct qp_block_q5_1 *x = vx;
	const struct qp_block_q8_1 *y = vy;
	assert(n % QP_QK8_1 == 0);
	const int64_t nb = n / QP_QK8_1;

	float sum = 0.0f;
	for (int64_t i = 0; i < nb; i++) {
		uint32_t qh;
		memcpy(&qh, x[i].qh, sizeof(qh));
		int sumi0 = 0;
		int sumi1 = 0;
		for (int j = 0; j < QP_QK5_1 / 2; j++) {
			const int h0 = (int)((qh >> j) & 1u) << 4;
			const int h1 = (int)((qh >> (j + QP_QK5_1 / 2)) & 1u) << 4;
			sumi0 += ((x[i].qs[j] & 0x0f) | h0) * y[i].qs[j];
			sumi1 += ((x[i].qs[j] >> 4) | h1) * y[i].qs[j + QP_QK5_1 / 2];
		}
		const int sumi = sumi0 + sumi1;
		sum += (qp_fp16_to_fp32(x[i].d) * qp_fp16_to_fp32(y[i].d)) * sumi +
		       qp_fp16_to_fp32(x[i].m) * qp_fp16_to_fp32(y[i].s);
	}
	*s = sum;
}
