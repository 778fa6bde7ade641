/* formats/qlayout and formats/qspec: specs in text and back, layout files
 * written and read back value for value, exact GGUF mappings, and damaged
 * files that must fail naming the tensor (and byte offset). */
#include <math.h>

#include "formats/qlayout.h"
#include "formats/qspec.h"
#include "kernels/convert.h"
#include "kernels/kernels.h"
#include "tf.h"

static struct qp_err err;

/* Deterministic weights with a few outliers, like a real layer. */
static float *weights(int64_t rows, int64_t cols, uint32_t seed)
{
	float *w = malloc((size_t)(rows * cols) * sizeof(float));
	uint32_t s = seed * 2654435761u + 1;
	for (int64_t i = 0; i < rows * cols; i++) {
		s = s * 1664525u + 1013904223u;
		float u = (float)(s >> 8) / 16777216.0f - 0.5f;
		w[i] = u * 0.1f * (i % 97 == 0 ? 8.0f : 1.0f);
	}
	return w;
}

static void qspec__text_round_trips_for_every_method(void)
{
	static const char *const texts[] = {
		"rtn:bits=4:group=128:asym:scale=f16",
		"rtn:bits=8:gran=channel:sym:scale=f32",
		"rtn:bits=2:gran=tensor:asym:scale=f16",
		"binary:gran=channel:scale=f16",
		"ternary:group=64:rule=absmean:scale=f16",
		"ternary:gran=channel:rule=threshold:threshold=0.45:scale=f32",
		"nf4:group=64:dq=true",
		"fp8:format=e5m2:gran=tensor",
		"kmeans:bits=3:group=8:channel_scale=true:seed=7:iters=20",
		"kmeans:bits=4:gran=tensor:channel_scale=false:seed=0:iters=50",
	};
	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		struct qp_qspec s;
		char buf[256];
		CHECK_OK(qp_qspec_parse(&s, texts[i], &err));
		qp_qspec_format(&s, buf, sizeof(buf));
		CHECK_EQ_STR(buf, texts[i]);
	}
	/* defaults fill what the text leaves out */
	struct qp_qspec s;
	char buf[256];
	CHECK_OK(qp_qspec_parse(&s, "rtn:bits=3:sym", &err));
	qp_qspec_format(&s, buf, sizeof(buf));
	CHECK_EQ_STR(buf, "rtn:bits=3:group=128:sym:scale=f16");
	CHECK(qp_qspec_is_method("nf4"));
	CHECK(qp_qspec_is_method("fp8:format=e4m3"));
	CHECK(!qp_qspec_is_method("q4_0"));
	CHECK(!qp_qspec_is_method("rtnx"));
}

static void qspec__bad_text_fails_with_pinned_messages(void)
{
	struct qp_qspec s;
	CHECK_ERR(qp_qspec_parse(&s, "rtm:bits=4", &err), QP_EINVAL,
	          "'rtm' is not a method (rtn, binary, ternary, nf4, fp8, kmeans)");
	CHECK_ERR(qp_qspec_parse(&s, "rtn:bits=9", &err), QP_EINVAL, "method 'rtn:bits=9': bad value '9' for bits");
	CHECK_ERR(qp_qspec_parse(&s, "rtn:bitz=4", &err), QP_EINVAL,
	          "method 'rtn:bitz=4': unknown key 'bitz' (bits, group, gran, sym, asym, scale, rule, threshold, format, dq, channel_scale, seed, iters)");
	CHECK_ERR(qp_qspec_parse(&s, "nf4:bits=3", &err), QP_EINVAL,
	          "method 'nf4:bits=3': nf4 has a fixed width; bits= is for rtn and kmeans");
	CHECK_ERR(qp_qspec_parse(&s, "fp8:format=e3m4", &err), QP_EINVAL,
	          "method 'fp8:format=e3m4': format=e3m4: expected e4m3 or e5m2");
	CHECK_ERR(qp_qspec_parse(&s, "rtn:group", &err), QP_EINVAL, "method 'rtn:group': item 'group' needs a value (KEY=VALUE)");
}

/* Quantize w by text into q (and its spec). */
static int quantize(const char *text, const float *w, int64_t rows, int64_t cols, struct qp_qspec *s,
                    struct qp_qtensor *q)
{
	int rc = qp_qspec_parse(s, text, &err);
	return rc ? rc : qp_qmethod_quantize(s, w, rows, cols, q, 1, &err);
}

static const char *const methods[] = {
	"rtn:bits=4:group=32:asym:scale=f16", "rtn:bits=3:gran=channel:sym:scale=f32", "binary:gran=channel:scale=f16",
	"ternary:group=64:rule=absmean:scale=f16", "nf4:group=64:dq=true", "nf4:group=64:dq=false",
	"fp8:format=e4m3:gran=channel", "kmeans:bits=3:group=4:channel_scale=true:seed=1:iters=10",
};
#define N_METHODS (sizeof(methods) / sizeof(methods[0]))

static void qlayout__writes_and_reads_back_every_method_value_for_value(void)
{
	const int64_t rows = 16, cols = 256;
	float *w = weights(rows, cols, 1);
	struct qp_qspec specs[N_METHODS];
	struct qp_qtensor q[N_METHODS];
	memset(q, 0, sizeof(q));
	struct qp_ql_writer *wr;
	CHECK_OK(qp_ql_writer_new(&wr, &err));
	char names[N_METHODS][32];
	for (size_t i = 0; i < N_METHODS; i++) {
		CHECK_OK(quantize(methods[i], w, rows, cols, &specs[i], &q[i]));
		snprintf(names[i], sizeof(names[i]), "layer.%zu.weight", i);
		CHECK_OK(qp_ql_add_method(wr, names[i], &specs[i], &q[i], &err));
	}
	/* a GGUF-typed tensor and a plain one beside them */
	size_t row;
	CHECK(qp_type_row_size(QP_TYPE_Q8_0, cols, &row) == 0);
	uint8_t *blocks = malloc(row * (size_t)rows);
	CHECK_OK(qp_convert_rows(QP_TYPE_Q8_0, blocks, QP_TYPE_F32, w, rows, cols, 1, &err));
	CHECK_OK(qp_ql_add_gguf(wr, "blocks.weight", QP_TYPE_Q8_0, rows, cols, blocks, row * (size_t)rows, &err));
	int64_t shape1[1] = {cols};
	CHECK_OK(qp_ql_add_float(wr, "norm.weight", QP_ST_F32, 1, shape1, w, (size_t)cols * 4, &err));
	CHECK_OK(qp_ql_set_metadata(wr, "qpipe.method", "test", &err));
	char path[4096];
	tf_path(path, sizeof(path), "layout.safetensors");
	CHECK_OK(qp_ql_write(wr, path, &err));
	qp_ql_writer_free(wr);

	struct qp_ql_model *m;
	CHECK_OK(qp_ql_open(&m, path, &err));
	CHECK_EQ_INT(qp_ql_count(m), N_METHODS + 2);
	CHECK_EQ_STR(qp_ql_at(m, 0)->name, "blocks.weight");
	CHECK_EQ_STR(qp_ql_metadata(m, "qpipe.method"), "test");
	float *got = malloc((size_t)(rows * cols) * sizeof(float)), *want = malloc((size_t)(rows * cols) * sizeof(float));
	for (size_t i = 0; i < N_METHODS; i++) {
		const struct qp_ql_entry *e = qp_ql_find(m, names[i]);
		CHECK(e && e->kind == QP_QL_METHOD);
		CHECK_EQ_INT(e->shape[0], rows);
		CHECK_EQ_INT(e->shape[1], cols);
		char a[256], b[256];
		qp_qspec_format(&e->spec, a, sizeof(a));
		qp_qspec_format(&specs[i], b, sizeof(b));
		CHECK_EQ_STR(a, b);
		CHECK_OK(qp_ql_dequantize(m, e, got, 1, &err));
		CHECK_OK(qp_qmethod_dequantize(&specs[i], &q[i], want, &err));
		for (int64_t j = 0; j < rows * cols; j++)
			if (!(got[j] == want[j])) {
				tf_fail(__FILE__, __LINE__, "%s element %lld: %g != %g", methods[i], (long long)j, (double)got[j],
				        (double)want[j]);
				return;
			}
		CHECK(e->nbytes >= q[i].codes_bytes);
	}
	const struct qp_ql_entry *e = qp_ql_find(m, "blocks.weight");
	CHECK(e && e->kind == QP_QL_GGUF && e->type == QP_TYPE_Q8_0 && e->nbytes == row * (size_t)rows);
	CHECK_OK(qp_ql_dequantize(m, e, got, 1, &err));
	CHECK_OK(qp_convert_rows(QP_TYPE_F32, want, QP_TYPE_Q8_0, blocks, rows, cols, 1, &err));
	CHECK(memcmp(got, want, (size_t)(rows * cols) * sizeof(float)) == 0);
	e = qp_ql_find(m, "norm.weight");
	CHECK(e && e->kind == QP_QL_FLOAT && e->type == QP_TYPE_F32 && e->ndim == 1);
	CHECK_OK(qp_ql_dequantize(m, e, got, 1, &err));
	CHECK(memcmp(got, w, (size_t)cols * sizeof(float)) == 0);
	qp_ql_close(m);
	for (size_t i = 0; i < N_METHODS; i++)
		qp_qtensor_free(&q[i]);
	free(blocks);
	free(got);
	free(want);
	free(w);
}

/* Write one method entry to path, after damage() has had a go at q. */
static int write_one(const char *path, const char *text, void (*damage)(struct qp_qtensor *))
{
	const int64_t rows = 8, cols = 64;
	float *w = weights(rows, cols, 3);
	struct qp_qspec s;
	struct qp_qtensor q = {0};
	struct qp_ql_writer *wr = NULL;
	int rc = quantize(text, w, rows, cols, &s, &q);
	if (!rc && damage)
		damage(&q);
	if (!rc)
		rc = qp_ql_writer_new(&wr, &err);
	if (!rc)
		rc = qp_ql_add_method(wr, "x.weight", &s, &q, &err);
	if (!rc)
		rc = qp_ql_write(wr, path, &err);
	qp_ql_writer_free(wr);
	qp_qtensor_free(&q);
	free(w);
	return rc;
}

static void big_zero(struct qp_qtensor *q) { q->zeros[3] = 200; }
static void ternary_three(struct qp_qtensor *q) { q->codes[q->row_bytes + 1] |= 3 << 4; }
static void bad_gidx(struct qp_qtensor *q)
{
	q->g_idx = calloc((size_t)q->cols, sizeof(int32_t));
	q->g_idx[5] = 9;
}

static void qlayout__damaged_values_fail_naming_tensor_and_offset(void)
{
	char path[4096];
	struct qp_ql_model *m = NULL;
	tf_path(path, sizeof(path), "zero.safetensors");
	CHECK_OK(write_one(path, "rtn:bits=4:group=16:asym:scale=f16", big_zero));
	qp_err_clear(&err);
	CHECK_EQ_INT(qp_ql_open(&m, path, &err), QP_ECORRUPT);
	CHECK(strstr(err.msg, "tensor 'x.weight.qzeros' at offset ") && strstr(err.msg, "zero point 200 exceeds 4 bits"));
	tf_path(path, sizeof(path), "ternary.safetensors");
	CHECK_OK(write_one(path, "ternary:gran=channel:rule=threshold:threshold=0.45:scale=f16", ternary_three));
	qp_err_clear(&err);
	CHECK_EQ_INT(qp_ql_open(&m, path, &err), QP_ECORRUPT);
	CHECK(strstr(err.msg, "tensor 'x.weight.qcodes' at offset ") && strstr(err.msg, "ternary code 3 at (1, 6)"));
	tf_path(path, sizeof(path), "gidx.safetensors");
	CHECK_OK(write_one(path, "rtn:bits=4:group=16:sym:scale=f16", bad_gidx));
	qp_err_clear(&err);
	CHECK_EQ_INT(qp_ql_open(&m, path, &err), QP_ECORRUPT);
	CHECK(strstr(err.msg, "tensor 'x.weight.qg_idx' at offset ") &&
	      strstr(err.msg, "group 9 of column 5 is outside [0, 4)"));
	CHECK(m == NULL);
}

/* A layout image with the given header JSON (data: zero bytes). */
static int parse_hdr(const char *hdr, size_t dlen)
{
	size_t hl = strlen(hdr), len = 8 + hl + dlen;
	unsigned char *b = calloc(1, len);
	for (int i = 0; i < 8; i++)
		b[i] = (unsigned char)((uint64_t)hl >> (8 * i));
	memcpy(b + 8, hdr, hl);
	struct qp_ql_model *m = NULL;
	int rc = qp_ql_parse(&m, b, len, "t.safetensors", &err);
	qp_ql_close(m);
	free(b);
	return rc;
}

static void qlayout__bad_structure_fails_with_pinned_messages(void)
{
	CHECK_ERR(parse_hdr("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4), QP_EINVAL,
	          "t.safetensors: not a qpipe quantized layout (no 'qpipe.layout' metadata)");
	CHECK_ERR(parse_hdr("{\"__metadata__\":{\"qpipe.layout\":\"2\"}}", 0), QP_EINVAL,
	          "t.safetensors: qpipe.layout '2' is not supported (this qpipe reads 1)");
	CHECK_ERR(parse_hdr("{\"__metadata__\":{\"qpipe.layout\":\"1\"},"
	                    "\"a.qcodes\":{\"dtype\":\"U8\",\"shape\":[2,4],\"data_offsets\":[0,8]}}", 8),
	          QP_ECORRUPT, "t.safetensors: entry 'a' has no metadata key 'qpipe.tensor.a'");
	CHECK_ERR(parse_hdr("{\"__metadata__\":{\"qpipe.layout\":\"1\",\"qpipe.tensor.a\":\"{\\\"shape\\\":[2,8],\\\"method\\\":\\\"rtn:bits=4:group=8:asym:scale=f16\\\"}\"},"
	                    "\"a.qcodes\":{\"dtype\":\"U8\",\"shape\":[2,4],\"data_offsets\":[0,8]}}", 8),
	          QP_ECORRUPT, "entry 'a' (rtn): tensor 'a.qscales' is missing");
	CHECK_ERR(parse_hdr("{\"__metadata__\":{\"qpipe.layout\":\"1\"},"
	                    "\"a.qscales\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4),
	          QP_ECORRUPT, "t.safetensors: tensor 'a.qscales' belongs to no quantized entry");
	CHECK_ERR(parse_hdr("{\"__metadata__\":{\"qpipe.layout\":\"1\"},"
	                    "\"a\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4),
	          QP_ECORRUPT, "t.safetensors: tensor 'a' at offset 98: dtype I32 is not a float type");
	CHECK_ERR(parse_hdr("{\"__metadata__\":{\"qpipe.layout\":\"1\",\"qpipe.tensor.a\":\"{\\\"shape\\\":[2,8],\\\"type\\\":\\\"q8_0\\\"}\"},"
	                    "\"a.qblocks\":{\"dtype\":\"U8\",\"shape\":[2,4],\"data_offsets\":[0,8]}}", 8),
	          QP_ECORRUPT, "t.safetensors: metadata 'qpipe.tensor.a': type 'q8_0' is not a block type of rows of 8");
}

/* RTN sym in f16-scaled groups of 32 is q8_0 / q5_0 / q4_0, ternary in
 * f16-scaled groups of 256 is tq2_0; the rest has no GGUF type. */
static void qlayout__exact_gguf_mappings_and_refusals(void)
{
	static const struct { const char *text; int type; } cases[] = {
		{"rtn:bits=8:group=32:sym:scale=f16", QP_TYPE_Q8_0},
		{"rtn:bits=5:group=32:sym:scale=f16", QP_TYPE_Q5_0},
		{"rtn:bits=4:group=32:sym:scale=f16", QP_TYPE_Q4_0},
		{"ternary:group=256:rule=absmean:scale=f16", QP_TYPE_TQ2_0},
		{"ternary:group=256:rule=threshold:threshold=0.45:scale=f16", QP_TYPE_TQ2_0},
		{"rtn:bits=4:group=32:asym:scale=f16", -1},
		{"nf4:group=64:dq=true", -1},
	};
	const int64_t rows = 8, cols = 512;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char path[4096];
		tf_path(path, sizeof(path), "map.safetensors");
		float *w = weights(rows, cols, 5 + (uint32_t)i);
		struct qp_qspec s;
		struct qp_qtensor q = {0};
		struct qp_ql_writer *wr;
		CHECK_OK(quantize(cases[i].text, w, rows, cols, &s, &q));
		CHECK_OK(qp_ql_writer_new(&wr, &err));
		CHECK_OK(qp_ql_add_method(wr, "x.weight", &s, &q, &err));
		CHECK_OK(qp_ql_write(wr, path, &err));
		qp_ql_writer_free(wr);
		struct qp_ql_model *m;
		CHECK_OK(qp_ql_open(&m, path, &err));
		enum qp_type t;
		void *bytes;
		size_t nbytes;
		qp_err_clear(&err);
		int rc = qp_ql_to_gguf(m, qp_ql_find(m, "x.weight"), &t, &bytes, &nbytes, 1, &err);
		if (cases[i].type < 0) {
			char want[512];
			snprintf(want, sizeof(want), "tensor 'x.weight': %s has no GGUF type with the same values", cases[i].text);
			CHECK_EQ_STR(err.msg, want);
			CHECK_EQ_INT(rc, QP_ENOTFOUND);
		} else {
			CHECK_OK(rc);
			CHECK_EQ_INT(t, cases[i].type);
			float *a = malloc((size_t)(rows * cols) * 4), *b = malloc((size_t)(rows * cols) * 4);
			CHECK_OK(qp_convert_rows(QP_TYPE_F32, a, t, bytes, rows, cols, 1, &err));
			CHECK_OK(qp_qmethod_dequantize(&s, &q, b, &err));
			for (int64_t j = 0; j < rows * cols; j++)
				CHECK(a[j] == b[j]);
			free(a);
			free(b);
			free(bytes);
		}
		qp_ql_close(m);
		qp_qtensor_free(&q);
		free(w);
	}
}

int main(int argc, char **argv)
{
	static const struct tf_test tests[] = {
		TF_TEST(qspec__text_round_trips_for_every_method),
		TF_TEST(qspec__bad_text_fails_with_pinned_messages),
		TF_TEST(qlayout__writes_and_reads_back_every_method_value_for_value),
		TF_TEST(qlayout__damaged_values_fail_naming_tensor_and_offset),
		TF_TEST(qlayout__bad_structure_fails_with_pinned_messages),
		TF_TEST(qlayout__exact_gguf_mappings_and_refusals),
	};
	return tf_main(argc, argv, tests, sizeof(tests) / sizeof(tests[0]));
}
