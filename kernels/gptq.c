#include "kernels/gptq.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/blas.h"
#include "kernels/ops.h"

void qp_gptq_params_default(struct qp_gptq_params *p)
{
	*p = (struct qp_gptq_params){
		.bits = 4,
		.group = 128,
		.sym = false,
		.act_order = false,
		.static_groups = false,
		.damp_percent = 0.01,
		.block = 128,
		.scale_f16 = true,
	};
}

int qp_gptq_check(const struct qp_gptq_params *p, int64_t rows, int64_t cols, struct qp_err *err)
{
	if (p->bits != 2 && p->bits != 3 && p->bits != 4 && p->bits != 8)
		return qp_err_set(err, QP_EINVAL, "gptq: bits is %d, must be 2, 3, 4 or 8", p->bits);
	if (rows < 1 || cols < 1)
		return qp_err_set(err, QP_EINVAL, "gptq: layer of %lld x %lld weights is empty",
		                  (long long)rows, (long long)cols);
	if (p->group != -1 && p->group < 1)
		return qp_err_set(err, QP_EINVAL, "gptq: group is %lld, must be -1 or positive",
		                  (long long)p->group);
	if (p->group > 0 && cols % p->group != 0)
		return qp_err_set(err, QP_EINVAL, "gptq: group %lld does not divide the %lld columns",
		                  (long long)p->group, (long long)cols);
	if (p->block < 1)
		return qp_err_set(err, QP_EINVAL, "gptq: block is %lld, must be positive", (long long)p->block);
	if (!(p->damp_percent >= 0 && p->damp_percent <= 1))
		return qp_err_set(err, QP_EINVAL, "gptq: damp_percent is %g, must be in [0, 1]", p->damp_percent);
	return 0;
}

void qp_gptq_spec(const struct qp_gptq_params *p, struct qp_qspec *out)
{
	qp_qspec_default(out, QP_QM_RTN);
	out->bits = p->bits;
	out->gran = p->group > 0 ? QP_QG_GROUP : QP_QG_CHANNEL;
	out->group = p->group > 0 ? p->group : 0;
	out->sym = p->sym;
	out->scale_f16 = p->scale_f16;
}

/* Code q of column c into a packed row (qmethod.h's layout: LSB first,
 * possibly straddling two bytes). The row starts zeroed. */
static void put_code(uint8_t *row, int64_t c, int bits, uint8_t q)
{
	const uint64_t bit = (uint64_t)c * (uint64_t)bits;
	const unsigned shift = (unsigned)(bit & 7);
	const unsigned v = (unsigned)q << shift;
	row[bit >> 3] |= (uint8_t)v;
	if (shift + (unsigned)bits > 8)
		row[(bit >> 3) + 1] |= (uint8_t)(v >> 8);
}

/* Everything the row workers share; they write disjoint rows of w, err1
 * and out, and only read the rest. */
struct run {
	const struct qp_gptq_params *p;
	int64_t rows, cols, n_groups;
	double *w;            /* rows x cols, permuted columns, updated in place */
	const double *u;      /* cols x cols, upper triangle: Cholesky factor of H^-1 (permuted) */
	const int64_t *perm;  /* permuted position -> original column */
	double *err1;         /* rows x block: the current block's scaled errors */
	float *tmp;           /* n_slices x group floats: one group's weights */
	int64_t n_slices;
	struct qp_qtensor *out;
};

/* The scale group of permuted position j. Dynamic groups are numbered in
 * quantization order; static groups (and the one per-row "group") keep
 * the original columns' numbering. */
static int64_t group_of(const struct run *r, int64_t j)
{
	const struct qp_gptq_params *p = r->p;
	if (p->group < 0)
		return 0;
	return (p->static_groups ? r->perm[j] : j) / p->group;
}

/* Columns quantized between two GEMM updates inside a block. The paper's
 * lazy batches (block) keep W's trailing columns out of cache traffic;
 * inside a block the same trick again turns most of the rank-1 updates
 * into one small GEMM per SUB columns. Only the order of additions
 * changes: test_gptq checks that block sizes give the same codes. */
enum { SUB = 16 };

/* W[r0:r1, c0:c0+n] -= E[r0:r1, e0:e0+k] U[j0:j0+k, c0:c0+n], E's rows
 * block apart. */
static void update(struct run *r, int64_t r0, int64_t r1, int64_t e0, int64_t j0, int64_t k, int64_t c0,
                   int64_t n)
{
	const int64_t cols = r->cols, blk = r->p->block;
	if (r1 > r0 && n > 0 && k > 0)
		cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)(r1 - r0), (int)n, (int)k, -1.0,
		            r->err1 + r0 * blk + e0, (int)blk, r->u + j0 * cols + c0, (int)cols, 1.0,
		            r->w + r0 * cols + c0, (int)cols);
}

/* Rows [r0, r1) through every block: rows never interact, so a slice of
 * rows runs start to end without waiting for the others. */
static void run_slice(struct run *r, int64_t slice)
{
	const struct qp_gptq_params *p = r->p;
	const int64_t cols = r->cols, blk = p->block;
	const int64_t r0 = r->rows * slice / r->n_slices, r1 = r->rows * (slice + 1) / r->n_slices;
	const bool dynamic = p->group > 0 && !p->static_groups;
	float *tmp = r->tmp ? r->tmp + slice * p->group : NULL;
	struct qp_qtensor *out = r->out;

	for (int64_t i1 = 0; i1 < cols; i1 += blk) {
		const int64_t i2 = i1 + blk < cols ? i1 + blk : cols;
		/* convention 7 of gptq.h: every group starting in this block takes
		 * its scale from the weights as they stand at the block's start */
		if (dynamic)
			for (int64_t row = r0; row < r1; row++)
				for (int64_t g0 = (i1 + p->group - 1) / p->group * p->group; g0 < i2; g0 += p->group) {
					for (int64_t k = 0; k < p->group; k++)
						tmp[k] = (float)r->w[row * cols + g0 + k];
					qp_rtn_scale_zero(tmp, p->group, p->bits, p->sym, p->scale_f16,
					                  &out->scales[row * r->n_groups + g0 / p->group],
					                  &out->zeros[row * r->n_groups + g0 / p->group]);
				}
		for (int64_t s1 = i1; s1 < i2; s1 += SUB) {
			const int64_t s2 = s1 + SUB < i2 ? s1 + SUB : i2;
			for (int64_t row = r0; row < r1; row++) {
				double *w = r->w + row * cols, *e1 = r->err1 + row * blk - i1;
				const float *scales = out->scales + row * r->n_groups;
				const uint8_t *zeros = out->zeros + row * r->n_groups;
				uint8_t *codes = out->codes + (size_t)row * out->row_bytes;
				for (int64_t j = s1; j < s2; j++) {
					const int64_t g = group_of(r, j);
					const float s = scales[g];
					const uint8_t z = zeros[g];
					const uint8_t q = qp_rtn_code((float)w[j], s, z, p->bits);
					const float qv = s * (float)((int)q - (int)z);
					const double *uj = r->u + j * cols;
					const double e = (w[j] - (double)qv) / uj[j];
					for (int64_t k = j + 1; k < s2; k++)
						w[k] -= e * uj[k];
					e1[j] = e;
					put_code(codes, r->perm[j], p->bits, q);
				}
			}
			update(r, r0, r1, s1 - i1, s1, s2 - s1, s2, i2 - s2);
		}
		/* the lazy batch update, W[:, i2:] -= E U[i1:i2, i2:] */
		update(r, r0, r1, 0, i1, i2 - i1, i2, cols - i2);
	}
}

static void run_slices(void *arg, int64_t begin, int64_t end)
{
	for (int64_t s = begin; s < end; s++)
		run_slice(arg, s);
}

struct diag_col {
	double d;     /* H[c,c] */
	int64_t c;
};

/* Descending diag, ties in column order: a stable sort by any other name. */
static int by_diag_desc(const void *a, const void *b)
{
	const struct diag_col *x = a, *y = b;
	if (x->d != y->d)
		return x->d > y->d ? -1 : 1;
	return (x->c > y->c) - (x->c < y->c);
}

/* Reverse the n x n row-major matrix a: a[i][k] <-> a[n-1-i][n-1-k], which
 * is reversing it as a flat array. */
static void reverse(double *a, int64_t n)
{
	for (int64_t i = 0, j = n * n - 1; i < j; i++, j--) {
		const double t = a[i];
		a[i] = a[j];
		a[j] = t;
	}
}

/* H (n x n, symmetric, row-major) -> U, the upper Cholesky factor of H^-1
 * (H^-1 = U^T U), in H's upper triangle. The reference forms H^-1 and
 * factors it; the same U is the inverse of the upper factor V of H = V V^T,
 * and V is J L J for J H J = L L^T (J reverses the order). So: reverse,
 * potrf, trtri, reverse back: half the flops of potrf + potri + potrf.
 * On the storage: a symmetric row-major matrix reads the same column-major,
 * and LAPACK's column-major lower triangle is our upper one; passing
 * column-major avoids LAPACKE's transposing copies, and the _work entry
 * points skip its NaN scans (qp_gptq_quantize checked H). Fails naming the
 * original input (perm maps positions to columns) where H stops being
 * positive definite. */
static int inverse_factor(double *h, int64_t n, const int64_t *perm, double damp_percent,
                          struct qp_err *err)
{
	const lapack_int ln = (lapack_int)n;
	reverse(h, n);
	lapack_int info = LAPACKE_dpotrf_work(LAPACK_COL_MAJOR, 'L', ln, h, ln);
	if (info > 0)
		return qp_err_set(err, QP_EINVAL,
		                  "gptq: hessian is not positive definite after damping %g (found at input %lld of %lld)",
		                  damp_percent, (long long)perm[n - info], (long long)n);
	if (info == 0)
		info = LAPACKE_dtrtri_work(LAPACK_COL_MAJOR, 'L', 'N', ln, h, ln);
	if (info > 0) /* potrf left a positive diagonal: only underflow gets here */
		return qp_err_set(err, QP_EINVAL, "gptq: hessian is singular after damping %g", damp_percent);
	if (info < 0)
		return qp_err_set(err, QP_EINVAL, "gptq: lapack rejected argument %d", (int)-info);
	/* (L^-1)^T sat in our upper triangle; reversed, U^T is in the lower */
	reverse(h, n);
	for (int64_t i = 0; i < n; i++)
		for (int64_t k = i + 1; k < n; k++)
			h[i * n + k] = h[k * n + i];
	return 0;
}

/* First non-finite element of x (n of them), or -1. */
static int64_t find_non_finite(const float *x, int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		if (!isfinite(x[i]))
			return i;
	return -1;
}

int qp_gptq_quantize(const struct qp_gptq_params *p, const float *w, const float *h, int64_t rows,
                     int64_t cols, struct qp_qtensor *out, int threads, struct qp_err *err)
{
	memset(out, 0, sizeof(*out));
	int rc = qp_gptq_check(p, rows, cols, err);
	if (rc || (rc = qp_blas_load(err)))
		return rc;
	/* BLAS and LAPACK take int sizes; every product below fits in size_t then */
	if (rows > INT32_MAX || cols > INT32_MAX || (uint64_t)cols * (uint64_t)cols > SIZE_MAX / sizeof(double) ||
	    (uint64_t)rows * (uint64_t)cols > SIZE_MAX / sizeof(double) ||
	    (uint64_t)rows * (uint64_t)p->block > SIZE_MAX / sizeof(double))
		return qp_err_set(err, QP_ENOMEM, "gptq: layer of %lld x %lld weights is too large",
		                  (long long)rows, (long long)cols);
	int64_t bad = find_non_finite(w, rows * cols);
	if (bad >= 0)
		return qp_err_set(err, QP_EINVAL, "gptq: weight [%lld, %lld] is not finite (%g)",
		                  (long long)(bad / cols), (long long)(bad % cols), (double)w[bad]);
	if ((bad = find_non_finite(h, cols * cols)) >= 0)
		return qp_err_set(err, QP_EINVAL, "gptq: hessian [%lld, %lld] is not finite (%g)",
		                  (long long)(bad / cols), (long long)(bad % cols), (double)h[bad]);

	const int64_t n_groups = p->group > 0 ? cols / p->group : 1;
	if (threads < 1)
		threads = 1;
	const int64_t n_slices = threads < rows ? threads : rows;
	const bool dynamic = p->group > 0 && !p->static_groups;
	const bool with_g_idx = dynamic && p->act_order;
	const size_t row_bytes = (size_t)((cols * p->bits + 7) / 8);

	double *hd = malloc((size_t)(cols * cols) * sizeof(double));
	double *wd = malloc((size_t)(rows * cols) * sizeof(double));
	double *err1 = malloc((size_t)(rows * p->block) * sizeof(double));
	int64_t *perm = malloc((size_t)cols * sizeof(int64_t));
	struct diag_col *diag = malloc((size_t)cols * sizeof(*diag));
	float *tmp = p->group > 0 ? malloc((size_t)(n_slices * p->group) * sizeof(float)) : NULL;
	out->codes = calloc((size_t)rows, row_bytes);
	out->scales = malloc((size_t)(rows * n_groups) * sizeof(float));
	out->zeros = malloc((size_t)(rows * n_groups));
	out->g_idx = with_g_idx ? malloc((size_t)cols * sizeof(int32_t)) : NULL;
	if (!hd || !wd || !err1 || !perm || !diag || (p->group > 0 && !tmp) || !out->codes || !out->scales ||
	    !out->zeros || (with_g_idx && !out->g_idx)) {
		rc = qp_err_nomem(err);
		goto done;
	}
	out->rows = rows;
	out->cols = cols;
	out->row_bytes = row_bytes;
	out->codes_bytes = (size_t)rows * row_bytes;
	out->scale_rows = rows;
	out->scale_cols = n_groups;

	/* 1: one scale per row comes from the weights as given */
	if (p->group < 0)
		for (int64_t r = 0; r < rows; r++)
			qp_rtn_scale_zero(w + r * cols, cols, p->bits, p->sym, p->scale_f16, &out->scales[r],
			                  &out->zeros[r]);

	/* 2: dead inputs, still in the original order */
	for (int64_t i = 0; i < cols * cols; i++)
		hd[i] = h[i];
	for (int64_t r = 0; r < rows * cols; r++)
		wd[r] = w[r];
	for (int64_t c = 0; c < cols; c++)
		if (hd[c * cols + c] == 0) {
			hd[c * cols + c] = 1;
			for (int64_t r = 0; r < rows; r++)
				wd[r * cols + c] = 0;
		}

	/* 3: static groups from the dead-zeroed weights (exact in float) */
	if (p->group > 0 && p->static_groups) {
		for (int64_t r = 0; r < rows; r++)
			for (int64_t g = 0; g < n_groups; g++) {
				for (int64_t k = 0; k < p->group; k++)
					tmp[k] = (float)wd[r * cols + g * p->group + k];
				qp_rtn_scale_zero(tmp, p->group, p->bits, p->sym, p->scale_f16,
				                  &out->scales[r * n_groups + g], &out->zeros[r * n_groups + g]);
			}
	}

	/* 4: act_order */
	for (int64_t c = 0; c < cols; c++)
		diag[c] = (struct diag_col){hd[c * cols + c], c};
	if (p->act_order)
		qsort(diag, (size_t)cols, sizeof(diag[0]), by_diag_desc);
	for (int64_t j = 0; j < cols; j++)
		perm[j] = diag[j].c;
	if (p->act_order) {
		double *line = malloc((size_t)cols * sizeof(double));
		double *hp = malloc((size_t)(cols * cols) * sizeof(double));
		if (!line || !hp) {
			free(line);
			free(hp);
			rc = qp_err_nomem(err);
			goto done;
		}
		for (int64_t r = 0; r < rows; r++) {
			for (int64_t j = 0; j < cols; j++)
				line[j] = wd[r * cols + perm[j]];
			memcpy(wd + r * cols, line, (size_t)cols * sizeof(double));
		}
		for (int64_t i = 0; i < cols; i++)
			for (int64_t j = 0; j < cols; j++)
				hp[i * cols + j] = hd[perm[i] * cols + perm[j]];
		free(line);
		free(hd);
		hd = hp;
	}

	/* 5: damping, then U with H^-1 = U^T U */
	double mean = 0;
	for (int64_t c = 0; c < cols; c++)
		mean += hd[c * cols + c];
	mean /= (double)cols;
	for (int64_t c = 0; c < cols; c++)
		hd[c * cols + c] += p->damp_percent * mean;
	/* OpenBLAS's thread count is process-wide: LAPACK gets ours, the row
	 * workers each call dgemm on one thread, and the caller's setting is
	 * put back. */
	const int blas_threads = openblas_get_num_threads();
	openblas_set_num_threads(threads);
	rc = inverse_factor(hd, cols, perm, p->damp_percent, err);
	if (rc == 0) {
		/* 6, 7: the blocks */
		openblas_set_num_threads(1);
		struct run run = {p, rows, cols, n_groups, wd, hd, perm, err1, tmp, n_slices, out};
		qp_ops_parallel((int)n_slices, n_slices, run_slices, &run);
	}
	openblas_set_num_threads(blas_threads);
	if (rc)
		goto done;

	/* 8: codes went straight to their original columns; g_idx follows them */
	if (with_g_idx)
		for (int64_t j = 0; j < cols; j++)
			out->g_idx[perm[j]] = (int32_t)(j / p->group);

done:
	free(hd);
	free(wd);
	free(err1);
	free(perm);
	free(diag);
	free(tmp);
	if (rc) {
		free(out->codes);
		free(out->scales);
		free(out->zeros);
		free(out->g_idx);
		memset(out, 0, sizeof(*out));
	}
	return rc;
}

int qp_gptq_hessian_add(float *h, int64_t *n, const float *x, int64_t n_tok, int64_t cols, struct qp_err *err)
{
	int rc = qp_blas_load(err);
	if (rc)
		return rc;
	if (n_tok <= 0)
		return 0;
	const double total = (double)*n + (double)n_tok;
	const float keep = (float)((double)*n / total), add = (float)(2.0 / total);
	/* syrk updates the upper triangle only; the lower is its mirror */
	cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)cols, (int)n_tok, add, x, (int)cols, keep, h,
	            (int)cols);
	for (int64_t i = 0; i < cols; i++)
		for (int64_t k = i + 1; k < cols; k++)
			h[k * cols + i] = h[i * cols + k];
	*n += n_tok;
	return 0;
}
