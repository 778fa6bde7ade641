#include "kernels/w8a8.h"

#include <math.h>
#include <stdlib.h>

#include "kernels/cpu/ref/ref.h"
#include "kernels/ops.h"
#if QP_HAVE_AVX2
#include "kernels/cpu/avx2/avx2.h"
#endif

static const struct qp_w8a8_ops levels[QP_LEVEL_COUNT] = {
	[QP_LEVEL_SCALAR] = {qp_i8_quantize_row_ref, qp_i8_dot_ref, qp_i8_dot_rows_ref},
#if QP_HAVE_AVX2
	[QP_LEVEL_AVX2] = {qp_i8_quantize_row_avx2, qp_i8_dot_avx2, qp_i8_dot_rows_avx2},
#endif
};

const struct qp_w8a8_ops *qp_w8a8_ops(void)
{
	/* qp_kernels_level() only names a level this CPU runs, and it runs
	 * the levels below it */
	int l = qp_kernels_level();
	while (!(levels[l].quantize_row && levels[l].dot && levels[l].dot_rows))
		l = qp_kernel_level_below(l);
	return &levels[l];
}

const struct qp_w8a8_ops *qp_w8a8_ops_level(enum qp_kernel_level level)
{
	if ((int)level < 0 || level >= QP_LEVEL_COUNT || !qp_kernel_level_supported(level))
		return NULL;
	const struct qp_w8a8_ops *ops = &levels[level];
	return ops->quantize_row && ops->dot && ops->dot_rows ? ops : NULL;
}

static int check_k(int64_t k, const char *what, struct qp_err *err)
{
	if (k < 1 || k > QP_W8A8_MAX_K)
		return qp_err_set(err, QP_EINVAL, "w8a8: rows of %lld %s, must be 1 to %d (int32 sums stay exact)",
		                  (long long)k, what, QP_W8A8_MAX_K);
	return 0;
}

int qp_w8a8_quantize_weights(int8_t *q, float *scale, const float *w, int64_t rows, int64_t cols,
                             struct qp_err *err)
{
	int rc = check_k(cols, "weights", err);
	if (rc)
		return rc;
	if (rows < 0)
		return qp_err_set(err, QP_EINVAL, "w8a8: %lld weight rows", (long long)rows);
	/* a NaN would quantize to -127 and an Inf zero its whole row: refuse
	 * them before any row is written */
	for (int64_t r = 0; r < rows; r++)
		for (int64_t c = 0; c < cols; c++)
			if (!isfinite(w[r * cols + c]))
				return qp_err_set(err, QP_EINVAL, "w8a8: weight at row %lld, column %lld is %g",
				                  (long long)r, (long long)c, (double)w[r * cols + c]);
	const struct qp_w8a8_ops *ops = qp_w8a8_ops();
	for (int64_t r = 0; r < rows; r++)
		ops->quantize_row(w + r * cols, q + r * cols, &scale[r], cols);
	return 0;
}

/* What the token and row workers share; each writes only its own tokens'
 * codes and scales, or its own rows of y. */
struct job {
	const struct qp_w8a8_ops *ops;
	float *y;
	int64_t ldy;
	const int8_t *w;
	const float *w_scale;
	int64_t k, n_tok;
	const float *x;
	int8_t *xq;      /* n_tok x k codes */
	float *x_scale;  /* n_tok scales */
};

static void quantize_tokens(void *arg, int64_t t0, int64_t t1)
{
	const struct job *j = arg;
	for (int64_t t = t0; t < t1; t++)
		j->ops->quantize_row(j->x + t * j->k, j->xq + t * j->k, &j->x_scale[t], j->k);
}

/* Blocks of rows keep a few weight rows in L1 while the tokens stream
 * past them, as qp_ops_matmul's do. */
#define ROW_BLOCK 8

static void product_rows(void *arg, int64_t r0, int64_t r1)
{
	const struct job *j = arg;
	for (int64_t rb = r0; rb < r1; rb += ROW_BLOCK) {
		const int64_t re = rb + ROW_BLOCK < r1 ? rb + ROW_BLOCK : r1;
		for (int64_t t = 0; t < j->n_tok; t++) {
			int32_t acc[ROW_BLOCK];
			j->ops->dot_rows(j->k, j->xq + t * j->k, j->w + rb * j->k, j->k, re - rb, acc);
			for (int64_t r = rb; r < re; r++)
				j->y[t * j->ldy + r] = (float)acc[r - rb] * (j->x_scale[t] * j->w_scale[r]);
		}
	}
}

int qp_w8a8_matmul(float *y, int64_t ldy, const int8_t *w, const float *w_scale, int64_t n_rows, int64_t k,
                   const float *x, int64_t n_tok, int threads, struct qp_err *err)
{
	int rc = check_k(k, "activations", err);
	if (rc)
		return rc;
	if (n_rows < 0 || n_tok < 0 || ldy < n_rows)
		return qp_err_set(err, QP_EINVAL, "w8a8: %lld rows, %lld tokens and output stride %lld do not fit",
		                  (long long)n_rows, (long long)n_tok, (long long)ldy);
	if (n_tok > 0 && (uint64_t)n_tok > SIZE_MAX / (uint64_t)k)
		return qp_err_nomem(err);
	const size_t n_tok1 = (size_t)(n_tok > 0 ? n_tok : 1);
	int8_t *xq = malloc(n_tok1 * (size_t)k);
	float *x_scale = malloc(n_tok1 * sizeof(float));
	if (!xq || !x_scale) {
		free(xq);
		free(x_scale);
		return qp_err_nomem(err);
	}
	struct job j = {qp_w8a8_ops(), y, ldy, w, w_scale, k, n_tok, x, xq, x_scale};
	qp_ops_parallel(threads, n_tok, quantize_tokens, &j);
	qp_ops_parallel(threads, n_rows, product_rows, &j);
	free(xq);
	free(x_scale);
	return 0;
}
