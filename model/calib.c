#include "model/calib.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/imatrix.h"
#include "formats/llamanames.h"
#include "formats/safetensors.h"
#include "kernels/actstats.h"

struct qp_calib {
	struct qp_calib_input *in;
	size_t n, cap;
	bool hessian;
	int threads;
};

int qp_calib_new(struct qp_calib **out, bool hessian, int threads, struct qp_err *err)
{
	*out = calloc(1, sizeof(**out));
	if (!*out)
		return qp_err_nomem(err);
	(*out)->hessian = hessian;
	(*out)->threads = threads < 1 ? 1 : threads;
	return 0;
}

static void input_free(struct qp_calib_input *r)
{
	for (int i = 0; r->weights && i < r->n_weights; i++)
		free(r->weights[i]);
	free(r->weights);
	free(r->sum);
	free(r->sum_sq);
	free(r->sum_abs);
	free(r->max_abs);
	free(r->hessian);
}

void qp_calib_free(struct qp_calib *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n; i++)
		input_free(&c->in[i]);
	free(c->in);
	free(c);
}

size_t qp_calib_count(const struct qp_calib *c) { return c->n; }
const struct qp_calib_input *qp_calib_at(const struct qp_calib *c, size_t i) { return &c->in[i]; }

static int add_input(struct qp_calib *c, const char *const *names, int n_names, int64_t k,
                     struct qp_calib_input **out, struct qp_err *err)
{
	if (k <= 0 || (c->hessian && (uint64_t)k > SIZE_MAX / sizeof(double) / (uint64_t)k))
		return qp_err_set(err, QP_EINVAL, "weight '%s': %lld input channels", names[0], (long long)k);
	if (c->n == c->cap) {
		size_t cap = c->cap ? 2 * c->cap : 64;
		struct qp_calib_input *in = realloc(c->in, cap * sizeof(*in));
		if (!in)
			return qp_err_nomem(err);
		c->in = in;
		c->cap = cap;
	}
	struct qp_calib_input *r = &c->in[c->n];
	memset(r, 0, sizeof(*r));
	r->k = k;
	r->weights = calloc((size_t)n_names, sizeof(char *));
	r->sum = calloc((size_t)k, sizeof(double));
	r->sum_sq = calloc((size_t)k, sizeof(double));
	r->sum_abs = calloc((size_t)k, sizeof(double));
	r->max_abs = calloc((size_t)k, sizeof(float));
	if (c->hessian)
		r->hessian = calloc((size_t)k * (size_t)k, sizeof(double));
	bool ok = r->weights && r->sum && r->sum_sq && r->sum_abs && r->max_abs && (!c->hessian || r->hessian);
	for (int i = 0; ok && i < n_names; i++, r->n_weights++)
		ok = (r->weights[i] = strdup(names[i])) != NULL;
	if (!ok) {
		input_free(r);
		return qp_err_nomem(err);
	}
	c->n++;
	*out = r;
	return 0;
}

int qp_calib_observe(void *user, const char *const *names, int n_names, const float *x, int64_t n,
                     int64_t k, struct qp_err *err)
{
	struct qp_calib *c = user;
	struct qp_calib_input *r = NULL;
	for (size_t i = 0; i < c->n && !r; i++)
		if (!strcmp(c->in[i].weights[0], names[0]))
			r = &c->in[i];
	int rc;
	if (!r && (rc = add_input(c, names, n_names, k, &r, err)))
		return rc;
	bool same = r->k == k && r->n_weights == n_names;
	for (int i = 0; same && i < n_names; i++)
		same = !strcmp(r->weights[i], names[i]);
	if (!same)
		return qp_err_set(err, QP_EINVAL,
		                  "weight '%s': its input came with %lld channels and %d weights, now %lld and %d",
		                  names[0], (long long)r->k, r->n_weights, (long long)k, n_names);
	qp_actstats_cols(r->sum, r->sum_sq, r->sum_abs, r->max_abs, x, n, k);
	if (r->hessian && (rc = qp_actstats_gram(r->hessian, x, n, k, c->threads, err)))
		return rc;
	r->tokens += n;
	return 0;
}

static float *to_f32(const double *v, int64_t n)
{
	float *out = malloc((size_t)n * sizeof(float));
	for (int64_t i = 0; out && i < n; i++)
		out[i] = (float)v[i];
	return out;
}

/* Everything qp_calib_write_imatrix and _write_stats hand to a writer,
 * which borrows it until the file is written. */
struct bufs {
	float **f;
	size_t n, cap;
};

static float *keep(struct bufs *b, float *p)
{
	if (!p)
		return NULL;
	if (b->n == b->cap) {
		size_t cap = b->cap ? 2 * b->cap : 64;
		float **f = realloc(b->f, cap * sizeof(*f));
		if (!f) {
			free(p);
			return NULL;
		}
		b->f = f;
		b->cap = cap;
	}
	return b->f[b->n++] = p;
}

static void bufs_free(struct bufs *b)
{
	for (size_t i = 0; i < b->n; i++)
		free(b->f[i]);
	free(b->f);
}

int qp_calib_write_imatrix(const struct qp_calib *c, const char *path, const char *const *datasets,
                           size_t n_datasets, uint32_t chunk_count, uint32_t chunk_size,
                           struct qp_err *err)
{
	size_t n = 0;
	for (size_t i = 0; i < c->n; i++)
		n += (size_t)c->in[i].n_weights;
	struct qp_imatrix_entry *e = calloc(n ? n : 1, sizeof(*e));
	struct bufs b = {0};
	int rc = 0;
	if (!e) {
		rc = qp_err_nomem(err);
		goto out;
	}
	n = 0;
	for (size_t i = 0; i < c->n; i++) {
		const struct qp_calib_input *r = &c->in[i];
		float *s2 = keep(&b, to_f32(r->sum_sq, r->k)), *s1 = s2 ? keep(&b, to_f32(r->sum, r->k)) : NULL;
		if (!s1) {
			rc = qp_err_nomem(err);
			goto out;
		}
		for (int w = 0; w < r->n_weights; w++)
			e[n++] = (struct qp_imatrix_entry){r->weights[w], r->k, s2, s1, r->tokens};
	}
	rc = qp_imatrix_write(path, e, n, datasets, n_datasets, chunk_count, chunk_size, err);
out:
	bufs_free(&b);
	free(e);
	return rc;
}

float *qp_calib_hessian_f32(const struct qp_calib_input *r)
{
	if (!r->hessian)
		return NULL;
	int64_t k = r->k;
	float *h = malloc((size_t)k * (size_t)k * sizeof(float));
	for (int64_t i = 0; h && i < k; i++)
		for (int64_t j = 0; j <= i; j++)
			h[i * k + j] = h[j * k + i] = (float)r->hessian[i * k + j];
	return h;
}

static float *mean_abs(const struct qp_calib_input *r)
{
	float *m = malloc((size_t)r->k * sizeof(float));
	for (int64_t j = 0; m && j < r->k; j++)
		m[j] = r->tokens ? (float)(r->sum_abs[j] / (double)r->tokens) : 0.0f;
	return m;
}

static float *copy_f32(const float *v, int64_t n)
{
	float *out = malloc((size_t)n * sizeof(float));
	if (out)
		memcpy(out, v, (size_t)n * sizeof(float));
	return out;
}

int qp_calib_write_stats(const struct qp_calib *c, const char *path, const char *const *meta,
                         size_t n_meta, struct qp_err *err)
{
	struct qp_st_writer *w = NULL;
	struct bufs b = {0};
	int rc = qp_st_writer_new(&w, err);
	for (size_t i = 0; !rc && i < n_meta; i++)
		rc = qp_st_writer_set_metadata(w, meta[2 * i], meta[2 * i + 1], err);
	for (size_t i = 0; !rc && i < c->n; i++) {
		const struct qp_calib_input *r = &c->in[i];
		char owner[256], hf[256], key[300], val[32];
		/* names fit: key has room for either under 256 and a suffix */
		for (int v = 0; v < r->n_weights && !rc; v++) {
			if (qp_llamanames_to_hf(r->weights[v], v ? hf : owner, sizeof(hf)) != 0) {
				rc = qp_err_set(err, QP_EINVAL, "weight '%s' has no Hugging Face name", r->weights[v]);
				break;
			}
			snprintf(key, sizeof(key), "%s.input", v ? hf : owner);
			rc = qp_st_writer_set_metadata(w, key, owner, err);
		}
		if (rc)
			break;
		snprintf(key, sizeof(key), "%s.tokens", owner);
		snprintf(val, sizeof(val), "%" PRId64, r->tokens);
		if ((rc = qp_st_writer_set_metadata(w, key, val, err)))
			break;
		const int64_t shape[2] = {r->k, r->k};
		const size_t vb = (size_t)r->k * sizeof(float);
		float *ma = keep(&b, mean_abs(r)), *mx = ma ? keep(&b, copy_f32(r->max_abs, r->k)) : NULL;
		float *h = mx && r->hessian ? keep(&b, qp_calib_hessian_f32(r)) : NULL;
		if (!mx || (r->hessian && !h)) {
			rc = qp_err_nomem(err);
			break;
		}
		snprintf(key, sizeof(key), "%s.act_mean_abs", owner);
		if ((rc = qp_st_writer_add(w, key, QP_ST_F32, 1, shape, ma, vb, err)))
			break;
		snprintf(key, sizeof(key), "%s.act_max_abs", owner);
		if ((rc = qp_st_writer_add(w, key, QP_ST_F32, 1, shape, mx, vb, err)))
			break;
		snprintf(key, sizeof(key), "%s.hessian", owner);
		if (h && (rc = qp_st_writer_add(w, key, QP_ST_F32, 2, shape, h, vb * (size_t)r->k, err)))
			break;
	}
	if (!rc)
		rc = qp_st_writer_write(w, path, err);
	qp_st_writer_free(w);
	bufs_free(&b);
	return rc;
}
