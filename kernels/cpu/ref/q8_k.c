/* Q8_K: the activation format of the k-quant and ternary dots. Blocks of
 * 256, d = max / -127 of the signed absmax (fp32, not fp16),
 * q = nearest_int(x / d) (ties to even), plus the sum of each 16 qs so a
 * dot with an offset format needs no second pass. */
#include "kernels/blocks.h"
#include "kernels/cpu/ref/kquants.h"
#include "kernels/cpu/ref/ref.h"

#include <assert.h>
#include <math.h>
#include <string.h>

void qp_q8_k_quantize_row_ref(const float *x, void *vy, int64_t n)
{
	struct qp_block_q8_K *y = vy;
	assert(n % QP_QK_K == 0);
	const int64_t nb = n / QP_QK_K;

	for (int64_t i = 0; i < nb; i++) {
		float max = 0;
		float amax = 0;
		for (int j = 0; j < QP_QK_K; j++) {
			const float ax = fabsf(x[j]);
			if (ax > amax) {
				amax = ax;
				max = x[j];
			}
		}
		if (!amax) {
			y[i].d = 0;
			memset(y[i].qs, 0, QP_QK_K);
			memset(y[i].bsums, 0, sizeof(y[i].bsums));
			x += QP_QK_K;
			continue;
		}
		/* -127, not -128: ggml's AVX dots for other types need it */
		const float iscale = -127.f / max;
		for (int j = 0; j < QP_QK_K; j++) {
			const int v = qp_kq_nearest_int(iscale * x[j]);
			y[i].qs[j] = (int8_t)(v < 127 ? v : 127);
		}
		for (int j = 0; j < QP_QK_K / 16; j++) {
			int sum = 0;
			for (int ii = 0; ii < 16; ii++)
				sum += y[i].qs[j * 16 + ii];
			y[i].bsums[j] = (int16_t)sum;
		}
		y[i].d = 1 / iscale;
		x += QP_QK_K;
	}
}

void qp_q8_k_dequantize_row_ref(const void *vx, float *y, int64_t n)
{
	const struct qp_block_q8_K *x = vx;
	assert(n % QP_QK_K == 0);
	const int64_t nb = n / QP_QK_K;

	for (int64_t i = 0; i < nb; i++)
		for (int j = 0; j < QP_QK_K; j++)
			*y++ = x[i].d * x[i].qs[j];
}
