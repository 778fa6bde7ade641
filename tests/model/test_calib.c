/* model/calib: observations add up per distinct input (sharers together),
 * a weight whose input changes shape is refused, and the two files carry
 * the sums under the promised names: the imatrix one entry per weight,
 * the statistics one record per input with .input / .tokens metadata.
 * (tests/model/test_calibrate.py checks real activations against numpy.) */
#include <math.h>

#include "formats/imatrix.h"
#include "formats/safetensors.h"
#include "kernels/kernels.h"
#include "model/calib.h"
#include "../formats/tf.h"

static struct qp_err err;

static const char *const QKV[3] = {"blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.attn_v.weight"};
static const char *const DOWN[1] = {"blk.0.ffn_down.weight"};

/* x[t][j] = t - j: small exact numbers, so every sum is exact */
static void fill(float *x, int64_t n, int64_t k, int64_t t0)
{
	for (int64_t t = 0; t < n; t++)
		for (int64_t j = 0; j < k; j++)
			x[t * k + j] = (float)(t0 + t - j);
}

static void calib__sums_per_input_and_files_under_both_names(void)
{
	struct qp_calib *c;
	float x[5 * 4], y[5 * 2];
	CHECK_OK(qp_calib_new(&c, true, 2, &err));
	fill(x, 3, 4, 0);
	CHECK_OK(qp_calib_observe(c, QKV, 3, x, 3, 4, &err));
	fill(y, 5, 2, 0);
	CHECK_OK(qp_calib_observe(c, DOWN, 1, y, 5, 2, &err));
	fill(x, 2, 4, 3);
	CHECK_OK(qp_calib_observe(c, QKV, 3, x, 2, 4, &err));
	CHECK_EQ_INT(qp_calib_count(c), 2);
	const struct qp_calib_input *r = qp_calib_at(c, 0);
	CHECK_EQ_INT(r->tokens, 5);
	CHECK_EQ_INT(r->n_weights, 3);
	/* rows t = 0..4 of t - j */
	for (int64_t j = 0; j < 4; j++) {
		double s = 0, s2 = 0, sa = 0, mx = 0;
		for (int64_t t = 0; t < 5; t++) {
			double v = (double)(t - j);
			s += v;
			s2 += v * v;
			sa += fabs(v);
			mx = fabs(v) > mx ? fabs(v) : mx;
		}
		CHECK(r->sum[j] == s && r->sum_sq[j] == s2 && r->sum_abs[j] == sa && r->max_abs[j] == (float)mx);
		for (int64_t i = j; i < 4; i++) {
			double h = 0;
			for (int64_t t = 0; t < 5; t++)
				h += (double)(t - i) * (double)(t - j);
			CHECK(r->hessian[i * 4 + j] == h);
		}
	}

	char path[4096];
	const char *ds[1] = {"text.txt"};
	CHECK_OK(qp_calib_write_imatrix(c, tf_path(path, sizeof(path), "im.gguf"), ds, 1, 2, 5, &err));
	struct qp_imatrix *im;
	CHECK_OK(qp_imatrix_open(&im, path, &err));
	CHECK_EQ_INT(qp_imatrix_count(im), 4);
	float w[4];
	for (int i = 0; i < 3; i++) {
		CHECK_OK(qp_imatrix_weights(im, QKV[i], 4, w, &err));
		for (int j = 0; j < 4; j++)
			CHECK(w[j] == (float)r->sum_sq[j] / 5.0f);
	}
	qp_imatrix_close(im);

	const char *meta[2] = {"qpipe.seed", "7"};
	CHECK_OK(qp_calib_write_stats(c, tf_path(path, sizeof(path), "stats.safetensors"), meta, 1, &err));
	struct qp_st_model *st;
	CHECK_OK(qp_st_open(&st, path, &err));
	CHECK_EQ_INT(qp_st_count(st), 6);
	const char *q = "model.layers.0.self_attn.q_proj.weight";
	CHECK_EQ_STR(qp_st_metadata(st, "model.layers.0.self_attn.k_proj.weight.input"), q);
	CHECK_EQ_STR(qp_st_metadata(st, "model.layers.0.self_attn.v_proj.weight.input"), q);
	CHECK_EQ_STR(qp_st_metadata(st, "model.layers.0.self_attn.q_proj.weight.input"), q);
	CHECK_EQ_STR(qp_st_metadata(st, "model.layers.0.self_attn.q_proj.weight.tokens"), "5");
	CHECK_EQ_STR(qp_st_metadata(st, "model.layers.0.mlp.down_proj.weight.tokens"), "5");
	CHECK_EQ_STR(qp_st_metadata(st, "qpipe.seed"), "7");
	CHECK(qp_st_find(st, "model.layers.0.self_attn.k_proj.weight.hessian") == NULL);
	const struct qp_st_tensor *h = qp_st_find(st, "model.layers.0.self_attn.q_proj.weight.hessian");
	CHECK(h && h->dtype == QP_ST_F32 && h->ndim == 2 && h->shape[0] == 4 && h->shape[1] == 4);
	const float *hv = h->data;
	for (int i = 0; i < 4; i++)
		for (int j = 0; j < 4; j++)
			CHECK(hv[i * 4 + j] == (float)r->hessian[(i > j ? i : j) * 4 + (i > j ? j : i)]);
	const struct qp_st_tensor *ma = qp_st_find(st, "model.layers.0.self_attn.q_proj.weight.act_mean_abs");
	CHECK(ma && ma->ndim == 1 && ma->shape[0] == 4);
	CHECK(((const float *)ma->data)[3] == (float)(r->sum_abs[3] / 5.0));
	qp_st_close(st);
	qp_calib_free(c);
}

static void calib__refuses_a_changed_input_and_unnamed_weights(void)
{
	struct qp_calib *c;
	float x[8] = {0};
	CHECK_OK(qp_calib_new(&c, false, 1, &err));
	CHECK_OK(qp_calib_observe(c, QKV, 3, x, 2, 4, &err));
	CHECK(qp_calib_at(c, 0)->hessian == NULL);
	CHECK_ERR(qp_calib_observe(c, QKV, 3, x, 1, 8, &err), QP_EINVAL,
	          "weight 'blk.0.attn_q.weight': its input came with 4 channels and 3 weights, now 8 and 3");
	CHECK_ERR(qp_calib_observe(c, QKV, 2, x, 2, 4, &err), QP_EINVAL,
	          "weight 'blk.0.attn_q.weight': its input came with 4 channels and 3 weights, now 4 and 2");
	const char *odd[1] = {"rope_freqs.weight"};
	CHECK_OK(qp_calib_observe(c, odd, 1, x, 2, 4, &err));
	char path[4096];
	CHECK_ERR(qp_calib_write_stats(c, tf_path(path, sizeof(path), "bad.safetensors"), NULL, 0, &err),
	          QP_EINVAL, "weight 'rope_freqs.weight' has no Hugging Face name");
	qp_calib_free(c);
}

int main(int argc, char **argv)
{
	struct qp_err e = {0};
	if (qp_kernels_init(NULL, &e) != 0) {
		fprintf(stderr, "%s\n", e.msg);
		return 1;
	}
	static const struct tf_test tests[] = {
		TF_TEST(calib__sums_per_input_and_files_under_both_names),
		TF_TEST(calib__refuses_a_changed_input_and_unnamed_weights),
	};
	return tf_main(argc, argv, tests, sizeof(tests) / sizeof(tests[0]));
}
