/* Whole-tensor conversion between types through the kernel table: rows are
 * dequantized to f32 and requantized, split across threads. This is the
 * loop stages must not write themselves. */
#ifndef QP_CONVERT_H
#define QP_CONVERT_H

#include <stdint.h>

#include "common/err.h"
#include "kernels/types.h"

/* Convert nrows rows of ncols elements from src (type st) to dst (type dt),
 * using up to threads threads. ncols must be a multiple of both types'
 * block sizes; fails naming the types otherwise or when either type has no
 * kernels. */
int qp_convert_rows(enum qp_type dt, void *dst, enum qp_type st, const void *src, int64_t nrows,
                    int64_t ncols, int threads, struct qp_err *err);

/* As qp_convert_rows, but each row is fitted by dt's weighted quantizer
 * (quantize_row_imat) with imatrix[ncols], one importance per column: what
 * llama-quantize --imatrix does to a tensor, the importances being its
 * imatrix's sum of squared inputs over their count (imatrix NULL: as
 * qp_convert_rows). Fails naming dt when it has no weighted quantizer. */
int qp_convert_rows_imat(enum qp_type dt, void *dst, enum qp_type st, const void *src,
                         int64_t nrows, int64_t ncols, const float *imatrix, int threads,
                         struct qp_err *err);

/* Error of an approximation x against ref, accumulated over rows:
 * ref (type rt) and x (type xt), both nrows x ncols, converted to f32 row
 * by row. Adds into acc. */
struct qp_err_stats;
int qp_compare_rows(struct qp_err_stats *acc, enum qp_type rt, const void *ref, enum qp_type xt,
                    const void *x, int64_t nrows, int64_t ncols, struct qp_err *err);

#endif
