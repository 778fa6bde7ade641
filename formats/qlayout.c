/* qpipe's safetensors layout for quantized models; see qlayout.h. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/qlayout.h"
#include "formats/qspec.h"
#include "kernels/blocks.h"
#include "kernels/convert.h"
#include "kernels/kernels.h"

#define LAYOUT_VERSION "1"
#define META_PREFIX "qpipe.tensor."

struct qp_ql_model {
	struct qp_st_model *st;
	struct qp_ql_entry *e;
	size_t n;
};

/* The parts of a method entry, by suffix. */
enum part { P_CODES, P_SCALES, P_ZEROS, P_GIDX, P_LUT, P_AMAX_CODES, P_AMAX_SCALES, P_AMAX_OFFSET, P_COUNT };
static const char *const part_suffix[P_COUNT] = {
	".qcodes", ".qscales", ".qzeros", ".qg_idx", ".qlut", ".qabsmax_codes", ".qabsmax_scales", ".qabsmax_offset",
};
static const char blocks_suffix[] = ".qblocks";

static bool ends_with(const char *s, const char *suf, size_t *stem)
{
	size_t a = strlen(s), b = strlen(suf);
	if (a <= b || strcmp(s + a - b, suf) != 0)
		return false;
	*stem = a - b;
	return true;
}

/* Which reserved suffix name carries, if any (P_COUNT for .qblocks, -1 none). */
static int suffix_of(const char *name, size_t *stem)
{
	for (int p = 0; p < P_COUNT; p++)
		if (ends_with(name, part_suffix[p], stem))
			return p;
	if (ends_with(name, blocks_suffix, stem))
		return P_COUNT;
	return -1;
}

void qp_ql_close(struct qp_ql_model *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->n; i++)
		free((char *)m->e[i].name);
	free(m->e);
	qp_st_close(m->st);
	free(m);
}

size_t qp_ql_count(const struct qp_ql_model *m) { return m->n; }
const struct qp_ql_entry *qp_ql_at(const struct qp_ql_model *m, size_t i) { return i < m->n ? &m->e[i] : NULL; }
const char *qp_ql_metadata(const struct qp_ql_model *m, const char *key) { return qp_st_metadata(m->st, key); }

static int cmp_entry(const void *a, const void *b)
{
	return strcmp(((const struct qp_ql_entry *)a)->name, ((const struct qp_ql_entry *)b)->name);
}

const struct qp_ql_entry *qp_ql_find(const struct qp_ql_model *m, const char *name)
{
	struct qp_ql_entry key = {.name = name};
	return bsearch(&key, m->e, m->n, sizeof(*m->e), cmp_entry);
}

static const struct qp_st_tensor *part(const struct qp_ql_model *m, const struct qp_ql_entry *e, enum part p)
{
	char buf[1024];
	snprintf(buf, sizeof(buf), "%s%s", e->name, part_suffix[p]);
	return qp_st_find(m->st, buf);
}

/* The part must exist (or must not, when want is false) with dtype and shape. */
static int check_part(const struct qp_ql_model *m, const struct qp_ql_entry *e, enum part p, bool want,
                      int dtype, int ndim, int64_t d0, int64_t d1, struct qp_err *err)
{
	const struct qp_st_tensor *t = part(m, e, p);
	if (!want) {
		if (t)
			return qp_err_set(err, QP_ECORRUPT, "%s: tensor '%s': method %s has no %s part", t->file, t->name,
			                  qp_qmethod_name(e->spec.method), part_suffix[p] + 2);
		return 0;
	}
	if (!t)
		return qp_err_set(err, QP_ECORRUPT, "entry '%s' (%s): tensor '%s%s' is missing", e->name,
		                  qp_qmethod_name(e->spec.method), e->name, part_suffix[p]);
	bool shape_ok = t->ndim == ndim && t->shape[0] == d0 && (ndim < 2 || t->shape[1] == d1);
	if ((int)t->dtype != dtype || !shape_ok) {
		char want_s[64];
		if (ndim == 1)
			snprintf(want_s, sizeof(want_s), "[%lld]", (long long)d0);
		else
			snprintf(want_s, sizeof(want_s), "[%lld, %lld]", (long long)d0, (long long)d1);
		return qp_err_set(err, QP_ECORRUPT, "%s: tensor '%s' at offset %llu: expected %s %s for %s, found %s with %d dims",
		                  t->file, t->name, (unsigned long long)t->file_offset,
		                  qp_st_dtype_name((enum qp_st_dtype)dtype), want_s, qp_qmethod_name(e->spec.method),
		                  qp_st_dtype_name(t->dtype), t->ndim);
	}
	return 0;
}

/* Geometry a method entry's parts must have, and the checks of their values
 * that dequantize relies on. */
static int check_method(struct qp_ql_model *m, struct qp_ql_entry *e, struct qp_err *err)
{
	const struct qp_qspec *s = &e->spec;
	int64_t rows = e->shape[0], cols = e->shape[1];
	int rc;
	if ((rc = qp_qspec_check(s, rows, cols, err)))
		return qp_err_prefix(err, "entry '%s'", e->name), rc;
	int bits = s->bits; /* qp_qspec_check holds the fixed-width methods to theirs */
	int64_t row_bytes = (cols * bits + 7) / 8;
	if ((rc = check_part(m, e, P_CODES, true, QP_ST_U8, 2, rows, row_bytes, err)))
		return rc;
	int64_t srows = 0, scols = 0;
	bool scales = true, zeros = false, lut = false, amax = false, gidx = false;
	int sdt = s->scale_f16 ? QP_ST_F16 : QP_ST_F32;
	switch (s->method) {
	case QP_QM_RTN:
	case QP_QM_BINARY:
	case QP_QM_TERNARY:
	case QP_QM_FP8:
		srows = s->gran == QP_QG_TENSOR ? 1 : rows;
		scols = s->gran == QP_QG_GROUP ? cols / s->group : 1;
		zeros = s->method == QP_QM_RTN;
		gidx = zeros && part(m, e, P_GIDX) != NULL;
		if (s->method == QP_QM_FP8)
			sdt = QP_ST_F32;
		break;
	case QP_QM_NF4:
		amax = s->double_quant;
		scales = !amax;
		srows = rows * cols / s->group;
		sdt = QP_ST_F32;
		break;
	case QP_QM_KMEANS:
		scales = s->channel_scale;
		srows = rows, scols = 1;
		sdt = QP_ST_F32;
		lut = true;
		break;
	}
	int64_t n_blocks = s->method == QP_QM_NF4 ? rows * cols / s->group : 0;
	int64_t lut_rows = s->method == QP_QM_KMEANS ? (s->gran == QP_QG_GROUP ? rows / s->group : 1) : 0;
	int sndim = s->method == QP_QM_NF4 ? 1 : 2;
	if ((rc = check_part(m, e, P_SCALES, scales, sdt, sndim, srows, scols, err)) ||
	    (rc = check_part(m, e, P_ZEROS, zeros, QP_ST_U8, 2, srows, scols, err)) ||
	    (rc = check_part(m, e, P_GIDX, gidx, QP_ST_I32, 1, cols, 0, err)) ||
	    (rc = check_part(m, e, P_LUT, lut, QP_ST_F32, 2, lut_rows, (int64_t)1 << bits, err)) ||
	    (rc = check_part(m, e, P_AMAX_CODES, amax, QP_ST_U8, 1, n_blocks, 0, err)) ||
	    (rc = check_part(m, e, P_AMAX_SCALES, amax, QP_ST_F32, 1, (n_blocks + 255) / 256, 0, err)) ||
	    (rc = check_part(m, e, P_AMAX_OFFSET, amax, QP_ST_F32, 1, 1, 0, err)))
		return rc;
	/* values dequantize indexes with */
	if (zeros) {
		const struct qp_st_tensor *z = part(m, e, P_ZEROS);
		const uint8_t *zd = z->data;
		for (size_t i = 0; i < z->nbytes; i++)
			if (zd[i] >> s->bits)
				return qp_err_set(err, QP_ECORRUPT, "%s: tensor '%s' at offset %llu: zero point %u exceeds %d bits",
				                  z->file, z->name, (unsigned long long)(z->file_offset + i), zd[i], s->bits);
	}
	if (gidx) {
		const struct qp_st_tensor *g = part(m, e, P_GIDX);
		for (int64_t c = 0; c < cols; c++) {
			int32_t v;
			memcpy(&v, (const uint8_t *)g->data + 4 * c, 4);
			if (v < 0 || v >= scols)
				return qp_err_set(err, QP_ECORRUPT, "%s: tensor '%s' at offset %llu: group %d of column %lld is outside [0, %lld)",
				                  g->file, g->name, (unsigned long long)(g->file_offset + 4 * (uint64_t)c), v,
				                  (long long)c, (long long)scols);
		}
	}
	if (s->method == QP_QM_TERNARY) {
		const struct qp_st_tensor *c = part(m, e, P_CODES);
		const uint8_t *cd = c->data;
		for (int64_t r = 0; r < rows; r++)
			for (int64_t j = 0; j < cols; j++) {
				size_t off = (size_t)(r * row_bytes) + (size_t)(j / 4);
				if (((cd[off] >> (2 * (j % 4))) & 3) == 3)
					return qp_err_set(err, QP_ECORRUPT, "%s: tensor '%s' at offset %llu: ternary code 3 at (%lld, %lld)",
					                  c->file, c->name, (unsigned long long)(c->file_offset + off), (long long)r,
					                  (long long)j);
			}
	}
	e->data = part(m, e, P_CODES);
	return 0;
}

/* Read "qpipe.tensor.<name>" into e (kind, shape, type or spec). */
static int parse_entry_meta(struct qp_ql_model *m, struct qp_ql_entry *e, const char *file, struct qp_err *err)
{
	char key[1024];
	snprintf(key, sizeof(key), META_PREFIX "%s", e->name);
	const char *text = qp_st_metadata(m->st, key);
	if (!text)
		return qp_err_set(err, QP_ECORRUPT, "%s: entry '%s' has no metadata key '%s'", file, e->name, key);
	json_error_t je;
	json_t *o = json_loads(text, 0, &je);
	int rc = 0;
	json_t *shape = o ? json_object_get(o, "shape") : NULL;
	json_t *type = o ? json_object_get(o, "type") : NULL, *method = o ? json_object_get(o, "method") : NULL;
	if (!json_is_object(o) || !json_is_array(shape) || json_array_size(shape) != 2 ||
	    !json_is_integer(json_array_get(shape, 0)) || !json_is_integer(json_array_get(shape, 1)) ||
	    (json_is_string(type) == json_is_string(method))) {
		rc = qp_err_set(err, QP_ECORRUPT,
		                "%s: metadata '%s' is not {\"shape\": [rows, cols], \"type\" or \"method\": \"...\"}", file, key);
		goto out;
	}
	e->ndim = 2;
	e->shape[0] = json_integer_value(json_array_get(shape, 0));
	e->shape[1] = json_integer_value(json_array_get(shape, 1));
	if (e->shape[0] < 1 || e->shape[1] < 1 || e->shape[0] > (INT64_C(1) << 40) / e->shape[1]) {
		rc = qp_err_set(err, QP_ECORRUPT, "%s: metadata '%s': shape [%lld, %lld] is out of range", file, key,
		                (long long)e->shape[0], (long long)e->shape[1]);
		goto out;
	}
	e->nelem = e->shape[0] * e->shape[1];
	if (json_is_string(type)) {
		int t = qp_type_from_name(json_string_value(type));
		const struct qp_type_traits *tr = t >= 0 ? qp_type_traits(t) : NULL;
		size_t row;
		if (!tr || !tr->quantized || !qp_kernels_get((enum qp_type)t) ||
		    qp_type_row_size(t, e->shape[1], &row)) {
			rc = qp_err_set(err, QP_ECORRUPT, "%s: metadata '%s': type '%s' is not a block type of rows of %lld",
			                file, key, json_string_value(type), (long long)e->shape[1]);
			goto out;
		}
		e->kind = QP_QL_GGUF;
		e->type = (enum qp_type)t;
		char bname[1024];
		snprintf(bname, sizeof(bname), "%s%s", e->name, blocks_suffix);
		const struct qp_st_tensor *b = qp_st_find(m->st, bname);
		if (!b || b->dtype != QP_ST_U8 || b->ndim != 2 || b->shape[0] != e->shape[0] ||
		    b->shape[1] != (int64_t)row) {
			rc = qp_err_set(err, QP_ECORRUPT, "%s: entry '%s': '%s' must be U8 [%lld, %zu] for %s", file, e->name,
			                bname, (long long)e->shape[0], row, tr->name);
			goto out;
		}
		e->data = b;
		e->nbytes = b->nbytes;
	} else {
		e->kind = QP_QL_METHOD;
		e->type = (enum qp_type)-1;
		if ((rc = qp_qspec_parse(&e->spec, json_string_value(method), err))) {
			qp_err_prefix(err, "%s: metadata '%s'", file, key);
			goto out;
		}
		if ((rc = check_method(m, e, err)))
			goto out;
		for (int p = 0; p < P_COUNT; p++) {
			const struct qp_st_tensor *t = part(m, e, (enum part)p);
			e->nbytes += t ? t->nbytes : 0;
		}
	}
out:
	json_decref(o);
	return rc;
}

static int build(struct qp_ql_model *m, const char *file, struct qp_err *err)
{
	const char *v = qp_st_metadata(m->st, "qpipe.layout");
	if (!v)
		return qp_err_set(err, QP_EINVAL, "%s: not a qpipe quantized layout (no 'qpipe.layout' metadata)", file);
	if (strcmp(v, LAYOUT_VERSION) != 0)
		return qp_err_set(err, QP_EINVAL, "%s: qpipe.layout '%s' is not supported (this qpipe reads %s)", file, v,
		                  LAYOUT_VERSION);
	size_t nt = qp_st_count(m->st);
	m->e = calloc(nt ? nt : 1, sizeof(*m->e));
	if (!m->e)
		return qp_err_nomem(err);
	/* entries: plain tensors and the stems of .qcodes / .qblocks */
	for (size_t i = 0; i < nt; i++) {
		const struct qp_st_tensor *t = qp_st_at(m->st, i);
		size_t stem;
		int p = suffix_of(t->name, &stem);
		if (p >= 0 && p != P_CODES && p != P_COUNT)
			continue;
		struct qp_ql_entry *e = &m->e[m->n];
		if (!(e->name = p < 0 ? strdup(t->name) : strndup(t->name, stem)))
			return qp_err_nomem(err);
		m->n++;
		if (p < 0) {
			if (t->dtype != QP_ST_F32 && t->dtype != QP_ST_F16 && t->dtype != QP_ST_BF16)
				return qp_err_set(err, QP_ECORRUPT, "%s: tensor '%s' at offset %llu: dtype %s is not a float type",
				                  t->file, t->name, (unsigned long long)t->file_offset, qp_st_dtype_name(t->dtype));
			e->kind = QP_QL_FLOAT;
			e->type = t->dtype == QP_ST_F32 ? QP_TYPE_F32 : t->dtype == QP_ST_F16 ? QP_TYPE_F16 : QP_TYPE_BF16;
			e->ndim = t->ndim;
			memcpy(e->shape, t->shape, sizeof(e->shape));
			e->nelem = t->nelem;
			e->data = t;
			e->nbytes = t->nbytes;
		} else {
			int rc = parse_entry_meta(m, e, t->file, err);
			if (rc)
				return rc;
		}
	}
	qsort(m->e, m->n, sizeof(*m->e), cmp_entry);
	for (size_t i = 1; i < m->n; i++)
		if (!strcmp(m->e[i - 1].name, m->e[i].name))
			return qp_err_set(err, QP_ECORRUPT, "%s: tensor '%s' is stored twice (plain and quantized)", file,
			                  m->e[i].name);
	/* every part belongs to an entry */
	for (size_t i = 0; i < nt; i++) {
		const struct qp_st_tensor *t = qp_st_at(m->st, i);
		size_t stem;
		int p = suffix_of(t->name, &stem);
		if (p < 0 || p == P_CODES || p == P_COUNT)
			continue;
		char *owner = strndup(t->name, stem);
		if (!owner)
			return qp_err_nomem(err);
		const struct qp_ql_entry *e = qp_ql_find(m, owner);
		free(owner);
		if (!e || e->kind != QP_QL_METHOD)
			return qp_err_set(err, QP_ECORRUPT, "%s: tensor '%s' belongs to no quantized entry", t->file, t->name);
	}
	return 0;
}

static int finish(struct qp_ql_model **out, struct qp_ql_model *m, const char *file, int rc, struct qp_err *err)
{
	if (!rc)
		rc = build(m, file, err);
	if (rc) {
		qp_ql_close(m);
		return rc;
	}
	*out = m;
	return 0;
}

int qp_ql_open(struct qp_ql_model **out, const char *path, struct qp_err *err)
{
	*out = NULL;
	struct qp_ql_model *m = calloc(1, sizeof(*m));
	if (!m)
		return qp_err_nomem(err);
	return finish(out, m, path, qp_st_open(&m->st, path, err), err);
}

int qp_ql_parse(struct qp_ql_model **out, const void *data, size_t len, const char *name, struct qp_err *err)
{
	*out = NULL;
	struct qp_ql_model *m = calloc(1, sizeof(*m));
	if (!m)
		return qp_err_nomem(err);
	return finish(out, m, name, qp_st_parse(&m->st, data, len, name, err), err);
}

int qp_ql_probe(const char *path, int *is_layout, struct qp_err *err)
{
	struct qp_st_model *st;
	int rc = qp_st_open(&st, path, err);
	if (rc)
		return rc;
	*is_layout = qp_st_metadata(st, "qpipe.layout") != NULL;
	qp_st_close(st);
	return 0;
}

/* A copy of a part's bytes (aligned, owned by the caller); NULL part -> NULL. */
static int copy_part(const struct qp_st_tensor *t, void **out, struct qp_err *err)
{
	*out = NULL;
	if (!t)
		return 0;
	if (!(*out = malloc(t->nbytes ? t->nbytes : 1)))
		return qp_err_nomem(err);
	memcpy(*out, t->data, t->nbytes);
	return 0;
}

int qp_ql_qtensor(const struct qp_ql_model *m, const struct qp_ql_entry *e, struct qp_qtensor *q,
                  struct qp_err *err)
{
	memset(q, 0, sizeof(*q));
	if (e->kind != QP_QL_METHOD)
		return qp_err_set(err, QP_EINVAL, "entry '%s' is not quantized by a method", e->name);
	const struct qp_st_tensor *codes = part(m, e, P_CODES), *scales = part(m, e, P_SCALES);
	const struct qp_st_tensor *amax_s = part(m, e, P_AMAX_SCALES), *lut = part(m, e, P_LUT);
	q->rows = e->shape[0];
	q->cols = e->shape[1];
	q->row_bytes = (size_t)codes->shape[1];
	q->codes_bytes = codes->nbytes;
	void *sc = NULL, *off = NULL;
	int rc;
	if ((rc = copy_part(codes, (void **)&q->codes, err)) || (rc = copy_part(scales, &sc, err)) ||
	    (rc = copy_part(part(m, e, P_ZEROS), (void **)&q->zeros, err)) ||
	    (rc = copy_part(part(m, e, P_GIDX), (void **)&q->g_idx, err)) ||
	    (rc = copy_part(lut, (void **)&q->lut, err)) ||
	    (rc = copy_part(part(m, e, P_AMAX_CODES), (void **)&q->absmax_codes, err)) ||
	    (rc = copy_part(amax_s, (void **)&q->absmax_scales, err)) ||
	    (rc = copy_part(part(m, e, P_AMAX_OFFSET), &off, err)))
		goto fail;
	if (scales) {
		q->scale_rows = scales->shape[0]; /* NF4: one per block, as a column */
		q->scale_cols = scales->ndim > 1 ? scales->shape[1] : 1;
		if (scales->dtype == QP_ST_F16) {
			q->scales = malloc((size_t)scales->nelem * sizeof(float));
			if (!q->scales) {
				rc = qp_err_nomem(err);
				goto fail;
			}
			qp_kernels_to_f32(QP_TYPE_F16, sc, q->scales, scales->nelem);
			free(sc);
		} else {
			q->scales = sc;
		}
		sc = NULL;
	} else if (e->spec.method == QP_QM_NF4) {
		q->scale_rows = e->nelem / e->spec.group;
		q->scale_cols = 1;
	}
	if (e->spec.method == QP_QM_NF4) {
		q->n_blocks = e->nelem / e->spec.group;
		q->n_absmax_scales = amax_s ? amax_s->nelem : 0;
	}
	if (lut)
		q->lut_rows = lut->shape[0];
	if (off) {
		memcpy(&q->absmax_offset, off, sizeof(float));
		free(off);
	}
	return 0;
fail:
	free(sc);
	free(off);
	qp_qtensor_free(q);
	return rc;
}

int qp_ql_dequantize(const struct qp_ql_model *m, const struct qp_ql_entry *e, float *out, int threads,
                     struct qp_err *err)
{
	if (e->kind == QP_QL_METHOD) {
		struct qp_qtensor q;
		int rc = qp_ql_qtensor(m, e, &q, err);
		if (!rc)
			rc = qp_qmethod_dequantize(&e->spec, &q, out, err);
		qp_qtensor_free(&q);
		return rc ? qp_err_prefix(err, "entry '%s'", e->name), rc : 0;
	}
	/* a copy, because a tensor after an odd-sized one is not aligned */
	const struct qp_st_tensor *t = e->data;
	void *buf;
	int rc = copy_part(t, &buf, err);
	if (rc)
		return rc;
	int64_t cols = e->ndim ? e->shape[e->ndim - 1] : 1;
	rc = qp_convert_rows(QP_TYPE_F32, out, e->type, buf, cols ? e->nelem / cols : 0, cols, threads, err);
	free(buf);
	return rc ? qp_err_prefix(err, "entry '%s'", e->name), rc : 0;
}

/* RTN sym g32 f16 rows as q8_0 / q5_0 / q4_0 blocks. */
static void pack_rtn32(const struct qp_qtensor *q, int bits, const uint16_t *d16, uint8_t *out, size_t row_size)
{
	for (int64_t r = 0; r < q->rows; r++) {
		const uint8_t *codes = q->codes + (size_t)r * q->row_bytes;
		uint8_t *dst = out + (size_t)r * row_size;
		for (int64_t g = 0; g < q->cols / 32; g++) {
			uint16_t d = d16[r * q->scale_cols + g];
			unsigned c[32];
			for (int j = 0; j < 32; j++)
				c[j] = qp_qcode_get(codes, g * 32 + j, bits);
			if (bits == 8) {
				struct qp_block_q8_0 *b = (struct qp_block_q8_0 *)dst + g;
				b->d = d;
				for (int j = 0; j < 32; j++)
					b->qs[j] = (int8_t)((int)c[j] - 128);
			} else if (bits == 4) {
				struct qp_block_q4_0 *b = (struct qp_block_q4_0 *)dst + g;
				b->d = d;
				for (int j = 0; j < 16; j++)
					b->qs[j] = (uint8_t)(c[j] | c[j + 16] << 4);
			} else {
				struct qp_block_q5_0 *b = (struct qp_block_q5_0 *)dst + g;
				uint32_t qh = 0;
				b->d = d;
				for (int j = 0; j < 16; j++) {
					b->qs[j] = (uint8_t)((c[j] & 15) | (c[j + 16] & 15) << 4);
					qh |= (uint32_t)(c[j] >> 4) << j | (uint32_t)(c[j + 16] >> 4) << (j + 16);
				}
				for (int k = 0; k < 4; k++)
					b->qh[k] = (uint8_t)(qh >> (8 * k));
			}
		}
	}
}

int qp_ql_to_gguf(const struct qp_ql_model *m, const struct qp_ql_entry *e, enum qp_type *type, void **bytes,
                  size_t *nbytes, int threads, struct qp_err *err)
{
	*bytes = NULL;
	if (e->kind != QP_QL_METHOD) {
		*type = e->type;
		*nbytes = e->data->nbytes;
		return copy_part(e->data, bytes, err);
	}
	const struct qp_qspec *s = &e->spec;
	char text[256];
	qp_qspec_format(s, text, sizeof(text));
	bool rtn32 = s->method == QP_QM_RTN && s->sym && s->scale_f16 && s->gran == QP_QG_GROUP && s->group == 32 &&
	             (s->bits == 8 || s->bits == 5 || s->bits == 4) && !part(m, e, P_GIDX);
	bool tq2 = s->method == QP_QM_TERNARY && s->scale_f16 && s->gran == QP_QG_GROUP && s->group == 256;
	if (!rtn32 && !tq2)
		return qp_err_set(err, QP_ENOTFOUND, "tensor '%s': %s has no GGUF type with the same values", e->name, text);
	*type = rtn32 ? (s->bits == 8 ? QP_TYPE_Q8_0 : s->bits == 5 ? QP_TYPE_Q5_0 : QP_TYPE_Q4_0) : QP_TYPE_TQ2_0;
	int64_t rows = e->shape[0], cols = e->shape[1];
	size_t row_size;
	if (qp_type_row_size(*type, cols, &row_size))
		return qp_err_set(err, QP_ENOTFOUND, "tensor '%s': rows of %lld do not fit %s", e->name, (long long)cols,
		                  qp_type_traits(*type)->name);
	*nbytes = row_size * (size_t)rows;
	float *want = malloc((size_t)e->nelem * sizeof(float)), *got = malloc((size_t)e->nelem * sizeof(float));
	uint8_t *out = malloc(*nbytes ? *nbytes : 1);
	struct qp_qtensor q = {0};
	int rc = want && got && out ? 0 : qp_err_nomem(err);
	if (!rc)
		rc = qp_ql_qtensor(m, e, &q, err);
	if (!rc)
		rc = qp_qmethod_dequantize(s, &q, want, err);
	if (!rc && rtn32) {
		int64_t ns = q.scale_rows * q.scale_cols;
		uint16_t *d16 = malloc((size_t)ns * sizeof(uint16_t));
		if (!d16)
			rc = qp_err_nomem(err);
		else {
			qp_kernels_get(QP_TYPE_F16)->quantize_row(q.scales, d16, ns);
			pack_rtn32(&q, s->bits, d16, out, row_size);
			free(d16);
		}
	} else if (!rc) {
		/* ternary values s * t: the reference quantizer takes d = max |x| = s */
		rc = qp_convert_rows(*type, out, QP_TYPE_F32, want, rows, cols, threads, err);
	}
	if (!rc)
		rc = qp_convert_rows(QP_TYPE_F32, got, *type, out, rows, cols, threads, err);
	for (int64_t i = 0; !rc && i < e->nelem; i++)
		if (!(got[i] == want[i]))
			rc = qp_err_set(err, QP_ENOTFOUND, "tensor '%s': %s as %s differs at element (%lld, %lld): %g != %g",
			                e->name, text, qp_type_traits(*type)->name, (long long)(i / cols), (long long)(i % cols),
			                (double)got[i], (double)want[i]);
	qp_qtensor_free(&q);
	free(want);
	free(got);
	if (rc) {
		free(out);
		return rc;
	}
	*bytes = out;
	return 0;
}

/* ---- writing ---- */

struct qp_ql_writer {
	struct qp_st_writer *st;
	void **owned;   /* names and converted scales, freed with the writer */
	size_t n_owned, cap_owned;
};

static int own(struct qp_ql_writer *w, void *p, struct qp_err *err)
{
	if (!p)
		return qp_err_nomem(err);
	if (w->n_owned == w->cap_owned) {
		size_t cap = w->cap_owned ? 2 * w->cap_owned : 64;
		void **o = realloc(w->owned, cap * sizeof(*o));
		if (!o) {
			free(p);
			return qp_err_nomem(err);
		}
		w->owned = o;
		w->cap_owned = cap;
	}
	w->owned[w->n_owned++] = p;
	return 0;
}

int qp_ql_writer_new(struct qp_ql_writer **out, struct qp_err *err)
{
	*out = NULL;
	struct qp_ql_writer *w = calloc(1, sizeof(*w));
	if (!w)
		return qp_err_nomem(err);
	int rc = qp_st_writer_new(&w->st, err);
	if (!rc)
		rc = qp_st_writer_set_metadata(w->st, "qpipe.layout", LAYOUT_VERSION, err);
	if (rc) {
		qp_ql_writer_free(w);
		return rc;
	}
	*out = w;
	return 0;
}

void qp_ql_writer_free(struct qp_ql_writer *w)
{
	if (!w)
		return;
	qp_st_writer_free(w->st);
	for (size_t i = 0; i < w->n_owned; i++)
		free(w->owned[i]);
	free(w->owned);
	free(w);
}

int qp_ql_add_float(struct qp_ql_writer *w, const char *name, enum qp_st_dtype dtype, int ndim,
                    const int64_t *shape, const void *data, size_t nbytes, struct qp_err *err)
{
	size_t stem;
	if (suffix_of(name, &stem) >= 0)
		return qp_err_set(err, QP_EINVAL, "tensor '%s': its name ends in a suffix the layout reserves", name);
	if (dtype != QP_ST_F32 && dtype != QP_ST_F16 && dtype != QP_ST_BF16)
		return qp_err_set(err, QP_EINVAL, "tensor '%s': dtype %s is not a float type", name, qp_st_dtype_name(dtype));
	return qp_st_writer_add(w->st, name, dtype, ndim, shape, data, nbytes, err);
}

static int add_meta(struct qp_ql_writer *w, const char *name, const char *field, const char *value, int64_t rows,
                    int64_t cols, struct qp_err *err)
{
	json_t *o = json_pack("{s:[I,I],s:s}", "shape", (json_int_t)rows, (json_int_t)cols, field, value);
	char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	char *key = malloc(strlen(name) + sizeof(META_PREFIX));
	int rc = 0;
	if (!text || !key)
		rc = qp_err_nomem(err);
	else {
		sprintf(key, META_PREFIX "%s", name);
		rc = qp_st_writer_set_metadata(w->st, key, text, err);
	}
	free(text);
	free(key);
	return rc;
}

/* name + suffix, kept alive by the writer. */
static int part_name(struct qp_ql_writer *w, const char *name, const char *suffix, char **out, struct qp_err *err)
{
	size_t n = strlen(name) + strlen(suffix) + 1;
	*out = malloc(n);
	if (*out)
		snprintf(*out, n, "%s%s", name, suffix);
	return own(w, *out, err);
}

int qp_ql_add_gguf(struct qp_ql_writer *w, const char *name, enum qp_type type, int64_t rows, int64_t cols,
                   const void *data, size_t nbytes, struct qp_err *err)
{
	size_t row;
	const struct qp_type_traits *tr = qp_type_traits(type);
	if (!tr || !tr->quantized || qp_type_row_size(type, cols, &row) || row * (size_t)rows != nbytes)
		return qp_err_set(err, QP_EINVAL, "tensor '%s': %zu bytes are not [%lld, %lld] of a block type", name, nbytes,
		                  (long long)rows, (long long)cols);
	char *pn;
	int rc = part_name(w, name, blocks_suffix, &pn, err);
	int64_t shape[2] = {rows, (int64_t)row};
	if (!rc)
		rc = qp_st_writer_add(w->st, pn, QP_ST_U8, 2, shape, data, nbytes, err);
	if (!rc)
		rc = add_meta(w, name, "type", tr->name, rows, cols, err);
	return rc;
}

static int add_part(struct qp_ql_writer *w, const char *name, enum part p, enum qp_st_dtype dt, int ndim,
                    int64_t d0, int64_t d1, const void *data, struct qp_err *err)
{
	if (!data)
		return 0;
	char *pn;
	int rc = part_name(w, name, part_suffix[p], &pn, err);
	int64_t shape[2] = {d0, d1};
	size_t n = (size_t)d0 * (size_t)(ndim > 1 ? d1 : 1);
	return rc ? rc : qp_st_writer_add(w->st, pn, dt, ndim, shape, data, n * qp_st_dtype_size(dt), err);
}

int qp_ql_add_method(struct qp_ql_writer *w, const char *name, const struct qp_qspec *spec,
                     const struct qp_qtensor *q, struct qp_err *err)
{
	char text[256];
	qp_qspec_format(spec, text, sizeof(text));
	const void *scales = q->scales;
	enum qp_st_dtype sdt = QP_ST_F32;
	int64_t ns = q->scale_rows * q->scale_cols;
	bool f16 = spec->scale_f16 && (spec->method == QP_QM_RTN || spec->method == QP_QM_BINARY ||
	                               spec->method == QP_QM_TERNARY);
	int rc;
	if (f16 && q->scales) {
		uint16_t *h = malloc((size_t)(ns ? ns : 1) * sizeof(uint16_t));
		if ((rc = own(w, h, err)))
			return rc;
		qp_kernels_get(QP_TYPE_F16)->quantize_row(q->scales, h, ns);
		scales = h;
		sdt = QP_ST_F16;
	}
	bool nf4 = spec->method == QP_QM_NF4;
	if ((rc = add_part(w, name, P_CODES, QP_ST_U8, 2, q->rows, (int64_t)q->row_bytes, q->codes, err)) ||
	    (rc = add_part(w, name, P_SCALES, sdt, nf4 ? 1 : 2, nf4 ? ns : q->scale_rows, q->scale_cols, scales, err)) ||
	    (rc = add_part(w, name, P_ZEROS, QP_ST_U8, 2, q->scale_rows, q->scale_cols, q->zeros, err)) ||
	    (rc = add_part(w, name, P_GIDX, QP_ST_I32, 1, q->cols, 0, q->g_idx, err)) ||
	    (rc = add_part(w, name, P_LUT, QP_ST_F32, 2, q->lut_rows, (int64_t)1 << spec->bits, q->lut, err)) ||
	    (rc = add_part(w, name, P_AMAX_CODES, QP_ST_U8, 1, q->n_blocks, 0, q->absmax_codes, err)) ||
	    (rc = add_part(w, name, P_AMAX_SCALES, QP_ST_F32, 1, q->n_absmax_scales, 0, q->absmax_scales, err)))
		return rc;
	if (q->absmax_codes) {
		float *off = malloc(sizeof(float));
		if ((rc = own(w, off, err)))
			return rc;
		*off = q->absmax_offset;
		if ((rc = add_part(w, name, P_AMAX_OFFSET, QP_ST_F32, 1, 1, 0, off, err)))
			return rc;
	}
	return add_meta(w, name, "method", text, q->rows, q->cols, err);
}

int qp_ql_set_metadata(struct qp_ql_writer *w, const char *key, const char *value, struct qp_err *err)
{
	return qp_st_writer_set_metadata(w->st, key, value, err);
}

int qp_ql_write(struct qp_ql_writer *w, const char *path, struct qp_err *err)
{
	return qp_st_writer_write(w->st, path, err);
}
