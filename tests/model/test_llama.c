/* model/llama and model/perplexity on a tiny Llama written here (random
 * f32 weights, GQA, tied output): a batch equals the same tokens run one
 * at a time through the KV cache, results do not depend on the thread
 * count, an observer sees every weight's input, and bad files and texts
 * fail with messages that say why. */
#include <math.h>

#include "formats/gguf.h"
#include "kernels/kernels.h"
#include "kernels/ops.h"
#include "model/llama.h"
#include "model/perplexity.h"
#include "../formats/tf.h"

static struct qp_err err;

enum { D = 32, FF = 64, HEADS = 4, KV = 2, LAYERS = 2, VOCAB = 40 };

static uint64_t rng = 88172645463325252ull;

static float rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (float)((double)(rng >> 11) / 9007199254740992.0 - 0.5);
}

static float store[200000];
static size_t used;

static int add(struct qp_gguf_writer *w, const char *name, int64_t ne0, int64_t ne1, float base)
{
	int64_t ne[2] = {ne0, ne1};
	int64_t n = ne0 * (ne1 ? ne1 : 1);
	float *p = store + used;
	used += (size_t)n;
	for (int64_t i = 0; i < n; i++)
		p[i] = base + rnd();
	return qp_gguf_add_tensor(w, name, QP_TYPE_F32, ne1 ? 2 : 1, ne, p, (size_t)n * 4, &err);
}

/* A tiny model at path; arch is general.architecture. */
static int write_model(const char *path, const char *arch, bool drop_ffn_up)
{
	struct qp_gguf_writer *w;
	used = 0;
	int rc = qp_gguf_writer_new(&w, &err);
	if (rc)
		return rc;
	rc = qp_gguf_set_str(w, "general.architecture", arch, &err) ||
	     qp_gguf_set_u32(w, "llama.embedding_length", D, &err) ||
	     qp_gguf_set_u32(w, "llama.block_count", LAYERS, &err) ||
	     qp_gguf_set_u32(w, "llama.feed_forward_length", FF, &err) ||
	     qp_gguf_set_u32(w, "llama.attention.head_count", HEADS, &err) ||
	     qp_gguf_set_u32(w, "llama.attention.head_count_kv", KV, &err) ||
	     qp_gguf_set_f32(w, "llama.rope.freq_base", 10000.0f, &err) ||
	     add(w, "token_embd.weight", D, VOCAB, 0) || add(w, "output_norm.weight", D, 0, 1);
	for (int l = 0; l < LAYERS && !rc; l++) {
		char n[64];
		static const struct { const char *name; int64_t ne0, ne1; } t[] = {
			{"attn_q", D, D}, {"attn_k", D, KV * D / HEADS}, {"attn_v", D, KV * D / HEADS},
			{"attn_output", D, D}, {"ffn_gate", D, FF}, {"ffn_up", D, FF}, {"ffn_down", FF, D},
			{"attn_norm", D, 0}, {"ffn_norm", D, 0}};
		for (size_t i = 0; i < sizeof(t) / sizeof(t[0]) && !rc; i++) {
			if (drop_ffn_up && !strcmp(t[i].name, "ffn_up"))
				continue;
			snprintf(n, sizeof(n), "blk.%d.%s.weight", l, t[i].name);
			rc = add(w, n, t[i].ne0, t[i].ne1, t[i].ne1 ? 0.0f : 1.0f);
		}
	}
	if (!rc)
		rc = qp_gguf_writer_write(w, path, &err);
	qp_gguf_writer_free(w);
	return rc;
}

static void llama__batch_equals_one_token_at_a_time_through_the_cache(void)
{
	char path[4096];
	tf_path(path, sizeof(path), "tiny.gguf");
	CHECK_OK(write_model(path, "llama", false));
	int32_t toks[12];
	for (int i = 0; i < 12; i++)
		toks[i] = (i * 7 + 3) % VOCAB;
	struct qp_llama *m1, *m3;
	CHECK_OK(qp_llama_open(&m1, path, 16, 1, &err));
	CHECK_OK(qp_llama_open(&m3, path, 16, 3, &err));
	static float batch[12 * VOCAB], step[12 * VOCAB], batch3[12 * VOCAB];
	CHECK_OK(qp_llama_eval(m1, toks, 12, 0, batch, &err));
	CHECK_OK(qp_llama_eval(m3, toks, 12, 0, batch3, &err));
	for (int i = 0; i < 12; i++)
		CHECK_OK(qp_llama_eval(m1, toks + i, 1, i, step + i * VOCAB, &err));
	for (int i = 0; i < 12 * VOCAB; i++) {
		CHECK(fabsf(batch[i] - step[i]) <= 1e-5f * (1.0f + fabsf(step[i])));
		CHECK(batch[i] == batch3[i]);
		CHECK(isfinite(batch[i]));
	}
	CHECK_ERR(qp_llama_eval(m1, toks, 12, 8, batch, &err), QP_EINVAL,
	          "positions 8 to 19 do not fit the context of 16");
	toks[3] = VOCAB;
	CHECK_ERR(qp_llama_eval(m1, toks, 12, 0, batch, &err), QP_EINVAL,
	          "token 3: id 40 is out of range (vocabulary of 40)");
	qp_llama_free(m1);
	qp_llama_free(m3);
}

static void llama__unsupported_architecture_lists_the_supported(void)
{
	char path[4096], want[4200];
	tf_path(path, sizeof(path), "gpt2.gguf");
	CHECK_OK(write_model(path, "gpt2", false));
	struct qp_llama *m = NULL;
	snprintf(want, sizeof(want), "%s: architecture 'gpt2' is not supported (supported: llama)", path);
	CHECK_ERR(qp_llama_open(&m, path, 16, 1, &err), QP_EINVAL, want);
	CHECK(m == NULL);
}

static void llama__missing_tensor_is_named(void)
{
	char path[4096], want[4200];
	tf_path(path, sizeof(path), "noup.gguf");
	CHECK_OK(write_model(path, "llama", true));
	struct qp_llama *m = NULL;
	snprintf(want, sizeof(want), "%s: tensor 'blk.0.ffn_up.weight' is missing", path);
	CHECK_ERR(qp_llama_open(&m, path, 16, 1, &err), QP_EINVAL, want);
}

/* What an observer saw: one line per call. */
static char seen[64][96];
static int n_seen, fail_at = -1;
static float first_x;

static int record(void *user, const char *const *names, int n_names, const float *x, int64_t n,
                  int64_t k, struct qp_err *e)
{
	(void)user;
	if (n_seen == fail_at)
		return qp_err_set(e, QP_EINTR, "observer stops at call %d", n_seen);
	if (n_seen == 0)
		first_x = x[0];
	int len = snprintf(seen[n_seen], sizeof(seen[0]), "%lld x %lld:", (long long)n, (long long)k);
	for (int i = 0; i < n_names; i++)
		len += snprintf(seen[n_seen] + len, sizeof(seen[0]) - (size_t)len, " %s", names[i]);
	n_seen++;
	return 0;
}

static void llama__observer_sees_every_weight_input_once_per_input(void)
{
	char path[4096];
	tf_path(path, sizeof(path), "tiny.gguf");
	CHECK_OK(write_model(path, "llama", false));
	int32_t toks[5] = {1, 7, 3, 9, 2};
	struct qp_llama *m;
	CHECK_OK(qp_llama_open(&m, path, 8, 2, &err));
	static float plain[5 * VOCAB], watched[5 * VOCAB];
	CHECK_OK(qp_llama_eval(m, toks, 5, 0, plain, &err));
	qp_llama_set_observer(m, record, NULL);
	n_seen = 0;
	CHECK_OK(qp_llama_eval(m, toks, 5, 0, watched, &err));
	CHECK(memcmp(plain, watched, sizeof(plain)) == 0);
	CHECK_EQ_INT(n_seen, 4 * LAYERS + 1);
	CHECK_EQ_STR(seen[0], "5 x 32: blk.0.attn_q.weight blk.0.attn_k.weight blk.0.attn_v.weight");
	CHECK_EQ_STR(seen[1], "5 x 32: blk.0.attn_output.weight");
	CHECK_EQ_STR(seen[2], "5 x 32: blk.0.ffn_gate.weight blk.0.ffn_up.weight");
	CHECK_EQ_STR(seen[3], "5 x 64: blk.0.ffn_down.weight");
	CHECK_EQ_STR(seen[4], "5 x 32: blk.1.attn_q.weight blk.1.attn_k.weight blk.1.attn_v.weight");
	/* the tiny model is tied: its output projection is token_embd */
	CHECK_EQ_STR(seen[4 * LAYERS], "5 x 32: token_embd.weight");
	/* without logits the output projection is skipped, and not observed */
	n_seen = 0;
	CHECK_OK(qp_llama_eval(m, toks, 5, 0, NULL, &err));
	CHECK_EQ_INT(n_seen, 4 * LAYERS);
	/* the first input is the normed embedding of the first token */
	CHECK(isfinite(first_x) && first_x != 0.0f);
	n_seen = 0;
	fail_at = 2;
	CHECK_ERR(qp_llama_eval(m, toks, 5, 0, watched, &err), QP_EINTR, "observer stops at call 2");
	fail_at = -1;
	qp_llama_set_observer(m, NULL, NULL);
	n_seen = 0;
	CHECK_OK(qp_llama_eval(m, toks, 5, 0, watched, &err));
	CHECK_EQ_INT(n_seen, 0);
	qp_llama_free(m);
}

/* The output projection's input (rmsnorm(x) * output_norm), kept by an observer. */
static float final_in[5 * D];

static int keep_final(void *user, const char *const *names, int n_names, const float *x, int64_t n,
                      int64_t k, struct qp_err *e)
{
	(void)user, (void)n_names, (void)e;
	if (!strcmp(names[0], "token_embd.weight"))
		memcpy(final_in, x, (size_t)(n * k) * sizeof(float));
	return 0;
}

/* rmsnorm(x) * output_norm for 5 tokens, as the pass ends. */
static void final_norm(struct qp_llama *m, const float *x, float *out)
{
	const struct qp_gguf_tensor *t = qp_gguf_find_tensor(qp_llama_gguf(m), "output_norm.weight");
	for (int i = 0; i < 5; i++)
		qp_ops_rmsnorm(out + i * D, x + i * D, t->data, D, qp_llama_hparams(m)->eps);
}

static void llama__layer_by_layer_equals_eval_and_set_weight_takes_effect(void)
{
	char path[4096], want[4200];
	tf_path(path, sizeof(path), "tiny.gguf");
	CHECK_OK(write_model(path, "llama", false));
	int32_t toks[5] = {4, 7, 3, 9, 2};
	struct qp_llama *m;
	CHECK_OK(qp_llama_open(&m, path, 8, 2, &err));
	qp_llama_set_observer(m, keep_final, NULL);
	static float logits[5 * VOCAB], again[5 * VOCAB], x[5 * D], want_in[5 * D];
	CHECK_OK(qp_llama_eval(m, toks, 5, 0, logits, &err));
	CHECK_OK(qp_llama_embed(m, toks, 5, x, &err));
	for (int l = 0; l < LAYERS; l++)
		CHECK_OK(qp_llama_layer(m, l, x, 5, 0, &err));
	final_norm(m, x, want_in);
	CHECK(memcmp(final_in, want_in, sizeof(want_in)) == 0);

	/* the same values as an owned f32 copy: the same logits, bit for bit */
	const struct qp_gguf_tensor *wo = qp_gguf_find_tensor(qp_llama_gguf(m), "blk.1.attn_output.weight");
	const struct qp_gguf_tensor *wd = qp_gguf_find_tensor(qp_llama_gguf(m), "blk.1.ffn_down.weight");
	CHECK_OK(qp_llama_set_weight_f32(m, "blk.1.attn_output.weight", wo->data, &err));
	CHECK_OK(qp_llama_eval(m, toks, 5, 0, again, &err));
	CHECK(memcmp(logits, again, sizeof(logits)) == 0);

	/* layer 1 without its output products adds nothing: the pass ends on layer 0's output */
	static float zeros[FF * D];
	CHECK_OK(qp_llama_set_weight_f32(m, "blk.1.attn_output.weight", zeros, &err));
	CHECK_OK(qp_llama_set_weight_f32(m, "blk.1.ffn_down.weight", zeros, &err));
	CHECK_OK(qp_llama_eval(m, toks, 5, 0, again, &err));
	CHECK_OK(qp_llama_embed(m, toks, 5, x, &err));
	CHECK_OK(qp_llama_layer(m, 0, x, 5, 0, &err));
	final_norm(m, x, want_in);
	CHECK(memcmp(final_in, want_in, sizeof(want_in)) == 0);
	CHECK(memcmp(logits, again, sizeof(logits)) != 0);

	/* replaced again: back to the file's values */
	CHECK_OK(qp_llama_set_weight_f32(m, "blk.1.attn_output.weight", wo->data, &err));
	CHECK_OK(qp_llama_set_weight_f32(m, "blk.1.ffn_down.weight", wd->data, &err));
	CHECK_OK(qp_llama_eval(m, toks, 5, 0, again, &err));
	CHECK(memcmp(logits, again, sizeof(logits)) == 0);

	snprintf(want, sizeof(want), "%s: no 2-D weight 'blk.1.attn_norm.weight' in the forward pass", path);
	CHECK_ERR(qp_llama_set_weight_f32(m, "blk.1.attn_norm.weight", zeros, &err), QP_ENOTFOUND, want);
	snprintf(want, sizeof(want), "%s: layer 2 does not exist (2 layers)", path);
	CHECK_ERR(qp_llama_layer(m, 2, x, 5, 0, &err), QP_EINVAL, want);
	CHECK_ERR(qp_llama_layer(m, 0, x, 5, 4, &err), QP_EINVAL, "positions 4 to 8 do not fit the context of 8");
	qp_llama_free(m);
}

static void perplexity__counts_chunks_and_refuses_short_text(void)
{
	char path[4096];
	tf_path(path, sizeof(path), "tiny.gguf");
	CHECK_OK(write_model(path, "llama", false));
	struct qp_llama *m;
	CHECK_OK(qp_llama_open(&m, path, 16, 2, &err));
	int32_t toks[50];
	for (int i = 0; i < 50; i++)
		toks[i] = (i * 11 + 5) % VOCAB;
	struct qp_ppl_params p = {.n_ctx = 16, .chunks = 0, .first = -1};
	struct qp_ppl_result r;
	CHECK_OK(qp_ppl_run(&r, m, toks, 50, 1, &p, NULL, NULL, &err));
	CHECK_EQ_INT(r.n_chunks, 3);
	CHECK_EQ_INT(r.n_scored, 3 * 7);
	CHECK(isfinite(r.ppl) && r.ppl > 1.0 && r.ppl_err > 0.0);
	p.chunks = 2;
	CHECK_OK(qp_ppl_run(&r, m, toks, 50, 1, &p, NULL, NULL, &err));
	CHECK_EQ_INT(r.n_chunks, 2);
	CHECK_ERR(qp_ppl_run(&r, m, toks, 15, 1, &p, NULL, NULL, &err), QP_EINVAL,
	          "the text is 15 tokens long, shorter than one chunk of n_ctx 16 tokens");
	qp_llama_free(m);
}

int main(int argc, char **argv)
{
	if (qp_kernels_init(NULL, &err) != 0) {
		fprintf(stderr, "%s\n", err.msg);
		return 1;
	}
	static const struct tf_test tests[] = {
		TF_TEST(llama__batch_equals_one_token_at_a_time_through_the_cache),
		TF_TEST(llama__unsupported_architecture_lists_the_supported),
		TF_TEST(llama__missing_tensor_is_named),
		TF_TEST(llama__observer_sees_every_weight_input_once_per_input),
		TF_TEST(llama__layer_by_layer_equals_eval_and_set_weight_takes_effect),
		TF_TEST(perplexity__counts_chunks_and_refuses_short_text),
	};
	return tf_main(argc, argv, tests, sizeof(tests) / sizeof(tests[0]));
}
