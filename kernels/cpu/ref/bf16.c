/* BF16: the top half of an fp32, one element per block. The dot multiplies
 * in float and sums in double, as ggml's generic ggml_vec_dot_bf16 does. */
#include "kernels/blocks.h"
#include "kernels/cpu/ref/ref.h"

void qp_bf16_quantize_row_ref(const float *x, void *vy, int64_t n)
{
	uint16_t *y = vy;
	for (int64_t i = 0; i < n; i++)
		y[i] = qp_fp32_to_bf16(x[i]);
}

void qp_bf16_dequantize_row_ref(const void *vx, float *y, int64_t n)
{
	const uint16_t *x = vx;
	for (int64_t i = 0; i < n; i++)
		y[i] = qp_bf16_to_fp32(x[i]);
}

void qp_bf16_vec_dot_ref(int64_t n, float *s, const void *vx, const void *vy)
{
	const uint16_t *x = vx;
	const uint16_t *y = vy;
	double sum = 0.0;
	for (int64_t i = 0; i < n; i++)
		sum += (double)(qp_bf16_to_fp32(x[i]) * qp_bf16_to_fp32(y[i]));
	*s = (float)sum;
}
