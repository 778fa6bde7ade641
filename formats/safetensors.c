/* safetensors reader and writer.
 *
 * File layout:
 *
 *   offset 0      u64 little-endian N: length of the JSON header in bytes
 *   offset 8      N bytes of JSON, an object:
 *                   "__metadata__": {str: str}            (optional)
 *                   "<name>": {"dtype": "F16", "shape": [d0, d1, ...],
 *                              "data_offsets": [begin, end]}
 *                 padded with spaces so that 8 + N is a multiple of 8
 *   offset 8 + N  the data section; begin/end are relative to it, end is
 *                 exclusive, end - begin = product(shape) * dtype size
 *
 * A sharded model is a folder with model.safetensors.index.json
 * ({"metadata": {...}, "weight_map": {"<tensor>": "<shard file>"}}) and the
 * shard files beside it. Each shard is mapped once and its header parsed
 * once; tensors point into the mappings.
 *
 * Everything in a header is untrusted: the reader checks the header length
 * against the file and a cap, every dtype, shape and offset, and refuses
 * overlapping or duplicate tensors. Messages name the file, the tensor and
 * absolute byte offsets. */
#include "formats/safetensors.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/os.h"
#include "formats/check.h"

/* The reference implementation refuses headers past 100 MB; so do we. */
#define ST_HEADER_MAX 100000000u
/* An index lists one line per tensor; 100 MB is far beyond any real one. */
#define ST_INDEX_MAX ((size_t)100 * 1000 * 1000)

static const struct {
	const char *name;
	size_t size;  /* bytes per element */
} dtypes[QP_ST_DTYPE_COUNT] = {
	[QP_ST_BOOL] = {"BOOL", 1},
	[QP_ST_U8] = {"U8", 1},
	[QP_ST_I8] = {"I8", 1},
	[QP_ST_U16] = {"U16", 2},
	[QP_ST_I16] = {"I16", 2},
	[QP_ST_F16] = {"F16", 2},
	[QP_ST_BF16] = {"BF16", 2},
	[QP_ST_U32] = {"U32", 4},
	[QP_ST_I32] = {"I32", 4},
	[QP_ST_F32] = {"F32", 4},
	[QP_ST_U64] = {"U64", 8},
	[QP_ST_I64] = {"I64", 8},
	[QP_ST_F64] = {"F64", 8},
	[QP_ST_F8_E4M3] = {"F8_E4M3", 1},
	[QP_ST_F8_E5M2] = {"F8_E5M2", 1},
};

const char *qp_st_dtype_name(enum qp_st_dtype d)
{
	if ((unsigned)d >= QP_ST_DTYPE_COUNT)
		return NULL;
	return dtypes[d].name;
}

size_t qp_st_dtype_size(enum qp_st_dtype d)
{
	if ((unsigned)d >= QP_ST_DTYPE_COUNT)
		return 0;
	return dtypes[d].size;
}

int qp_st_dtype_from_name(const char *name)
{
	for (int d = 0; d < QP_ST_DTYPE_COUNT; d++)
		if (strcmp(dtypes[d].name, name) == 0)
			return d;
	return -1;
}

/* ---- reader ---- */

struct st_shard {
	char *path;           /* as opened; names the file in messages */
	struct qp_map map;    /* zeroed when the bytes are borrowed (qp_st_parse) */
	const uint8_t *bytes;
	size_t size;          /* bytes */
	json_t *meta;         /* the __metadata__ object, or NULL */
};

struct qp_st_model {
	struct st_shard *shards;
	size_t n_shards;
	struct qp_st_tensor *t;
	size_t n, cap;
	struct qp_name_ref *by_name;  /* n refs sorted by name, built after all shards */
};

void qp_st_close(struct qp_st_model *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->n; i++)
		free((char *)m->t[i].name);
	for (size_t i = 0; i < m->n_shards; i++) {
		qp_os_unmap(&m->shards[i].map);
		json_decref(m->shards[i].meta);
		free(m->shards[i].path);
	}
	free(m->shards);
	free(m->t);
	free(m->by_name);
	free(m);
}

/* "[2, 3]" into buf. */
static const char *fmt_shape(char *buf, size_t cap, const int64_t *shape, int ndim)
{
	size_t n = 0;
	n += (size_t)snprintf(buf + n, cap - n, "[");
	for (int i = 0; i < ndim && n < cap; i++)
		n += (size_t)snprintf(buf + n, cap - n, "%s%" PRId64, i ? ", " : "", shape[i]);
	if (n < cap)
		snprintf(buf + n, cap - n, "]");
	return buf;
}

static int push_tensor(struct qp_st_model *m, const struct qp_st_tensor *t, struct qp_err *err)
{
	if (m->n == m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 64;
		if (cap > SIZE_MAX / sizeof(*m->t))
			return qp_err_nomem(err);
		struct qp_st_tensor *nt = realloc(m->t, cap * sizeof(*nt));
		if (!nt)
			return qp_err_nomem(err);
		m->t = nt;
		m->cap = cap;
	}
	m->t[m->n++] = *t;
	return 0;
}

/* One header entry: {"dtype", "shape", "data_offsets"}; checked against
 * the data section [data_start, data_start + data_size) of the shard. */
static int parse_entry(struct qp_st_model *m, struct st_shard *sh, const char *name, json_t *val,
                       uint64_t data_start, uint64_t data_size, struct qp_err *err)
{
	const char *fn = sh->path;
	char sbuf[256];
	struct qp_st_tensor t;
	memset(&t, 0, sizeof(t));

	if (!json_is_object(val))
		return qp_err_set(err, QP_ECORRUPT, "%s: tensor '%s': entry is not an object", fn, name);
	json_t *jd = json_object_get(val, "dtype");
	json_t *js = json_object_get(val, "shape");
	json_t *jo = json_object_get(val, "data_offsets");
	if (!json_is_string(jd))
		return qp_err_set(err, QP_ECORRUPT, "%s: tensor '%s': 'dtype' is missing or not a string",
		                  fn, name);
	int dt = qp_st_dtype_from_name(json_string_value(jd));
	if (dt < 0)
		return qp_err_set(err, QP_ECORRUPT, "%s: tensor '%s': unknown dtype '%s'", fn, name,
		                  json_string_value(jd));
	t.dtype = (enum qp_st_dtype)dt;

	if (!json_is_array(js))
		return qp_err_set(err, QP_ECORRUPT, "%s: tensor '%s': 'shape' is missing or not an array",
		                  fn, name);
	size_t nd = json_array_size(js);
	if (nd > QP_ST_MAX_DIMS)
		return qp_err_set(err, QP_ECORRUPT,
		                  "%s: tensor '%s': shape has %zu dimensions, at most %d are supported", fn,
		                  name, nd, QP_ST_MAX_DIMS);
	t.ndim = (int)nd;
	int64_t nelem = 1;
	bool overflow = false;
	for (size_t i = 0; i < nd; i++) {
		json_t *e = json_array_get(js, i);
		if (!json_is_integer(e) || json_integer_value(e) < 0)
			return qp_err_set(err, QP_ECORRUPT,
			                  "%s: tensor '%s': shape[%zu] is not a non-negative integer", fn,
			                  name, i);
		int64_t d = (int64_t)json_integer_value(e);
		t.shape[i] = d;
		if (d != 0 && nelem > INT64_MAX / d)
			overflow = true;
		else
			nelem *= d;
	}
	size_t esize = dtypes[t.dtype].size;
	if (overflow || (uint64_t)nelem > UINT64_MAX / esize || nelem * (uint64_t)esize > SIZE_MAX)
		return qp_err_set(err, QP_ECORRUPT, "%s: tensor '%s': shape %s of %s is too large", fn,
		                  name, fmt_shape(sbuf, sizeof(sbuf), t.shape, t.ndim),
		                  dtypes[t.dtype].name);
	t.nelem = nelem;
	uint64_t need = (uint64_t)nelem * esize;

	if (!json_is_array(jo) || json_array_size(jo) != 2 ||
	    !json_is_integer(json_array_get(jo, 0)) || !json_is_integer(json_array_get(jo, 1)))
		return qp_err_set(err, QP_ECORRUPT, "%s: tensor '%s': 'data_offsets' is not two integers",
		                  fn, name);
	json_int_t jb = json_integer_value(json_array_get(jo, 0));
	json_int_t je = json_integer_value(json_array_get(jo, 1));
	if (jb < 0 || je < 0)
		return qp_err_set(err, QP_ECORRUPT,
		                  "%s: tensor '%s': data_offsets [%lld, %lld] are negative", fn, name,
		                  (long long)jb, (long long)je);
	if (jb > je)
		return qp_err_set(err, QP_ECORRUPT,
		                  "%s: tensor '%s': data_offsets [%lld, %lld] end before they begin", fn,
		                  name, (long long)jb, (long long)je);
	uint64_t b = (uint64_t)jb, e = (uint64_t)je;
	/* data_start <= 8 + ST_HEADER_MAX and b < 2^63: no overflow. */
	if (e > data_size)
		return qp_err_set(err, QP_ECORRUPT,
		                  "%s: tensor '%s': data at offset %" PRIu64 " + %" PRIu64
		                  " runs past end of file (%zu bytes)",
		                  fn, name, data_start + b, e - b, sh->size);
	if (e - b != need)
		return qp_err_set(err, QP_ECORRUPT,
		                  "%s: tensor '%s': data at offset %" PRIu64 " is %" PRIu64
		                  " bytes but shape %s of %s needs %" PRIu64,
		                  fn, name, data_start + b, e - b,
		                  fmt_shape(sbuf, sizeof(sbuf), t.shape, t.ndim), dtypes[t.dtype].name,
		                  need);
	t.data = sh->bytes + data_start + b;
	t.nbytes = (size_t)need;
	t.file = sh->path;
	t.file_offset = data_start + b;
	t.name = strdup(name);
	if (!t.name)
		return qp_err_nomem(err);
	int rc = push_tensor(m, &t, err);
	if (rc)
		free((char *)t.name);
	return rc;
}

/* Two tensors sharing bytes means a corrupt or hostile header. */
static int check_overlaps(struct qp_st_model *m, const struct st_shard *sh, size_t first,
                          struct qp_err *err)
{
	size_t n = 0;
	struct qp_span *s = calloc(m->n - first + 1, sizeof(*s));
	if (!s)
		return qp_err_nomem(err);
	for (size_t i = first; i < m->n; i++) {
		if (m->t[i].nbytes == 0)
			continue;  /* owns no bytes */
		s[n].begin = m->t[i].file_offset;
		s[n].end = m->t[i].file_offset + m->t[i].nbytes;
		s[n].idx = i;
		n++;
	}
	size_t i = qp_spans_overlap(s, n);
	int rc = 0;
	if (i < n) {
		const struct qp_st_tensor *a = &m->t[s[i - 1].idx], *b = &m->t[s[i].idx];
		rc = qp_err_set(err, QP_ECORRUPT,
		                "%s: tensor '%s': data at offset %" PRIu64 " + %zu overlaps tensor '%s' "
		                "at offset %" PRIu64 " + %zu",
		                sh->path, b->name, b->file_offset, b->nbytes, a->name, a->file_offset,
		                a->nbytes);
	}
	free(s);
	return rc;
}

static int parse_metadata(struct st_shard *sh, json_t *val, struct qp_err *err)
{
	if (!json_is_object(val))
		return qp_err_set(err, QP_ECORRUPT, "%s: __metadata__ is not an object", sh->path);
	const char *k;
	json_t *v;
	json_object_foreach(val, k, v) {
		if (!json_is_string(v))
			return qp_err_set(err, QP_ECORRUPT, "%s: __metadata__ '%s' is not a string",
			                  sh->path, k);
	}
	sh->meta = json_incref(val);
	return 0;
}

static int parse_shard(struct qp_st_model *m, struct st_shard *sh, struct qp_err *err)
{
	const char *fn = sh->path;
	if (sh->size < 8)
		return qp_err_set(err, QP_ECORRUPT,
		                  "%s: file is %zu bytes, too short for a safetensors header", fn,
		                  sh->size);
	uint64_t hlen = qp_le(sh->bytes, 8);
	if (hlen > ST_HEADER_MAX)
		return qp_err_set(err, QP_ECORRUPT,
		                  "%s: header length %" PRIu64 " exceeds the limit of %u bytes", fn, hlen,
		                  ST_HEADER_MAX);
	if (hlen > sh->size - 8)
		return qp_err_set(err, QP_ECORRUPT,
		                  "%s: header length %" PRIu64 " runs past end of file (%zu bytes)", fn,
		                  hlen, sh->size);
	const char *hdr = (const char *)sh->bytes + 8;
	if (hlen == 0 || hdr[0] != '{')
		return qp_err_set(err, QP_ECORRUPT, "%s: header at offset 8 does not start with '{'", fn);
	json_error_t je;
	json_t *root = json_loadb(hdr, (size_t)hlen, JSON_REJECT_DUPLICATES, &je);
	if (!root)
		return qp_err_set(err, QP_ECORRUPT, "%s: header JSON at offset %lld: %s", fn,
		                  8LL + je.position, je.text);
	if (!json_is_object(root)) {
		json_decref(root);
		return qp_err_set(err, QP_ECORRUPT, "%s: header is not a JSON object", fn);
	}
	uint64_t data_start = 8 + hlen;
	uint64_t data_size = sh->size - data_start;
	size_t first = m->n;
	int rc = 0;
	const char *key;
	json_t *val;
	json_object_foreach(root, key, val) {
		if (strcmp(key, "__metadata__") == 0)
			rc = parse_metadata(sh, val, err);
		else
			rc = parse_entry(m, sh, key, val, data_start, data_size, err);
		if (rc)
			break;
	}
	json_decref(root);
	if (rc)
		return rc;
	return check_overlaps(m, sh, first, err);
}

/* Sort the names of all tensors and refuse a name held twice. */
static int index_names(struct qp_st_model *m, struct qp_err *err)
{
	m->by_name = calloc(m->n + 1, sizeof(*m->by_name));
	if (!m->by_name)
		return qp_err_nomem(err);
	for (size_t i = 0; i < m->n; i++) {
		m->by_name[i].name = m->t[i].name;
		m->by_name[i].idx = i;
	}
	size_t dup = qp_names_sort(m->by_name, m->n);
	if (dup < m->n) {
		/* Duplicates within one header were refused by the JSON parser. */
		const struct qp_st_tensor *a = &m->t[m->by_name[dup - 1].idx];
		const struct qp_st_tensor *b = &m->t[m->by_name[dup].idx];
		return qp_err_set(err, QP_ECORRUPT, "%s: tensor '%s' is also in %s", b->file, b->name,
		                  a->file);
	}
	return 0;
}

static int model_new(struct qp_st_model **out, size_t n_shards, struct qp_err *err)
{
	struct qp_st_model *m = calloc(1, sizeof(*m));
	if (!m)
		return qp_err_nomem(err);
	m->shards = calloc(n_shards ? n_shards : 1, sizeof(*m->shards));
	if (!m->shards) {
		free(m);
		return qp_err_nomem(err);
	}
	*out = m;
	return 0;
}

int qp_st_parse(struct qp_st_model **out, const void *data, size_t len, const char *name,
                struct qp_err *err)
{
	*out = NULL;
	struct qp_st_model *m;
	int rc = model_new(&m, 1, err);
	if (rc)
		return rc;
	struct st_shard *sh = &m->shards[0];
	m->n_shards = 1;
	sh->path = strdup(name);
	if (!sh->path) {
		qp_st_close(m);
		return qp_err_nomem(err);
	}
	sh->bytes = data;
	sh->size = len;
	rc = parse_shard(m, sh, err);
	if (!rc)
		rc = index_names(m, err);
	if (rc) {
		qp_st_close(m);
		return rc;
	}
	*out = m;
	return 0;
}

static int open_single(struct qp_st_model **out, const char *path, struct qp_err *err)
{
	*out = NULL;
	struct qp_st_model *m;
	int rc = model_new(&m, 1, err);
	if (rc)
		return rc;
	struct st_shard *sh = &m->shards[0];
	m->n_shards = 1;
	sh->path = strdup(path);
	if (!sh->path) {
		qp_st_close(m);
		return qp_err_nomem(err);
	}
	rc = qp_os_map(&sh->map, path, err);
	if (!rc) {
		sh->bytes = sh->map.data;
		sh->size = sh->map.size;
		rc = parse_shard(m, sh, err);
	}
	if (!rc)
		rc = index_names(m, err);
	if (rc) {
		qp_st_close(m);
		return rc;
	}
	*out = m;
	return 0;
}

/* dir + "/" + name, malloc'd. */
static char *join_path(const char *dir, size_t dirlen, const char *name)
{
	size_t nl = strlen(name);
	char *p = malloc(dirlen + 1 + nl + 1);
	if (!p)
		return NULL;
	memcpy(p, dir, dirlen);
	p[dirlen] = '/';
	memcpy(p + dirlen + 1, name, nl + 1);
	return p;
}

/* A shard must sit beside its index: a plain file name, no path. */
static bool shard_name_ok(const char *s)
{
	return s[0] != '\0' && strcmp(s, ".") != 0 && strcmp(s, "..") != 0 && !strchr(s, '/');
}

static int open_index(struct qp_st_model **out, const char *path, struct qp_err *err)
{
	*out = NULL;
	char *text = NULL;
	size_t len = 0;
	int rc = qp_os_read_file(&text, &len, path, ST_INDEX_MAX, err);
	if (rc)
		return rc;
	json_error_t je;
	json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
	free(text);
	if (!root)
		return qp_err_set(err, QP_ECORRUPT, "%s:%d:%d: %s", path, je.line, je.column, je.text);

	struct qp_st_model *m = NULL;
	struct qp_name_ref *files = NULL;
	json_t *wm = json_object_get(root, "weight_map");
	if (!json_is_object(root) || !json_is_object(wm)) {
		rc = qp_err_set(err, QP_ECORRUPT, "%s: 'weight_map' is missing or not an object", path);
		goto out;
	}

	/* The distinct shard names, sorted: shards are read in name order. */
	size_t n_map = json_object_size(wm), n_files = 0;
	files = calloc(n_map + 1, sizeof(*files));
	if (!files) {
		rc = qp_err_nomem(err);
		goto out;
	}
	const char *tname;
	json_t *v;
	json_object_foreach(wm, tname, v) {
		if (!json_is_string(v) || !shard_name_ok(json_string_value(v))) {
			rc = qp_err_set(err, QP_ECORRUPT,
			                "%s: weight_map: tensor '%s' is not mapped to a file name", path,
			                tname);
			goto out;
		}
		files[n_files].name = json_string_value(v);
		files[n_files].idx = n_files;
		n_files++;
	}
	qp_names_sort(files, n_files);
	size_t n_unique = 0;
	for (size_t i = 0; i < n_files; i++)
		if (i == 0 || strcmp(files[i].name, files[n_unique - 1].name) != 0)
			files[n_unique++] = files[i];

	rc = model_new(&m, n_unique, err);
	if (rc)
		goto out;
	const char *slash = strrchr(path, '/');
	const char *dir = slash ? path : ".";
	size_t dirlen = slash ? (size_t)(slash - path) : 1;
	if (slash == path)
		dirlen = 0;  /* index in "/": shards are "/name" */
	for (size_t i = 0; i < n_unique; i++) {
		struct st_shard *sh = &m->shards[i];
		m->n_shards = i + 1;
		sh->path = join_path(dir, dirlen, files[i].name);
		if (!sh->path) {
			rc = qp_err_nomem(err);
			goto out;
		}
		rc = qp_os_map(&sh->map, sh->path, err);
		if (rc)
			goto out;
		sh->bytes = sh->map.data;
		sh->size = sh->map.size;
		rc = parse_shard(m, sh, err);
		if (rc)
			goto out;
	}
	rc = index_names(m, err);
	if (rc)
		goto out;

	/* The index and the shards must agree on where each tensor lives. */
	json_object_foreach(wm, tname, v) {
		const struct qp_name_ref *r = qp_names_find(m->by_name, m->n, tname);
		const char *want = json_string_value(v);
		if (!r) {
			rc = qp_err_set(err, QP_ECORRUPT, "%s: weight_map: tensor '%s' is not in %s", path,
			                tname, want);
			goto out;
		}
		const char *got = m->t[r->idx].file;
		const char *base = strrchr(got, '/');
		base = base ? base + 1 : got;
		if (strcmp(base, want) != 0) {
			rc = qp_err_set(err, QP_ECORRUPT,
			                "%s: weight_map: tensor '%s' is mapped to %s but found in %s", path,
			                tname, want, got);
			goto out;
		}
	}
out:
	free(files);
	json_decref(root);
	if (rc) {
		qp_st_close(m);
		return rc;
	}
	*out = m;
	return 0;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);
	return n >= k && strcmp(s + n - k, suffix) == 0;
}

int qp_st_open(struct qp_st_model **out, const char *path, struct qp_err *err)
{
	*out = NULL;
	if (ends_with(path, ".json"))
		return open_index(out, path, err);
	/* A folder: probing "path/<file>" fails harmlessly when path is a file. */
	size_t pl = strlen(path);
	while (pl > 1 && path[pl - 1] == '/')
		pl--;
	char *idx = join_path(path, pl, "model.safetensors.index.json");
	char *single = join_path(path, pl, "model.safetensors");
	int rc;
	if (!idx || !single)
		rc = qp_err_nomem(err);
	else if (qp_os_exists(idx))
		rc = open_index(out, idx, err);
	else if (qp_os_exists(single))
		rc = open_single(out, single, err);
	else if ((rc = open_single(out, path, err)) == QP_EINVAL && qp_os_exists(path))
		rc = qp_err_set(err, QP_ENOTFOUND,
		                "%s: no model.safetensors.index.json or model.safetensors in it", path);
	free(idx);
	free(single);
	return rc;
}

size_t qp_st_count(const struct qp_st_model *m)
{
	return m->n;
}

const struct qp_st_tensor *qp_st_at(const struct qp_st_model *m, size_t i)
{
	return i < m->n ? &m->t[i] : NULL;
}

const struct qp_st_tensor *qp_st_find(const struct qp_st_model *m, const char *name)
{
	const struct qp_name_ref *r = qp_names_find(m->by_name, m->n, name);
	return r ? &m->t[r->idx] : NULL;
}

const char *qp_st_metadata(const struct qp_st_model *m, const char *key)
{
	if (m->n_shards == 0 || !m->shards[0].meta)
		return NULL;
	return json_string_value(json_object_get(m->shards[0].meta, key));
}

/* ---- writer ---- */

struct st_wtensor {
	char *name;
	enum qp_st_dtype dtype;
	int ndim;
	int64_t shape[QP_ST_MAX_DIMS];
	const void *data;  /* borrowed until write returns */
	size_t nbytes;
};

struct qp_st_writer {
	struct st_wtensor *t;
	size_t n, cap;
	json_t *meta;  /* __metadata__ object */
};

int qp_st_writer_new(struct qp_st_writer **out, struct qp_err *err)
{
	*out = NULL;
	struct qp_st_writer *w = calloc(1, sizeof(*w));
	if (!w)
		return qp_err_nomem(err);
	w->meta = json_object();
	if (!w->meta) {
		free(w);
		return qp_err_nomem(err);
	}
	*out = w;
	return 0;
}

void qp_st_writer_free(struct qp_st_writer *w)
{
	if (!w)
		return;
	for (size_t i = 0; i < w->n; i++)
		free(w->t[i].name);
	free(w->t);
	json_decref(w->meta);
	free(w);
}

int qp_st_writer_add(struct qp_st_writer *w, const char *name, enum qp_st_dtype dtype,
                     int ndim, const int64_t *shape, const void *data, size_t nbytes,
                     struct qp_err *err)
{
	char sbuf[256];
	if (name[0] == '\0' || strcmp(name, "__metadata__") == 0)
		return qp_err_set(err, QP_EINVAL, "'%s' is not a valid tensor name", name);
	if ((unsigned)dtype >= QP_ST_DTYPE_COUNT)
		return qp_err_set(err, QP_EINVAL, "tensor '%s': unknown dtype %d", name, (int)dtype);
	if (ndim < 0 || ndim > QP_ST_MAX_DIMS)
		return qp_err_set(err, QP_EINVAL, "tensor '%s': %d dimensions, at most %d are supported",
		                  name, ndim, QP_ST_MAX_DIMS);
	uint64_t nelem = 1;
	bool overflow = false;
	for (int i = 0; i < ndim; i++) {
		if (shape[i] < 0)
			return qp_err_set(err, QP_EINVAL, "tensor '%s': shape[%d] is negative", name, i);
		if (shape[i] != 0 && nelem > (uint64_t)INT64_MAX / (uint64_t)shape[i])
			overflow = true;
		else
			nelem *= (uint64_t)shape[i];
	}
	size_t esize = dtypes[dtype].size;
	if (overflow || nelem > SIZE_MAX / esize)
		return qp_err_set(err, QP_EINVAL, "tensor '%s': shape %s of %s is too large", name,
		                  fmt_shape(sbuf, sizeof(sbuf), shape, ndim), dtypes[dtype].name);
	if (nelem * esize != nbytes)
		return qp_err_set(err, QP_EINVAL,
		                  "tensor '%s': %zu bytes given but shape %s of %s needs %zu", name,
		                  nbytes, fmt_shape(sbuf, sizeof(sbuf), shape, ndim),
		                  dtypes[dtype].name, (size_t)(nelem * esize));
	if (w->n == w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 64;
		if (cap > SIZE_MAX / sizeof(*w->t))
			return qp_err_nomem(err);
		struct st_wtensor *nt = realloc(w->t, cap * sizeof(*nt));
		if (!nt)
			return qp_err_nomem(err);
		w->t = nt;
		w->cap = cap;
	}
	struct st_wtensor *t = &w->t[w->n];
	memset(t, 0, sizeof(*t));
	t->name = strdup(name);
	if (!t->name)
		return qp_err_nomem(err);
	t->dtype = dtype;
	t->ndim = ndim;
	for (int i = 0; i < ndim; i++)
		t->shape[i] = shape[i];
	t->data = data;
	t->nbytes = nbytes;
	w->n++;
	return 0;
}

int qp_st_writer_set_metadata(struct qp_st_writer *w, const char *key, const char *value,
                              struct qp_err *err)
{
	json_t *s = json_string(value);
	if (!s)
		return qp_err_set(err, QP_EINVAL, "__metadata__ '%s': value is not valid UTF-8", key);
	if (json_object_set_new(w->meta, key, s) != 0)
		return qp_err_set(err, QP_EINVAL, "__metadata__ key '%s' is not valid UTF-8", key);
	return 0;
}

static int cmp_wtensor(const void *a, const void *b)
{
	const struct st_wtensor *x = a, *y = b;
	return strcmp(x->name, y->name);
}

/* The JSON header, compact, with offsets for the sorted tensors. */
static int build_header(struct qp_st_writer *w, char **out, struct qp_err *err)
{
	*out = NULL;
	json_t *root = json_object();
	if (!root)
		return qp_err_nomem(err);
	int rc = 0;
	if (json_object_size(w->meta) > 0 && json_object_set(root, "__metadata__", w->meta) != 0)
		rc = qp_err_nomem(err);
	uint64_t off = 0;
	for (size_t i = 0; !rc && i < w->n; i++) {
		const struct st_wtensor *t = &w->t[i];
		json_t *shape = json_array();
		json_t *offs = json_array();
		json_t *e = json_object();
		bool ok = shape && offs && e;
		for (int d = 0; ok && d < t->ndim; d++)
			ok = json_array_append_new(shape, json_integer(t->shape[d])) == 0;
		ok = ok && json_array_append_new(offs, json_integer((json_int_t)off)) == 0;
		ok = ok && json_array_append_new(offs, json_integer((json_int_t)(off + t->nbytes))) == 0;
		ok = ok && json_object_set_new(e, "dtype", json_string(dtypes[t->dtype].name)) == 0;
		ok = ok && json_object_set_new(e, "shape", shape) == 0;
		shape = NULL;
		ok = ok && json_object_set_new(e, "data_offsets", offs) == 0;
		offs = NULL;
		if (!ok) {
			json_decref(shape);
			json_decref(offs);
			json_decref(e);
			rc = qp_err_nomem(err);
			break;
		}
		if (json_object_set_new(root, t->name, e) != 0) {
			rc = qp_err_set(err, QP_EINVAL, "tensor name '%s' is not valid UTF-8", t->name);
			break;
		}
		off += t->nbytes;
	}
	if (!rc) {
		*out = json_dumps(root, JSON_COMPACT);
		if (!*out)
			rc = qp_err_nomem(err);
	}
	json_decref(root);
	return rc;
}

int qp_st_writer_write(struct qp_st_writer *w, const char *path, struct qp_err *err)
{
	if (w->n > 1)
		qsort(w->t, w->n, sizeof(*w->t), cmp_wtensor);
	for (size_t i = 1; i < w->n; i++)
		if (strcmp(w->t[i - 1].name, w->t[i].name) == 0)
			return qp_err_set(err, QP_EINVAL, "%s: tensor '%s' added twice", path, w->t[i].name);
	char *hdr;
	int rc = build_header(w, &hdr, err);
	if (rc)
		return rc;
	/* Pad with spaces so the data section starts 8-byte aligned, as the
	 * reference writer does. */
	size_t hlen = strlen(hdr);
	size_t pad = (8 - hlen % 8) % 8;
	if (hlen + pad > ST_HEADER_MAX) {
		free(hdr);
		return qp_err_set(err, QP_EINVAL, "%s: header of %zu bytes exceeds the limit of %u", path,
		                  hlen, ST_HEADER_MAX);
	}
	uint8_t lenbuf[8];
	uint64_t n = hlen + pad;
	for (int i = 0; i < 8; i++)
		lenbuf[i] = (uint8_t)(n >> (8 * i));
	static const char spaces[8] = "        ";

	struct qp_atomic_file f;
	rc = qp_os_atomic_open(&f, path, err);
	if (rc) {
		free(hdr);
		return rc;
	}
	rc = qp_os_atomic_write(&f, lenbuf, sizeof(lenbuf), err);
	if (!rc)
		rc = qp_os_atomic_write(&f, hdr, hlen, err);
	if (!rc)
		rc = qp_os_atomic_write(&f, spaces, pad, err);
	for (size_t i = 0; !rc && i < w->n; i++)
		if (w->t[i].nbytes)
			rc = qp_os_atomic_write(&f, w->t[i].data, w->t[i].nbytes, err);
	free(hdr);
	if (rc) {
		qp_os_atomic_abort(&f);
		return rc;
	}
	return qp_os_atomic_commit(&f, err);
}
