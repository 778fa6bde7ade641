#include "formats/imatrix.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "formats/gguf.h"

static const char SUM2[] = ".in_sum2", SUM[] = ".in_sum", COUNTS[] = ".counts";

struct entry {
	char *name;                        /* owned: the weight's name */
	const struct qp_gguf_tensor *sum2, *sum, *counts;
};

struct qp_imatrix {
	struct qp_gguf_file *f;
	char *path;                        /* copy, for messages */
	struct entry *e;                   /* sorted by name */
	size_t n;
	uint32_t chunk_count;
};

static int cmp_entry(const void *a, const void *b)
{
	return strcmp(((const struct qp_imatrix_entry *)a)->name, ((const struct qp_imatrix_entry *)b)->name);
}

int qp_imatrix_write(const char *path, const struct qp_imatrix_entry *e, size_t n,
                     const char *const *datasets, size_t n_datasets, uint32_t chunk_count,
                     uint32_t chunk_size, struct qp_err *err)
{
	struct qp_imatrix_entry *sorted = malloc((n ? n : 1) * sizeof(*sorted));
	float *counts = malloc((n ? n : 1) * sizeof(float));
	char *name = NULL;
	struct qp_gguf_writer *w = NULL;
	int rc;
	if (!sorted || !counts) {
		rc = qp_err_nomem(err);
		goto out;
	}
	memcpy(sorted, e, n * sizeof(*sorted));
	qsort(sorted, n, sizeof(*sorted), cmp_entry);
	if ((rc = qp_gguf_writer_new(&w, err)) ||
	    (rc = qp_gguf_set_str(w, "general.type", "imatrix", err)) ||
	    (rc = qp_gguf_set_arr_str(w, "imatrix.datasets", datasets, n_datasets, err)) ||
	    (rc = qp_gguf_set_u32(w, "imatrix.chunk_count", chunk_count, err)) ||
	    (rc = qp_gguf_set_u32(w, "imatrix.chunk_size", chunk_size, err)))
		goto out;
	for (size_t i = 0; i < n; i++) {
		const struct qp_imatrix_entry *x = &sorted[i];
		size_t len = strlen(x->name);
		char *nn = realloc(name, len + sizeof(SUM2));
		if (!nn) {
			rc = qp_err_nomem(err);
			goto out;
		}
		name = nn;
		/* a count is a float in the file: exact up to 2^24 tokens, and
		 * llama.cpp rounds it back to an integer when it loads */
		counts[i] = (float)x->count;
		const int64_t ne_v[2] = {x->k, 1}, ne_c[2] = {1, 1};
		const size_t bytes = (size_t)x->k * sizeof(float);
		memcpy(name, x->name, len);
		memcpy(name + len, SUM2, sizeof(SUM2));
		if ((rc = qp_gguf_add_tensor(w, name, QP_TYPE_F32, 2, ne_v, x->in_sum2, bytes, err)))
			goto out;
		memcpy(name + len, COUNTS, sizeof(COUNTS));
		if ((rc = qp_gguf_add_tensor(w, name, QP_TYPE_F32, 2, ne_c, &counts[i], sizeof(float), err)))
			goto out;
		memcpy(name + len, SUM, sizeof(SUM));
		if (x->in_sum && (rc = qp_gguf_add_tensor(w, name, QP_TYPE_F32, 2, ne_v, x->in_sum, bytes, err)))
			goto out;
	}
	rc = qp_gguf_writer_write(w, path, err);
out:
	qp_gguf_writer_free(w);
	free(name);
	free(counts);
	free(sorted);
	return rc;
}

void qp_imatrix_close(struct qp_imatrix *im)
{
	if (!im)
		return;
	for (size_t i = 0; i < im->n; i++)
		free(im->e[i].name);
	free(im->e);
	free(im->path);
	qp_gguf_close(im->f);
	free(im);
}

static bool ends_with(const char *s, size_t len, const char *suffix, size_t slen)
{
	return len > slen && !memcmp(s + len - slen, suffix, slen);
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(((const struct entry *)a)->name, ((const struct entry *)b)->name);
}

static struct entry *find(const struct qp_imatrix *im, const char *name)
{
	struct entry key = {.name = (char *)name};
	return im->n ? bsearch(&key, im->e, im->n, sizeof(*im->e), cmp_name) : NULL;
}

static float load_f32(const struct qp_gguf_tensor *t, int64_t i)
{
	float v;
	memcpy(&v, (const char *)t->data + (size_t)i * sizeof(float), sizeof(v));
	return v;
}

/* The checks llama-quantize makes before it trusts a file. */
static int check(struct qp_imatrix *im, struct qp_err *err)
{
	static const char *const keys[] = {"imatrix.datasets", "imatrix.chunk_count", "imatrix.chunk_size"};
	for (size_t i = 0; i < 3; i++)
		if (!qp_gguf_find_kv(im->f, keys[i]))
			return qp_err_set(err, QP_EINVAL, "%s: key '%s' is missing: not an imatrix file llama-quantize accepts",
			                  im->path, keys[i]);
	const struct qp_gguf_kv *cc = qp_gguf_find_kv(im->f, "imatrix.chunk_count");
	if (cc->type != QP_GGUF_UINT32)
		return qp_err_set(err, QP_ECORRUPT, "%s: key 'imatrix.chunk_count' is not a u32", im->path);
	im->chunk_count = (uint32_t)cc->v.u64;
	if (im->n == 0)
		return qp_err_set(err, QP_EINVAL, "%s: no importance data (no tensor named *%s)", im->path, SUM2);
	for (size_t i = 0; i < im->n; i++) {
		const struct entry *e = &im->e[i];
		if (i > 0 && !strcmp(e->name, im->e[i - 1].name))
			return qp_err_set(err, QP_ECORRUPT, "%s: weight '%s' has two entries", im->path, e->name);
		if (!e->sum2 || !e->counts)
			return qp_err_set(err, QP_ECORRUPT, "%s: weight '%s' has %s but no %s", im->path, e->name,
			                  e->sum2 ? SUM2 : COUNTS, e->sum2 ? COUNTS : SUM2);
		const struct qp_gguf_tensor *ts[3] = {e->sum2, e->counts, e->sum};
		for (int j = 0; j < 3; j++)
			if (ts[j] && ts[j]->type != QP_TYPE_F32)
				return qp_err_set(err, QP_ECORRUPT, "%s: tensor '%s' is %s, not f32", im->path,
				                  ts[j]->name, qp_type_traits(ts[j]->type)->name);
		int64_t nsum = e->sum2->nelem, nmat = e->counts->nelem;
		if (nmat < 1 || nsum % nmat != 0 || (e->sum && e->sum->nelem != nsum))
			return qp_err_set(err, QP_ECORRUPT,
			                  "%s: weight '%s': %lld sums do not split into %lld counts", im->path,
			                  e->name, (long long)nsum, (long long)nmat);
		for (int64_t j = 0; j < nsum; j++)
			if (!isfinite(load_f32(e->sum2, j)))
				return qp_err_set(err, QP_ECORRUPT, "%s: tensor '%s': value %lld is not finite",
				                  im->path, e->sum2->name, (long long)j);
		for (int64_t j = 0; j < nmat; j++) {
			float c = load_f32(e->counts, j);
			if (!isfinite(c) || c < 0.0f)
				return qp_err_set(err, QP_ECORRUPT, "%s: tensor '%s': count %g is not a token count",
				                  im->path, e->counts->name, (double)c);
		}
	}
	return 0;
}

int qp_imatrix_open(struct qp_imatrix **out, const char *path, struct qp_err *err)
{
	*out = NULL;
	struct qp_imatrix *im = calloc(1, sizeof(*im));
	if (!im || !(im->path = strdup(path))) {
		free(im);
		return qp_err_nomem(err);
	}
	int rc = qp_gguf_open(&im->f, path, err);
	if (rc)
		goto fail;
	size_t nt = qp_gguf_tensor_count(im->f);
	im->e = calloc(nt ? nt : 1, sizeof(*im->e));
	if (!im->e) {
		rc = qp_err_nomem(err);
		goto fail;
	}
	/* one entry per in_sum2, then counts and in_sum attached to theirs */
	for (size_t i = 0; i < nt; i++) {
		const struct qp_gguf_tensor *t = qp_gguf_tensor_at(im->f, i);
		size_t len = strlen(t->name);
		if (!ends_with(t->name, len, SUM2, sizeof(SUM2) - 1))
			continue;
		struct entry *e = &im->e[im->n++];
		if (!(e->name = strndup(t->name, len - (sizeof(SUM2) - 1)))) {
			rc = qp_err_nomem(err);
			goto fail;
		}
		e->sum2 = t;
	}
	qsort(im->e, im->n, sizeof(*im->e), cmp_name);
	for (size_t i = 0; i < nt; i++) {
		const struct qp_gguf_tensor *t = qp_gguf_tensor_at(im->f, i);
		size_t len = strlen(t->name), slen;
		bool is_counts = ends_with(t->name, len, COUNTS, sizeof(COUNTS) - 1);
		if (is_counts)
			slen = sizeof(COUNTS) - 1;
		else if (ends_with(t->name, len, SUM, sizeof(SUM) - 1))
			slen = sizeof(SUM) - 1;
		else
			continue; /* in_sum2, or a tensor llama.cpp ignores too */
		char *base = strndup(t->name, len - slen);
		if (!base) {
			rc = qp_err_nomem(err);
			goto fail;
		}
		struct entry *e = find(im, base);
		free(base);
		if (!e) {
			rc = qp_err_set(err, QP_ECORRUPT, "%s: tensor '%s' has no matching %s", path, t->name, SUM2);
			goto fail;
		}
		if (is_counts)
			e->counts = t;
		else
			e->sum = t;
	}
	if ((rc = check(im, err)))
		goto fail;
	*out = im;
	return 0;
fail:
	qp_imatrix_close(im);
	return rc;
}

size_t qp_imatrix_count(const struct qp_imatrix *im) { return im->n; }
uint32_t qp_imatrix_chunk_count(const struct qp_imatrix *im) { return im->chunk_count; }
const char *qp_imatrix_name(const struct qp_imatrix *im, size_t i) { return im->e[i].name; }

int qp_imatrix_weights(const struct qp_imatrix *im, const char *name, int64_t k, float *out,
                       struct qp_err *err)
{
	const struct entry *e = find(im, name);
	if (!e)
		return qp_err_set(err, QP_ENOTFOUND, "%s: no importance data for '%s'", im->path, name);
	int64_t nsum = e->sum2->nelem, nmat = e->counts->nelem, ne0 = nsum / nmat;
	if (nsum != k)
		return qp_err_set(err, QP_EINVAL, "%s: weight '%s' has %lld importances, its rows %lld columns",
		                  im->path, name, (long long)nsum, (long long)k);
	for (int64_t m = 0; m < nmat; m++) {
		/* llama.cpp rounds the stored count to an integer, then divides
		 * in float */
		const float c = (float)llround((double)load_f32(e->counts, m));
		for (int64_t j = 0; j < ne0; j++)
			out[m * ne0 + j] = c > 0.0f ? load_f32(e->sum2, m * ne0 + j) / c : 1.0f;
	}
	return 0;
}
