#include "kernels/convert.h"

#include <stdlib.h>

#include "kernels/kernels.h"
#include "kernels/ops.h"
#include "kernels/vec.h"

struct job {
	const struct qp_kernel_ops *dops, *sops;
	/* the destination's quantizer straight from the source's rows, or
	 * NULL: convert each row to f32 first */
	void (*fused)(const void *x, void *y, int64_t n);
	uint8_t *dst;
	const uint8_t *src;
	size_t drow, srow;     /* bytes per row */
	int64_t ncols;
	const float *imat;     /* ncols importances, or NULL: unweighted */
	int failed;
};

/* How many rows are converted before their quantizer is called on them
 * all: the fewest that make whole groups of four super-blocks (1024
 * elements, what AVX-512's q4_K quantizes at once: rows of 512 or 1536
 * elements come two at a time), as long as they stay within 64 KiB of
 * floats; else one. */
static int64_t batch_rows(int64_t ncols)
{
	int64_t r = 1;
	while ((r * ncols) % 1024 != 0 && (r + 1) * ncols <= 16384)
		r++;
	return (r * ncols) % 1024 == 0 ? r : 1;
}

/* rows [r0, r1) */
static void work(void *arg, int64_t r0, int64_t r1)
{
	struct job *j = arg;
	if (j->fused) {
		for (int64_t r = r0; r < r1; r++)
			j->fused(j->src + (size_t)r * j->srow, j->dst + (size_t)r * j->drow, j->ncols);
		return;
	}
	/* Unweighted, rows go to quantize_row several at once (blocks are
	 * quantized independently, kernels.h), so that a quantizer that
	 * works on several super-blocks at a time finds them in short rows.
	 * The importances are per column: weighted rows go one at a time. */
	const int64_t batch = j->imat ? 1 : batch_rows(j->ncols);
	float *tmp = malloc((size_t)(batch * j->ncols) * sizeof(float));
	if (!tmp) {
		__atomic_store_n(&j->failed, 1, __ATOMIC_RELAXED);
		return;
	}
	for (int64_t r = r0; r < r1; r += batch) {
		const int64_t nr = r1 - r < batch ? r1 - r : batch;
		for (int64_t k = 0; k < nr; k++)
			j->sops->dequantize_row(j->src + (size_t)(r + k) * j->srow, tmp + k * j->ncols, j->ncols);
		if (j->imat)
			j->dops->quantize_row_imat(tmp, j->dst + (size_t)r * j->drow, j->ncols, j->imat);
		else
			j->dops->quantize_row(tmp, j->dst + (size_t)r * j->drow, nr * j->ncols);
	}
	free(tmp);
}

static int row_sizes(enum qp_type dt, enum qp_type st, int64_t ncols, size_t *drow, size_t *srow,
                     struct qp_err *err)
{
	const struct qp_type_traits *dtt = qp_type_traits(dt), *stt = qp_type_traits(st);
	if (!dtt || !stt)
		return qp_err_set(err, QP_EINVAL, "unknown tensor type %d or %d", (int)dt, (int)st);
	if (qp_type_row_size(dt, ncols, drow) || qp_type_row_size(st, ncols, srow))
		return qp_err_set(err, QP_EINVAL, "rows of %lld elements do not divide into %s or %s blocks",
		                  (long long)ncols, dtt->name, stt->name);
	return 0;
}

static int convert(enum qp_type dt, void *dst, enum qp_type st, const void *src, int64_t nrows,
                   int64_t ncols, const float *imat, int threads, struct qp_err *err)
{
	size_t drow, srow;
	int rc = row_sizes(dt, st, ncols, &drow, &srow, err);
	if (rc)
		return rc;
	const struct qp_kernel_ops *dops = qp_kernels_get(dt), *sops = qp_kernels_get(st);
	if (!dops || !dops->quantize_row)
		return qp_err_set(err, QP_EINVAL, "no kernels to write type %s", qp_type_traits(dt)->name);
	if (!sops || !sops->dequantize_row)
		return qp_err_set(err, QP_EINVAL, "no kernels to read type %s", qp_type_traits(st)->name);
	if (imat && !dops->quantize_row_imat)
		return qp_err_set(err, QP_EINVAL, "type %s has no importance-weighted quantizer",
		                  qp_type_traits(dt)->name);
	if (nrows < threads * 4)
		threads = 1;
	void (*fused)(const void *, void *, int64_t) = NULL;
	if (!imat)
		fused = st == QP_TYPE_F16 ? dops->quantize_row_f16 : st == QP_TYPE_BF16 ? dops->quantize_row_bf16 : NULL;
	/* the forward pass's pool of workers: threads created and joined for
	 * every tensor cost a two-thread q6_K quantization of llama-docs-27m
	 * 3.5% of its time */
	struct job job = {dops, sops, fused, dst, src, drow, srow, ncols, imat, 0};
	qp_ops_parallel(threads, nrows, work, &job);
	const int failed = job.failed;
	return failed ? qp_err_nomem(err) : 0;
}

int qp_convert_rows(enum qp_type dt, void *dst, enum qp_type st, const void *src, int64_t nrows,
                    int64_t ncols, int threads, struct qp_err *err)
{
	return convert(dt, dst, st, src, nrows, ncols, NULL, threads, err);
}

int qp_convert_rows_imat(enum qp_type dt, void *dst, enum qp_type st, const void *src,
                         int64_t nrows, int64_t ncols, const float *imatrix, int threads,
                         struct qp_err *err)
{
	return convert(dt, dst, st, src, nrows, ncols, imatrix, threads, err);
}

int qp_compare_rows(struct qp_err_stats *acc, enum qp_type rt, const void *ref, enum qp_type xt,
                    const void *x, int64_t nrows, int64_t ncols, struct qp_err *err)
{
	size_t xrow, rrow;
	int rc = row_sizes(xt, rt, ncols, &xrow, &rrow, err);
	if (rc)
		return rc;
	const struct qp_kernel_ops *rops = qp_kernels_get(rt), *xops = qp_kernels_get(xt);
	if (!rops || !xops || !rops->dequantize_row || !xops->dequantize_row)
		return qp_err_set(err, QP_EINVAL, "no kernels to read type %s or %s",
		                  qp_type_traits(rt)->name, qp_type_traits(xt)->name);
	float *a = malloc((size_t)ncols * sizeof(float) * 2);
	if (!a)
		return qp_err_nomem(err);
	float *b = a + ncols;
	for (int64_t r = 0; r < nrows; r++) {
		rops->dequantize_row((const uint8_t *)ref + (size_t)r * rrow, a, ncols);
		xops->dequantize_row((const uint8_t *)x + (size_t)r * xrow, b, ncols);
		qp_vec_err_accum(acc, a, b, ncols);
	}
	free(a);
	return 0;
}
