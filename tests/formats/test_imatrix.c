/* formats/imatrix: llama.cpp's GGUF importance matrix written and read
 * back; the importances are in_sum2 / count as llama-quantize computes
 * them; files llama-quantize would refuse are refused with a message
 * naming the file and the tensor or key. (tests/model/test_calibrate.py
 * reads our files with gguf-py; the conformance suite hands them to
 * llama.cpp's quantizer.) */
#include <math.h>

#include "formats/gguf.h"
#include "formats/imatrix.h"
#include "tf.h"

static struct qp_err err;

static void imatrix__round_trip_gives_llama_quantize_importances(void)
{
	char path[4096];
	tf_path(path, sizeof(path), "im.gguf");
	float s2a[4] = {1.0f, 2.0f, 3.0f, 10.0f}, s1a[4] = {-1.0f, 0.5f, 0.0f, 3.0f};
	float s2b[2] = {6.0f, 7.0f};
	/* given out of order: the file holds them sorted, as llama.cpp writes */
	struct qp_imatrix_entry e[3] = {
		{"blk.1.ffn_down.weight", 4, s2a, s1a, 3},
		{"blk.0.attn_q.weight", 2, s2b, NULL, 0},
		{"blk.0.attn_k.weight", 4, s2a, NULL, 3},
	};
	const char *ds[1] = {"calib.txt"};
	CHECK_OK(qp_imatrix_write(path, e, 3, ds, 1, 7, 64, &err));

	struct qp_gguf_file *g;
	CHECK_OK(qp_gguf_open(&g, path, &err));
	CHECK_EQ_INT(qp_gguf_tensor_count(g), 7);
	CHECK_EQ_STR(qp_gguf_tensor_at(g, 0)->name, "blk.0.attn_k.weight.in_sum2");
	CHECK_EQ_STR(qp_gguf_tensor_at(g, 1)->name, "blk.0.attn_k.weight.counts");
	CHECK_EQ_STR(qp_gguf_tensor_at(g, 6)->name, "blk.1.ffn_down.weight.in_sum");
	const struct qp_gguf_tensor *t = qp_gguf_tensor_at(g, 0);
	CHECK(t->type == QP_TYPE_F32 && t->ndim == 2 && t->ne[0] == 4 && t->ne[1] == 1);
	const struct qp_gguf_kv *kv = qp_gguf_find_kv(g, "general.type");
	CHECK(kv && kv->type == QP_GGUF_STRING && kv->v.str.len == 7 && !memcmp(kv->v.str.data, "imatrix", 7));
	kv = qp_gguf_find_kv(g, "imatrix.chunk_size");
	CHECK(kv && kv->type == QP_GGUF_UINT32 && kv->v.u64 == 64);
	kv = qp_gguf_find_kv(g, "imatrix.datasets");
	CHECK(kv && kv->type == QP_GGUF_ARRAY && kv->arr_n == 1);
	qp_gguf_close(g);

	struct qp_imatrix *im;
	CHECK_OK(qp_imatrix_open(&im, path, &err));
	CHECK_EQ_INT(qp_imatrix_count(im), 3);
	CHECK_EQ_INT(qp_imatrix_chunk_count(im), 7);
	CHECK_EQ_STR(qp_imatrix_name(im, 2), "blk.1.ffn_down.weight");
	float w[4];
	CHECK_OK(qp_imatrix_weights(im, "blk.1.ffn_down.weight", 4, w, &err));
	for (int j = 0; j < 4; j++)
		CHECK(w[j] == s2a[j] / 3.0f);
	/* a zero count: llama-quantize uses ones */
	CHECK_OK(qp_imatrix_weights(im, "blk.0.attn_q.weight", 2, w, &err));
	CHECK(w[0] == 1.0f && w[1] == 1.0f);
	char msg[4200];
	snprintf(msg, sizeof(msg), "%s: no importance data for 'output.weight'", path);
	CHECK_ERR(qp_imatrix_weights(im, "output.weight", 4, w, &err), QP_ENOTFOUND, msg);
	snprintf(msg, sizeof(msg), "%s: weight 'blk.0.attn_k.weight' has 4 importances, its rows 8 columns", path);
	CHECK_ERR(qp_imatrix_weights(im, "blk.0.attn_k.weight", 8, w, &err), QP_EINVAL, msg);
	qp_imatrix_close(im);
}

/* A GGUF with the imatrix keys (when keys) and the given tensors. */
static int write_raw(const char *path, bool keys, const char *const *names, const float *const *data,
                     const int64_t *len, int n)
{
	struct qp_gguf_writer *w;
	int rc = qp_gguf_writer_new(&w, &err);
	const char *ds[1] = {"t.txt"};
	if (!rc && keys)
		rc = qp_gguf_set_arr_str(w, "imatrix.datasets", ds, 1, &err) ||
		     qp_gguf_set_u32(w, "imatrix.chunk_count", 1, &err) ||
		     qp_gguf_set_u32(w, "imatrix.chunk_size", 8, &err);
	for (int i = 0; !rc && i < n; i++) {
		int64_t ne[2] = {len[i], 1};
		rc = qp_gguf_add_tensor(w, names[i], QP_TYPE_F32, 2, ne, data[i], (size_t)len[i] * sizeof(float), &err);
	}
	if (!rc)
		rc = qp_gguf_writer_write(w, path, &err);
	qp_gguf_writer_free(w);
	return rc;
}

static void imatrix__refuses_what_llama_quantize_refuses(void)
{
	char path[4096], msg[4200];
	tf_path(path, sizeof(path), "bad.gguf");
	struct qp_imatrix *im = NULL;
	const float ones[3] = {1, 1, 1}, one[1] = {8}, nan3[3] = {1, NAN, 1}, neg[1] = {-1};
	const int64_t l31[2] = {3, 1};

	const char *n_ok[2] = {"a.weight.in_sum2", "a.weight.counts"};
	const float *d_ok[2] = {ones, one};
	CHECK_OK(write_raw(path, false, n_ok, d_ok, l31, 2));
	snprintf(msg, sizeof(msg),
	         "%s: key 'imatrix.datasets' is missing: not an imatrix file llama-quantize accepts", path);
	CHECK_ERR(qp_imatrix_open(&im, path, &err), QP_EINVAL, msg);

	const char *n_nocount[1] = {"a.weight.in_sum2"};
	CHECK_OK(write_raw(path, true, n_nocount, d_ok, l31, 1));
	snprintf(msg, sizeof(msg), "%s: weight 'a.weight' has .in_sum2 but no .counts", path);
	CHECK_ERR(qp_imatrix_open(&im, path, &err), QP_ECORRUPT, msg);

	const char *n_orphan[3] = {"a.weight.in_sum2", "a.weight.counts", "b.weight.counts"};
	const float *d_orphan[3] = {ones, one, one};
	const int64_t l311[3] = {3, 1, 1};
	CHECK_OK(write_raw(path, true, n_orphan, d_orphan, l311, 3));
	snprintf(msg, sizeof(msg), "%s: tensor 'b.weight.counts' has no matching .in_sum2", path);
	CHECK_ERR(qp_imatrix_open(&im, path, &err), QP_ECORRUPT, msg);

	const float *d_nan[2] = {nan3, one};
	CHECK_OK(write_raw(path, true, n_ok, d_nan, l31, 2));
	snprintf(msg, sizeof(msg), "%s: tensor 'a.weight.in_sum2': value 1 is not finite", path);
	CHECK_ERR(qp_imatrix_open(&im, path, &err), QP_ECORRUPT, msg);

	const float *d_neg[2] = {ones, neg};
	CHECK_OK(write_raw(path, true, n_ok, d_neg, l31, 2));
	snprintf(msg, sizeof(msg), "%s: tensor 'a.weight.counts': count -1 is not a token count", path);
	CHECK_ERR(qp_imatrix_open(&im, path, &err), QP_ECORRUPT, msg);

	/* in_sum must hold as many values as in_sum2 */
	const char *n_sum[3] = {"a.weight.in_sum2", "a.weight.counts", "a.weight.in_sum"};
	const float *d_sum[3] = {ones, one, one};
	CHECK_OK(write_raw(path, true, n_sum, d_sum, l311, 3));
	snprintf(msg, sizeof(msg), "%s: weight 'a.weight': 3 sums do not split into 1 counts", path);
	CHECK_ERR(qp_imatrix_open(&im, path, &err), QP_ECORRUPT, msg);

	const char *n_none[1] = {"x.weight"};
	CHECK_OK(write_raw(path, true, n_none, d_ok, l31, 1));
	snprintf(msg, sizeof(msg), "%s: no importance data (no tensor named *.in_sum2)", path);
	CHECK_ERR(qp_imatrix_open(&im, path, &err), QP_EINVAL, msg);
	CHECK(im == NULL);
}

int main(int argc, char **argv)
{
	static const struct tf_test tests[] = {
		TF_TEST(imatrix__round_trip_gives_llama_quantize_importances),
		TF_TEST(imatrix__refuses_what_llama_quantize_refuses),
	};
	return tf_main(argc, argv, tests, sizeof(tests) / sizeof(tests[0]));
}
