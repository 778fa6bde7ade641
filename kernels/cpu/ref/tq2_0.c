/* TQ2_0: ternary super-blocks of 256: d = absmax, q = round(x / d) + 1 in
 * 0..2 (2 bits), x = d * (q - 1). Byte m of each 32-byte group holds
 * elements m, m+32, m+64, m+96 of that group's 128, from bit 0 up. */
#include "kernels/blocks.h"
#include "kernels/cpu/ref/ref.h"

#include <assert.h>
#include <math.h>

void qp_tq2_0_quantize_row_ref(const float *x, void *vy, int64_t n)
{
	struct qp_block_tq2_0 *y = vy;
	assert(n % QP_QK_K == 0);
	const int64_t nb = n / QP_QK_K;

	for (int64_t i = 0; i < nb; i++) {
		float amax = 0.0f;
		for (int j = 0; j < QP_QK_K; j++) {
			const float a = fabsf(x[j]);
			amax = amax > a ? amax : a;
		}
		const float d = amax;
		const float id = d ? 1.0f / d : 0.0f;
		y[i].d = qp_fp32_to_fp16(d);

		for (int j = 0; j < QP_QK_K / 4; j += 32) {
			for (int m = 0; m < 32; m++) {
				unsigned q = 0;
				for (int k = 0; k < 4; k++) {
					const uint32_t xi = qp_ref_lroundf_low(x[m + 32 * k] * id) + 1;
					q += (xi & 3) << (2 * k);
				}
				y[i].qs[j + m] = (uint8_t)q;
			}
			x += 128;
		}
	}
}

void qp_tq2_0_dequantize_row_ref(const void *vx, float *y, int64_t n)
{
	const struct qp_block_tq2_0 *x = vx;
	assert(n % QP_QK_K == 0);
	const int64_t nb = n / QP_QK_K;

	for (int64_t i = 0; i < nb; i++) {
		const float d = qp_fp16_to_fp32(x[i].d);
		for (int j = 0; j < QP_QK_K / 4; j += 32)
			for (int k = 0; k < 4; k++)
				for (int m = 0; m < 32; m++)
					*y++ = (float)(((x[i].qs[j + m] >> (2 * k)) & 3) - 1) * d;
	}
}

/* ggml's generic tq2_0 x q8_K dot */
void qp_tq2_0_vec_dot_ref(int64_t n, float *s, const void *vx, const void *vy)
{
	const struct qp_block_tq2_0 *x = vx;
	const struct qp_block_q8_K *y = vy;
	assert(n % QP_QK_K == 0);
	const int64_t nb = n / QP_QK_K;

	float sumf = 0.0f;
	for (int64_t i = 0; i < nb; i++) {
		int32_t sumi = 0;
		for (int j = 0; j < QP_QK_K / 4; j += 32)
			for (int k = 0; k < 4; k++)
				for (int m = 0; m < 32; m++)
					sumi += y[i].qs[4 * j + 32 * k + m] * (((x[i].qs[j + m] >> (2 * k)) & 3) - 1);
		const float d = y[i].d * qp_fp16_to_fp32(x[i].d);
		sumf += (float)sumi * d;
	}
	*s = sumf;
}
