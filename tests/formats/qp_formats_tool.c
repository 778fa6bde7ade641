/* Test helper for the python suite: writes files with our writers and
 * prints what our readers see as JSON, so the reference Python packages
 * (gguf, safetensors, sentencepiece) can be held against both directions.
 *
 *   qp_formats_tool write-gguf PATH [ALIGNMENT]
 *   qp_formats_tool dump-gguf PATH
 *   qp_formats_tool write-st PATH
 *   qp_formats_tool dump-st PATH [METADATA_KEY...]
 *   qp_formats_tool copy-st SRC DST [METADATA_KEY...]   (our reader, then our writer)
 *   qp_formats_tool dump-spm PATH
 *
 * The contents written are a fixed function of the tensor index and byte
 * position (see fill()); tests/formats/test_*_interop.py compute the same. */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "formats/spm.h"

/* Byte j of tensor i. */
static void fill(unsigned char *p, size_t n, int i)
{
	for (size_t j = 0; j < n; j++)
		p[j] = (unsigned char)((unsigned)i * 37u + (unsigned)j * 11u);
}

static int die(const struct qp_err *err)
{
	fprintf(stderr, "qp_formats_tool: %s\n", err->msg);
	return 1;
}

static int write_gguf(const char *path, const char *align)
{
	struct qp_err err = {0};
	struct qp_gguf_writer *w;
	if (qp_gguf_writer_new(&w, &err))
		return die(&err);
	int rc = 0;
	uint8_t u8 = 250;
	int8_t i8 = -7;
	uint16_t u16 = 65000;
	int16_t i16 = -32000;
	uint64_t u64 = 18446744073709551000u;
	int64_t i64 = -9000000000000000000;
	double f64 = 2.718281828459045;
	if (align)
		rc = rc ? rc : qp_gguf_set_u32(w, "general.alignment", (uint32_t)atoi(align), &err);
	rc = rc ? rc : qp_gguf_set_str(w, "general.architecture", "llama", &err);
	rc = rc ? rc : qp_gguf_set_str(w, "general.name", "qp \xc3\xa9t\xc3\xa9 \xe2\x96\x81", &err);
	rc = rc ? rc : qp_gguf_set_scalar(w, "test.u8", QP_GGUF_UINT8, &u8, &err);
	rc = rc ? rc : qp_gguf_set_scalar(w, "test.i8", QP_GGUF_INT8, &i8, &err);
	rc = rc ? rc : qp_gguf_set_scalar(w, "test.u16", QP_GGUF_UINT16, &u16, &err);
	rc = rc ? rc : qp_gguf_set_scalar(w, "test.i16", QP_GGUF_INT16, &i16, &err);
	rc = rc ? rc : qp_gguf_set_u32(w, "test.u32", 4000000000u, &err);
	rc = rc ? rc : qp_gguf_set_i32(w, "test.i32", -2000000000, &err);
	rc = rc ? rc : qp_gguf_set_f32(w, "test.f32", 1.25f, &err);
	rc = rc ? rc : qp_gguf_set_bool(w, "test.bool", true, &err);
	rc = rc ? rc : qp_gguf_set_u64(w, "test.u64", u64, &err);
	rc = rc ? rc : qp_gguf_set_scalar(w, "test.i64", QP_GGUF_INT64, &i64, &err);
	rc = rc ? rc : qp_gguf_set_scalar(w, "test.f64", QP_GGUF_FLOAT64, &f64, &err);
	rc = rc ? rc : qp_gguf_set_str(w, "test.empty", "", &err);
	uint8_t a_u8[3] = {0, 128, 255};
	int8_t a_i8[3] = {-128, 0, 127};
	uint16_t a_u16[2] = {0, 65535};
	int16_t a_i16[2] = {-32768, 32767};
	uint32_t a_u32[3] = {1, 2, 4294967295u};
	int32_t a_i32[4] = {1, 3, 6, -1};
	float a_f32[3] = {0.0f, -1.5f, 1000.25f};
	bool a_b[4] = {true, false, false, true};
	uint64_t a_u64[2] = {0, 18446744073709551615u};
	int64_t a_i64[2] = {-9223372036854775807 - 1, 9223372036854775807};
	double a_f64[2] = {-0.125, 1e-300};
	rc = rc ? rc : qp_gguf_set_arr(w, "arr.u8", QP_GGUF_UINT8, a_u8, 3, &err);
	rc = rc ? rc : qp_gguf_set_arr(w, "arr.i8", QP_GGUF_INT8, a_i8, 3, &err);
	rc = rc ? rc : qp_gguf_set_arr(w, "arr.u16", QP_GGUF_UINT16, a_u16, 2, &err);
	rc = rc ? rc : qp_gguf_set_arr(w, "arr.i16", QP_GGUF_INT16, a_i16, 2, &err);
	rc = rc ? rc : qp_gguf_set_arr(w, "arr.u32", QP_GGUF_UINT32, a_u32, 3, &err);
	rc = rc ? rc : qp_gguf_set_arr(w, "tokenizer.ggml.token_type", QP_GGUF_INT32, a_i32, 4, &err);
	rc = rc ? rc : qp_gguf_set_arr(w, "tokenizer.ggml.scores", QP_GGUF_FLOAT32, a_f32, 3, &err);
	rc = rc ? rc : qp_gguf_set_arr(w, "arr.bool", QP_GGUF_BOOL, a_b, 4, &err);
	rc = rc ? rc : qp_gguf_set_arr(w, "arr.u64", QP_GGUF_UINT64, a_u64, 2, &err);
	rc = rc ? rc : qp_gguf_set_arr(w, "arr.i64", QP_GGUF_INT64, a_i64, 2, &err);
	rc = rc ? rc : qp_gguf_set_arr(w, "arr.f64", QP_GGUF_FLOAT64, a_f64, 2, &err);
	const char *toks[4] = {"<unk>", "\xe2\x96\x81the", "", "<0x0A>"};
	rc = rc ? rc : qp_gguf_set_arr_str(w, "tokenizer.ggml.tokens", toks, 4, &err);

	static const struct {
		const char *name;
		enum qp_type type;
		int ndim;
		int64_t ne[2];
	} ts[] = {
		{"token_embd.weight", QP_TYPE_F32, 2, {4, 3}},
		{"blk.0.attn_q.weight", QP_TYPE_F16, 2, {8, 2}},
		{"blk.0.ffn_up.weight", QP_TYPE_Q8_0, 2, {64, 3}},
		{"blk.0.ffn_down.weight", QP_TYPE_Q4_K, 1, {256, 1}},
		{"output_norm.weight", QP_TYPE_BF16, 1, {5, 1}},
		{"pos", QP_TYPE_I32, 1, {3, 1}},
	};
	unsigned char *bufs[6] = {0};
	for (int i = 0; !rc && i < 6; i++) {
		size_t row;
		qp_type_row_size(ts[i].type, ts[i].ne[0], &row);
		size_t n = row * (size_t)(ts[i].ndim > 1 ? ts[i].ne[1] : 1);
		bufs[i] = malloc(n);
		fill(bufs[i], n, i);
		if (ts[i].type == QP_TYPE_F32 || ts[i].type == QP_TYPE_F16 || ts[i].type == QP_TYPE_BF16) {
			/* Finite values, so every reader compares them plainly. */
			size_t es = ts[i].type == QP_TYPE_F32 ? 4 : 2;
			for (size_t j = es - 1; j < n; j += es)
				bufs[i][j] &= 0x3f;
		}
		rc = qp_gguf_add_tensor(w, ts[i].name, ts[i].type, ts[i].ndim, ts[i].ne, bufs[i], n, &err);
	}
	if (!rc)
		rc = qp_gguf_writer_write(w, path, &err);
	for (int i = 0; i < 6; i++)
		free(bufs[i]);
	qp_gguf_writer_free(w);
	return rc ? die(&err) : 0;
}

static char *hex(const void *data, size_t n)
{
	static const char digits[] = "0123456789abcdef";
	const unsigned char *p = data;
	char *s = malloc(2 * n + 1);
	for (size_t i = 0; i < n; i++) {
		s[2 * i] = digits[p[i] >> 4];
		s[2 * i + 1] = digits[p[i] & 15];
	}
	s[2 * n] = '\0';
	return s;
}

static json_t *json_hex(const void *data, size_t n)
{
	char *h = hex(data, n);
	json_t *j = json_string(h);
	free(h);
	return j;
}

/* Unsigned values past INT64_MAX do not fit jansson's integers: strings. */
static json_t *json_u64(uint64_t v)
{
	if (v <= INT64_MAX)
		return json_integer((json_int_t)v);
	char buf[32];
	snprintf(buf, sizeof(buf), "%" PRIu64, v);
	return json_string(buf);
}

static json_t *json_gstr(const struct qp_gguf_str *s)
{
	json_t *j = json_stringn(s->data, (size_t)s->len);
	if (j)
		return j;
	json_t *o = json_object();
	json_object_set_new(o, "hex", json_hex(s->data, (size_t)s->len));
	return o;
}

/* Element i of a raw little-endian numeric array. */
static json_t *json_elem(enum qp_gguf_vtype t, const unsigned char *p)
{
	union {
		uint8_t u8; int8_t i8; uint16_t u16; int16_t i16; uint32_t u32; int32_t i32;
		float f32; uint64_t u64; int64_t i64; double f64;
	} v;
	memcpy(&v, p, qp_gguf_vtype_size(t));
	switch (t) {
	case QP_GGUF_UINT8: return json_integer(v.u8);
	case QP_GGUF_INT8: return json_integer(v.i8);
	case QP_GGUF_UINT16: return json_integer(v.u16);
	case QP_GGUF_INT16: return json_integer(v.i16);
	case QP_GGUF_UINT32: return json_integer(v.u32);
	case QP_GGUF_INT32: return json_integer(v.i32);
	case QP_GGUF_FLOAT32: return json_real(v.f32);
	case QP_GGUF_BOOL: return json_boolean(v.u8 != 0);
	case QP_GGUF_UINT64: return json_u64(v.u64);
	case QP_GGUF_INT64: return json_integer(v.i64);
	case QP_GGUF_FLOAT64: return json_real(v.f64);
	default: return json_null();
	}
}

static json_t *json_scalar(const struct qp_gguf_kv *kv)
{
	switch (kv->type) {
	case QP_GGUF_UINT8: case QP_GGUF_UINT16: case QP_GGUF_UINT32: case QP_GGUF_UINT64:
		return json_u64(kv->v.u64);
	case QP_GGUF_INT8: case QP_GGUF_INT16: case QP_GGUF_INT32: case QP_GGUF_INT64:
		return json_integer(kv->v.i64);
	case QP_GGUF_FLOAT32: case QP_GGUF_FLOAT64:
		return json_real(kv->v.f64);
	case QP_GGUF_BOOL:
		return json_boolean(kv->v.b);
	case QP_GGUF_STRING:
		return json_gstr(&kv->v.str);
	default:
		return json_null();
	}
}

static int print_json(json_t *root)
{
	char *s = json_dumps(root, JSON_INDENT(1) | JSON_REAL_PRECISION(17));
	json_decref(root);
	if (!s)
		return 1;
	puts(s);
	free(s);
	return 0;
}

static int dump_gguf(const char *path)
{
	struct qp_err err = {0};
	struct qp_gguf_file *f;
	if (qp_gguf_open(&f, path, &err))
		return die(&err);
	json_t *root = json_object();
	json_object_set_new(root, "version", json_integer(qp_gguf_version(f)));
	json_object_set_new(root, "alignment", json_u64(qp_gguf_alignment(f)));
	json_object_set_new(root, "data_offset", json_u64(qp_gguf_data_offset(f)));
	json_t *kvs = json_array();
	for (size_t i = 0; i < qp_gguf_kv_count(f); i++) {
		const struct qp_gguf_kv *kv = qp_gguf_kv_at(f, i);
		json_t *o = json_object();
		json_object_set_new(o, "key", json_string(kv->key));
		json_object_set_new(o, "type", json_string(qp_gguf_vtype_name(kv->type)));
		if (kv->type == QP_GGUF_ARRAY) {
			json_object_set_new(o, "arr_type", json_string(qp_gguf_vtype_name(kv->arr_type)));
			json_t *a = json_array();
			size_t es = qp_gguf_vtype_size(kv->arr_type);
			for (uint64_t k = 0; k < kv->arr_n; k++)
				json_array_append_new(a, kv->arr_type == QP_GGUF_STRING
				                             ? json_gstr(&kv->arr_str[k])
				                             : json_elem(kv->arr_type,
				                                         (const unsigned char *)kv->arr_data +
				                                             k * es));
			json_object_set_new(o, "value", a);
		} else {
			json_object_set_new(o, "value", json_scalar(kv));
		}
		json_array_append_new(kvs, o);
	}
	json_object_set_new(root, "kv", kvs);
	json_t *ts = json_array();
	for (size_t i = 0; i < qp_gguf_tensor_count(f); i++) {
		const struct qp_gguf_tensor *t = qp_gguf_tensor_at(f, i);
		json_t *o = json_object();
		json_object_set_new(o, "name", json_string(t->name));
		json_object_set_new(o, "type", json_integer(t->type));
		json_t *ne = json_array();
		for (int d = 0; d < t->ndim; d++)
			json_array_append_new(ne, json_integer(t->ne[d]));
		json_object_set_new(o, "ne", ne);
		json_object_set_new(o, "offset", json_u64(t->offset));
		json_object_set_new(o, "nbytes", json_integer((json_int_t)t->nbytes));
		json_object_set_new(o, "data_hex", json_hex(t->data, t->nbytes));
		json_array_append_new(ts, o);
	}
	json_object_set_new(root, "tensors", ts);
	qp_gguf_close(f);
	return print_json(root);
}

static int write_st(const char *path)
{
	struct qp_err err = {0};
	struct qp_st_writer *w;
	if (qp_st_writer_new(&w, &err))
		return die(&err);
	int rc = qp_st_writer_set_metadata(w, "format", "pt", &err);
	unsigned char *bufs[QP_ST_DTYPE_COUNT] = {0};
	/* Added in reverse so the writer's sorting is exercised. */
	for (int d = QP_ST_DTYPE_COUNT - 1; !rc && d >= 0; d--) {
		size_t es = qp_st_dtype_size((enum qp_st_dtype)d);
		int64_t shape[2] = {2, 3};
		bufs[d] = malloc(6 * es);
		fill(bufs[d], 6 * es, d);
		if (d == QP_ST_BOOL)
			for (int j = 0; j < 6; j++)
				bufs[d][j] &= 1;
		char name[64];
		snprintf(name, sizeof(name), "layer.%s.weight", qp_st_dtype_name((enum qp_st_dtype)d));
		rc = qp_st_writer_add(w, name, (enum qp_st_dtype)d, 2, shape, bufs[d], 6 * es, &err);
	}
	if (!rc)
		rc = qp_st_writer_write(w, path, &err);
	for (int d = 0; d < QP_ST_DTYPE_COUNT; d++)
		free(bufs[d]);
	qp_st_writer_free(w);
	return rc ? die(&err) : 0;
}

static int dump_st(const char *path, int nkeys, char **keys)
{
	struct qp_err err = {0};
	struct qp_st_model *m;
	if (qp_st_open(&m, path, &err))
		return die(&err);
	json_t *root = json_object();
	json_t *meta = json_object();
	for (int i = 0; i < nkeys; i++) {
		const char *v = qp_st_metadata(m, keys[i]);
		json_object_set_new(meta, keys[i], v ? json_string(v) : json_null());
	}
	json_object_set_new(root, "metadata", meta);
	json_t *ts = json_array();
	for (size_t i = 0; i < qp_st_count(m); i++) {
		const struct qp_st_tensor *t = qp_st_at(m, i);
		json_t *o = json_object();
		json_object_set_new(o, "name", json_string(t->name));
		json_object_set_new(o, "dtype", json_string(qp_st_dtype_name(t->dtype)));
		json_t *shape = json_array();
		for (int d = 0; d < t->ndim; d++)
			json_array_append_new(shape, json_integer(t->shape[d]));
		json_object_set_new(o, "shape", shape);
		json_object_set_new(o, "file_offset", json_u64(t->file_offset));
		json_object_set_new(o, "data_hex", json_hex(t->data, t->nbytes));
		json_array_append_new(ts, o);
	}
	json_object_set_new(root, "tensors", ts);
	qp_st_close(m);
	return print_json(root);
}

static int copy_st(const char *src, const char *dst, int nkeys, char **keys)
{
	struct qp_err err = {0};
	struct qp_st_model *m;
	if (qp_st_open(&m, src, &err))
		return die(&err);
	struct qp_st_writer *w;
	int rc = qp_st_writer_new(&w, &err);
	for (int i = 0; !rc && i < nkeys; i++) {
		const char *v = qp_st_metadata(m, keys[i]);
		if (v)
			rc = qp_st_writer_set_metadata(w, keys[i], v, &err);
	}
	for (size_t i = 0; !rc && i < qp_st_count(m); i++) {
		const struct qp_st_tensor *t = qp_st_at(m, i);
		rc = qp_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data, t->nbytes, &err);
	}
	if (!rc)
		rc = qp_st_writer_write(w, dst, &err);
	qp_st_writer_free(w);
	qp_st_close(m);
	return rc ? die(&err) : 0;
}

static int dump_spm(const char *path)
{
	struct qp_err err = {0};
	struct qp_spm *s;
	if (qp_spm_read(&s, path, &err))
		return die(&err);
	json_t *root = json_object();
	json_object_set_new(root, "model_type", json_integer(s->model_type));
	json_object_set_new(root, "byte_fallback", json_boolean(s->byte_fallback));
	json_object_set_new(root, "add_dummy_prefix", json_boolean(s->add_dummy_prefix));
	json_object_set_new(root, "unk_id", json_integer(s->unk_id));
	json_object_set_new(root, "bos_id", json_integer(s->bos_id));
	json_object_set_new(root, "eos_id", json_integer(s->eos_id));
	json_object_set_new(root, "pad_id", json_integer(s->pad_id));
	json_t *ps = json_array();
	for (size_t i = 0; i < s->n_pieces; i++) {
		json_t *p = json_array();
		struct qp_gguf_str ps_ = {strlen(s->pieces[i].piece), s->pieces[i].piece};
		json_array_append_new(p, json_gstr(&ps_));
		json_array_append_new(p, json_real(s->pieces[i].score));
		json_array_append_new(p, json_integer(s->pieces[i].type));
		json_array_append_new(ps, p);
	}
	json_object_set_new(root, "pieces", ps);
	qp_spm_free(s);
	return print_json(root);
}

int main(int argc, char **argv)
{
	if (argc >= 3 && strcmp(argv[1], "write-gguf") == 0)
		return write_gguf(argv[2], argc > 3 ? argv[3] : NULL);
	if (argc == 3 && strcmp(argv[1], "dump-gguf") == 0)
		return dump_gguf(argv[2]);
	if (argc == 3 && strcmp(argv[1], "write-st") == 0)
		return write_st(argv[2]);
	if (argc >= 3 && strcmp(argv[1], "dump-st") == 0)
		return dump_st(argv[2], argc - 3, argv + 3);
	if (argc >= 4 && strcmp(argv[1], "copy-st") == 0)
		return copy_st(argv[2], argv[3], argc - 4, argv + 4);
	if (argc == 3 && strcmp(argv[1], "dump-spm") == 0)
		return dump_spm(argv[2]);
	fprintf(stderr, "usage: qp_formats_tool write-gguf|dump-gguf|write-st|dump-st|copy-st|dump-spm "
	                "PATH...\n");
	return 2;
}
