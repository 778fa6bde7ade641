/* Q4_0: symmetric 4-bit blocks of 32. The scale is the signed value of
 * largest magnitude (the first one, on ties) divided by -8, so that value
 * lands exactly on q = 0 and the other side gets the 7 remaining steps;
 * q = trunc(x/d + 8.5), clamped to 15. */
#include "kernels/blocks.h"
#include "kernels/cpu/ref/ref.h"

#include <assert.h>
#include <math.h>

void qp_q4_0_quantize_row_ref(const float *x, void *vy, int64_t n)
{
	struct qp_block_q4_0 *y = vy;
	assert(n % QP_QK4_0 == 0);
	const int64_t nb = n / QP_QK4_0;

	for (int64_t i = 0; i < nb; i++) {
		const float *xb = x + i * QP_QK4_0;
		float amax = 0.0f;
		float max = 0.0f; /* stays +0 for an all-zero block, making d = -0 */
		for (int j = 0; j < QP_QK4_0; j++) {
			if (amax < fabsf(xb[j])) {
				amax = fabsf(xb[j]);
				max = xb[j];
			}
		}

		const float d = max / -8;
		const float id = d != 0.0f ? 1.0f / d : 0.0f;
		y[i].d = qp_fp32_to_fp16(d);

		for (int j = 0; j < QP_QK4_0 / 2; j++) {
			const float v0 = xb[j] * id;
			const float v1 = xb[j + QP_QK4_0 / 2] * id;
			const int q0 = qp_ref_to_i8(v0 + 8.5f);
			const int q1 = qp_ref_to_i8(v1 + 8.5f);
			const uint8_t xi0 = (uint8_t)(q0 < 15 ? q0 : 15);
			const uint8_t xi1 = (uint8_t)(q1 < 15 ? q1 : 15);
			y[i].qs[j] = (uint8_t)(xi0 | (xi1 << 4));
		}
	}
}

void qp_q4_0_dequantize_row_ref(const void *vx, float *y, int64_t n)
{
	const struct qp_block_q4_0 *x = vx;
	assert(n % QP_QK4_0 == 0);
	const int64_t nb = n / QP_QK4_0;

	for (int64_t i = 0; i < nb; i++) {
		const float d = qp_fp16_to_fp32(x[i].d);
		for (int j = 0; j < QP_QK4_0 / 2; j++) {
			const int q0 = (x[i].qs[j] & 0x0f) - 8;
			const int q1 = (x[i].qs[j] >> 4) - 8;
			y[i * QP_QK4_0 + j] = q0 * d;
			y[i * QP_QK4_0 + j + QP_QK4_0 / 2] = q1 * d;
		}
	}
}

void qp_q4_0_vec_dot_ref(int64_t n, float *s, const void *vx, const void *vy)
{
	const struct qp_block_q4_0 *x = vx;
	const struct qp_block_q8_0 *y = vy;
	assert(n % QP_QK8_0 == 0);
	const int64_t nb = n / QP_QK8_0;

	float sum = 0.0f;
	for (int64_t i = 0; i < nb; i++) {
		int sumi0 = 0;
		int sumi1 = 0;
		for (int j = 0; j < QP_QK4_0 / 2; j++) {
			const int v0 = (x[i].qs[j] & 0x0f) - 8;
			const int v1 = (x[i].qs[j] >> 4) - 8;
			sumi0 += v0 * y[i].qs[j];
			sumi1 += v1 * y[i].qs[j + QP_QK4_0 / 2];
		}
		const int sumi = sumi0 + sumi1;
		sum += sumi * qp_fp16_to_fp32(x[i].d) * qp_fp16_to_fp32(y[i].d);
	}
	*s = sum;
}
