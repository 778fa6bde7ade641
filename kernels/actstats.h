/* Statistics of activation matrices, accumulated batch by batch: the sums
 * a calibration needs (llama.cpp's importance matrix, GPTQ's Hessian,
 * AWQ's and SmoothQuant's per-channel scales). x is always n rows (tokens)
 * of k floats (input channels), row-major.
 *
 * Sums are kept in double so that adding many batches loses nothing a
 * float result could show; every result depends only on its inputs, never
 * on the thread count. */
#ifndef QP_ACTSTATS_H
#define QP_ACTSTATS_H

#include <stdint.h>

#include "common/err.h"

/* Per-column totals over rows: for every column j < k,
 * sum[j] += x_tj, sum_sq[j] += x_tj^2, sum_abs[j] += |x_tj| and
 * max_abs[j] = max(max_abs[j], |x_tj|) over the n rows t. Start from
 * zeros. A NaN in x makes its column's sums NaN. */
void qp_actstats_cols(double *sum, double *sum_sq, double *sum_abs, float *max_abs, const float *x,
                      int64_t n, int64_t k);

/* The Gram matrix X^T X added into h: h[i * k + j] += sum_t x_ti x_tj for
 * j <= i (the lower triangle; the rest of h is left alone). Each entry's
 * n products are summed by the kernel table's f32 dot product (so SIMD
 * where the CPU has it) and then added in double. Work is split over up
 * to threads threads by tiles of the triangle. Fails only for memory. */
int qp_actstats_gram(double *h, const float *x, int64_t n, int64_t k, int threads,
                     struct qp_err *err);

/* Reference for tests: the same lower triangle, each sum in double. */
void qp_actstats_gram_ref(double *h, const float *x, int64_t n, int64_t k);

#endif
