/* Quantization methods: the spec, the shapes and arrays every method
 * shares, and the dispatch to the method files (qmethod_rtn.c,
 * qmethod_sign.c, qmethod_nf4.c, qmethod_fp8.c, qmethod_kmeans.c).
 * The formulas live in qmethod.h. */
#include "kernels/qmethod.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/blocks.h"
#include "kernels/qmethod_int.h"

static const char *const method_names[] = {
	[QP_QM_RTN] = "rtn",
	[QP_QM_BINARY] = "binary",
	[QP_QM_TERNARY] = "ternary",
	[QP_QM_NF4] = "nf4",
	[QP_QM_FP8] = "fp8",
	[QP_QM_KMEANS] = "kmeans",
};
#define N_METHODS ((int)(sizeof(method_names) / sizeof(method_names[0])))

static const char *const gran_names[] = {
	[QP_QG_TENSOR] = "tensor",
	[QP_QG_CHANNEL] = "channel",
	[QP_QG_GROUP] = "group",
};

const char *qp_qmethod_name(enum qp_qmethod m)
{
	return (int)m >= 0 && (int)m < N_METHODS ? method_names[m] : NULL;
}

int qp_qmethod_from_name(const char *name)
{
	for (int m = 0; m < N_METHODS; m++)
		if (name && strcmp(name, method_names[m]) == 0)
			return m;
	return -1;
}

void qp_qspec_default(struct qp_qspec *s, enum qp_qmethod m)
{
	*s = (struct qp_qspec){
		.method = m,
		.bits = 4,
		.gran = QP_QG_CHANNEL,
		.group = 128,
		.rule = QP_TERN_THRESHOLD,
		.threshold = 0.45f,
		.fp8 = QP_FP8_E4M3,
		.iters = 50,
	};
	switch (m) {
	case QP_QM_RTN:
		s->gran = QP_QG_GROUP;
		s->scale_f16 = true;
		break;
	case QP_QM_BINARY:
		s->bits = 1;
		break;
	case QP_QM_TERNARY:
		s->bits = 2;
		break;
	case QP_QM_NF4:
		s->gran = QP_QG_GROUP;
		s->group = 64;
		s->double_quant = true;
		break;
	case QP_QM_FP8:
		s->bits = 8;
		break;
	case QP_QM_KMEANS:
		s->gran = QP_QG_TENSOR;
		break;
	}
}

/* The bits a method must have; 0 where a range (2..8) is allowed. */
static int fixed_bits(enum qp_qmethod m)
{
	switch (m) {
	case QP_QM_BINARY:
		return 1;
	case QP_QM_TERNARY:
		return 2;
	case QP_QM_NF4:
		return 4;
	case QP_QM_FP8:
		return 8;
	default:
		return 0;
	}
}

int qp_qspec_check(const struct qp_qspec *s, int64_t rows, int64_t cols, struct qp_err *err)
{
	const char *name = qp_qmethod_name(s->method);
	if (!name)
		return qp_err_set(err, QP_EINVAL, "method %d is unknown", (int)s->method);
	if (rows <= 0 || cols <= 0)
		return qp_err_set(err, QP_EINVAL, "%s: shape %lld x %lld: rows and cols must be positive", name,
		                  (long long)rows, (long long)cols);
	/* codes are addressed in bits: rows * cols * 8 must fit */
	if (rows > INT64_MAX / 8 / cols || (uint64_t)rows * (uint64_t)cols > SIZE_MAX / sizeof(float))
		return qp_err_set(err, QP_EINVAL, "%s: shape %lld x %lld is too large", name, (long long)rows,
		                  (long long)cols);
	const int want = fixed_bits(s->method);
	if (want && s->bits != want)
		return qp_err_set(err, QP_EINVAL, "%s: bits must be %d, not %d", name, want, s->bits);
	if (!want && (s->bits < 2 || s->bits > 8))
		return qp_err_set(err, QP_EINVAL, "%s: bits %d is out of range (2..8)", name, s->bits);
	if ((int)s->gran < 0 || (int)s->gran > QP_QG_GROUP)
		return qp_err_set(err, QP_EINVAL, "%s: granularity %d is unknown", name, (int)s->gran);
	const char *gran = gran_names[s->gran];

	switch (s->method) {
	case QP_QM_NF4:
		if (s->gran != QP_QG_GROUP)
			return qp_err_set(err, QP_EINVAL,
			                  "nf4: granularity must be 'group' (blocks of the flattened tensor), not '%s'",
			                  gran);
		if (s->group <= 0)
			return qp_err_set(err, QP_EINVAL, "nf4: block %lld must be positive", (long long)s->group);
		if ((rows * cols) % s->group != 0)
			return qp_err_set(err, QP_EINVAL, "nf4: block %lld does not divide the element count %lld",
			                  (long long)s->group, (long long)(rows * cols));
		return 0;
	case QP_QM_KMEANS:
		if (s->gran == QP_QG_CHANNEL)
			return qp_err_set(err, QP_EINVAL,
			                  "kmeans: granularity 'channel' is not supported (tensor, or group of rows)");
		if (s->gran == QP_QG_GROUP && s->group <= 0)
			return qp_err_set(err, QP_EINVAL, "kmeans: group %lld must be positive", (long long)s->group);
		if (s->gran == QP_QG_GROUP && rows % s->group != 0)
			return qp_err_set(err, QP_EINVAL, "kmeans: group %lld does not divide the row count %lld",
			                  (long long)s->group, (long long)rows);
		if (s->iters < 0)
			return qp_err_set(err, QP_EINVAL, "kmeans: iters %d must not be negative", s->iters);
		return 0;
	case QP_QM_FP8:
		if (s->gran == QP_QG_GROUP)
			return qp_err_set(err, QP_EINVAL,
			                  "fp8: granularity 'group' is not supported (tensor or channel)");
		if ((int)s->fp8 != QP_FP8_E4M3 && (int)s->fp8 != QP_FP8_E5M2)
			return qp_err_set(err, QP_EINVAL, "fp8: format %d is unknown", (int)s->fp8);
		return 0;
	case QP_QM_TERNARY:
		if ((int)s->rule != QP_TERN_THRESHOLD && (int)s->rule != QP_TERN_ABSMEAN)
			return qp_err_set(err, QP_EINVAL, "ternary: rule %d is unknown", (int)s->rule);
		if (s->rule == QP_TERN_THRESHOLD && !(s->threshold >= 0.0f && isfinite(s->threshold)))
			return qp_err_set(err, QP_EINVAL, "ternary: threshold %g must be finite and not negative",
			                  (double)s->threshold);
		break;
	default:
		break;
	}
	if (s->gran == QP_QG_GROUP) {
		if (s->group <= 0)
			return qp_err_set(err, QP_EINVAL, "%s: group %lld must be positive", name, (long long)s->group);
		if (cols % s->group != 0)
			return qp_err_set(err, QP_EINVAL, "%s: group %lld does not divide the row length %lld", name,
			                  (long long)s->group, (long long)cols);
	}
	return 0;
}

/* The scale matrix of the methods with scale units. */
static void scale_shape(const struct qp_qspec *s, int64_t rows, int64_t cols, int64_t *sr, int64_t *sc)
{
	*sr = s->gran == QP_QG_TENSOR ? 1 : rows;
	*sc = s->gran == QP_QG_GROUP ? cols / s->group : 1;
}

static bool has_scale_units(enum qp_qmethod m)
{
	return m == QP_QM_RTN || m == QP_QM_BINARY || m == QP_QM_TERNARY || m == QP_QM_FP8;
}

int qp_qmethod_quantize(const struct qp_qspec *spec, const float *w, int64_t rows, int64_t cols,
                        struct qp_qtensor *out, int threads, struct qp_err *err)
{
	memset(out, 0, sizeof(*out));
	int rc = qp_qspec_check(spec, rows, cols, err);
	if (rc)
		return rc;
	/* FP8 has codes for NaN and saturates infinities; the others have
	 * no value a NaN could honestly become */
	if (spec->method != QP_QM_FP8) {
		rc = qm_check_finite(w, rows, cols, qp_qmethod_name(spec->method), err);
		if (rc)
			return rc;
	}
	out->rows = rows;
	out->cols = cols;
	out->row_bytes = (size_t)((cols * spec->bits + 7) / 8);
	out->codes_bytes = (size_t)rows * out->row_bytes;
	out->codes = calloc(out->codes_bytes, 1);
	if (!out->codes)
		return qp_err_nomem(err);
	if (has_scale_units(spec->method)) {
		scale_shape(spec, rows, cols, &out->scale_rows, &out->scale_cols);
		out->scales = malloc((size_t)(out->scale_rows * out->scale_cols) * sizeof(float));
		if (!out->scales) {
			qp_qtensor_free(out);
			return qp_err_nomem(err);
		}
	}
	switch (spec->method) {
	case QP_QM_RTN:
		rc = qm_rtn_quantize(spec, w, out, threads, err);
		break;
	case QP_QM_BINARY:
	case QP_QM_TERNARY:
		rc = qm_sign_quantize(spec, w, out, threads, err);
		break;
	case QP_QM_NF4:
		rc = qm_nf4_quantize(spec, w, out, threads, err);
		break;
	case QP_QM_FP8:
		rc = qm_fp8_quantize(spec, w, out, threads, err);
		break;
	case QP_QM_KMEANS:
		rc = qm_kmeans_quantize(spec, w, out, threads, err);
		break;
	}
	if (rc)
		qp_qtensor_free(out);
	return rc;
}

/* A qtensor may come from a file: check that its arrays are there and
 * sized as the spec says before any of them is read. */
static int check_layout(const struct qp_qspec *s, const struct qp_qtensor *q, struct qp_err *err)
{
	const char *name = qp_qmethod_name(s->method);
	int rc = qp_qspec_check(s, q->rows, q->cols, err);
	if (rc)
		return rc;
	const size_t row_bytes = (size_t)((q->cols * s->bits + 7) / 8);
	if (!q->codes || q->row_bytes != row_bytes || q->codes_bytes != (size_t)q->rows * row_bytes)
		return qp_err_set(err, QP_EINVAL, "%s: codes of %zu bytes (%zu a row) do not fit %lld x %lld at %d bits",
		                  name, q->codes_bytes, q->row_bytes, (long long)q->rows, (long long)q->cols, s->bits);
	if (has_scale_units(s->method)) {
		int64_t sr, sc;
		scale_shape(s, q->rows, q->cols, &sr, &sc);
		/* act-order groups may be any number: g_idx names one per column */
		if (q->g_idx && s->method == QP_QM_RTN && s->gran != QP_QG_TENSOR && q->scale_cols > 0)
			sc = q->scale_cols;
		if (!q->scales || q->scale_rows != sr || q->scale_cols != sc)
			return qp_err_set(err, QP_EINVAL, "%s: scales are %lld x %lld, want %lld x %lld", name,
			                  (long long)q->scale_rows, (long long)q->scale_cols, (long long)sr,
			                  (long long)sc);
	}
	if (q->g_idx) {
		if (s->method != QP_QM_RTN || s->gran == QP_QG_TENSOR)
			return qp_err_set(err, QP_EINVAL, "%s: g_idx needs rtn with granularity 'channel' or 'group'",
			                  name);
		for (int64_t c = 0; c < q->cols; c++)
			if (q->g_idx[c] < 0 || q->g_idx[c] >= q->scale_cols)
				return qp_err_set(err, QP_EINVAL, "rtn: g_idx[%lld] = %d is outside the %lld groups",
				                  (long long)c, (int)q->g_idx[c], (long long)q->scale_cols);
	}
	switch (s->method) {
	case QP_QM_RTN:
		if (!q->zeros)
			return qp_err_set(err, QP_EINVAL, "rtn: zeros are missing");
		for (int64_t i = 0; i < q->scale_rows * q->scale_cols; i++)
			if (q->zeros[i] > (1 << s->bits) - 1)
				return qp_err_set(err, QP_EINVAL, "rtn: zero %d at %lld is past %d bits", q->zeros[i],
				                  (long long)i, s->bits);
		break;
	case QP_QM_NF4: {
		const int64_t nb = q->rows * q->cols / s->group;
		if (q->n_blocks != nb)
			return qp_err_set(err, QP_EINVAL, "nf4: %lld blocks, want %lld", (long long)q->n_blocks,
			                  (long long)nb);
		if (s->double_quant) {
			if (!q->absmax_codes || !q->absmax_scales || q->n_absmax_scales != (nb + 255) / 256)
				return qp_err_set(err, QP_EINVAL,
				                  "nf4: double quantization needs absmax codes and %lld absmax scales",
				                  (long long)((nb + 255) / 256));
		} else if (!q->scales || q->scale_rows != nb || q->scale_cols != 1) {
			return qp_err_set(err, QP_EINVAL, "nf4: scales must be %lld x 1 (one absmax a block)",
			                  (long long)nb);
		}
		break;
	}
	case QP_QM_KMEANS: {
		const int64_t lr = s->gran == QP_QG_TENSOR ? 1 : q->rows / s->group;
		if (!q->lut || q->lut_rows != lr)
			return qp_err_set(err, QP_EINVAL, "kmeans: %lld look-up tables, want %lld",
			                  (long long)q->lut_rows, (long long)lr);
		if (s->channel_scale && (!q->scales || q->scale_rows != q->rows || q->scale_cols != 1))
			return qp_err_set(err, QP_EINVAL, "kmeans: channel scales must be %lld x 1", (long long)q->rows);
		break;
	}
	default:
		break;
	}
	return 0;
}

int qp_qmethod_dequantize(const struct qp_qspec *spec, const struct qp_qtensor *q, float *out,
                          struct qp_err *err)
{
	int rc = check_layout(spec, q, err);
	if (rc)
		return rc;
	switch (spec->method) {
	case QP_QM_RTN:
		return qm_rtn_dequantize(spec, q, out, err);
	case QP_QM_BINARY:
	case QP_QM_TERNARY:
		return qm_sign_dequantize(spec, q, out, err);
	case QP_QM_NF4:
		return qm_nf4_dequantize(spec, q, out, err);
	case QP_QM_FP8:
		return qm_fp8_dequantize(spec, q, out, err);
	case QP_QM_KMEANS:
		return qm_kmeans_dequantize(spec, q, out, err);
	}
	return qp_err_set(err, QP_EINVAL, "method %d is unknown", (int)spec->method);
}

void qp_qtensor_free(struct qp_qtensor *q)
{
	if (!q)
		return;
	free(q->codes);
	free(q->scales);
	free(q->zeros);
	free(q->g_idx);
	free(q->lut);
	free(q->absmax_codes);
	free(q->absmax_scales);
	memset(q, 0, sizeof(*q));
}

double qp_qtensor_bits_per_weight(const struct qp_qspec *spec, const struct qp_qtensor *q)
{
	if (q->rows <= 0 || q->cols <= 0)
		return 0.0;
	const bool f16 = spec->scale_f16 && (spec->method == QP_QM_RTN || spec->method == QP_QM_BINARY ||
	                                     spec->method == QP_QM_TERNARY);
	const double n_scales = q->scales ? (double)q->scale_rows * (double)q->scale_cols : 0.0;
	double bits = (double)q->codes_bytes * 8.0;
	bits += n_scales * (f16 ? 16.0 : 32.0);
	if (q->zeros)
		bits += n_scales * spec->bits;
	if (q->g_idx)
		bits += (double)q->cols * 32.0; /* int32, as GPTQ stores it */
	if (q->lut)
		bits += (double)q->lut_rows * (double)(1 << spec->bits) * 32.0;
	if (q->absmax_codes)
		bits += (double)q->n_blocks * 8.0 + (double)q->n_absmax_scales * 32.0 + 32.0;
	return bits / ((double)q->rows * (double)q->cols);
}

/* --- shared helpers (qmethod_int.h) --- */

struct par_job {
	qm_range_fn fn;
	void *ctx;
	int64_t lo, hi;
	int rc;
};

static void *par_work(void *arg)
{
	struct par_job *j = arg;
	j->rc = j->fn(j->ctx, j->lo, j->hi);
	return NULL;
}

int qm_parallel(int threads, int64_t n, int64_t min_per_thread, qm_range_fn fn, void *ctx)
{
	enum { MAX_THREADS = 64 };
	if (n <= 0)
		return 0;
	if (min_per_thread < 1)
		min_per_thread = 1;
	if (threads > MAX_THREADS)
		threads = MAX_THREADS;
	if (threads > n / min_per_thread)
		threads = (int)(n / min_per_thread);
	if (threads < 1)
		threads = 1;
	struct par_job jobs[MAX_THREADS];
	pthread_t tids[MAX_THREADS];
	bool started[MAX_THREADS] = {0};
	for (int t = 0; t < threads; t++) {
		jobs[t] = (struct par_job){fn, ctx, n * t / threads, n * (t + 1) / threads, 0};
		if (t > 0 && pthread_create(&tids[t], NULL, par_work, &jobs[t]) == 0)
			started[t] = true;
		else if (t > 0)
			par_work(&jobs[t]);
	}
	par_work(&jobs[0]);
	int rc = jobs[0].rc;
	for (int t = 1; t < threads; t++) {
		if (started[t])
			pthread_join(tids[t], NULL);
		if (!rc)
			rc = jobs[t].rc;
	}
	return rc;
}

float qm_round_f16(float x)
{
	const float r = qp_fp16_to_fp32(qp_fp32_to_fp16(x));
	if (isinf(r) && isfinite(x))
		return copysignf(65504.0f, x);
	return r;
}

int qm_check_finite(const float *w, int64_t rows, int64_t cols, const char *method, struct qp_err *err)
{
	const int64_t n = rows * cols;
	for (int64_t i = 0; i < n; i++)
		if (!isfinite(w[i]))
			return qp_err_set(err, QP_EINVAL, "%s: weight at row %lld, col %lld is %s; %s needs finite weights",
			                  method, (long long)(i / cols), (long long)(i % cols),
			                  isnan(w[i]) ? "nan" : w[i] > 0 ? "inf" : "-inf", method);
	return 0;
}

float qm_mean_abs(const float *w, int64_t n)
{
	double sum = 0.0;
	for (int64_t i = 0; i < n; i++)
		sum += fabs((double)w[i]);
	return (float)(sum / (double)n);
}

/* splitmix64 (Steele, Lea, Flood 2014): a tiny generator whose stream a
 * test in any language can reproduce from the seed */
uint64_t qp_qmethod_rng(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

double qp_qmethod_rng_unit(uint64_t *state)
{
	return (double)(qp_qmethod_rng(state) >> 11) * 0x1p-53;
}
