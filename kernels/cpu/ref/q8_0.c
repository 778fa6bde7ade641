/* Q8_0: symmetric 8-bit blocks of 32, scale = absmax / 127, rounded half
 * away from zero (roundf). */
#include "kernels/blocks.h"
#include "kernels/cpu/ref/ref.h"

#include <assert.h>
#include <math.h>

void qp_q8_0_quantize_row_ref(const float *x, void *vy, int64_t n)
{
	struct qp_block_q8_0 *y = vy;
	assert(n % QP_QK8_0 == 0);
	const int64_t nb = n / QP_QK8_0;

	for (int64_t i = 0; i < nb; i++) {
		const float *xb = x + i * QP_QK8_0;
		float amax = 0.0f;
		for (int j = 0; j < QP_QK8_0; j++) {
			const float a = fabsf(xb[j]);
			amax = amax > a ? amax : a;
		}

		const float d = amax / 127;
		const float id = d != 0.0f ? 1.0f / d : 0.0f;
		y[i].d = qp_fp32_to_fp16(d);

		for (int j = 0; j < QP_QK8_0; j++) {
			const float v = xb[j] * id;
			y[i].qs[j] = (int8_t)qp_ref_to_i8(roundf(v));
		}
	}
}

void qp_q8_0_dequantize_row_ref(const void *vx, float *y, int64_t n)
{
	const struct qp_block_q8_0 *x = vx;
	assert(n % QP_QK8_0 == 0);
	const int64_t nb = n / QP_QK8_0;

	for (int64_t i = 0; i < nb; i++) {
		const float d = qp_fp16_to_fp32(x[i].d);
		for (int j = 0; j < QP_QK8_0; j++)
			y[i * QP_QK8_0 + j] = x[i].qs[j] * d;
	}
}

void qp_q8_0_vec_dot_ref(int64_t n, float *s, const void *vx, const void *vy)
{
	const struct qp_block_q8_0 *x = vx;
	const struct qp_block_q8_0 *y = vy;
	assert(n % QP_QK8_0 == 0);
	const int64_t nb = n / QP_QK8_0;

	float sum = 0.0f;
	for (int64_t i = 0; i < nb; i++) {
		int sumi = 0;
		for (int j = 0; j < QP_QK8_0; j++)
			sumi += x[i].qs[j] * y[i].qs[j];
		sum += sumi * (qp_fp16_to_fp32(x[i].d) * qp_fp16_to_fp32(y[i].d));
	}
	*s = sum;
}
