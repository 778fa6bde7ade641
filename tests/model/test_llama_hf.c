/* model/llama_hf, model/rope and the strided perplexity in C (the unit
 * suite, so they also run under the sanitizers); their numbers against
 * numpy are in test_llama_hf.py and test_ppl_hf.py.
 *
 * - stories260K's folder: a batch equals the same tokens one at a time
 *   through the KV cache (rotate_half RoPE at every position), and does
 *   not depend on the thread count;
 * - GGUF RoPE keys: rope_freqs.weight of all 2 gives the logits of
 *   llama.rope.scaling.type linear with factor 2, bit for bit, and both
 *   differ from the unscaled file; an unknown type is named;
 * - the strided perplexity's window count and bad parameters, and with
 *   stride = max_length it scores what non-overlapping windows score. */
#include <math.h>

#include "formats/gguf.h"
#include "kernels/kernels.h"
#include "model/llama.h"
#include "model/perplexity.h"
#include "model/rope.h"
#include "../formats/tf.h"

static struct qp_err err;

enum { D = 32, FF = 64, HEADS = 4, KV = 2, LAYERS = 2, VOCAB = 40, N = 12 };

static uint64_t rng;

static float rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (float)((double)(rng >> 11) / 9007199254740992.0 - 0.5);
}

static float store[100000];
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

/* A tiny llama GGUF at path (the same weights each call), with RoPE
 * scaling: type NULL for none; freqs > 0 adds rope_freqs.weight of that
 * value. */
static int write_model(const char *path, const char *type, float factor, float freqs)
{
	struct qp_gguf_writer *w;
	used = 0;
	rng = 88172645463325252ull;
	int rc = qp_gguf_writer_new(&w, &err);
	if (rc)
		return rc;
	rc = qp_gguf_set_str(w, "general.architecture", "llama", &err) ||
	     qp_gguf_set_u32(w, "llama.embedding_length", D, &err) ||
	     qp_gguf_set_u32(w, "llama.block_count", LAYERS, &err) ||
	     qp_gguf_set_u32(w, "llama.feed_forward_length", FF, &err) ||
	     qp_gguf_set_u32(w, "llama.attention.head_count", HEADS, &err) ||
	     qp_gguf_set_u32(w, "llama.attention.head_count_kv", KV, &err) ||
	     qp_gguf_set_f32(w, "llama.rope.freq_base", 10000.0f, &err) ||
	     add(w, "token_embd.weight", D, VOCAB, 0) || add(w, "output_norm.weight", D, 0, 1);
	if (!rc && type)
		rc = qp_gguf_set_str(w, "llama.rope.scaling.type", type, &err) ||
		     qp_gguf_set_f32(w, "llama.rope.scaling.factor", factor, &err);
	for (int l = 0; l < LAYERS && !rc; l++) {
		char n[64];
		static const struct { const char *name; int64_t ne0, ne1; } t[] = {
			{"attn_q", D, D}, {"attn_k", D, KV * D / HEADS}, {"attn_v", D, KV * D / HEADS},
			{"attn_output", D, D}, {"ffn_gate", D, FF}, {"ffn_up", D, FF}, {"ffn_down", FF, D},
			{"attn_norm", D, 0}, {"ffn_norm", D, 0}};
		for (size_t i = 0; i < sizeof(t) / sizeof(t[0]) && !rc; i++) {
			snprintf(n, sizeof(n), "blk.%d.%s.weight", l, t[i].name);
			rc = add(w, n, t[i].ne0, t[i].ne1, t[i].ne1 ? 0.0f : 1.0f);
		}
	}
	if (!rc && freqs > 0.0f) {
		int64_t ne[1] = {D / HEADS / 2};
		static float ff[D / HEADS / 2];
		for (int i = 0; i < D / HEADS / 2; i++)
			ff[i] = freqs;
		rc = qp_gguf_add_tensor(w, "rope_freqs.weight", QP_TYPE_F32, 1, ne, ff, sizeof(ff), &err);
	}
	if (!rc)
		rc = qp_gguf_writer_write(w, path, &err);
	qp_gguf_writer_free(w);
	return rc;
}

static const int32_t toks[N] = {1, 7, 3, 9, 2, 30, 11, 4, 4, 25, 17, 8};

static void logits_of(const char *path, float *out)
{
	struct qp_llama *m;
	CHECK_OK(qp_llama_open(&m, path, N, 2, &err));
	CHECK_OK(qp_llama_eval(m, toks, N, 0, out, &err));
	qp_llama_free(m);
}

static void hf__folder_batch_equals_one_token_at_a_time(void)
{
	const char *dir = tf_shared("data/models/stories260K");
	struct qp_llama *m1, *m3;
	CHECK_OK(qp_llama_open(&m1, dir, N, 1, &err));
	CHECK_OK(qp_llama_open(&m3, dir, N, 3, &err));
	const struct qp_llama_hparams *hp = qp_llama_hparams(m1);
	CHECK_EQ_INT(hp->n_vocab, 512);
	CHECK_EQ_INT(hp->n_head_kv, 4);
	CHECK(hp->rope.neox && hp->rope.kind == QP_ROPE_DEFAULT);
	CHECK(qp_llama_gguf(m1) == NULL);
	static float batch[N * 512], one[N * 512], three[N * 512];
	CHECK_OK(qp_llama_eval(m1, toks, N, 0, batch, &err));
	CHECK_OK(qp_llama_eval(m3, toks, N, 0, three, &err));
	CHECK(memcmp(batch, three, sizeof(batch)) == 0);
	for (int t = 0; t < N; t++)
		CHECK_OK(qp_llama_eval(m1, toks + t, 1, t, one + t * 512, &err));
	double worst = 0;
	for (int i = 0; i < N * 512; i++)
		worst = fmax(worst, fabs((double)batch[i] - one[i]));
	CHECK(worst < 1e-4);
	qp_llama_free(m1);
	qp_llama_free(m3);
}

static void hf__folder_without_config_is_named(void)
{
	char dir[4096];
	tf_path(dir, sizeof(dir), "");
	struct qp_llama *m;
	int rc = qp_llama_open(&m, dir, 8, 1, &err);
	CHECK(rc != 0 && strstr(err.msg, "config.json") != NULL);
}

static void rope__gguf_freq_factors_equal_linear_scaling(void)
{
	char plain[4096], linear[4096], freqs[4096], bad[4096];
	CHECK_OK(write_model(tf_path(plain, sizeof(plain), "plain.gguf"), NULL, 0, 0));
	CHECK_OK(write_model(tf_path(linear, sizeof(linear), "linear.gguf"), "linear", 2.0f, 0));
	CHECK_OK(write_model(tf_path(freqs, sizeof(freqs), "freqs.gguf"), NULL, 0, 2.0f));
	static float a[N * VOCAB], b[N * VOCAB], c[N * VOCAB];
	logits_of(plain, a);
	logits_of(linear, b);
	logits_of(freqs, c);
	CHECK(memcmp(b, c, sizeof(b)) == 0);
	/* position 0 is not rotated; later ones are, by other angles */
	CHECK(memcmp(a, b, VOCAB * sizeof(float)) == 0);
	CHECK(memcmp(a + VOCAB, b + VOCAB, (N - 1) * VOCAB * sizeof(float)) != 0);
	CHECK_OK(write_model(tf_path(bad, sizeof(bad), "bad.gguf"), "longrope", 2.0f, 0));
	struct qp_llama *m;
	int rc = qp_llama_open(&m, bad, N, 1, &err);
	CHECK(rc == QP_EINVAL && strstr(err.msg, "RoPE scaling type 'longrope' is not supported (supported: "
	                                         "none, linear, yarn; llama3 as rope_freqs.weight)"));
	CHECK_OK(write_model(bad, "linear", 0.0f, 0));
	rc = qp_llama_open(&m, bad, N, 1, &err);
	CHECK(rc == QP_EINVAL && strstr(err.msg, "RoPE type linear needs a positive 'factor'"));
}

static void rope__kinds_by_name(void)
{
	enum qp_rope_kind k;
	CHECK_OK(qp_rope_kind_parse(&k, "yarn", &err));
	CHECK(k == QP_ROPE_YARN);
	CHECK_ERR(qp_rope_kind_parse(&k, "su", &err), QP_EINVAL,
	          "RoPE type 'su' is not supported (supported: default, linear, dynamic, yarn, llama3)");
}

static void ppl_hf__windows_and_overlap_free_case(void)
{
	char path[4096];
	CHECK_OK(write_model(tf_path(path, sizeof(path), "ppl.gguf"), NULL, 0, 0));
	int64_t n;
	struct qp_ppl_hf_params p = {.max_length = 16, .stride = 6};
	CHECK_OK(qp_ppl_hf_plan(&n, 50, &p, &err));
	CHECK_EQ_INT(n, 7); /* begins 0, 6, ..., 36; the last ends at 50 */
	CHECK_OK(qp_ppl_hf_plan(&n, 10, &p, &err));
	CHECK_EQ_INT(n, 1);
	p.windows = 3;
	CHECK_OK(qp_ppl_hf_plan(&n, 50, &p, &err));
	CHECK_EQ_INT(n, 3);
	p.stride = 17;
	CHECK_ERR(qp_ppl_hf_plan(&n, 50, &p, &err), QP_EINVAL, "stride 17 is outside 1 .. 16, the window length (n_ctx)");
	p.stride = 4;
	CHECK_ERR(qp_ppl_hf_plan(&n, 1, &p, &err), QP_EINVAL, "the text is 1 token(s) long: nothing to score");

	struct qp_llama *m;
	CHECK_OK(qp_llama_open(&m, path, 16, 2, &err));
	int32_t t[50];
	for (int i = 0; i < 50; i++)
		t[i] = (i * 11 + 5) % VOCAB;
	struct qp_ppl_result r;
	p = (struct qp_ppl_hf_params){.max_length = 16, .stride = 6};
	CHECK_OK(qp_ppl_hf_run(&r, m, t, 50, &p, NULL, NULL, &err));
	CHECK_EQ_INT(r.n_chunks, 7);
	CHECK_EQ_INT(r.n_scored, 49);
	/* no overlap: windows 0-16, 16-32, 32-48, 48-50, each scoring all but its first token */
	p.stride = 16;
	CHECK_OK(qp_ppl_hf_run(&r, m, t, 50, &p, NULL, NULL, &err));
	struct qp_nll_sums s = {0};
	static float logits[16 * VOCAB];
	for (int b = 0; b < 50; b += 16)
		CHECK_OK(qp_ppl_window(&s, m, t + b, b + 16 <= 50 ? 16 : 50 - b, 0, logits, &err));
	CHECK_EQ_INT(r.n_chunks, 4);
	CHECK_EQ_INT(r.n_scored, s.n);
	CHECK(fabs(r.nll - s.nll / (double)s.n) < 1e-12);
	qp_llama_free(m);
}

int main(int argc, char **argv)
{
	if (qp_kernels_init(NULL, &err) != 0) {
		fprintf(stderr, "%s\n", err.msg);
		return 1;
	}
	static const struct tf_test tests[] = {
		TF_TEST(hf__folder_batch_equals_one_token_at_a_time),
		TF_TEST(hf__folder_without_config_is_named),
		TF_TEST(rope__gguf_freq_factors_equal_linear_scaling),
		TF_TEST(rope__kinds_by_name),
		TF_TEST(ppl_hf__windows_and_overlap_free_case),
	};
	return tf_main(argc, argv, tests, sizeof(tests) / sizeof(tests[0]));
}
