/* F32: the identity format; the dot sums in double, as ggml's generic
 * ggml_vec_dot_f32 does. */
#include "kernels/cpu/ref/ref.h"

#include <string.h>

void qp_f32_quantize_row_ref(const float *x, void *y, int64_t n)
{
	memcpy(y, x, (size_t)n * sizeof(float));
}

void qp_f32_dequantize_row_ref(const void *x, float *y, int64_t n)
{
	memcpy(y, x, (size_t)n * sizeof(float));
}

void qp_f32_vec_dot_ref(int64_t n, float *s, const void *vx, const void *vy)
{
	const float *x = vx;
	const float *y = vy;
	double sum = 0.0;
	for (int64_t i = 0; i < n; i++)
		sum += (double)(x[i] * y[i]);
	*s = (float)sum;
}
