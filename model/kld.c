#include "model/kld.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

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

int qp_kld_add(struct qp_kld_acc *acc, const float *base, const float *quant, int64_t nv,
               const int32_t *tokens, int64_t n, int64_t first, struct qp_err *err)
{
	if (first < 0)
		first = 0;
	if (n - 1 - first <= 0)
		return 0;
	int64_t need = acc->n + (n - 1 - first);
	if (need > acc->cap) {
		int64_t cap = acc->cap ? acc->cap : 1024;
		while (cap < need)
			cap *= 2;
		double *k = realloc(acc->kld, (size_t)cap * sizeof(double));
		if (!k)
			return qp_err_nomem(err);
		acc->kld = k;
		acc->cap = cap;
	}
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
		acc->kld[acc->n++] = kld;
		acc->sum += kld;
		acc->sum2 += kld * kld;
		acc->dp += dp;
		acc->dp2 += dp * dp;
		acc->same_top += ba == qa;
	}
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
