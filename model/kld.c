#include "model/kld.h"

#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "model/logits_file.h"

/* log-softmax normaliser of x[n]: max and log sum exp(x - max), in double */
static void lse(const float *x, int64_t n, double *max, double *log_sum, int64_t *arg)
{
	float m = x[0];
	int64_t a = 0;
	for (int64_t i = 1; i < n; i++)
		if (x[i] > m) {
			m = x[i];
			a = i;
		}
	double s = 0.0;
	for (int64_t i = 0; i < n; i++)
		s += exp((double)x[i] - (double)m);
	*max = m;
	*log_sum = log(s);
	*arg = a;
}

/* Room for n more tokens. */
static int reserve(struct qp_kld_acc *acc, int64_t n, struct qp_err *err)
{
	int64_t need = acc->n + n;
	if (need <= acc->cap)
		return 0;
	int64_t cap = acc->cap ? acc->cap : 1024;
	while (cap < need)
		cap *= 2;
	double *k = realloc(acc->kld, (size_t)cap * sizeof(double));
	if (!k)
		return qp_err_nomem(err);
	acc->kld = k;
	acc->cap = cap;
	return 0;
}

static void add_token(struct qp_kld_acc *acc, double kld, double dp, bool same_top)
{
	acc->kld[acc->n++] = kld;
	acc->sum += kld;
	acc->sum2 += kld * kld;
	acc->dp += dp;
	acc->dp2 += dp * dp;
	acc->same_top += same_top;
}

int qp_kld_add(struct qp_kld_acc *acc, const float *base, const float *quant, int64_t nv,
               const int32_t *tokens, int64_t n, int64_t first, struct qp_err *err)
{
	if (first < 0)
		first = 0;
	if (n - 1 - first <= 0)
		return 0;
	int rc = reserve(acc, n - 1 - first, err);
	if (rc)
		return rc;
	for (int64_t j = first; j < n - 1; j++) {
		const float *b = base + j * nv, *q = quant + j * nv;
		double bm, bl, qm, ql;
		int64_t ba, qa;
		lse(b, nv, &bm, &bl, &ba);
		lse(q, nv, &qm, &ql, &qa);
		double kld = 0.0;
		for (int64_t i = 0; i < nv; i++) {
			double lp = (double)b[i] - bm - bl, lq = (double)q[i] - qm - ql;
			kld += exp(lp) * (lp - lq);
		}
		int32_t t = tokens[j + 1];
		double dp = 0.0;
		if (t >= 0 && t < nv)
			dp = exp((double)q[t] - qm - ql) - exp((double)b[t] - bm - bl);
		add_token(acc, kld, dp, ba == qa);
	}
	return 0;
}

int qp_kld_add_stored(struct qp_kld_acc *acc, const struct qp_logits_file *base, int64_t c, const float *quant,
                      struct qp_err *err)
{
	const struct qp_logits_info *in = qp_logits_info(base);
	int64_t nv = in->n_vocab, n = in->n_ctx;
	const int32_t *tokens = in->tokens + c * n;
	int rc = reserve(acc, n - 1 - in->first, err);
	if (rc)
		return rc;
	double *lp = malloc((size_t)nv * sizeof(double));
	if (!lp)
		return qp_err_nomem(err);
	for (int64_t j = in->first; j < n - 1; j++) {
		struct qp_logits_rec r;
		qp_logits_rec(&r, base, c, j);
		qp_logits_expand(&r, nv, lp);
		const float *q = quant + j * nv;
		double qm, ql;
		int64_t qa;
		lse(q, nv, &qm, &ql, &qa);
		/* the kept ids, rounded, less the rounding's own divergence;
		 * the tail as one outcome (logits_file.h) */
		double kld = -r.corr, q_tail = 0.0;
		for (int64_t i = 0; i < nv; i++) {
			double lq = (double)q[i] - qm - ql;
			if (lp[i] == -INFINITY)
				q_tail += exp(lq);
			else
				kld += exp(lp[i]) * (lp[i] - lq);
		}
		if (r.tail > 0.0)
			kld += r.tail * (log(r.tail) - log(q_tail > 0.0 ? q_tail : DBL_MIN));
		int32_t t = tokens[j + 1];
		double dp = t >= 0 && t < nv ? exp((double)q[t] - qm - ql) - exp((double)r.lp_next) : 0.0;
		add_token(acc, kld, dp, (int64_t)r.top == qa);
	}
	free(lp);
	return 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* llama.cpp's percentile: linear between sorted values at f * (n - 1) */
static double percentile(const double *v, int64_t n, double f)
{
	if (f <= 0.0)
		return v[0];
	if (f >= 1.0)
		return v[n - 1];
	double p = f * (double)(n - 1);
	int64_t i = (int64_t)p;
	p -= (double)i;
	return (1.0 - p) * v[i] + p * v[i + 1 < n ? i + 1 : n - 1];
}

void qp_kld_finish(struct qp_kld_result *out, struct qp_kld_acc *acc)
{
	memset(out, 0, sizeof(*out));
	int64_t n = acc->n;
	out->n = n;
	if (n == 0)
		return;
	qsort(acc->kld, (size_t)n, sizeof(double), cmp_double);
	double mean = acc->sum / (double)n, var = acc->sum2 / (double)n - mean * mean;
	out->kld = mean;
	out->kld_err = n > 1 && var > 0.0 ? sqrt(var / (double)(n - 1)) : 0.0;
	out->kld_median = percentile(acc->kld, n, 0.5);
	out->kld_p99 = percentile(acc->kld, n, 0.99);
	out->kld_max = acc->kld[n - 1];
	out->rms_dp = 100.0 * sqrt(acc->dp2 / (double)n);
	out->mean_dp = 100.0 * acc->dp / (double)n;
	out->top1_pct = 100.0 * (double)acc->same_top / (double)n;
}

void qp_kld_acc_free(struct qp_kld_acc *acc)
{
	free(acc->kld);
	memset(acc, 0, sizeof(*acc));
}
