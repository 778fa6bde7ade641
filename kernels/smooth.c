/* SmoothQuant's smoothing factors; see smooth.h. */
#include "kernels/smooth.h"

#include <math.h>

void qp_smooth_scales(const float *const *w, const int64_t *rows, int n, int64_t cols, const float *act_max,
                      float alpha, float *s)
{
	for (int64_t j = 0; j < cols; j++)
		s[j] = 0;
	/* s holds max |W[.][j]| first */
	for (int i = 0; i < n; i++)
		for (int64_t r = 0; r < rows[i]; r++)
			for (int64_t j = 0; j < cols; j++) {
				float a = fabsf(w[i][r * cols + j]);
				if (a > s[j])
					s[j] = a;
			}
	for (int64_t j = 0; j < cols; j++) {
		if (!(act_max[j] > 0) || !(s[j] > 0)) {
			s[j] = 1;
			continue;
		}
		double v = pow((double)act_max[j], alpha) / pow((double)s[j], 1.0 - alpha);
		s[j] = (float)(v > 1e-5 ? v : 1e-5);
	}
}
