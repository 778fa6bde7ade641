/* model/seqcalib on a tiny random Llama (f32, GQA): the groups come in
 * the reference's order, and when "quantizing" changes nothing each
 * group's Gram matrix is exactly the one calibrate sums over full passes
 * of the same windows; a quantized group changes the later groups' Gram
 * matrices and not the earlier ones'; results that exist already are
 * loaded without a Gram matrix, and kept weights are never asked for.
 * (tests/model/test_gptq_sequential.py checks real GPTQ against numpy.) */
#include <math.h>

#include "formats/gguf.h"
#include "kernels/kernels.h"
#include "model/calib.h"
#include "model/llama.h"
#include "model/seqcalib.h"
#include "../formats/tf.h"

static struct qp_err err;

enum { D = 32, FF = 64, HEADS = 4, KV = 2, LAYERS = 2, VOCAB = 40, SAMPLES = 3, SEQ = 6 };

static uint64_t rng = 88172645463325252ull;

static float rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (float)((double)(rng >> 11) / 9007199254740992.0 - 0.5);
}

static float store[60000];
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

static int write_model(const char *path)
{
	struct qp_gguf_writer *w;
	used = 0;
	int rc = qp_gguf_writer_new(&w, &err);
	if (rc)
		return rc;
	rc = qp_gguf_set_str(w, "general.architecture", "llama", &err) ||
	     qp_gguf_set_u32(w, "llama.embedding_length", D, &err) || qp_gguf_set_u32(w, "llama.block_count", LAYERS, &err) ||
	     qp_gguf_set_u32(w, "llama.feed_forward_length", FF, &err) ||
	     qp_gguf_set_u32(w, "llama.attention.head_count", HEADS, &err) ||
	     qp_gguf_set_u32(w, "llama.attention.head_count_kv", KV, &err) || add(w, "token_embd.weight", D, VOCAB, 0) ||
	     add(w, "output_norm.weight", D, 0, 1);
	for (int l = 0; l < LAYERS && !rc; l++) {
		static const struct { const char *name; int64_t ne0, ne1; } t[] = {
			{"attn_q", D, D}, {"attn_k", D, KV * D / HEADS}, {"attn_v", D, KV * D / HEADS},
			{"attn_output", D, D}, {"ffn_gate", D, FF}, {"ffn_up", D, FF}, {"ffn_down", FF, D},
			{"attn_norm", D, 0}, {"ffn_norm", D, 0}};
		for (size_t i = 0; i < sizeof(t) / sizeof(t[0]) && !rc; i++) {
			char n[64];
			snprintf(n, sizeof(n), "blk.%d.%s.weight", l, t[i].name);
			rc = add(w, n, t[i].ne0, t[i].ne1, t[i].ne1 ? 0.0f : 1.0f);
		}
	}
	if (!rc)
		rc = qp_gguf_writer_write(w, path, &err);
	qp_gguf_writer_free(w);
	return rc;
}

/* What the callbacks saw. */
struct log {
	const struct qp_llama *m;
	const struct qp_calib *stat;  /* calibrate's sums over full passes */
	const char *scale;            /* this weight's "quantized" values are its own times 0.5 */
	const char *done, *keep;      /* weights whose result exists already / that stay */
	char calls[16][40];
	int n_calls, n_gram, n_equal, n_layers;
};

static enum qp_seq_state state(void *user, const char *name)
{
	struct log *g = user;
	if (g->keep && !strcmp(name, g->keep))
		return QP_SEQ_KEEP;
	return g->done && !strcmp(name, g->done) ? QP_SEQ_DONE : QP_SEQ_QUANTIZE;
}

static int quantize(void *user, const char *name, const float *gram, float *deq, struct qp_err *e)
{
	struct log *g = user;
	(void)e;
	const struct qp_gguf_tensor *t = qp_gguf_find_tensor(qp_llama_gguf(g->m), name);
	if (g->n_calls < 16)
		snprintf(g->calls[g->n_calls], sizeof(g->calls[0]), "%s%s", name + 4, gram ? "" : " (done)");
	g->n_calls++;
	int64_t k = t->ne[0], n = t->ne[0] * t->ne[1];
	for (int64_t i = 0; i < n; i++)
		deq[i] = ((const float *)t->data)[i] * (g->scale && !strcmp(name, g->scale) ? 0.5f : 1.0f);
	if (!gram)
		return 0;
	g->n_gram++;
	/* the record calibrate keeps for this weight's input */
	const struct qp_calib_input *r = NULL;
	for (size_t i = 0; i < qp_calib_count(g->stat) && !r; i++)
		for (int w = 0; w < qp_calib_at(g->stat, i)->n_weights; w++)
			if (!strcmp(qp_calib_at(g->stat, i)->weights[w], name))
				r = qp_calib_at(g->stat, i);
	float *h = qp_calib_hessian_f32(r);
	g->n_equal += h && r->k == k && memcmp(h, gram, (size_t)(k * k) * sizeof(float)) == 0;
	free(h);
	return 0;
}

static int layer_done(void *user, int64_t il, int64_t n_layer, struct qp_err *e)
{
	struct log *g = user;
	(void)e;
	/* in order, once each: a count that a skipped or repeated layer spoils */
	g->n_layers += il == g->n_layers && n_layer == LAYERS ? 1 : 100;
	return 0;
}

static int32_t toks[SAMPLES * SEQ];

/* calibrate's sums: the windows through full passes, every input observed */
static void static_sums(const char *path, struct qp_calib **out)
{
	struct qp_llama *m;
	struct qp_calib *c;
	*out = NULL;
	for (int i = 0; i < SAMPLES * SEQ; i++)
		toks[i] = (i * 7 + 3) % VOCAB;
	CHECK_OK(qp_llama_open(&m, path, SEQ, 2, &err));
	CHECK_OK(qp_calib_new(&c, true, 2, &err));
	qp_llama_set_observer(m, qp_calib_observe, c);
	for (int s = 0; s < SAMPLES; s++)
		CHECK_OK(qp_llama_eval(m, toks + s * SEQ, SEQ, 0, NULL, &err));
	qp_llama_free(m);
	*out = c;
}

static void run(const char *path, struct log *g)
{
	struct qp_llama *m;
	CHECK_OK(qp_llama_open(&m, path, SEQ, 2, &err));
	g->m = m;
	const struct qp_seq_callbacks cb = {g, state, quantize, layer_done};
	CHECK_OK(qp_seqcalib_run(m, toks, SAMPLES, SEQ, &cb, 2, &err));
	qp_llama_free(m);
}

static void seqcalib__unchanged_weights_give_calibrates_grams_in_group_order(void)
{
	char path[4096];
	tf_path(path, sizeof(path), "seq.gguf");
	CHECK_OK(write_model(path));
	struct qp_calib *stat;
	static_sums(path, &stat);
	if (!stat)
		return;
	struct log g = {.stat = stat};
	run(path, &g);
	CHECK_EQ_INT(g.n_calls, 7 * LAYERS);
	CHECK_EQ_INT(g.n_gram, 7 * LAYERS);
	CHECK_EQ_INT(g.n_equal, 7 * LAYERS);
	CHECK_EQ_INT(g.n_layers, LAYERS);
	static const char *const order[7] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};
	for (int l = 0; l < LAYERS; l++)
		for (int j = 0; j < 7; j++) {
			char want[40];
			snprintf(want, sizeof(want), "%d.%s.weight", l, order[j]);
			CHECK_EQ_STR(g.calls[l * 7 + j], want);
		}
	qp_calib_free(stat);
}

static void seqcalib__a_quantized_group_moves_only_later_grams(void)
{
	char path[4096];
	tf_path(path, sizeof(path), "seq.gguf");
	CHECK_OK(write_model(path));
	struct qp_calib *stat;
	static_sums(path, &stat);
	if (!stat)
		return;
	/* o_proj of layer 0 changed: q/k/v of layer 0 keep calibrate's input,
	 * gate/up, down and all of layer 1 see another */
	struct log g = {.stat = stat, .scale = "blk.0.attn_output.weight"};
	run(path, &g);
	CHECK_EQ_INT(g.n_gram, 7 * LAYERS);
	CHECK_EQ_INT(g.n_equal, 4);
	/* a result that exists is loaded without a pass; a kept weight is never asked for */
	struct log h = {.stat = stat, .done = "blk.1.ffn_down.weight", .keep = "blk.0.attn_k.weight"};
	run(path, &h);
	CHECK_EQ_INT(h.n_calls, 7 * LAYERS - 1);
	CHECK_EQ_INT(h.n_gram, 7 * LAYERS - 2);
	CHECK_EQ_INT(h.n_equal, 7 * LAYERS - 2);
	CHECK_EQ_STR(h.calls[1], "0.attn_v.weight");
	CHECK_EQ_STR(h.calls[12], "1.ffn_down.weight (done)");
	qp_calib_free(stat);
}

int main(int argc, char **argv)
{
	if (qp_kernels_init(NULL, &err) != 0) {
		fprintf(stderr, "%s\n", err.msg);
		return 1;
	}
	static const struct tf_test tests[] = {
		TF_TEST(seqcalib__unchanged_weights_give_calibrates_grams_in_group_order),
		TF_TEST(seqcalib__a_quantized_group_moves_only_later_grams),
	};
	return tf_main(argc, argv, tests, sizeof(tests) / sizeof(tests[0]));
}
