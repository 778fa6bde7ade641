/* GGUF reader and writer (versions 2 and 3; the layouts are the same).
 *
 * Layout, all little-endian:
 *
 *   "GGUF" u32 version, u64 n_tensors, u64 n_kv
 *   n_kv times:      string key, u32 value type, value
 *   n_tensors times: string name, u32 n_dims, u64 ne[n_dims], u32 type,
 *                    u64 offset (relative to the data section)
 *   zero padding up to a multiple of the alignment (only when n_tensors > 0)
 *   the data section: each tensor at its offset, padded to the alignment
 *
 * A string is u64 length + bytes (no NUL). A value is one scalar of its
 * type (bool is one byte), a string, or an array: u32 element type, u64
 * count, then the elements (arrays of arrays are refused, as llama.cpp
 * does). The alignment is general.alignment (u32, a power of two) or 32.
 *
 * The reader maps the file and trusts nothing in it. It follows llama.cpp's
 * gguf.cpp: counts are checked against the bytes left before anything is
 * allocated, strings and arrays have caps, n_dims <= 4, every ne >= 0, the
 * element count and byte size must not overflow, the tensor type must be a
 * known GGUF type whose block size divides the row, tensor names are at
 * most 63 bytes, offsets are aligned and the data lies within the file; keys
 * and tensor names must be unique. It also refuses tensors whose data
 * overlap. Messages name the file, the key or tensor, and the byte offset
 * of the field at fault. */
#include "formats/gguf.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/os.h"
#include "formats/check.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "gguf.c hands out raw little-endian arrays: it needs a little-endian host"
#endif

#define GGUF_MAX_STRING ((uint64_t)1 << 30)  /* llama.cpp's cap, bytes */
#define GGUF_MAX_ARRAY ((uint64_t)1 << 30)   /* llama.cpp's cap, elements */
#define GGUF_MAX_KEY 65535                   /* the spec's cap on key bytes */
#define GGUF_MAX_NAME 63                     /* llama.cpp's GGML_MAX_NAME - 1 */
#define GGUF_KEY_ALIGNMENT "general.alignment"

/* Smallest encodings, to bound counts by the bytes left: a key/value is a
 * length, one key byte, a type and a one-byte value; a tensor info is a
 * length, one name byte, n_dims, type and offset. */
#define GGUF_MIN_KV 14
#define GGUF_MIN_TENSOR 25

static const size_t vtype_size[QP_GGUF_VTYPE_COUNT] = {
	[QP_GGUF_UINT8] = 1, [QP_GGUF_INT8] = 1, [QP_GGUF_UINT16] = 2, [QP_GGUF_INT16] = 2,
	[QP_GGUF_UINT32] = 4, [QP_GGUF_INT32] = 4, [QP_GGUF_FLOAT32] = 4, [QP_GGUF_BOOL] = 1,
	[QP_GGUF_STRING] = 0, [QP_GGUF_ARRAY] = 0, [QP_GGUF_UINT64] = 8, [QP_GGUF_INT64] = 8,
	[QP_GGUF_FLOAT64] = 8,
};

static const char *const vtype_name[QP_GGUF_VTYPE_COUNT] = {
	"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "str", "arr", "u64", "i64", "f64",
};

/* ---- reader ---- */

struct qp_gguf_file {
	char *name;                 /* names the file in messages */
	struct qp_map map;          /* zeroed when the bytes are borrowed */
	const uint8_t *p;
	size_t size;                /* bytes */
	uint32_t version;
	uint64_t alignment;         /* bytes */
	uint64_t data_offset;       /* absolute offset of the data section */
	struct qp_gguf_kv *kv;
	uint64_t *kv_off;           /* file offset of each key/value pair */
	size_t n_kv;
	struct qp_gguf_tensor *t;
	uint64_t *t_off;            /* file offset of each tensor info */
	size_t n_t;
	struct qp_name_ref *kv_by_name, *t_by_name;
};

/* The parse state: a cursor and what is being read, for messages. */
struct rd {
	struct qp_gguf_file *f;
	size_t off;          /* next byte to read */
	struct qp_err *err;
	char subj[160];      /* "key 'x'", "tensor #3" ...; empty for the header */
};

__attribute__((format(printf, 3, 4)))
static int bad(struct rd *r, uint64_t off, const char *fmt, ...)
{
	char what[QP_ERR_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	return qp_err_set(r->err, QP_ECORRUPT, "%s: %s%sat offset %" PRIu64 ": %s", r->f->name,
	                  r->subj, r->subj[0] ? " " : "", off, what);
}

static void subject(struct rd *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void subject(struct rd *r, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->subj, sizeof(r->subj), fmt, ap);
	va_end(ap);
}

/* Read an n-byte little-endian integer ("what" names it in the message). */
static int rd_int(struct rd *r, size_t n, uint64_t *out, const char *what)
{
	*out = 0;
	if (n > r->f->size - r->off)
		return bad(r, r->off, "%s runs past end of file (%zu bytes)", what, r->f->size);
	*out = qp_le(r->f->p + r->off, n);
	r->off += n;
	return 0;
}

static int rd_str(struct rd *r, struct qp_gguf_str *out, uint64_t max, const char *what)
{
	size_t at = r->off;
	uint64_t len;
	int rc = rd_int(r, 8, &len, what);
	if (rc)
		return rc;
	if (len > max)
		return bad(r, at, "%s of %" PRIu64 " bytes exceeds the limit of %" PRIu64 " bytes", what,
		           len, max);
	if (len > r->f->size - r->off)
		return bad(r, at, "%s of %" PRIu64 " bytes runs past end of file (%zu bytes)", what, len,
		           r->f->size);
	out->len = len;
	out->data = (const char *)r->f->p + r->off;
	r->off += (size_t)len;
	return 0;
}

/* A key or tensor name as a C string: non-empty, no NUL inside. */
static int rd_name(struct rd *r, char **out, uint64_t max, const char *what)
{
	size_t at = r->off;
	struct qp_gguf_str s;
	int rc = rd_str(r, &s, max, what);
	if (rc)
		return rc;
	if (s.len == 0)
		return bad(r, at, "%s is empty", what);
	if (memchr(s.data, '\0', (size_t)s.len))
		return bad(r, at, "%s contains a NUL byte", what);
	char *c = malloc((size_t)s.len + 1);
	if (!c)
		return qp_err_nomem(r->err);
	memcpy(c, s.data, (size_t)s.len);
	c[s.len] = '\0';
	*out = c;
	return 0;
}

static void widen(struct qp_gguf_kv *kv, enum qp_gguf_vtype t, const uint8_t *p)
{
	uint64_t u = qp_le(p, vtype_size[t]);
	switch (t) {
	case QP_GGUF_UINT8: case QP_GGUF_UINT16: case QP_GGUF_UINT32: case QP_GGUF_UINT64:
		kv->v.u64 = u;
		break;
	case QP_GGUF_INT8: kv->v.i64 = (int8_t)u; break;
	case QP_GGUF_INT16: kv->v.i64 = (int16_t)u; break;
	case QP_GGUF_INT32: kv->v.i64 = (int32_t)u; break;
	case QP_GGUF_INT64: kv->v.i64 = (int64_t)u; break;
	case QP_GGUF_FLOAT32: {
		uint32_t b = (uint32_t)u;
		float f;
		memcpy(&f, &b, sizeof(f));
		kv->v.f64 = f;
		break;
	}
	case QP_GGUF_FLOAT64: memcpy(&kv->v.f64, &u, sizeof(double)); break;
	case QP_GGUF_BOOL: kv->v.b = u != 0; break;
	default: break;
	}
}

static int rd_kv(struct rd *r, struct qp_gguf_kv *kv)
{
	char *key = NULL;
	int rc = rd_name(r, &key, GGUF_MAX_KEY, "key");
	if (rc)
		return rc;
	kv->key = key;
	subject(r, "key '%.100s'", key);

	uint64_t t;
	size_t t_at = r->off;
	if ((rc = rd_int(r, 4, &t, "value type")))
		return rc;
	if (t >= QP_GGUF_VTYPE_COUNT)
		return bad(r, t_at, "invalid value type %" PRIu64, t);
	kv->type = (enum qp_gguf_vtype)t;
	if (t == QP_GGUF_STRING)
		return rd_str(r, &kv->v.str, GGUF_MAX_STRING, "string");
	if (t != QP_GGUF_ARRAY) {
		size_t n = vtype_size[t];
		if (n > r->f->size - r->off)
			return bad(r, r->off, "%s value runs past end of file (%zu bytes)", vtype_name[t],
			           r->f->size);
		widen(kv, kv->type, r->f->p + r->off);
		r->off += n;
		return 0;
	}

	uint64_t at_type, n;
	t_at = r->off;
	if ((rc = rd_int(r, 4, &at_type, "array element type")))
		return rc;
	if (at_type >= QP_GGUF_VTYPE_COUNT)
		return bad(r, t_at, "invalid array element type %" PRIu64, at_type);
	if (at_type == QP_GGUF_ARRAY)
		return bad(r, t_at, "arrays of arrays are not supported");
	kv->arr_type = (enum qp_gguf_vtype)at_type;
	size_t n_at = r->off;
	if ((rc = rd_int(r, 8, &n, "array length")))
		return rc;
	if (n > GGUF_MAX_ARRAY)
		return bad(r, n_at, "array of %" PRIu64 " elements exceeds the limit of %" PRIu64, n,
		           GGUF_MAX_ARRAY);
	kv->arr_n = n;
	size_t left = r->f->size - r->off;
	if (at_type != QP_GGUF_STRING) {
		size_t es = vtype_size[at_type];
		if (n > left / es)
			return bad(r, n_at, "array of %" PRIu64 " %s runs past end of file (%zu bytes)", n,
			           vtype_name[at_type], r->f->size);
		kv->arr_data = r->f->p + r->off;
		r->off += (size_t)n * es;
		return 0;
	}
	/* Each string needs at least its 8-byte length: bound n before allocating. */
	if (n > left / 8)
		return bad(r, n_at, "array of %" PRIu64 " strings runs past end of file (%zu bytes)", n,
		           r->f->size);
	struct qp_gguf_str *strs = calloc((size_t)n + 1, sizeof(*strs));
	if (!strs)
		return qp_err_nomem(r->err);
	kv->arr_str = strs;
	for (uint64_t i = 0; i < n; i++) {
		char what[48];
		snprintf(what, sizeof(what), "string [%" PRIu64 "]", i);
		if ((rc = rd_str(r, &strs[i], GGUF_MAX_STRING, what)))
			return rc;
	}
	return 0;
}

static int rd_tensor_info(struct rd *r, size_t i, struct qp_gguf_tensor *t)
{
	subject(r, "tensor #%zu", i);
	char *name = NULL;
	int rc = rd_name(r, &name, GGUF_MAX_STRING, "name");
	if (rc)
		return rc;
	t->name = name;
	size_t at = r->off - strlen(name) - 8;
	if (strlen(name) > GGUF_MAX_NAME)
		return bad(r, at, "name of %zu bytes is longer than %d bytes", strlen(name),
		           GGUF_MAX_NAME);
	subject(r, "tensor '%s'", name);

	uint64_t nd;
	size_t nd_at = r->off;
	if ((rc = rd_int(r, 4, &nd, "dimension count")))
		return rc;
	if (nd > QP_GGUF_MAX_DIMS)
		return bad(r, nd_at, "%" PRIu64 " dimensions, at most %d are supported", nd,
		           QP_GGUF_MAX_DIMS);
	t->ndim = (int)nd;
	int64_t nelem = 1;
	int overflow = 0;
	for (int j = 0; j < QP_GGUF_MAX_DIMS; j++) {
		uint64_t v = 1;
		size_t ne_at = r->off;
		if (j < t->ndim && (rc = rd_int(r, 8, &v, "dimension")))
			return rc;
		int64_t d = (int64_t)v;
		if (d < 0)
			return bad(r, ne_at, "dimension %d is %" PRId64, j, d);
		t->ne[j] = d;
		if (d != 0 && nelem > INT64_MAX / d)
			overflow = 1;
		else
			nelem *= d;
	}
	if (overflow)
		return bad(r, nd_at,
		           "element count of shape (%" PRId64 ", %" PRId64 ", %" PRId64 ", %" PRId64
		           ") overflows",
		           t->ne[0], t->ne[1], t->ne[2], t->ne[3]);
	t->nelem = nelem;

	uint64_t type;
	size_t type_at = r->off;
	if ((rc = rd_int(r, 4, &type, "type")))
		return rc;
	const struct qp_type_traits *tt = type < QP_TYPE_COUNT ? qp_type_traits((int)type) : NULL;
	if (!tt)
		return bad(r, type_at, "type %" PRIu64 " is not a GGUF tensor type", type);
	t->type = (enum qp_type)type;
	if (t->ne[0] % tt->blck != 0)
		return bad(r, type_at,
		           "row of %" PRId64 " elements is not a multiple of the %s block size %" PRId64,
		           t->ne[0], tt->name, tt->blck);
	size_t row;
	int64_t rows = t->ne[0] ? nelem / t->ne[0] : 0;
	if (qp_type_row_size((int)type, t->ne[0], &row) != 0 ||
	    (rows != 0 && row > SIZE_MAX / (uint64_t)rows))
		return bad(r, type_at, "size in bytes of shape (%" PRId64 ", %" PRId64 ", %" PRId64
		           ", %" PRId64 ") of %s overflows", t->ne[0], t->ne[1], t->ne[2], t->ne[3],
		           tt->name);
	t->nbytes = row * (size_t)rows;

	size_t off_at = r->off;
	if ((rc = rd_int(r, 8, &t->offset, "data offset")))
		return rc;
	if (t->offset % r->f->alignment != 0)
		return bad(r, off_at, "data offset %" PRIu64 " is not a multiple of the alignment %" PRIu64,
		           t->offset, r->f->alignment);
	return 0;
}

void qp_gguf_close(struct qp_gguf_file *f)
{
	if (!f)
		return;
	for (size_t i = 0; i < f->n_kv; i++) {
		free((char *)f->kv[i].key);
		free((void *)f->kv[i].arr_str);
	}
	for (size_t i = 0; i < f->n_t; i++)
		free((char *)f->t[i].name);
	free(f->kv);
	free(f->kv_off);
	free(f->t);
	free(f->t_off);
	free(f->kv_by_name);
	free(f->t_by_name);
	qp_os_unmap(&f->map);
	free(f->name);
	free(f);
}

static int check_version(struct rd *r)
{
	uint64_t v;
	int rc = rd_int(r, 4, &v, "version");
	if (rc)
		return rc;
	r->f->version = (uint32_t)v;
	if (v == 0)
		return bad(r, 4, "bad GGUF version 0");
	if ((v & 0xFFFF) == 0)
		return bad(r, 4, "GGUF version 0x%08" PRIx64 " looks byte-swapped: big-endian files are "
		           "not supported", v);
	if (v == 1)
		return bad(r, 4, "GGUF version 1 is no longer supported; convert the file with a current "
		           "llama.cpp");
	if (v > 3)
		return bad(r, 4, "GGUF version %" PRIu64 " is newer than this reader (3)", v);
	return 0;
}

/* Index names for lookup; refuse duplicates. */
static int index_names(struct rd *r, struct qp_name_ref **out, size_t n,
                       const char *(*name_at)(const struct qp_gguf_file *, size_t),
                       const uint64_t *offs, const char *what)
{
	struct qp_name_ref *refs = calloc(n + 1, sizeof(*refs));
	if (!refs)
		return qp_err_nomem(r->err);
	*out = refs;
	for (size_t i = 0; i < n; i++) {
		refs[i].name = name_at(r->f, i);
		refs[i].idx = i;
	}
	size_t dup = qp_names_sort(refs, n);
	if (dup < n) {
		r->subj[0] = '\0';
		return bad(r, offs[refs[dup].idx], "%s '%s' duplicates the one at offset %" PRIu64, what,
		           refs[dup].name, offs[refs[dup - 1].idx]);
	}
	return 0;
}

static const char *kv_name_at(const struct qp_gguf_file *f, size_t i)
{
	return f->kv[i].key;
}

static const char *t_name_at(const struct qp_gguf_file *f, size_t i)
{
	return f->t[i].name;
}

static int check_data(struct rd *r)
{
	struct qp_gguf_file *f = r->f;
	uint64_t avail = f->size - f->data_offset;
	for (size_t i = 0; i < f->n_t; i++) {
		const struct qp_gguf_tensor *t = &f->t[i];
		if (t->offset > avail || t->nbytes > avail - t->offset) {
			if (t->offset > UINT64_MAX - f->data_offset)
				return qp_err_set(r->err, QP_ECORRUPT,
				                  "%s: tensor '%s': data at offset %" PRIu64 " of the data section "
				                  "+ %zu runs past end of file (%zu bytes)",
				                  f->name, t->name, t->offset, t->nbytes, f->size);
			return qp_err_set(r->err, QP_ECORRUPT,
			                  "%s: tensor '%s': data at offset %" PRIu64 " + %zu runs past end of "
			                  "file (%zu bytes)",
			                  f->name, t->name, f->data_offset + t->offset, t->nbytes, f->size);
		}
		f->t[i].data = f->p + f->data_offset + t->offset;
	}
	struct qp_span *s = calloc(f->n_t + 1, sizeof(*s));
	if (!s)
		return qp_err_nomem(r->err);
	size_t n = 0;
	for (size_t i = 0; i < f->n_t; i++) {
		if (f->t[i].nbytes == 0)
			continue;  /* owns no bytes */
		s[n].begin = f->t[i].offset;
		s[n].end = f->t[i].offset + f->t[i].nbytes;
		s[n].idx = i;
		n++;
	}
	size_t i = qp_spans_overlap(s, n);
	int rc = 0;
	if (i < n) {
		const struct qp_gguf_tensor *a = &f->t[s[i - 1].idx], *b = &f->t[s[i].idx];
		rc = qp_err_set(r->err, QP_ECORRUPT,
		                "%s: tensor '%s': data at offset %" PRIu64 " + %zu overlaps tensor '%s' "
		                "at offset %" PRIu64 " + %zu",
		                f->name, b->name, f->data_offset + b->offset, b->nbytes, a->name,
		                f->data_offset + a->offset, a->nbytes);
	}
	free(s);
	return rc;
}

static int parse(struct qp_gguf_file *f, struct qp_err *err)
{
	struct rd r = {.f = f, .off = 0, .err = err};
	int rc;
	if (f->size < 4)
		return bad(&r, 0, "file of %zu bytes is too short for a GGUF header", f->size);
	if (memcmp(f->p, "GGUF", 4) != 0) {
		char m[5] = "????";
		for (size_t i = 0; i < 4; i++)
			m[i] = (f->p[i] >= 0x20 && f->p[i] < 0x7f) ? (char)f->p[i] : '?';
		return bad(&r, 0, "not a GGUF file (magic '%s', expected 'GGUF')", m);
	}
	r.off = 4;
	if ((rc = check_version(&r)))
		return rc;
	uint64_t n_t, n_kv;
	if ((rc = rd_int(&r, 8, &n_t, "tensor count")))
		return rc;
	if ((rc = rd_int(&r, 8, &n_kv, "key/value count")))
		return rc;
	if (n_kv > (f->size - r.off) / GGUF_MIN_KV)
		return bad(&r, 16, "%" PRIu64 " key/value pairs cannot fit in the file (%zu bytes)", n_kv,
		           f->size);
	if (n_t > (f->size - r.off) / GGUF_MIN_TENSOR)
		return bad(&r, 8, "%" PRIu64 " tensors cannot fit in the file (%zu bytes)", n_t, f->size);

	f->kv = calloc((size_t)n_kv + 1, sizeof(*f->kv));
	f->kv_off = calloc((size_t)n_kv + 1, sizeof(*f->kv_off));
	if (!f->kv || !f->kv_off)
		return qp_err_nomem(err);
	for (size_t i = 0; i < n_kv; i++) {
		subject(&r, "key #%zu", i);
		f->kv_off[i] = r.off;
		f->n_kv = i + 1;
		if ((rc = rd_kv(&r, &f->kv[i])))
			return rc;
	}
	if ((rc = index_names(&r, &f->kv_by_name, f->n_kv, kv_name_at, f->kv_off, "key")))
		return rc;

	f->alignment = QP_GGUF_DEFAULT_ALIGNMENT;
	const struct qp_name_ref *ar = qp_names_find(f->kv_by_name, f->n_kv, GGUF_KEY_ALIGNMENT);
	if (ar) {
		const struct qp_gguf_kv *kv = &f->kv[ar->idx];
		subject(&r, "key '%s'", GGUF_KEY_ALIGNMENT);
		if (kv->type != QP_GGUF_UINT32)
			return bad(&r, f->kv_off[ar->idx], "type %s, expected u32", vtype_name[kv->type]);
		uint64_t a = kv->v.u64;
		if (a == 0 || (a & (a - 1)) != 0)
			return bad(&r, f->kv_off[ar->idx], "alignment %" PRIu64 " is not a power of two", a);
		f->alignment = a;
	}

	r.subj[0] = '\0';
	if (n_t > (f->size - r.off) / GGUF_MIN_TENSOR)
		return bad(&r, 8, "%" PRIu64 " tensors cannot fit in the file (%zu bytes)", n_t, f->size);
	f->t = calloc((size_t)n_t + 1, sizeof(*f->t));
	f->t_off = calloc((size_t)n_t + 1, sizeof(*f->t_off));
	if (!f->t || !f->t_off)
		return qp_err_nomem(err);
	for (size_t i = 0; i < n_t; i++) {
		f->t_off[i] = r.off;
		f->n_t = i + 1;
		if ((rc = rd_tensor_info(&r, i, &f->t[i])))
			return rc;
	}
	if ((rc = index_names(&r, &f->t_by_name, f->n_t, t_name_at, f->t_off, "tensor")))
		return rc;

	r.subj[0] = '\0';
	f->data_offset = r.off;
	if (n_t > 0) {
		/* r.off <= size < 2^63 and alignment <= 2^31: no overflow. */
		uint64_t pad = (f->alignment - r.off % f->alignment) % f->alignment;
		if (pad > f->size - r.off)
			return bad(&r, r.off, "padding to the %" PRIu64 "-byte alignment runs past end of "
			           "file (%zu bytes)", f->alignment, f->size);
		f->data_offset = r.off + pad;
	}
	return check_data(&r);
}

static int file_new(struct qp_gguf_file **out, const char *name, struct qp_err *err)
{
	struct qp_gguf_file *f = calloc(1, sizeof(*f));
	if (!f)
		return qp_err_nomem(err);
	f->name = strdup(name);
	if (!f->name) {
		free(f);
		return qp_err_nomem(err);
	}
	f->alignment = QP_GGUF_DEFAULT_ALIGNMENT;
	*out = f;
	return 0;
}

int qp_gguf_parse(struct qp_gguf_file **out, const void *data, size_t len, const char *name,
                  struct qp_err *err)
{
	*out = NULL;
	struct qp_gguf_file *f;
	int rc = file_new(&f, name, err);
	if (rc)
		return rc;
	f->p = data;
	f->size = len;
	if ((rc = parse(f, err))) {
		qp_gguf_close(f);
		return rc;
	}
	*out = f;
	return 0;
}

int qp_gguf_open(struct qp_gguf_file **out, const char *path, struct qp_err *err)
{
	*out = NULL;
	struct qp_gguf_file *f;
	int rc = file_new(&f, path, err);
	if (rc)
		return rc;
	rc = qp_os_map(&f->map, path, err);
	if (!rc) {
		f->p = f->map.data;
		f->size = f->map.size;
		rc = parse(f, err);
	}
	if (rc) {
		qp_gguf_close(f);
		return rc;
	}
	*out = f;
	return 0;
}

uint32_t qp_gguf_version(const struct qp_gguf_file *f)
{
	return f->version;
}

uint64_t qp_gguf_alignment(const struct qp_gguf_file *f)
{
	return f->alignment;
}

uint64_t qp_gguf_data_offset(const struct qp_gguf_file *f)
{
	return f->data_offset;
}

size_t qp_gguf_kv_count(const struct qp_gguf_file *f)
{
	return f->n_kv;
}

const struct qp_gguf_kv *qp_gguf_kv_at(const struct qp_gguf_file *f, size_t i)
{
	return i < f->n_kv ? &f->kv[i] : NULL;
}

const struct qp_gguf_kv *qp_gguf_find_kv(const struct qp_gguf_file *f, const char *key)
{
	const struct qp_name_ref *r = qp_names_find(f->kv_by_name, f->n_kv, key);
	return r ? &f->kv[r->idx] : NULL;
}

size_t qp_gguf_tensor_count(const struct qp_gguf_file *f)
{
	return f->n_t;
}

const struct qp_gguf_tensor *qp_gguf_tensor_at(const struct qp_gguf_file *f, size_t i)
{
	return i < f->n_t ? &f->t[i] : NULL;
}

const struct qp_gguf_tensor *qp_gguf_find_tensor(const struct qp_gguf_file *f, const char *name)
{
	const struct qp_name_ref *r = qp_names_find(f->t_by_name, f->n_t, name);
	return r ? &f->t[r->idx] : NULL;
}

const char *qp_gguf_vtype_name(enum qp_gguf_vtype t)
{
	return (unsigned)t < QP_GGUF_VTYPE_COUNT ? vtype_name[t] : NULL;
}

size_t qp_gguf_vtype_size(enum qp_gguf_vtype t)
{
	return (unsigned)t < QP_GGUF_VTYPE_COUNT ? vtype_size[t] : 0;
}

/* ---- writer ---- */

/* A growable byte buffer; growth is overflow-checked. */
struct buf {
	uint8_t *p;
	size_t n, cap;
};

static int buf_put(struct buf *b, const void *data, size_t len, struct qp_err *err)
{
	if (len > SIZE_MAX - b->n)
		return qp_err_nomem(err);
	if (b->n + len > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->n + len) {
			if (cap > SIZE_MAX / 2)
				return qp_err_nomem(err);
			cap *= 2;
		}
		uint8_t *np = realloc(b->p, cap);
		if (!np)
			return qp_err_nomem(err);
		b->p = np;
		b->cap = cap;
	}
	if (len)
		memcpy(b->p + b->n, data, len);
	b->n += len;
	return 0;
}

static int buf_le(struct buf *b, uint64_t v, size_t n, struct qp_err *err)
{
	uint8_t tmp[8];
	for (size_t i = 0; i < n; i++)
		tmp[i] = (uint8_t)(v >> (8 * i));
	return buf_put(b, tmp, n, err);
}

static int buf_str(struct buf *b, const char *s, size_t len, struct qp_err *err)
{
	int rc = buf_le(b, len, 8, err);
	return rc ? rc : buf_put(b, s, len, err);
}

struct wkv {
	char *key;
	struct buf val;  /* the encoded value: type tag(s) and payload */
};

struct wtensor {
	char *name;
	enum qp_type type;
	int ndim;
	int64_t ne[QP_GGUF_MAX_DIMS];
	const void *data;  /* borrowed until write returns */
	size_t nbytes;
};

struct qp_gguf_writer {
	struct wkv *kv;
	size_t n_kv, cap_kv;
	struct wtensor *t;
	size_t n_t, cap_t;
	uint32_t alignment;  /* bytes; general.alignment if set, else 32 */
};

int qp_gguf_writer_new(struct qp_gguf_writer **out, struct qp_err *err)
{
	*out = calloc(1, sizeof(**out));
	if (!*out)
		return qp_err_nomem(err);
	(*out)->alignment = QP_GGUF_DEFAULT_ALIGNMENT;
	return 0;
}

void qp_gguf_writer_free(struct qp_gguf_writer *w)
{
	if (!w)
		return;
	for (size_t i = 0; i < w->n_kv; i++) {
		free(w->kv[i].key);
		free(w->kv[i].val.p);
	}
	for (size_t i = 0; i < w->n_t; i++)
		free(w->t[i].name);
	free(w->kv);
	free(w->t);
	free(w);
}

static int grow(void **arr, size_t *cap, size_t n, size_t elem, struct qp_err *err)
{
	if (n < *cap)
		return 0;
	size_t nc = *cap ? *cap * 2 : 16;
	if (nc > SIZE_MAX / elem)
		return qp_err_nomem(err);
	void *p = realloc(*arr, nc * elem);
	if (!p)
		return qp_err_nomem(err);
	*arr = p;
	*cap = nc;
	return 0;
}

/* Store key's encoded value, replacing an earlier one in place. Takes val. */
static int set_kv(struct qp_gguf_writer *w, const char *key, struct buf *val, struct qp_err *err)
{
	size_t kl = strlen(key);
	if (kl == 0 || kl > GGUF_MAX_KEY) {
		free(val->p);
		return qp_err_set(err, QP_EINVAL, "key of %zu bytes: keys must be 1 to %d bytes", kl,
		                  GGUF_MAX_KEY);
	}
	for (size_t i = 0; i < w->n_kv; i++) {
		if (strcmp(w->kv[i].key, key) == 0) {
			free(w->kv[i].val.p);
			w->kv[i].val = *val;
			return 0;
		}
	}
	int rc = grow((void **)&w->kv, &w->cap_kv, w->n_kv, sizeof(*w->kv), err);
	char *k = rc ? NULL : strdup(key);
	if (!k) {
		free(val->p);
		return rc ? rc : qp_err_nomem(err);
	}
	w->kv[w->n_kv].key = k;
	w->kv[w->n_kv].val = *val;
	w->n_kv++;
	return 0;
}

static int is_alignment_key(const char *key)
{
	return strcmp(key, GGUF_KEY_ALIGNMENT) == 0;
}

int qp_gguf_set_scalar(struct qp_gguf_writer *w, const char *key, enum qp_gguf_vtype type,
                       const void *value, struct qp_err *err)
{
	if ((unsigned)type >= QP_GGUF_VTYPE_COUNT || type == QP_GGUF_ARRAY)
		return qp_err_set(err, QP_EINVAL, "key '%s': %d is not a scalar value type", key,
		                  (int)type);
	if (is_alignment_key(key)) {
		uint32_t a = 0;
		if (type == QP_GGUF_UINT32)
			memcpy(&a, value, sizeof(a));
		if (a == 0 || (a & (a - 1)) != 0)
			return qp_err_set(err, QP_EINVAL, "key '%s' must be a u32 power of two",
			                  GGUF_KEY_ALIGNMENT);
		w->alignment = a;
	}
	struct buf b = {0};
	int rc = buf_le(&b, type, 4, err);
	if (!rc) {
		switch (type) {
		case QP_GGUF_STRING: {
			const char *s = *(const char *const *)value;
			rc = buf_str(&b, s, strlen(s), err);
			break;
		}
		case QP_GGUF_BOOL: {
			uint8_t v = *(const bool *)value ? 1 : 0;
			rc = buf_put(&b, &v, 1, err);
			break;
		}
		default:
			rc = buf_put(&b, value, vtype_size[type], err);
			break;
		}
	}
	if (rc) {
		free(b.p);
		return rc;
	}
	return set_kv(w, key, &b, err);
}

int qp_gguf_set_u32(struct qp_gguf_writer *w, const char *key, uint32_t v, struct qp_err *err)
{
	return qp_gguf_set_scalar(w, key, QP_GGUF_UINT32, &v, err);
}

int qp_gguf_set_i32(struct qp_gguf_writer *w, const char *key, int32_t v, struct qp_err *err)
{
	return qp_gguf_set_scalar(w, key, QP_GGUF_INT32, &v, err);
}

int qp_gguf_set_u64(struct qp_gguf_writer *w, const char *key, uint64_t v, struct qp_err *err)
{
	return qp_gguf_set_scalar(w, key, QP_GGUF_UINT64, &v, err);
}

int qp_gguf_set_f32(struct qp_gguf_writer *w, const char *key, float v, struct qp_err *err)
{
	return qp_gguf_set_scalar(w, key, QP_GGUF_FLOAT32, &v, err);
}

int qp_gguf_set_bool(struct qp_gguf_writer *w, const char *key, bool v, struct qp_err *err)
{
	return qp_gguf_set_scalar(w, key, QP_GGUF_BOOL, &v, err);
}

int qp_gguf_set_str(struct qp_gguf_writer *w, const char *key, const char *v, struct qp_err *err)
{
	return qp_gguf_set_scalar(w, key, QP_GGUF_STRING, &v, err);
}

int qp_gguf_set_arr(struct qp_gguf_writer *w, const char *key, enum qp_gguf_vtype type,
                    const void *data, size_t n, struct qp_err *err)
{
	if ((unsigned)type >= QP_GGUF_VTYPE_COUNT || type == QP_GGUF_ARRAY ||
	    type == QP_GGUF_STRING)
		return qp_err_set(err, QP_EINVAL, "key '%s': %d is not a numeric element type", key,
		                  (int)type);
	if (is_alignment_key(key))
		return qp_err_set(err, QP_EINVAL, "key '%s' must be a u32 power of two",
		                  GGUF_KEY_ALIGNMENT);
	size_t es = vtype_size[type];
	if (n > GGUF_MAX_ARRAY || n > SIZE_MAX / es)
		return qp_err_set(err, QP_EINVAL, "key '%s': array of %zu elements is too long", key, n);
	struct buf b = {0};
	int rc = buf_le(&b, QP_GGUF_ARRAY, 4, err);
	if (!rc)
		rc = buf_le(&b, type, 4, err);
	if (!rc)
		rc = buf_le(&b, n, 8, err);
	if (!rc && type == QP_GGUF_BOOL) {
		const bool *v = data;
		for (size_t i = 0; !rc && i < n; i++) {
			uint8_t x = v[i] ? 1 : 0;
			rc = buf_put(&b, &x, 1, err);
		}
	} else if (!rc) {
		rc = buf_put(&b, data, n * es, err);
	}
	if (rc) {
		free(b.p);
		return rc;
	}
	return set_kv(w, key, &b, err);
}

int qp_gguf_set_arr_str(struct qp_gguf_writer *w, const char *key, const char *const *strs,
                        size_t n, struct qp_err *err)
{
	if (is_alignment_key(key))
		return qp_err_set(err, QP_EINVAL, "key '%s' must be a u32 power of two",
		                  GGUF_KEY_ALIGNMENT);
	if (n > GGUF_MAX_ARRAY)
		return qp_err_set(err, QP_EINVAL, "key '%s': array of %zu elements is too long", key, n);
	struct buf b = {0};
	int rc = buf_le(&b, QP_GGUF_ARRAY, 4, err);
	if (!rc)
		rc = buf_le(&b, QP_GGUF_STRING, 4, err);
	if (!rc)
		rc = buf_le(&b, n, 8, err);
	for (size_t i = 0; !rc && i < n; i++)
		rc = buf_str(&b, strs[i], strlen(strs[i]), err);
	if (rc) {
		free(b.p);
		return rc;
	}
	return set_kv(w, key, &b, err);
}

int qp_gguf_add_tensor(struct qp_gguf_writer *w, const char *name, enum qp_type type, int ndim,
                       const int64_t *ne, const void *data, size_t nbytes, struct qp_err *err)
{
	size_t nl = strlen(name);
	if (nl == 0 || nl > GGUF_MAX_NAME)
		return qp_err_set(err, QP_EINVAL, "tensor '%s': names must be 1 to %d bytes", name,
		                  GGUF_MAX_NAME);
	const struct qp_type_traits *tt = qp_type_traits((int)type);
	if (!tt)
		return qp_err_set(err, QP_EINVAL, "tensor '%s': %d is not a GGUF tensor type", name,
		                  (int)type);
	if (ndim < 1 || ndim > QP_GGUF_MAX_DIMS)
		return qp_err_set(err, QP_EINVAL, "tensor '%s': %d dimensions, 1 to %d are supported",
		                  name, ndim, QP_GGUF_MAX_DIMS);
	uint64_t rows = 1;
	for (int i = 0; i < ndim; i++) {
		if (ne[i] < 0)
			return qp_err_set(err, QP_EINVAL, "tensor '%s': ne[%d] is negative", name, i);
		if (i > 0) {
			if (ne[i] != 0 && rows > (uint64_t)INT64_MAX / (uint64_t)ne[i])
				return qp_err_set(err, QP_EINVAL, "tensor '%s': too many elements", name);
			rows *= (uint64_t)ne[i];
		}
	}
	size_t row;
	if (qp_type_row_size((int)type, ne[0], &row) != 0)
		return qp_err_set(err, QP_EINVAL,
		                  "tensor '%s': row of %" PRId64 " elements is not a multiple of the %s "
		                  "block size %" PRId64,
		                  name, ne[0], tt->name, tt->blck);
	if (rows != 0 && row > SIZE_MAX / rows)
		return qp_err_set(err, QP_EINVAL, "tensor '%s': size in bytes overflows", name);
	if (row * rows != nbytes)
		return qp_err_set(err, QP_EINVAL, "tensor '%s': %zu bytes given but the shape of %s needs %zu",
		                  name, nbytes, tt->name, (size_t)(row * rows));
	int rc = grow((void **)&w->t, &w->cap_t, w->n_t, sizeof(*w->t), err);
	if (rc)
		return rc;
	struct wtensor *t = &w->t[w->n_t];
	memset(t, 0, sizeof(*t));
	t->name = strdup(name);
	if (!t->name)
		return qp_err_nomem(err);
	t->type = type;
	t->ndim = ndim;
	for (int i = 0; i < ndim; i++)
		t->ne[i] = ne[i];
	t->data = data;
	t->nbytes = nbytes;
	w->n_t++;
	return 0;
}

static uint64_t pad_to(uint64_t n, uint64_t a)
{
	return (a - n % a) % a;
}

static int check_unique_tensors(const struct qp_gguf_writer *w, const char *path,
                                struct qp_err *err)
{
	struct qp_name_ref *refs = calloc(w->n_t + 1, sizeof(*refs));
	if (!refs)
		return qp_err_nomem(err);
	for (size_t i = 0; i < w->n_t; i++) {
		refs[i].name = w->t[i].name;
		refs[i].idx = i;
	}
	size_t dup = qp_names_sort(refs, w->n_t);
	int rc = 0;
	if (dup < w->n_t)
		rc = qp_err_set(err, QP_EINVAL, "%s: tensor '%s' added twice", path, refs[dup].name);
	free(refs);
	return rc;
}

static int encode_header(const struct qp_gguf_writer *w, struct buf *b, struct qp_err *err)
{
	int rc = buf_put(b, "GGUF", 4, err);
	if (!rc)
		rc = buf_le(b, 3, 4, err);
	if (!rc)
		rc = buf_le(b, w->n_t, 8, err);
	if (!rc)
		rc = buf_le(b, w->n_kv, 8, err);
	for (size_t i = 0; !rc && i < w->n_kv; i++) {
		rc = buf_str(b, w->kv[i].key, strlen(w->kv[i].key), err);
		if (!rc)
			rc = buf_put(b, w->kv[i].val.p, w->kv[i].val.n, err);
	}
	uint64_t off = 0;
	for (size_t i = 0; !rc && i < w->n_t; i++) {
		const struct wtensor *t = &w->t[i];
		rc = buf_str(b, t->name, strlen(t->name), err);
		if (!rc)
			rc = buf_le(b, (uint64_t)t->ndim, 4, err);
		for (int d = 0; !rc && d < t->ndim; d++)
			rc = buf_le(b, (uint64_t)t->ne[d], 8, err);
		if (!rc)
			rc = buf_le(b, (uint64_t)t->type, 4, err);
		if (!rc)
			rc = buf_le(b, off, 8, err);
		uint64_t sz = t->nbytes + pad_to(t->nbytes, w->alignment);
		if (sz > UINT64_MAX - off)
			return qp_err_nomem(err);
		off += sz;
	}
	static const uint8_t zeros[64];
	if (!rc && w->n_t > 0) {
		uint64_t pad = pad_to(b->n, w->alignment);
		while (!rc && pad > 0) {
			size_t k = pad < sizeof(zeros) ? (size_t)pad : sizeof(zeros);
			rc = buf_put(b, zeros, k, err);
			pad -= k;
		}
	}
	return rc;
}

int qp_gguf_writer_write(struct qp_gguf_writer *w, const char *path, struct qp_err *err)
{
	int rc = check_unique_tensors(w, path, err);
	if (rc)
		return rc;
	struct buf hdr = {0};
	if ((rc = encode_header(w, &hdr, err))) {
		free(hdr.p);
		return rc;
	}
	struct qp_atomic_file f;
	if ((rc = qp_os_atomic_open(&f, path, err))) {
		free(hdr.p);
		return rc;
	}
	rc = qp_os_atomic_write(&f, hdr.p, hdr.n, err);
	free(hdr.p);
	static const uint8_t zeros[64];
	for (size_t i = 0; !rc && i < w->n_t; i++) {
		const struct wtensor *t = &w->t[i];
		if (t->nbytes)
			rc = qp_os_atomic_write(&f, t->data, t->nbytes, err);
		uint64_t pad = pad_to(t->nbytes, w->alignment);
		while (!rc && pad > 0) {
			size_t k = pad < sizeof(zeros) ? (size_t)pad : sizeof(zeros);
			rc = qp_os_atomic_write(&f, zeros, k, err);
			pad -= k;
		}
	}
	if (rc) {
		qp_os_atomic_abort(&f);
		return rc;
	}
	return qp_os_atomic_commit(&f, err);
}
