/* Q8_1: q8_0 plus s = d * sum(qs), the activation format that q4_1 and
 * q5_1 dot against. llama.cpp defines no dequantize for it; ours is the
 * obvious d * qs (s is redundant), so tests can measure its round trip. */
#include "kernels/blocks.h"
#include "kernels/cpu/ref/ref.h"

#include <assert.h>
#include <math.h>

void qp_q8_1_quantize_row_ref(const float *x, void *vy, int64_t n)
{
	struct qp_block_q8_1 *y = vy;
	assert(n % QP_QK8_1 == 0);
	const int64_t nb = n / QP_QK8_1;

	for (int64_t i = 0; i < nb; i++) {
		const float *xb = x + i * QP_QK8_1;
		float amax = 0.0f;
		for (int j = 0; j < QP_QK8_1; j++) {
			const float a = fabsf(xb[j]);
			amax = amax > a ? amax : a;
		}

		const float d = amax / 127;
		const float id = d != 0.0f ? 1.0f / d : 0.0f;
		y[i].d = qp_fp32_to_fp16(d);

		int sum = 0;
		for (int j = 0; j < QP_QK8_1; j++) {
			const float v = xb[j] * id;
			y[i].qs[j] = (int8_t)qp_ref_to_i8(roundf(v));
			sum += y[i].qs[j];
		}
		y[i].s = qp_fp32_to_fp16((float)sum * d);
	}
}

void qp_q8_1_dequantize_row_ref(const void *vx, float *y, int64_t n)
{
	const struct qp_block_q8_1 *x = vx;
	assert(n % QP_QK8_1 == 0);
	const int64_t nb = n / QP_QK8_1;

	for (int64_t i = 0; i < nb; i++) {
		const float d = qp_fp16_to_fp32(x[i].d);
		for (int j = 0; j < QP_QK8_1; j++)
			y[i * QP_QK8_1 + j] = x[i].qs[j] * d;
	}
}
