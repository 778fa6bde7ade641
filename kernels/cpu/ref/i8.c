/* Per-row symmetric int8 codes and their int32 dot product: the scalar
 * definition of W8A8's arithmetic (kernels/w8a8.h), which the SIMD
 * variants reproduce exactly.
 *
 * A row x of n floats gets one scale s = max|x| / 127 (s = 1 where that is
 * 0: an all-zero row, or one so small that the division underflows) and
 * codes q = clamp(rint(x / s), -127, 127), rint rounding half to even in
 * the default rounding mode. x / s, not x * (1 / s): SmoothQuant's
 * quantizers divide (t.div_(scales).round_()), and a division is one IEEE
 * rounding, which numpy and _mm256_div_ps repeat bit for bit, where the
 * reciprocal would add a second. The clamps are written as the comparisons
 * maxps and minps perform, so a NaN x gives -127 here as there; NaN is
 * also skipped by the maximum, in both. Only finite x has a meaning. */
#include "kernels/cpu/ref/ref.h"

#include <math.h>

void qp_i8_quantize_row_ref(const float *x, int8_t *q, float *scale, int64_t n)
{
	float amax = 0.0f;
	for (int64_t i = 0; i < n; i++) {
		const float a = fabsf(x[i]);
		amax = a > amax ? a : amax;
	}
	float s = amax / 127.0f;
	if (s == 0.0f)
		s = 1.0f;
	*scale = s;
	for (int64_t i = 0; i < n; i++) {
		float v = rintf(x[i] / s);
		v = v > -127.0f ? v : -127.0f;
		v = v < 127.0f ? v : 127.0f;
		q[i] = (int8_t)v;
	}
}

int32_t qp_i8_dot_ref(int64_t n, const int8_t *a, const int8_t *b)
{
	int32_t sum = 0;
	for (int64_t i = 0; i < n; i++)
		sum += (int32_t)a[i] * (int32_t)b[i];
	return sum;
}

void qp_i8_dot_rows_ref(int64_t n, const int8_t *x, const int8_t *w, int64_t w_stride, int64_t n_rows,
                        int32_t *out)
{
	for (int64_t r = 0; r < n_rows; r++)
		out[r] = qp_i8_dot_ref(n, w + r * w_stride, x);
}
