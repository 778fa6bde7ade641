/* Vector statistics over float rows, for the evaluate stage's per-tensor
 * weight error: feed it row by row (reference weights, reconstructed
 * weights), then read NMSE and worst error off the totals. */
#ifndef QP_VEC_H
#define QP_VEC_H

#include <stdint.h>

/* Running totals; start from all zeros ({0}). */
struct qp_err_stats {
	double sum_sq_err; /* sum of (x - ref)^2 */
	double sum_sq_ref; /* sum of ref^2 */
	double max_abs;    /* largest |x - ref|; NaN once any difference is NaN */
	int64_t n;         /* elements seen */
};

/* Add n elements of ref and x to acc, in double precision. */
void qp_vec_err_accum(struct qp_err_stats *acc, const float *ref, const float *x, int64_t n);

/* sum_sq_err / sum_sq_ref: 0 when both are 0, +Inf when only ref is 0. */
double qp_err_stats_nmse(const struct qp_err_stats *acc);

#endif
