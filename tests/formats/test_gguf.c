/* formats/gguf: writer round trips of every metadata type, the shared
 * models converted and read back, and hand-built damaged files that must
 * fail with a message naming the key or tensor and the byte offset. */
#include <math.h>

#include "common/os.h"
#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "tf.h"

static struct qp_err err;

/* ---- a byte builder for hand-made files ---- */

struct gb {
	unsigned char *p;
	size_t n, cap;
};

static void gb_put(struct gb *b, const void *d, size_t n)
{
	if (b->n + n > b->cap) {
		b->cap = (b->n + n) * 2 + 64;
		b->p = realloc(b->p, b->cap);
	}
	memcpy(b->p + b->n, d, n);
	b->n += n;
}

static void gb_le(struct gb *b, uint64_t v, size_t n)
{
	unsigned char t[8];
	for (size_t i = 0; i < n; i++)
		t[i] = (unsigned char)(v >> (8 * i));
	gb_put(b, t, n);
}

static void gb_str(struct gb *b, const char *s)
{
	gb_le(b, strlen(s), 8);
	gb_put(b, s, strlen(s));
}

/* The fields of a one-key, one-tensor file that tests corrupt one by one.
 * Layout (offsets): header 0..23; key #0 at 24 (key length 24, key 32..43,
 * value type 44, string length 48, "tiny" 56..59); tensor info at 60
 * (name length 60, name 68, n_dims 69, ne[0] 73, ne[1] 81, type 89,
 * offset 93); padding 101..127; data 128..159. */
struct tiny {
	char magic[5];
	uint32_t version;
	uint64_t n_t, n_kv;
	uint64_t key_len;
	uint32_t vtype;
	uint64_t val_len;
	const char *tname;
	uint32_t ndims;
	int64_t ne0, ne1;
	uint32_t type;
	uint64_t offset;
};

static struct tiny tiny_default(void)
{
	struct tiny t = {"GGUF", 3, 1, 1, 12, QP_GGUF_STRING, 4, "w", 2, 4, 2, QP_TYPE_F32, 0};
	return t;
}

static struct gb tiny_build(const struct tiny *t)
{
	struct gb b = {0};
	gb_put(&b, t->magic, 4);
	gb_le(&b, t->version, 4);
	gb_le(&b, t->n_t, 8);
	gb_le(&b, t->n_kv, 8);
	gb_le(&b, t->key_len, 8);
	gb_put(&b, "general.name", 12);
	gb_le(&b, t->vtype, 4);
	gb_le(&b, t->val_len, 8);
	gb_put(&b, "tiny", 4);
	gb_str(&b, t->tname);
	gb_le(&b, t->ndims, 4);
	gb_le(&b, (uint64_t)t->ne0, 8);
	gb_le(&b, (uint64_t)t->ne1, 8);
	gb_le(&b, t->type, 4);
	gb_le(&b, t->offset, 8);
	static const unsigned char zeros[32];
	gb_put(&b, zeros, 32 - b.n % 32);
	float data[8] = {1, 2, 3, 4, 5, 6, 7, 8};
	gb_put(&b, data, sizeof(data));
	return b;
}

static int parse_tiny(struct tiny t, size_t cut)
{
	struct gb b = tiny_build(&t);
	struct qp_gguf_file *f = NULL;
	int rc = qp_gguf_parse(&f, b.p, cut ? cut : b.n, "t.gguf", &err);
	qp_gguf_close(f);
	free(b.p);
	return rc;
}

/* ---- tests ---- */

static void gguf__reads_a_hand_built_file(void)
{
	struct tiny t = tiny_default();
	struct gb b = tiny_build(&t);
	CHECK_EQ_INT(b.n, 160);
	struct qp_gguf_file *f;
	CHECK_OK(qp_gguf_parse(&f, b.p, b.n, "t.gguf", &err));
	CHECK_EQ_INT(qp_gguf_version(f), 3);
	CHECK_EQ_INT(qp_gguf_alignment(f), 32);
	CHECK_EQ_INT(qp_gguf_data_offset(f), 128);
	CHECK_EQ_INT(qp_gguf_kv_count(f), 1);
	const struct qp_gguf_kv *kv = qp_gguf_find_kv(f, "general.name");
	CHECK(kv && kv->type == QP_GGUF_STRING && kv->v.str.len == 4);
	CHECK(memcmp(kv->v.str.data, "tiny", 4) == 0);
	const struct qp_gguf_tensor *w = qp_gguf_find_tensor(f, "w");
	CHECK(w && w->type == QP_TYPE_F32 && w->ndim == 2 && w->ne[0] == 4 && w->ne[1] == 2);
	CHECK(w->ne[2] == 1 && w->ne[3] == 1 && w->nelem == 8 && w->nbytes == 32);
	CHECK(w->data == b.p + 128);
	CHECK(qp_gguf_find_tensor(f, "x") == NULL && qp_gguf_find_kv(f, "x") == NULL);
	qp_gguf_close(f);
	t.version = 2;
	CHECK_OK(parse_tiny(t, 0));
	free(b.p);
}

static void gguf__bad_header_fields_fail_with_pinned_messages(void)
{
	struct tiny t;
	t = tiny_default();
	memcpy(t.magic, "GGUX", 4);
	CHECK_ERR(parse_tiny(t, 0), QP_ECORRUPT,
	          "t.gguf: at offset 0: not a GGUF file (magic 'GGUX', expected 'GGUF')");
	CHECK_ERR(parse_tiny(t, 3), QP_ECORRUPT,
	          "t.gguf: at offset 0: file of 3 bytes is too short for a GGUF header");
	t = tiny_default();
	t.version = 1;
	CHECK_ERR(parse_tiny(t, 0), QP_ECORRUPT,
	          "t.gguf: at offset 4: GGUF version 1 is no longer supported; convert the file with "
	          "a current llama.cpp");
	t.version = 4;
	CHECK_ERR(parse_tiny(t, 0), QP_ECORRUPT,
	          "t.gguf: at offset 4: GGUF version 4 is newer than this reader (3)");
	t.version = 0x03000000;
	CHECK_ERR(parse_tiny(t, 0), QP_ECORRUPT,
	          "t.gguf: at offset 4: GGUF version 0x03000000 looks byte-swapped: big-endian files "
	          "are not supported");
	t = tiny_default();
	t.n_kv = (uint64_t)1 << 40;
	CHECK_ERR(parse_tiny(t, 0), QP_ECORRUPT,
	          "t.gguf: at offset 16: 1099511627776 key/value pairs cannot fit in the file (160 "
	          "bytes)");
	t = tiny_default();
	t.n_t = UINT64_MAX;
	CHECK_ERR(parse_tiny(t, 0), QP_ECORRUPT,
	          "t.gguf: at offset 8: 18446744073709551615 tensors cannot fit in the file (160 "
	          "bytes)");
	CHECK_ERR(parse_tiny(t, 20), QP_ECORRUPT,
	          "t.gguf: at offset 16: key/value count runs past end of file (20 bytes)");
}

static void gguf__bad_key_values_fail_with_pinned_messages(void)
{
	struct tiny t = tiny_default();
	t.key_len = (uint64_t)1 << 62;
	CHECK_ERR(parse_tiny(t, 0), QP_ECORRUPT,
	          "t.gguf: key #0 at offset 24: key of 4611686018427387904 bytes exceeds the limit of "
	          "65535 bytes");
	t.key_len = 0;
	CHECK_ERR(parse_tiny(t, 0), QP_ECORRUPT, "t.gguf: key #0 at offset 24: key is empty");
	t = tiny_default();
	t.val_len = 1000;
	CHECK_ERR(parse_tiny(t, 0), QP_ECORRUPT,
	          "t.gguf: key 'general.name' at offset 48: string of 1000 bytes runs past end of "
	          "file (160 bytes)");
	t.val_len = UINT64_MAX;
	CHECK_ERR(parse_tiny(t, 0), QP_ECORRUPT,
	          "t.gguf: key 'general.name' at offset 48: string of 18446744073709551615 bytes "
	          "exceeds the limit of 1073741824 bytes");
	t = tiny_default();
	t.vtype = 13;
	CHECK_ERR(parse_tiny(t, 0), QP_ECORRUPT,
	          "t.gguf: key 'general.name' at offset 44: invalid value type 13");
	t = tiny_default();
	t.n_t = 0;  /* else the tensor count is refused first */
	CHECK_ERR(parse_tiny(t, 46), QP_ECORRUPT,
	          "t.gguf: key 'general.name' at offset 44: value type runs past end of file (46 "
	          "bytes)");
}

/* Files with other key/value pairs: [key][type][payload] after the header. */
static int parse_kvs(const struct gb *kvs, uint64_t n_kv)
{
	struct gb b = {0};
	gb_put(&b, "GGUF", 4);
	gb_le(&b, 3, 4);
	gb_le(&b, 0, 8);
	gb_le(&b, n_kv, 8);
	gb_put(&b, kvs->p, kvs->n);
	struct qp_gguf_file *f = NULL;
	int rc = qp_gguf_parse(&f, b.p, b.n, "t.gguf", &err);
	qp_gguf_close(f);
	free(b.p);
	return rc;
}

static void gguf__bad_arrays_duplicates_and_alignment_fail(void)
{
	struct gb kv = {0};
	gb_str(&kv, "a");  /* 24..32 */
	gb_le(&kv, QP_GGUF_ARRAY, 4);
	gb_le(&kv, QP_GGUF_ARRAY, 4);  /* at 37 */
	gb_le(&kv, 1, 8);
	CHECK_ERR(parse_kvs(&kv, 1), QP_ECORRUPT,
	          "t.gguf: key 'a' at offset 37: arrays of arrays are not supported");
	kv.n = 0;
	gb_str(&kv, "a");
	gb_le(&kv, QP_GGUF_ARRAY, 4);
	gb_le(&kv, QP_GGUF_STRING, 4);
	gb_le(&kv, 1000000, 8);  /* at 41 */
	gb_le(&kv, 0, 8);
	CHECK_ERR(parse_kvs(&kv, 1), QP_ECORRUPT,
	          "t.gguf: key 'a' at offset 41: array of 1000000 strings runs past end of file (57 "
	          "bytes)");
	kv.n = 0;
	gb_str(&kv, "a");
	gb_le(&kv, QP_GGUF_ARRAY, 4);
	gb_le(&kv, QP_GGUF_UINT32, 4);
	gb_le(&kv, (uint64_t)1 << 31, 8);
	CHECK_ERR(parse_kvs(&kv, 1), QP_ECORRUPT,
	          "t.gguf: key 'a' at offset 41: array of 2147483648 elements exceeds the limit of "
	          "1073741824");
	kv.n = 0;
	gb_str(&kv, "a");
	gb_le(&kv, QP_GGUF_ARRAY, 4);
	gb_le(&kv, QP_GGUF_UINT32, 4);
	gb_le(&kv, 3, 8);
	gb_le(&kv, 7, 4);
	CHECK_ERR(parse_kvs(&kv, 1), QP_ECORRUPT,
	          "t.gguf: key 'a' at offset 41: array of 3 u32 runs past end of file (53 bytes)");

	kv.n = 0;
	gb_str(&kv, "a");
	gb_le(&kv, QP_GGUF_UINT8, 4);
	gb_le(&kv, 1, 1);
	gb_str(&kv, "b");  /* at 38 */
	gb_le(&kv, QP_GGUF_UINT8, 4);
	gb_le(&kv, 2, 1);
	gb_str(&kv, "a");  /* at 52 */
	gb_le(&kv, QP_GGUF_UINT8, 4);
	gb_le(&kv, 3, 1);
	CHECK_ERR(parse_kvs(&kv, 3), QP_ECORRUPT,
	          "t.gguf: at offset 52: key 'a' duplicates the one at offset 24");

	kv.n = 0;
	gb_str(&kv, "general.alignment");
	gb_le(&kv, QP_GGUF_INT32, 4);
	gb_le(&kv, 64, 4);
	CHECK_ERR(parse_kvs(&kv, 1), QP_ECORRUPT,
	          "t.gguf: key 'general.alignment' at offset 24: type i32, expected u32");
	kv.n = 0;
	gb_str(&kv, "general.alignment");
	gb_le(&kv, QP_GGUF_UINT32, 4);
	gb_le(&kv, 48, 4);
	CHECK_ERR(parse_kvs(&kv, 1), QP_ECORRUPT,
	          "t.gguf: key 'general.alignment' at offset 24: alignment 48 is not a power of two");
	kv.n = 0;
	gb_str(&kv, "general.alignment");
	gb_le(&kv, QP_GGUF_UINT32, 4);
	gb_le(&kv, 0, 4);
	CHECK_ERR(parse_kvs(&kv, 1), QP_ECORRUPT,
	          "t.gguf: key 'general.alignment' at offset 24: alignment 0 is not a power of two");
	free(kv.p);
}

static void gguf__bad_tensor_infos_fail_with_pinned_messages(void)
{
	struct tiny t = tiny_default();
	t.ndims = 5;
	CHECK_ERR(parse_tiny(t, 0), QP_ECORRUPT,
	          "t.gguf: tensor 'w' at offset 69: 5 dimensions, at most 4 are supported");
	t = tiny_default();
	t.ne1 = -1;
	CHECK_ERR(parse_tiny(t, 0), QP_ECORRUPT, "t.gguf: tensor 'w' at offset 81: dimension 1 is -1");
	t = tiny_default();
	t.ne0 = (int64_t)1 << 62;
	t.ne1 = 4;
	CHECK_ERR(parse_tiny(t, 0), QP_ECORRUPT,
	          "t.gguf: tensor 'w' at offset 69: element count of shape (4611686018427387904, 4, 1, "
	          "1) overflows");
	t = tiny_default();
	t.ne0 = (int64_t)1 << 61;
	t.ne1 = 2;
	CHECK_ERR(parse_tiny(t, 0), QP_ECORRUPT,
	          "t.gguf: tensor 'w' at offset 89: size in bytes of shape (2305843009213693952, 2, 1, "
	          "1) of f32 overflows");
	t = tiny_default();
	t.type = 4;
	CHECK_ERR(parse_tiny(t, 0), QP_ECORRUPT,
	          "t.gguf: tensor 'w' at offset 89: type 4 is not a GGUF tensor type");
	t.type = 0xffffffff;
	CHECK_ERR(parse_tiny(t, 0), QP_ECORRUPT,
	          "t.gguf: tensor 'w' at offset 89: type 4294967295 is not a GGUF tensor type");
	t.type = QP_TYPE_Q8_0;
	CHECK_ERR(parse_tiny(t, 0), QP_ECORRUPT,
	          "t.gguf: tensor 'w' at offset 89: row of 4 elements is not a multiple of the q8_0 "
	          "block size 32");
	t = tiny_default();
	t.offset = 4;
	CHECK_ERR(parse_tiny(t, 0), QP_ECORRUPT,
	          "t.gguf: tensor 'w' at offset 93: data offset 4 is not a multiple of the alignment "
	          "32");
	t.offset = 32;
	CHECK_ERR(parse_tiny(t, 0), QP_ECORRUPT,
	          "t.gguf: tensor 'w': data at offset 160 + 32 runs past end of file (160 bytes)");
	t.offset = UINT64_MAX - 31;
	CHECK_ERR(parse_tiny(t, 0), QP_ECORRUPT,
	          "t.gguf: tensor 'w': data at offset 18446744073709551584 of the data section + 32 "
	          "runs past end of file (160 bytes)");
	CHECK_ERR(parse_tiny(tiny_default(), 150), QP_ECORRUPT,
	          "t.gguf: tensor 'w': data at offset 128 + 32 runs past end of file (150 bytes)");
	CHECK_ERR(parse_tiny(tiny_default(), 110), QP_ECORRUPT,
	          "t.gguf: at offset 101: padding to the 32-byte alignment runs past end of file (110 "
	          "bytes)");
	t = tiny_default();
	t.tname = "0123456789012345678901234567890123456789012345678901234567890123";
	CHECK_ERR(parse_tiny(t, 0), QP_ECORRUPT,
	          "t.gguf: tensor #0 at offset 60: name of 64 bytes is longer than 63 bytes");
	t.tname = "";
	CHECK_ERR(parse_tiny(t, 0), QP_ECORRUPT, "t.gguf: tensor #0 at offset 60: name is empty");
}

/* Two tensors: same name, or overlapping data. */
static void gguf__duplicate_and_overlapping_tensors_fail(void)
{
	for (int overlap = 0; overlap < 2; overlap++) {
		struct gb b = {0};
		gb_put(&b, "GGUF", 4);
		gb_le(&b, 3, 4);
		gb_le(&b, 2, 8);
		gb_le(&b, 0, 8);
		for (int i = 0; i < 2; i++) {
			gb_str(&b, overlap && i ? "b" : "a");  /* at 24, 57 */
			gb_le(&b, 1, 4);
			gb_le(&b, 16, 8);
			gb_le(&b, QP_TYPE_F32, 4);
			gb_le(&b, 0, 8);  /* both at the start of the data section */
		}
		static const unsigned char zeros[128];
		gb_put(&b, zeros, 96 - b.n + 64);
		struct qp_gguf_file *f = NULL;
		if (overlap)
			CHECK_ERR(qp_gguf_parse(&f, b.p, b.n, "t.gguf", &err), QP_ECORRUPT,
			          "t.gguf: tensor 'b': data at offset 96 + 64 overlaps tensor 'a' at offset "
			          "96 + 64");
		else
			CHECK_ERR(qp_gguf_parse(&f, b.p, b.n, "t.gguf", &err), QP_ECORRUPT,
			          "t.gguf: at offset 57: tensor 'a' duplicates the one at offset 24");
		free(b.p);
	}
}

/* Every metadata type, written and read back; keys keep first-set order. */
static void gguf__writer_round_trips_every_metadata_type(void)
{
	struct qp_gguf_writer *w;
	CHECK_OK(qp_gguf_writer_new(&w, &err));
	uint8_t u8 = 200;
	int8_t i8 = -100;
	uint16_t u16 = 60000;
	int16_t i16 = -30000;
	uint64_t u64 = UINT64_MAX - 5;
	int64_t i64 = INT64_MIN + 7;
	double f64 = 3.141592653589793;
	bool bf = false;
	const char *s = "h\xc3\xa9llo \xe2\x96\x81 world";
	CHECK_OK(qp_gguf_set_scalar(w, "s.u8", QP_GGUF_UINT8, &u8, &err));
	CHECK_OK(qp_gguf_set_scalar(w, "s.i8", QP_GGUF_INT8, &i8, &err));
	CHECK_OK(qp_gguf_set_scalar(w, "s.u16", QP_GGUF_UINT16, &u16, &err));
	CHECK_OK(qp_gguf_set_scalar(w, "s.i16", QP_GGUF_INT16, &i16, &err));
	CHECK_OK(qp_gguf_set_u32(w, "s.u32", 4000000000u, &err));
	CHECK_OK(qp_gguf_set_i32(w, "s.i32", -2000000000, &err));
	CHECK_OK(qp_gguf_set_f32(w, "s.f32", 0.25f, &err));
	CHECK_OK(qp_gguf_set_bool(w, "s.bool", true, &err));
	CHECK_OK(qp_gguf_set_scalar(w, "s.bool2", QP_GGUF_BOOL, &bf, &err));
	CHECK_OK(qp_gguf_set_str(w, "s.str", s, &err));
	CHECK_OK(qp_gguf_set_u64(w, "s.u64", u64, &err));
	CHECK_OK(qp_gguf_set_scalar(w, "s.i64", QP_GGUF_INT64, &i64, &err));
	CHECK_OK(qp_gguf_set_scalar(w, "s.f64", QP_GGUF_FLOAT64, &f64, &err));
	CHECK_OK(qp_gguf_set_str(w, "s.empty", "", &err));
	CHECK_OK(qp_gguf_set_u32(w, "s.u32", 7, &err));  /* replaces, keeps its place */

	uint8_t a_u8[3] = {1, 2, 255};
	int8_t a_i8[2] = {-1, 1};
	uint16_t a_u16[2] = {1, 65535};
	int16_t a_i16[2] = {-32768, 32767};
	uint32_t a_u32[4] = {0, 1, 2, 4294967295u};
	int32_t a_i32[2] = {-5, 5};
	float a_f32[3] = {1.5f, -2.25f, 1e-3f};
	bool a_b[3] = {true, false, true};
	uint64_t a_u64[2] = {0, UINT64_MAX};
	int64_t a_i64[2] = {INT64_MIN, INT64_MAX};
	double a_f64[2] = {-0.5, 1e300};
	CHECK_OK(qp_gguf_set_arr(w, "a.u8", QP_GGUF_UINT8, a_u8, 3, &err));
	CHECK_OK(qp_gguf_set_arr(w, "a.i8", QP_GGUF_INT8, a_i8, 2, &err));
	CHECK_OK(qp_gguf_set_arr(w, "a.u16", QP_GGUF_UINT16, a_u16, 2, &err));
	CHECK_OK(qp_gguf_set_arr(w, "a.i16", QP_GGUF_INT16, a_i16, 2, &err));
	CHECK_OK(qp_gguf_set_arr(w, "a.u32", QP_GGUF_UINT32, a_u32, 4, &err));
	CHECK_OK(qp_gguf_set_arr(w, "a.i32", QP_GGUF_INT32, a_i32, 2, &err));
	CHECK_OK(qp_gguf_set_arr(w, "a.f32", QP_GGUF_FLOAT32, a_f32, 3, &err));
	CHECK_OK(qp_gguf_set_arr(w, "a.bool", QP_GGUF_BOOL, a_b, 3, &err));
	CHECK_OK(qp_gguf_set_arr(w, "a.u64", QP_GGUF_UINT64, a_u64, 2, &err));
	CHECK_OK(qp_gguf_set_arr(w, "a.i64", QP_GGUF_INT64, a_i64, 2, &err));
	CHECK_OK(qp_gguf_set_arr(w, "a.f64", QP_GGUF_FLOAT64, a_f64, 2, &err));
	CHECK_OK(qp_gguf_set_arr(w, "a.empty", QP_GGUF_INT32, NULL, 0, &err));
	const char *strs[4] = {"<unk>", "", "\xe2\x96\x81the", "<0x0A>"};
	CHECK_OK(qp_gguf_set_arr_str(w, "a.str", strs, 4, &err));

	float f32[6] = {1, 2, 3, 4, 5, 6};
	uint16_t f16[8] = {0x3c00, 0x4000, 0, 1, 2, 3, 4, 5};
	unsigned char q8[2 * 2 * 34], q4k[144];
	for (size_t i = 0; i < sizeof(q8); i++)
		q8[i] = (unsigned char)(i * 7);
	for (size_t i = 0; i < sizeof(q4k); i++)
		q4k[i] = (unsigned char)(i * 13);
	int64_t ne_f32[2] = {3, 2}, ne_f16[1] = {8}, ne_q8[2] = {64, 2}, ne_q4k[1] = {256};
	CHECK_OK(qp_gguf_add_tensor(w, "t.f32", QP_TYPE_F32, 2, ne_f32, f32, sizeof(f32), &err));
	CHECK_OK(qp_gguf_add_tensor(w, "t.f16", QP_TYPE_F16, 1, ne_f16, f16, sizeof(f16), &err));
	CHECK_OK(qp_gguf_add_tensor(w, "t.q8_0", QP_TYPE_Q8_0, 2, ne_q8, q8, sizeof(q8), &err));
	CHECK_OK(qp_gguf_add_tensor(w, "t.q4_k", QP_TYPE_Q4_K, 1, ne_q4k, q4k, sizeof(q4k), &err));
	char path[4096];
	tf_path(path, sizeof(path), "all.gguf");
	CHECK_OK(qp_gguf_writer_write(w, path, &err));
	qp_gguf_writer_free(w);

	struct qp_gguf_file *f;
	CHECK_OK(qp_gguf_open(&f, path, &err));
	CHECK_EQ_INT(qp_gguf_version(f), 3);
	CHECK_EQ_INT(qp_gguf_kv_count(f), 27);
	CHECK_EQ_STR(qp_gguf_kv_at(f, 0)->key, "s.u8");
	CHECK_EQ_STR(qp_gguf_kv_at(f, 4)->key, "s.u32");
	CHECK_EQ_STR(qp_gguf_kv_at(f, 26)->key, "a.str");
	const struct qp_gguf_kv *kv;
#define KV(k, t) (kv = qp_gguf_find_kv(f, k), kv && kv->type == (t))
	CHECK(KV("s.u8", QP_GGUF_UINT8) && kv->v.u64 == 200);
	CHECK(KV("s.i8", QP_GGUF_INT8) && kv->v.i64 == -100);
	CHECK(KV("s.u16", QP_GGUF_UINT16) && kv->v.u64 == 60000);
	CHECK(KV("s.i16", QP_GGUF_INT16) && kv->v.i64 == -30000);
	CHECK(KV("s.u32", QP_GGUF_UINT32) && kv->v.u64 == 7);
	CHECK(KV("s.i32", QP_GGUF_INT32) && kv->v.i64 == -2000000000);
	CHECK(KV("s.f32", QP_GGUF_FLOAT32) && kv->v.f64 == 0.25);
	CHECK(KV("s.bool", QP_GGUF_BOOL) && kv->v.b);
	CHECK(KV("s.bool2", QP_GGUF_BOOL) && !kv->v.b);
	CHECK(KV("s.str", QP_GGUF_STRING) && kv->v.str.len == strlen(s));
	CHECK(memcmp(kv->v.str.data, s, strlen(s)) == 0);
	CHECK(KV("s.u64", QP_GGUF_UINT64) && kv->v.u64 == u64);
	CHECK(KV("s.i64", QP_GGUF_INT64) && kv->v.i64 == i64);
	CHECK(KV("s.f64", QP_GGUF_FLOAT64) && kv->v.f64 == f64);
	CHECK(KV("s.empty", QP_GGUF_STRING) && kv->v.str.len == 0);
#define ARR(k, t, src, n)                                                                      \
	CHECK(KV(k, QP_GGUF_ARRAY) && kv->arr_type == (t) && kv->arr_n == (n) &&                   \
	      memcmp(kv->arr_data, src, (n) * qp_gguf_vtype_size(t)) == 0)
	ARR("a.u8", QP_GGUF_UINT8, a_u8, 3);
	ARR("a.i8", QP_GGUF_INT8, a_i8, 2);
	ARR("a.u16", QP_GGUF_UINT16, a_u16, 2);
	ARR("a.i16", QP_GGUF_INT16, a_i16, 2);
	ARR("a.u32", QP_GGUF_UINT32, a_u32, 4);
	ARR("a.i32", QP_GGUF_INT32, a_i32, 2);
	ARR("a.f32", QP_GGUF_FLOAT32, a_f32, 3);
	ARR("a.u64", QP_GGUF_UINT64, a_u64, 2);
	ARR("a.i64", QP_GGUF_INT64, a_i64, 2);
	ARR("a.f64", QP_GGUF_FLOAT64, a_f64, 2);
	CHECK(KV("a.bool", QP_GGUF_ARRAY) && kv->arr_type == QP_GGUF_BOOL && kv->arr_n == 3);
	CHECK(memcmp(kv->arr_data, "\1\0\1", 3) == 0);
	CHECK(KV("a.empty", QP_GGUF_ARRAY) && kv->arr_type == QP_GGUF_INT32 && kv->arr_n == 0);
	CHECK(KV("a.str", QP_GGUF_ARRAY) && kv->arr_type == QP_GGUF_STRING && kv->arr_n == 4);
	for (int i = 0; i < 4; i++) {
		CHECK_EQ_INT(kv->arr_str[i].len, strlen(strs[i]));
		CHECK(memcmp(kv->arr_str[i].data, strs[i], strlen(strs[i])) == 0);
	}
#undef ARR
#undef KV

	CHECK_EQ_INT(qp_gguf_tensor_count(f), 4);
	static const char *const names[4] = {"t.f32", "t.f16", "t.q8_0", "t.q4_k"};
	const void *datas[4] = {f32, f16, q8, q4k};
	size_t sizes[4] = {sizeof(f32), sizeof(f16), sizeof(q8), sizeof(q4k)};
	for (int i = 0; i < 4; i++) {
		const struct qp_gguf_tensor *t = qp_gguf_tensor_at(f, (size_t)i);
		CHECK_EQ_STR(t->name, names[i]);
		CHECK_EQ_INT(t->nbytes, sizes[i]);
		CHECK(memcmp(t->data, datas[i], sizes[i]) == 0);
		CHECK_EQ_INT(t->offset % 32, 0);
		CHECK_EQ_INT((qp_gguf_data_offset(f) + t->offset) % 32, 0);
	}
	const struct qp_gguf_tensor *q = qp_gguf_find_tensor(f, "t.q8_0");
	CHECK(q->type == QP_TYPE_Q8_0 && q->ndim == 2 && q->ne[0] == 64 && q->ne[1] == 2);
	CHECK_EQ_INT(q->nelem, 128);
	qp_gguf_close(f);
}

static void gguf__writer_honours_general_alignment(void)
{
	struct qp_gguf_writer *w;
	CHECK_OK(qp_gguf_writer_new(&w, &err));
	CHECK_ERR(qp_gguf_set_u32(w, "general.alignment", 48, &err), QP_EINVAL,
	          "key 'general.alignment' must be a u32 power of two");
	CHECK_ERR(qp_gguf_set_str(w, "general.alignment", "64", &err), QP_EINVAL,
	          "key 'general.alignment' must be a u32 power of two");
	CHECK_OK(qp_gguf_set_u32(w, "general.alignment", 256, &err));
	float a[3] = {1, 2, 3}, b[5] = {4, 5, 6, 7, 8};
	int64_t na = 3, nb = 5;
	CHECK_OK(qp_gguf_add_tensor(w, "a", QP_TYPE_F32, 1, &na, a, sizeof(a), &err));
	CHECK_OK(qp_gguf_add_tensor(w, "b", QP_TYPE_F32, 1, &nb, b, sizeof(b), &err));
	char path[4096];
	tf_path(path, sizeof(path), "align.gguf");
	CHECK_OK(qp_gguf_writer_write(w, path, &err));
	qp_gguf_writer_free(w);
	struct qp_gguf_file *f;
	CHECK_OK(qp_gguf_open(&f, path, &err));
	CHECK_EQ_INT(qp_gguf_alignment(f), 256);
	CHECK_EQ_INT(qp_gguf_data_offset(f) % 256, 0);
	CHECK_EQ_INT(qp_gguf_find_tensor(f, "b")->offset, 256);
	CHECK(memcmp(qp_gguf_find_tensor(f, "b")->data, b, sizeof(b)) == 0);
	qp_gguf_close(f);
}

static void gguf__writer_refuses_bad_tensors(void)
{
	struct qp_gguf_writer *w;
	CHECK_OK(qp_gguf_writer_new(&w, &err));
	unsigned char d[64] = {0};
	int64_t ne[2] = {16, 2};
	CHECK_ERR(qp_gguf_add_tensor(w, "x", QP_TYPE_Q8_0, 2, ne, d, 64, &err), QP_EINVAL,
	          "tensor 'x': row of 16 elements is not a multiple of the q8_0 block size 32");
	CHECK_ERR(qp_gguf_add_tensor(w, "x", QP_TYPE_F16, 2, ne, d, 60, &err), QP_EINVAL,
	          "tensor 'x': 60 bytes given but the shape of f16 needs 64");
	CHECK_ERR(qp_gguf_add_tensor(w, "x", (enum qp_type)4, 2, ne, d, 64, &err), QP_EINVAL,
	          "tensor 'x': 4 is not a GGUF tensor type");
	CHECK_ERR(qp_gguf_add_tensor(w, "0123456789012345678901234567890123456789012345678901234567890123",
	                             QP_TYPE_F16, 2, ne, d, 64, &err), QP_EINVAL,
	          "tensor '0123456789012345678901234567890123456789012345678901234567890123': names "
	          "must be 1 to 63 bytes");
	CHECK_OK(qp_gguf_add_tensor(w, "x", QP_TYPE_F16, 2, ne, d, 64, &err));
	CHECK_OK(qp_gguf_add_tensor(w, "x", QP_TYPE_F16, 2, ne, d, 64, &err));
	char path[4096], want[8192];
	tf_path(path, sizeof(path), "dup.gguf");
	snprintf(want, sizeof(want), "%s: tensor 'x' added twice", path);
	CHECK_ERR(qp_gguf_writer_write(w, path, &err), QP_EINVAL, want);
	CHECK(!qp_os_exists(path));
	qp_gguf_writer_free(w);
}

/* Convert a shared model's tensors to GGUF (ne reversed, as GGUF orders
 * dimensions innermost first) and read every byte back. */
static void convert_and_compare(const char *model, enum qp_st_dtype dt, enum qp_type type,
                                size_t want_count)
{
	struct qp_st_model *m;
	CHECK_OK(qp_st_open(&m, tf_shared(model), &err));
	CHECK_EQ_INT(qp_st_count(m), want_count);
	struct qp_gguf_writer *w;
	CHECK_OK(qp_gguf_writer_new(&w, &err));
	CHECK_OK(qp_gguf_set_str(w, "general.architecture", "llama", &err));
	for (size_t i = 0; i < qp_st_count(m); i++) {
		const struct qp_st_tensor *t = qp_st_at(m, i);
		CHECK_EQ_INT(t->dtype, dt);
		int64_t ne[4];
		for (int d = 0; d < t->ndim; d++)
			ne[d] = t->shape[t->ndim - 1 - d];
		CHECK_OK(qp_gguf_add_tensor(w, t->name, type, t->ndim, ne, t->data, t->nbytes, &err));
	}
	char path[4096];
	tf_path(path, sizeof(path), "model.gguf");
	CHECK_OK(qp_gguf_writer_write(w, path, &err));
	qp_gguf_writer_free(w);
	struct qp_gguf_file *f;
	CHECK_OK(qp_gguf_open(&f, path, &err));
	CHECK_EQ_INT(qp_gguf_tensor_count(f), want_count);
	for (size_t i = 0; i < qp_st_count(m); i++) {
		const struct qp_st_tensor *a = qp_st_at(m, i);
		const struct qp_gguf_tensor *b = qp_gguf_tensor_at(f, i);
		CHECK_EQ_STR(b->name, a->name);
		CHECK_EQ_INT(b->nelem, a->nelem);
		CHECK_EQ_INT(b->ne[0], a->shape[a->ndim - 1]);
		CHECK_EQ_INT(b->nbytes, a->nbytes);
		CHECK(memcmp(b->data, a->data, a->nbytes) == 0);
	}
	qp_gguf_close(f);
	qp_st_close(m);
}

static void gguf__converts_stories260k_and_reads_every_byte_back(void)
{
	convert_and_compare("data/models/stories260K", QP_ST_F32, QP_TYPE_F32, 47);
}

static void gguf__converts_llama_docs_27m_and_reads_every_byte_back(void)
{
	convert_and_compare("data/models/llama-docs-27m", QP_ST_F16, QP_TYPE_F16, 57);
}

/* A small valid file cut anywhere before the end of its last tensor's data
 * fails cleanly; flipped header bytes fail cleanly or parse. */
static void gguf__truncated_and_flipped_files_fail_cleanly(void)
{
	struct qp_gguf_writer *w;
	CHECK_OK(qp_gguf_writer_new(&w, &err));
	CHECK_OK(qp_gguf_set_str(w, "general.name", "tiny", &err));
	const char *toks[3] = {"a", "bb", "ccc"};
	CHECK_OK(qp_gguf_set_arr_str(w, "tokenizer.ggml.tokens", toks, 3, &err));
	float sc[3] = {0, -1, -2};
	CHECK_OK(qp_gguf_set_arr(w, "tokenizer.ggml.scores", QP_GGUF_FLOAT32, sc, 3, &err));
	float d[64];
	for (int i = 0; i < 64; i++)
		d[i] = (float)i;
	int64_t ne[2] = {32, 2};
	CHECK_OK(qp_gguf_add_tensor(w, "a", QP_TYPE_F32, 2, ne, d, sizeof(d), &err));
	CHECK_OK(qp_gguf_add_tensor(w, "b", QP_TYPE_F16, 2, ne, d, sizeof(d) / 2, &err));
	char path[4096];
	tf_path(path, sizeof(path), "small.gguf");
	CHECK_OK(qp_gguf_writer_write(w, path, &err));
	qp_gguf_writer_free(w);
	size_t len;
	unsigned char *raw = tf_slurp(path, &len);
	struct qp_gguf_file *f;
	CHECK_OK(qp_gguf_parse(&f, raw, len, "s.gguf", &err));
	const struct qp_gguf_tensor *b = qp_gguf_find_tensor(f, "b");
	size_t end = qp_gguf_data_offset(f) + b->offset + b->nbytes;
	size_t hdr_end = qp_gguf_data_offset(f);
	qp_gguf_close(f);
	for (size_t cut = 0; cut < end; cut++) {
		qp_err_clear(&err);
		int rc = qp_gguf_parse(&f, raw, cut, "s.gguf", &err);
		if (rc != QP_ECORRUPT) {
			tf_fail(__FILE__, __LINE__, "cut at %zu: rc %d", cut, rc);
			qp_gguf_close(f);
			break;
		}
		CHECK(strstr(err.msg, "past end of file") != NULL || strstr(err.msg, "cannot fit") ||
		      strstr(err.msg, "too short"));
	}
	unsigned char *cp = malloc(len);
	for (size_t i = 0; i < hdr_end; i++) {
		static const unsigned char vals[] = {0x00, 0x01, 0x04, 0x1f, 0x7f, 0x80, 0xff};
		for (size_t k = 0; k < sizeof(vals); k++) {
			memcpy(cp, raw, len);
			cp[i] = vals[k];
			qp_err_clear(&err);
			int rc = qp_gguf_parse(&f, cp, len, "s.gguf", &err);
			if (rc != 0 && rc != QP_ECORRUPT) {
				tf_fail(__FILE__, __LINE__, "byte %zu = %u: rc %d: %s", i, vals[k], rc, err.msg);
				break;
			}
			qp_gguf_close(f);
		}
	}
	free(cp);
	free(raw);
}

static void gguf__file_without_tensors_has_no_padding_requirement(void)
{
	struct gb kv = {0};
	gb_str(&kv, "a");
	gb_le(&kv, QP_GGUF_UINT8, 4);
	gb_le(&kv, 1, 1);
	CHECK_OK(parse_kvs(&kv, 1));
	free(kv.p);
	struct qp_gguf_file *f = NULL;
	char path[4096], want[8192];
	tf_path(path, sizeof(path), "absent.gguf");
	snprintf(want, sizeof(want), "%s: cannot open: No such file or directory", path);
	CHECK_ERR(qp_gguf_open(&f, path, &err), QP_ENOTFOUND, want);
}

int main(int argc, char **argv)
{
	static const struct tf_test tests[] = {
		TF_TEST(gguf__reads_a_hand_built_file),
		TF_TEST(gguf__bad_header_fields_fail_with_pinned_messages),
		TF_TEST(gguf__bad_key_values_fail_with_pinned_messages),
		TF_TEST(gguf__bad_arrays_duplicates_and_alignment_fail),
		TF_TEST(gguf__bad_tensor_infos_fail_with_pinned_messages),
		TF_TEST(gguf__duplicate_and_overlapping_tensors_fail),
		TF_TEST(gguf__writer_round_trips_every_metadata_type),
		TF_TEST(gguf__writer_honours_general_alignment),
		TF_TEST(gguf__writer_refuses_bad_tensors),
		TF_TEST(gguf__converts_stories260k_and_reads_every_byte_back),
		TF_TEST(gguf__converts_llama_docs_27m_and_reads_every_byte_back),
		TF_TEST(gguf__truncated_and_flipped_files_fail_cleanly),
		TF_TEST(gguf__file_without_tensors_has_no_padding_requirement),
	};
	return tf_main(argc, argv, tests, sizeof(tests) / sizeof(tests[0]));
}
