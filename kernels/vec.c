#include "kernels/vec.h"

#include <math.h>

void qp_vec_err_accum(struct qp_err_stats *acc, const float *ref, const float *x, int64_t n)
{
	double sq_err = 0.0;
	double sq_ref = 0.0;
	double max_abs = acc->max_abs;
	for (int64_t i = 0; i < n; i++) {
		const double r = ref[i];
		const double e = (double)x[i] - r;
		sq_err += e * e;
		sq_ref += r * r;
		/* a NaN difference must stick: a plain a > max_abs would
		 * skip it, and then forget it at the next number */
		const double a = fabs(e);
		if (!isnan(max_abs) && (a > max_abs || isnan(a)))
			max_abs = a;
	}
	acc->sum_sq_err += sq_err;
	acc->sum_sq_ref += sq_ref;
	acc->max_abs = max_abs;
	acc->n += n;
}

double qp_err_stats_nmse(const struct qp_err_stats *acc)
{
	if (acc->sum_sq_ref == 0.0)
		return acc->sum_sq_err == 0.0 ? 0.0 : INFINITY;
	return acc->sum_sq_err / acc->sum_sq_ref;
}
