/* AWQ's scale search and clipping search over Gram matrices; see awq.h. */
#include "kernels/awq.h"
#include "kernels/blas.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void qp_awq_params_default(struct qp_awq_params *p)
{
	*p = (struct qp_awq_params){.bits = 4, .group = 128, .sym = false, .scale_f16 = true, .n_grid = 20,
	                            .clip = true, .clip_grid = 20, .max_shrink = 0.5f};
}

void qp_awq_spec(const struct qp_awq_params *p, struct qp_qspec *out)
{
	qp_qspec_default(out, QP_QM_RTN);
	out->bits = p->bits;
	out->gran = QP_QG_GROUP;
	out->group = p->group;
	out->sym = p->sym;
	out->scale_f16 = p->scale_f16;
}

void qp_awq_scale_cols(float *w, int64_t rows, int64_t cols, const float *s)
{
	for (int64_t r = 0; r < rows; r++)
		for (int64_t c = 0; c < cols; c++)
			w[r * cols + c] *= s[c];
}

void qp_awq_unscale_rows(float *w, int64_t rows, int64_t cols, const float *s)
{
	for (int64_t r = 0; r < rows; r++)
		for (int64_t c = 0; c < cols; c++)
			w[r * cols + c] /= s[r];
}

/* sum over rows of d H d^T for d (rows x cols): one GEMM and a dot. */
static double quad_loss(const float *d, const float *h, int64_t rows, int64_t cols, float *tmp)
{
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)cols, (int)cols, 1.0f, d, (int)cols, h,
	            (int)cols, 0.0f, tmp, (int)cols);
	double sum = 0;
	for (int64_t i = 0; i < rows * cols; i++)
		sum += (double)tmp[i] * (double)d[i];
	return sum;
}

/* d = w - Q(w diag(s)) diag(s)^-1 for one linear; scaled: scratch. */
static int scaled_error(const struct qp_qspec *spec, const float *w, int64_t rows, int64_t cols, const float *s,
                        float *scaled, float *d, int threads, struct qp_err *err)
{
	memcpy(scaled, w, (size_t)(rows * cols) * sizeof(float));
	qp_awq_scale_cols(scaled, rows, cols, s);
	struct qp_qtensor q;
	int rc = qp_qmethod_quantize(spec, scaled, rows, cols, &q, threads, err);
	if (!rc)
		rc = qp_qmethod_dequantize(spec, &q, d, err);
	qp_qtensor_free(&q);
	if (rc)
		return rc;
	for (int64_t r = 0; r < rows; r++)
		for (int64_t c = 0; c < cols; c++)
			d[r * cols + c] = w[r * cols + c] - d[r * cols + c] / s[c];
	return 0;
}

static int check(const struct qp_awq_params *p, int64_t cols, struct qp_err *err)
{
	if (p->bits < 2 || p->bits > 8)
		return qp_err_set(err, QP_EINVAL, "awq: bits %d is outside 2..8", p->bits);
	if (p->group < 1 || cols % p->group)
		return qp_err_set(err, QP_EINVAL, "awq: group %lld does not divide the row length %lld", (long long)p->group,
		                  (long long)cols);
	if (p->n_grid < 1 || p->n_grid > 1000 || p->clip_grid < 1 || p->clip_grid > 1000)
		return qp_err_set(err, QP_EINVAL, "awq: grid sizes must be in 1..1000");
	if (!(p->max_shrink >= 0 && p->max_shrink < 1))
		return qp_err_set(err, QP_EINVAL, "awq: max_shrink %g is outside [0, 1)", (double)p->max_shrink);
	return 0;
}

int qp_awq_search(const struct qp_awq_params *p, const float *const *w, const int64_t *rows, int n,
                  int64_t cols, const float *h, const float *mean_abs, float *s, float *alpha,
                  double *loss_rtn, double *loss_best, int threads, struct qp_err *err)
{
	int rc = check(p, cols, err);
	if (rc || (rc = qp_blas_load(err)))
		return rc;
	int64_t max_rows = 0;
	for (int i = 0; i < n; i++)
		max_rows = rows[i] > max_rows ? rows[i] : max_rows;
	size_t big = (size_t)(max_rows * cols);
	float *scaled = malloc(big * sizeof(float)), *d = malloc(big * sizeof(float));
	float *tmp = malloc(big * sizeof(float)), *cand = malloc((size_t)cols * sizeof(float));
	if (!scaled || !d || !tmp || !cand) {
		rc = qp_err_nomem(err);
		goto out;
	}
	struct qp_qspec spec;
	qp_awq_spec(p, &spec);
	double best = INFINITY;
	for (int k = 0; k < p->n_grid; k++) {
		double a = (double)k / p->n_grid, lo = INFINITY, hi = 0;
		for (int64_t c = 0; c < cols; c++) {
			double m = mean_abs[c] > 1e-4f ? mean_abs[c] : 1e-4;
			cand[c] = (float)pow(m, a);
			lo = cand[c] < lo ? cand[c] : lo;
			hi = cand[c] > hi ? cand[c] : hi;
		}
		float norm = (float)sqrt(lo * hi);
		for (int64_t c = 0; c < cols; c++)
			cand[c] /= norm;
		double loss = 0;
		for (int i = 0; i < n && !rc; i++) {
			rc = scaled_error(&spec, w[i], rows[i], cols, cand, scaled, d, threads, err);
			if (!rc)
				loss += quad_loss(d, h, rows[i], cols, tmp);
		}
		if (rc)
			goto out;
		if (k == 0)
			*loss_rtn = loss;
		if (loss < best) {
			best = loss;
			*alpha = (float)a;
			memcpy(s, cand, (size_t)cols * sizeof(float));
		}
	}
	*loss_best = best;
out:
	free(scaled);
	free(d);
	free(tmp);
	free(cand);
	return rc;
}

int qp_awq_quantize(const struct qp_awq_params *p, const float *w, int64_t rows, int64_t cols,
                    const float *h, const float *s, struct qp_qtensor *out, int threads,
                    struct qp_err *err)
{
	memset(out, 0, sizeof(*out));
	int rc = check(p, cols, err);
	if (rc || (rc = qp_blas_load(err)))
		return rc;
	struct qp_qspec spec;
	qp_awq_spec(p, &spec);
	if (!p->clip)
		return qp_qmethod_quantize(&spec, w, rows, cols, out, threads, err);
	int64_t g = p->group, ng = cols / g;
	float *wc = malloc((size_t)(rows * cols) * sizeof(float)), *hg = malloc((size_t)(g * g) * sizeof(float));
	float *row = malloc((size_t)g * sizeof(float));
	float *dv = malloc((size_t)g * sizeof(float)), *hd = malloc((size_t)g * sizeof(float));
	if (!wc || !hg || !row || !dv || !hd) {
		rc = qp_err_nomem(err);
		goto out;
	}
	memcpy(wc, w, (size_t)(rows * cols) * sizeof(float));
	for (int64_t gi = 0; gi < ng; gi++) {
		/* H of this group's columns, in the scaled input's coordinates */
		for (int64_t a = 0; a < g; a++)
			for (int64_t b = 0; b < g; b++) {
				int64_t ca = gi * g + a, cb = gi * g + b;
				float v = h[ca * cols + cb];
				hg[a * g + b] = s ? v / (s[ca] * s[cb]) : v;
			}
		for (int64_t r = 0; r < rows; r++) {
			const float *src = w + r * cols + gi * g;
			float amax = 0;
			for (int64_t j = 0; j < g; j++)
				amax = fabsf(src[j]) > amax ? fabsf(src[j]) : amax;
			double best = INFINITY;
			float best_r = 1;
			for (int k = 0; k < p->clip_grid && amax > 0; k++) {
				float ratio = 1.0f - (float)k * p->max_shrink / (float)p->clip_grid, mv = amax * ratio;
				for (int64_t j = 0; j < g; j++)
					row[j] = src[j] > mv ? mv : src[j] < -mv ? -mv : src[j];
				/* RTN of this one group, as qp_qmethod_quantize would do it */
				float sc;
				uint8_t z;
				qp_rtn_scale_zero(row, g, p->bits, p->sym, p->scale_f16, &sc, &z);
				for (int64_t j = 0; j < g; j++)
					dv[j] = src[j] - sc * (float)((int)qp_rtn_code(row[j], sc, z, p->bits) - (int)z);
				cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)g, (int)g, 1.0f, hg, (int)g, dv, 1, 0.0f, hd, 1);
				double loss = 0;
				for (int64_t j = 0; j < g; j++)
					loss += (double)dv[j] * hd[j];
				if (loss < best) {
					best = loss;
					best_r = ratio;
				}
			}
			float mv = amax * best_r;
			for (int64_t j = 0; j < g; j++)
				wc[r * cols + gi * g + j] = src[j] > mv ? mv : src[j] < -mv ? -mv : src[j];
		}
	}
	rc = qp_qmethod_quantize(&spec, wc, rows, cols, out, threads, err);
out:
	free(wc);
	free(hg);
	free(row);
	free(dv);
	free(hd);
	return rc;
}
