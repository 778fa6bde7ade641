/* Internals shared by the qmethod*.c files: code packing, the thread
 * split, and each method's entry points. Not part of the public API.
 *
 * Every method that has scales (RTN, BINARY, TERNARY, NF4, FP8) works on
 * scale units that are contiguous spans of the flattened tensor, all of
 * unit_len elements: the tensor (rows * cols), a row (cols), or a group
 * (group elements of one row; NF4: a block). Element i belongs to unit
 * i / unit_len. */
#ifndef QP_QMETHOD_INT_H
#define QP_QMETHOD_INT_H

#include "kernels/qmethod.h"

/* Code j of a packed row: bits at j * bits, least significant first.
 * The row must start zeroed for put. */
static inline void qm_put(uint8_t *row, int64_t j, int bits, unsigned code)
{
	const int64_t bit = j * bits;
	const int shift = (int)(bit & 7);
	uint8_t *p = row + (bit >> 3);
	p[0] |= (uint8_t)(code << shift);
	if (shift + bits > 8)
		p[1] |= (uint8_t)(code >> (8 - shift));
}

static inline unsigned qm_get(const uint8_t *row, int64_t j, int bits)
{
	return qp_qcode_get(row, j, bits);
}

/* The number of mids[0..n) below x: with mids the midpoints of an
 * ascending table, the index of x's nearest entry, the lower one on a tie
 * (x exactly on a midpoint). Midpoints of two floats are exact in double,
 * so the tie is the true tie. */
static inline int qm_count_below(const double *mids, int n, double x)
{
	int lo = 0, hi = n;
	while (lo < hi) {
		const int m = (lo + hi) / 2;
		if (mids[m] < x)
			lo = m + 1;
		else
			hi = m;
	}
	return lo;
}

/* Work on items [lo, hi); returns 0 or QP_ENOMEM. */
typedef int (*qm_range_fn)(void *ctx, int64_t lo, int64_t hi);

/* Split n items over up to threads threads (fewer when the items are
 * few: min_per_thread each at least); a thread that cannot start runs
 * inline. The split never changes a result, only who computes it.
 * Returns 0, or the first failure of a range. */
int qm_parallel(int threads, int64_t n, int64_t min_per_thread, qm_range_fn fn, void *ctx);

/* f32 -> f16 -> f32, keeping the result finite: values past f16's largest
 * finite (65504) saturate to it. */
float qm_round_f16(float x);

/* The first element (row, col) that is NaN or infinite, as an error
 * naming it and the method; 0 when all are finite. */
int qm_check_finite(const float *w, int64_t rows, int64_t cols, const char *method, struct qp_err *err);

/* Mean |w| over n values, summed in double, rounded once to float. */
float qm_mean_abs(const float *w, int64_t n);

/* Per-method quantize/dequantize. On entry out has rows, cols, codes
 * (zeroed), row_bytes and codes_bytes set, and, for methods with scale
 * units, scales (scale_rows x scale_cols) allocated; the method allocates
 * anything else it needs into out. Shapes were checked by qp_qspec_check
 * and weights by qm_check_finite where the method refuses non-finite ones.
 * Dequantize gets a qtensor whose layout qp_qmethod_dequantize checked. */
int qm_rtn_quantize(const struct qp_qspec *s, const float *w, struct qp_qtensor *out, int threads,
                    struct qp_err *err);
int qm_rtn_dequantize(const struct qp_qspec *s, const struct qp_qtensor *q, float *out, struct qp_err *err);
int qm_sign_quantize(const struct qp_qspec *s, const float *w, struct qp_qtensor *out, int threads,
                     struct qp_err *err);
int qm_sign_dequantize(const struct qp_qspec *s, const struct qp_qtensor *q, float *out, struct qp_err *err);
int qm_nf4_quantize(const struct qp_qspec *s, const float *w, struct qp_qtensor *out, int threads,
                    struct qp_err *err);
int qm_nf4_dequantize(const struct qp_qspec *s, const struct qp_qtensor *q, float *out, struct qp_err *err);
int qm_fp8_quantize(const struct qp_qspec *s, const float *w, struct qp_qtensor *out, int threads,
                    struct qp_err *err);
int qm_fp8_dequantize(const struct qp_qspec *s, const struct qp_qtensor *q, float *out, struct qp_err *err);
int qm_kmeans_quantize(const struct qp_qspec *s, const float *w, struct qp_qtensor *out, int threads,
                       struct qp_err *err);
int qm_kmeans_dequantize(const struct qp_qspec *s, const struct qp_qtensor *q, float *out,
                         struct qp_err *err);

#endif
