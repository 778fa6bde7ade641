/* formats/safetensors: the shared models, writer round trips, sharded
 * folders, and damaged files that must fail with a message naming the
 * tensor and the byte offset. */
#include <math.h>

#include "common/os.h"
#include "formats/safetensors.h"
#include "tf.h"

#define STORIES "data/models/stories260K/model.safetensors"
#define DOCS "data/models/llama-docs-27m/model.safetensors"

static struct qp_err err;

/* A safetensors image from a header string and data bytes (test-owned). */
static unsigned char *image(const char *hdr, const void *data, size_t dlen, size_t *len)
{
	size_t hl = strlen(hdr);
	*len = 8 + hl + dlen;
	unsigned char *b = malloc(*len);
	for (int i = 0; i < 8; i++)
		b[i] = (unsigned char)((uint64_t)hl >> (8 * i));
	memcpy(b + 8, hdr, hl);
	if (dlen)
		memcpy(b + 8 + hl, data, dlen);
	return b;
}

/* Parse hdr + dlen zero bytes as "t.safetensors". */
static int parse_hdr(const char *hdr, size_t dlen)
{
	static unsigned char zeros[4096];
	size_t len;
	unsigned char *b = image(hdr, zeros, dlen, &len);
	struct qp_st_model *m = NULL;
	int rc = qp_st_parse(&m, b, len, "t.safetensors", &err);
	qp_st_close(m);
	free(b);
	return rc;
}

static void safetensors__reads_stories260k_with_47_f32_tensors(void)
{
	struct qp_st_model *m;
	CHECK_OK(qp_st_open(&m, tf_shared(STORIES), &err));
	CHECK_EQ_INT(qp_st_count(m), 47);
	int64_t params = 0;
	for (size_t i = 0; i < qp_st_count(m); i++) {
		const struct qp_st_tensor *t = qp_st_at(m, i);
		CHECK_EQ_INT(t->dtype, QP_ST_F32);
		CHECK_EQ_INT(t->nbytes, t->nelem * 4);
		params += t->nelem;
	}
	CHECK_EQ_INT(params, 260032);
	/* Header order is sorted-name order in this file. */
	CHECK_EQ_STR(qp_st_at(m, 0)->name, "model.embed_tokens.weight");
	CHECK_EQ_STR(qp_st_at(m, 46)->name, "model.norm.weight");
	CHECK_EQ_STR(qp_st_metadata(m, "format"), "pt");
	CHECK(qp_st_metadata(m, "absent") == NULL);

	static const struct {
		const char *suffix;
		int64_t d0, d1;
	} per_layer[] = {
		{"input_layernorm.weight", 64, -1},      {"self_attn.q_proj.weight", 64, 64},
		{"self_attn.k_proj.weight", 32, 64},     {"self_attn.v_proj.weight", 32, 64},
		{"self_attn.o_proj.weight", 64, 64},     {"post_attention_layernorm.weight", 64, -1},
		{"mlp.gate_proj.weight", 172, 64},       {"mlp.up_proj.weight", 172, 64},
		{"mlp.down_proj.weight", 64, 172},
	};
	for (int l = 0; l < 5; l++) {
		for (size_t k = 0; k < sizeof(per_layer) / sizeof(per_layer[0]); k++) {
			char name[128];
			snprintf(name, sizeof(name), "model.layers.%d.%s", l, per_layer[k].suffix);
			const struct qp_st_tensor *t = qp_st_find(m, name);
			CHECK(t != NULL);
			CHECK_EQ_INT(t->ndim, per_layer[k].d1 < 0 ? 1 : 2);
			CHECK_EQ_INT(t->shape[0], per_layer[k].d0);
			if (per_layer[k].d1 >= 0)
				CHECK_EQ_INT(t->shape[1], per_layer[k].d1);
		}
	}
	const struct qp_st_tensor *emb = qp_st_find(m, "model.embed_tokens.weight");
	CHECK(emb && emb->shape[0] == 512 && emb->shape[1] == 64);
	CHECK(qp_st_find(m, "lm_head.weight") == NULL);  /* tied */
	const struct qp_st_tensor *norm = qp_st_find(m, "model.norm.weight");
	CHECK_EQ_INT(norm->file_offset, 1044736);  /* 8 + 4856 + 1039872 */
	float v[3];
	memcpy(v, norm->data, sizeof(v));
	CHECK(fabsf(v[0] - 2.458309f) < 1e-6f && fabsf(v[2] - 1.7504382f) < 1e-6f);
	qp_st_close(m);
}

static void safetensors__reads_llama_docs_27m_with_57_f16_tensors(void)
{
	struct qp_st_model *m;
	CHECK_OK(qp_st_open(&m, tf_shared("data/models/llama-docs-27m"), &err));
	CHECK_EQ_INT(qp_st_count(m), 57);
	int64_t params = 0;
	for (size_t i = 0; i < qp_st_count(m); i++) {
		CHECK_EQ_INT(qp_st_at(m, i)->dtype, QP_ST_F16);
		params += qp_st_at(m, i)->nelem;
	}
	CHECK_EQ_INT(params, 27269632);
	static const struct {
		const char *name;
		int64_t d0, d1;
	} want[] = {
		{"lm_head.weight", 8192, 512},
		{"model.embed_tokens.weight", 8192, 512},
		{"model.layers.5.self_attn.q_proj.weight", 512, 512},
		{"model.layers.5.self_attn.k_proj.weight", 256, 512},
		{"model.layers.0.self_attn.v_proj.weight", 256, 512},
		{"model.layers.3.mlp.up_proj.weight", 1536, 512},
		{"model.layers.3.mlp.down_proj.weight", 512, 1536},
		{"model.norm.weight", 512, -1},
	};
	for (size_t k = 0; k < sizeof(want) / sizeof(want[0]); k++) {
		const struct qp_st_tensor *t = qp_st_find(m, want[k].name);
		CHECK(t != NULL);
		CHECK_EQ_INT(t->shape[0], want[k].d0);
		if (want[k].d1 > 0)
			CHECK_EQ_INT(t->shape[1], want[k].d1);
	}
	const struct qp_st_tensor *norm = qp_st_find(m, "model.norm.weight");
	CHECK_EQ_INT(norm->file_offset + norm->nbytes, 54545456);  /* ends the file */
	qp_st_close(m);
}

/* One tensor of every dtype, a scalar and an empty one, plus metadata. */
static void safetensors__writer_round_trips_every_dtype_sorted_and_padded(void)
{
	struct qp_st_writer *w;
	CHECK_OK(qp_st_writer_new(&w, &err));
	unsigned char data[QP_ST_DTYPE_COUNT][48];
	for (int d = QP_ST_DTYPE_COUNT - 1; d >= 0; d--) {
		size_t es = qp_st_dtype_size((enum qp_st_dtype)d);
		for (size_t i = 0; i < sizeof(data[d]); i++)
			data[d][i] = (unsigned char)(d * 31 + i);
		int64_t shape[2] = {2, (int64_t)(24 / es)};
		char name[32];
		snprintf(name, sizeof(name), "t.%s", qp_st_dtype_name((enum qp_st_dtype)d));
		CHECK_OK(qp_st_writer_add(w, name, (enum qp_st_dtype)d, 2, shape, data[d],
		                          sizeof(data[d]), &err));
	}
	float scalar = 1.5f;
	CHECK_OK(qp_st_writer_add(w, "a.scalar", QP_ST_F32, 0, NULL, &scalar, 4, &err));
	int64_t zero = 0;
	CHECK_OK(qp_st_writer_add(w, "a.empty", QP_ST_F16, 1, &zero, NULL, 0, &err));
	CHECK_OK(qp_st_writer_set_metadata(w, "format", "pt", &err));
	CHECK_OK(qp_st_writer_set_metadata(w, "note", "h\xc3\xa9llo \"q\"", &err));
	char path[4096];
	tf_path(path, sizeof(path), "all.safetensors");
	CHECK_OK(qp_st_writer_write(w, path, &err));
	qp_st_writer_free(w);

	size_t len;
	unsigned char *raw = tf_slurp(path, &len);
	uint64_t hl = 0;
	for (int i = 7; i >= 0; i--)
		hl = (hl << 8) | raw[i];
	CHECK_EQ_INT((8 + hl) % 8, 0);
	CHECK(raw[8] == '{');
	CHECK(memcmp(raw + 8, "{\"__metadata__\":{", 17) == 0);
	free(raw);

	struct qp_st_model *m;
	CHECK_OK(qp_st_open(&m, path, &err));
	CHECK_EQ_INT(qp_st_count(m), QP_ST_DTYPE_COUNT + 2);
	for (size_t i = 1; i < qp_st_count(m); i++)
		CHECK(strcmp(qp_st_at(m, i - 1)->name, qp_st_at(m, i)->name) < 0);
	for (int d = 0; d < QP_ST_DTYPE_COUNT; d++) {
		char name[32];
		snprintf(name, sizeof(name), "t.%s", qp_st_dtype_name((enum qp_st_dtype)d));
		const struct qp_st_tensor *t = qp_st_find(m, name);
		CHECK(t != NULL);
		CHECK_EQ_INT(t->dtype, d);
		CHECK_EQ_INT(t->ndim, 2);
		CHECK_EQ_INT(t->nelem * (int64_t)qp_st_dtype_size(t->dtype), t->nbytes);
		CHECK(memcmp(t->data, data[d], t->nbytes) == 0);
	}
	const struct qp_st_tensor *s = qp_st_find(m, "a.scalar");
	CHECK(s && s->ndim == 0 && s->nelem == 1 && memcmp(s->data, &scalar, 4) == 0);
	const struct qp_st_tensor *e = qp_st_find(m, "a.empty");
	CHECK(e && e->nelem == 0 && e->nbytes == 0);
	CHECK_EQ_STR(qp_st_metadata(m, "note"), "h\xc3\xa9llo \"q\"");
	qp_st_close(m);
}

static void safetensors__dtype_names_round_trip(void)
{
	for (int d = 0; d < QP_ST_DTYPE_COUNT; d++)
		CHECK_EQ_INT(qp_st_dtype_from_name(qp_st_dtype_name((enum qp_st_dtype)d)), d);
	CHECK_EQ_INT(qp_st_dtype_from_name("F8_E8M0"), -1);
	CHECK_EQ_INT(qp_st_dtype_size(QP_ST_BF16), 2);
	CHECK_EQ_INT(qp_st_dtype_size(QP_ST_F8_E5M2), 1);
}

static void safetensors__writer_refuses_wrong_byte_count_and_duplicates(void)
{
	struct qp_st_writer *w;
	CHECK_OK(qp_st_writer_new(&w, &err));
	int64_t shape[2] = {2, 3};
	float d[6] = {0};
	CHECK_ERR(qp_st_writer_add(w, "x", QP_ST_F32, 2, shape, d, 20, &err), QP_EINVAL,
	          "tensor 'x': 20 bytes given but shape [2, 3] of F32 needs 24");
	CHECK_OK(qp_st_writer_add(w, "x", QP_ST_F32, 2, shape, d, 24, &err));
	CHECK_OK(qp_st_writer_add(w, "x", QP_ST_F32, 2, shape, d, 24, &err));
	char path[4096];
	tf_path(path, sizeof(path), "dup.safetensors");
	char want[16384];
	snprintf(want, sizeof(want), "%s: tensor 'x' added twice", path);
	CHECK_ERR(qp_st_writer_write(w, path, &err), QP_EINVAL, want);
	CHECK(!qp_os_exists(path));
	qp_st_writer_free(w);
}

/* Cutting the real file anywhere before its end loses a tensor's bytes. */
static void safetensors__truncated_stories260k_names_tensor_and_offset(void)
{
	struct qp_map map;
	CHECK_OK(qp_os_map(&map, tf_shared(STORIES), &err));
	struct qp_st_model *m = NULL;
	CHECK_ERR(qp_st_parse(&m, map.data, map.size - 100, "model.safetensors", &err), QP_ECORRUPT,
	          "model.safetensors: tensor 'model.norm.weight': data at offset 1044736 + 256 runs "
	          "past end of file (1044892 bytes)");
	CHECK_ERR(qp_st_parse(&m, map.data, 4000, "model.safetensors", &err), QP_ECORRUPT,
	          "model.safetensors: header length 4856 runs past end of file (4000 bytes)");
	CHECK_ERR(qp_st_parse(&m, map.data, 5, "model.safetensors", &err), QP_ECORRUPT,
	          "model.safetensors: file is 5 bytes, too short for a safetensors header");
	/* Every cut from the end of the header to the end of the data fails. */
	for (size_t cut = 0; cut < map.size; cut += (cut < 5000 ? 1 : 997)) {
		qp_err_clear(&err);
		int rc = qp_st_parse(&m, map.data, cut, "model.safetensors", &err);
		if (rc != QP_ECORRUPT) {
			tf_fail(__FILE__, __LINE__, "cut at %zu: rc %d", cut, rc);
			qp_st_close(m);
			break;
		}
		if (cut >= 8 + 4856)
			CHECK(strstr(err.msg, "runs past end of file (") != NULL);
	}
	qp_os_unmap(&map);
}

static void safetensors__truncated_file_on_disk_fails_naming_the_path(void)
{
	size_t len;
	unsigned char *raw = tf_slurp(tf_shared(STORIES), &len);
	char path[4096];
	tf_path(path, sizeof(path), "cut.safetensors");
	tf_spit(path, raw, len - 1);
	free(raw);
	struct qp_st_model *m = NULL;
	char want[16384];
	snprintf(want, sizeof(want),
	         "%s: tensor 'model.norm.weight': data at offset 1044736 + 256 runs past end of "
	         "file (1044991 bytes)", path);
	CHECK_ERR(qp_st_open(&m, path, &err), QP_ECORRUPT, want);
}

static void safetensors__flipped_header_bytes_never_crash(void)
{
	struct qp_map map;
	CHECK_OK(qp_os_map(&map, tf_shared(STORIES), &err));
	/* A copy of the header plus a little data is enough to exercise it. */
	size_t len = 8 + 4856 + 4096;
	unsigned char *b = malloc(len);
	int failed = 0;
	for (size_t i = 0; i < 8 + 4856; i++) {
		static const unsigned char flips[] = {0xff, 0x01, '"', '9', '-', ']', '}'};
		for (size_t k = 0; k < sizeof(flips); k++) {
			memcpy(b, map.data, len);
			b[i] = (i < 8) ? b[i] ^ flips[k] : flips[k];
			struct qp_st_model *m = NULL;
			qp_err_clear(&err);
			int rc = qp_st_parse(&m, b, len, "x", &err);
			if (rc != 0 && rc != QP_ECORRUPT && !failed) {
				tf_fail(__FILE__, __LINE__, "flip at %zu: rc %d: %s", i, rc, err.msg);
				failed = 1;
			}
			if (rc != 0)
				CHECK(err.msg[0] != '\0');
			qp_st_close(m);
		}
	}
	free(b);
	qp_os_unmap(&map);
}

static void safetensors__bad_headers_fail_with_pinned_messages(void)
{
	CHECK_ERR(parse_hdr("{\"a\":{\"dtype\":\"F7\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4),
	          QP_ECORRUPT, "t.safetensors: tensor 'a': unknown dtype 'F7'");
	CHECK_ERR(parse_hdr("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,-1],\"data_offsets\":[0,4]}}", 4),
	          QP_ECORRUPT, "t.safetensors: tensor 'a': shape[1] is not a non-negative integer");
	CHECK_ERR(parse_hdr("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],"
	                    "\"data_offsets\":[0,4]}}", 4),
	          QP_ECORRUPT,
	          "t.safetensors: tensor 'a': shape [4294967296, 4294967296] of F32 is too large");
	CHECK_ERR(parse_hdr("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8),
	          QP_ECORRUPT, "t.safetensors: tensor 'a': data_offsets [8, 4] end before they begin");
	CHECK_ERR(parse_hdr("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 8),
	          QP_ECORRUPT, "t.safetensors: tensor 'a': 'data_offsets' is not two integers");
	CHECK_ERR(parse_hdr("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8),
	          QP_ECORRUPT,
	          "t.safetensors: tensor 'a': data at offset 62 is 8 bytes but shape [3] of F32 "
	          "needs 12");
	CHECK_ERR(parse_hdr("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 6),
	          QP_ECORRUPT,
	          "t.safetensors: tensor 'a': data at offset 66 + 4 runs past end of file (68 bytes)");
	CHECK_ERR(parse_hdr("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
	                    "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8),
	          QP_ECORRUPT,
	          "t.safetensors: tensor 'b': data at offset 119 + 4 overlaps tensor 'a' at offset "
	          "115 + 8");
	CHECK_ERR(parse_hdr("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
	                    "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8),
	          QP_ECORRUPT,
	          "t.safetensors: header JSON at offset 65: duplicate object key near '\"a\"'");
	CHECK_ERR(parse_hdr("{\"__metadata__\":{\"k\":1}}", 0), QP_ECORRUPT,
	          "t.safetensors: __metadata__ 'k' is not a string");
	CHECK_ERR(parse_hdr("[1]", 0), QP_ECORRUPT,
	          "t.safetensors: header at offset 8 does not start with '{'");
	CHECK_ERR(parse_hdr("{\"a\":", 0), QP_ECORRUPT,
	          "t.safetensors: header JSON at offset 13: unexpected token near end of file");

	unsigned char big[16] = {0};
	uint64_t huge = 200000000;
	for (int i = 0; i < 8; i++)
		big[i] = (unsigned char)(huge >> (8 * i));
	struct qp_st_model *m = NULL;
	CHECK_ERR(qp_st_parse(&m, big, sizeof(big), "t.safetensors", &err), QP_ECORRUPT,
	          "t.safetensors: header length 200000000 exceeds the limit of 100000000 bytes");
	memset(big, 0xff, 8);
	CHECK_ERR(qp_st_parse(&m, big, sizeof(big), "t.safetensors", &err), QP_ECORRUPT,
	          "t.safetensors: header length 18446744073709551615 exceeds the limit of 100000000 "
	          "bytes");
	CHECK_OK(parse_hdr("{}", 0));
}

/* Write the tensors of src whose index is in [lo, hi) to a shard. */
static int write_shard(const struct qp_st_model *src, size_t lo, size_t hi, const char *path)
{
	struct qp_st_writer *w;
	int rc = qp_st_writer_new(&w, &err);
	for (size_t i = lo; !rc && i < hi; i++) {
		const struct qp_st_tensor *t = qp_st_at(src, i);
		rc = qp_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data, t->nbytes, &err);
	}
	if (!rc)
		rc = qp_st_writer_set_metadata(w, "format", "pt", &err);
	if (!rc)
		rc = qp_st_writer_write(w, path, &err);
	qp_st_writer_free(w);
	return rc;
}

static void write_index(const char *path, const struct qp_st_model *src, size_t split,
                        const char *extra)
{
	FILE *f = fopen(path, "w");
	fprintf(f, "{\"metadata\": {\"total_size\": 1}, \"weight_map\": {");
	for (size_t i = 0; i < qp_st_count(src); i++)
		fprintf(f, "%s\"%s\": \"model-0000%d-of-00002.safetensors\"", i ? ", " : "",
		        qp_st_at(src, i)->name, i < split ? 1 : 2);
	fprintf(f, "%s}}\n", extra);
	fclose(f);
}

static void safetensors__sharded_folder_reads_the_same_tensors(void)
{
	struct qp_st_model *src, *m;
	CHECK_OK(qp_st_open(&src, tf_shared(DOCS), &err));
	char dir[4096], p1[4096], p2[4096], idx[4096];
	tf_path(dir, sizeof(dir), "sharded");
	CHECK_OK(qp_os_mkdir_p(dir, &err));
	tf_path(p1, sizeof(p1), "sharded/model-00001-of-00002.safetensors");
	tf_path(p2, sizeof(p2), "sharded/model-00002-of-00002.safetensors");
	tf_path(idx, sizeof(idx), "sharded/model.safetensors.index.json");
	size_t split = qp_st_count(src) / 2;
	CHECK_OK(write_shard(src, 0, split, p1));
	CHECK_OK(write_shard(src, split, qp_st_count(src), p2));
	write_index(idx, src, split, "");

	for (int via_index = 0; via_index < 2; via_index++) {
		CHECK_OK(qp_st_open(&m, via_index ? idx : dir, &err));
		CHECK_EQ_INT(qp_st_count(m), 57);
		for (size_t i = 0; i < qp_st_count(src); i++) {
			const struct qp_st_tensor *a = qp_st_at(src, i);
			const struct qp_st_tensor *b = qp_st_find(m, a->name);
			CHECK(b != NULL);
			CHECK_EQ_INT(b->dtype, a->dtype);
			CHECK_EQ_INT(b->ndim, a->ndim);
			CHECK(memcmp(b->shape, a->shape, sizeof(a->shape)) == 0);
			CHECK_EQ_INT(b->nbytes, a->nbytes);
			CHECK(memcmp(b->data, a->data, a->nbytes) == 0);
			CHECK_EQ_STR(b->file, i < split ? p1 : p2);
		}
		CHECK_EQ_STR(qp_st_metadata(m, "format"), "pt");
		qp_st_close(m);
	}

	/* The index names a tensor its shard lacks. */
	write_index(idx, src, split, ", \"ghost\": \"model-00002-of-00002.safetensors\"");
	char want[16384];
	snprintf(want, sizeof(want),
	         "%s: weight_map: tensor 'ghost' is not in model-00002-of-00002.safetensors", idx);
	CHECK_ERR(qp_st_open(&m, dir, &err), QP_ECORRUPT, want);
	/* A shard outside the folder is refused before anything is opened. */
	write_index(idx, src, split, ", \"x\": \"../model.safetensors\"");
	snprintf(want, sizeof(want), "%s: weight_map: tensor 'x' is not mapped to a file name", idx);
	CHECK_ERR(qp_st_open(&m, dir, &err), QP_ECORRUPT, want);
	/* The same tensor in two shards. */
	CHECK_OK(write_shard(src, split - 1, qp_st_count(src), p2));
	write_index(idx, src, split, "");
	snprintf(want, sizeof(want), "%s: tensor '%s' is also in %s", p2,
	         qp_st_at(src, split - 1)->name, p1);
	CHECK_ERR(qp_st_open(&m, dir, &err), QP_ECORRUPT, want);
	qp_st_close(src);
}

static void safetensors__missing_file_or_empty_folder_is_not_found(void)
{
	struct qp_st_model *m = NULL;
	char path[4096], want[8192];
	tf_path(path, sizeof(path), "nope.safetensors");
	qp_err_clear(&err);
	CHECK_EQ_INT(qp_st_open(&m, path, &err), QP_ENOTFOUND);
	CHECK(m == NULL);
	tf_path(path, sizeof(path), "empty-folder");
	CHECK_OK(qp_os_mkdir_p(path, &err));
	snprintf(want, sizeof(want), "%s: no model.safetensors.index.json or model.safetensors in it",
	         path);
	CHECK_ERR(qp_st_open(&m, path, &err), QP_ENOTFOUND, want);
}

int main(int argc, char **argv)
{
	static const struct tf_test tests[] = {
		TF_TEST(safetensors__reads_stories260k_with_47_f32_tensors),
		TF_TEST(safetensors__reads_llama_docs_27m_with_57_f16_tensors),
		TF_TEST(safetensors__writer_round_trips_every_dtype_sorted_and_padded),
		TF_TEST(safetensors__dtype_names_round_trip),
		TF_TEST(safetensors__writer_refuses_wrong_byte_count_and_duplicates),
		TF_TEST(safetensors__truncated_stories260k_names_tensor_and_offset),
		TF_TEST(safetensors__truncated_file_on_disk_fails_naming_the_path),
		TF_TEST(safetensors__flipped_header_bytes_never_crash),
		TF_TEST(safetensors__bad_headers_fail_with_pinned_messages),
		TF_TEST(safetensors__sharded_folder_reads_the_same_tensors),
		TF_TEST(safetensors__missing_file_or_empty_folder_is_not_found),
	};
	return tf_main(argc, argv, tests, sizeof(tests) / sizeof(tests[0]));
}
