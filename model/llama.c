/* One batch through the Llama graph, as llama.cpp's llm_build_llama
 * computes it for a plain (unscaled RoPE, no bias) model:
 *
 *   x = token_embd[tokens]
 *   per layer:  h = rmsnorm(x) * attn_norm
 *               q, k, v = h Wq, h Wk, h Wv;  RoPE "normal" on q and k
 *               k, v -> cache at their positions
 *               a = softmax(q k^T / sqrt(head_dim), causal) v  (per head;
 *                   query head i reads kv head i / (n_head / n_head_kv))
 *               x += a Wo
 *               h = rmsnorm(x) * ffn_norm
 *               x += (silu(h Wgate) * (h Wup)) Wdown
 *   logits = (rmsnorm(x) * output_norm) Wout,  Wout = output or token_embd
 *
 * The KV cache is f32 (llama.cpp defaults to f16; the difference is far
 * below the tolerances perplexity is compared with). */
#include "model/llama.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "formats/gguf.h"
#include "kernels/kernels.h"
#include "kernels/convert.h"
#include "kernels/ops.h"
#include "kernels/w8a8.h"
#include "model/llama_hf.h"

const char qp_llama_supported[] = "llama";

struct layer {
	const struct qp_gguf_tensor *wq, *wk, *wv, *wo, *wg, *wu, *wd;
	float *attn_norm, *ffn_norm;  /* owned f32 copies */
	/* the layouts qp_ops_attn reads along: keys transposed, values as rows */
	float *k_cache;               /* transposed: [n_head_kv * head_dim][n_ctx] */
	float *v_cache;               /* [n_ctx][n_head_kv * head_dim] */
};

struct qp_llama {
	struct qp_gguf_file *f;  /* the GGUF, or NULL for a Hugging Face checkpoint: */
	struct qp_llama_hf *hf;  /* its tensors under llama.cpp names */
	double *inv_freq;        /* RoPE, n_rot / 2, set per batch */
	char *path;             /* copy, for messages */
	struct qp_llama_hparams hp;
	int64_t n_ctx;
	int threads;
	const struct qp_gguf_tensor *tok_embd, *output;
	float *out_norm;
	struct layer *layers;
	/* activations for a batch of up to n_ctx tokens */
	float *x, *h, *q, *k, *v, *a, *g, *u;
	qp_llama_observer observe;  /* NULL: none */
	void *observe_user;
	/* W8A8 mode (qp_llama_set_w8a8): the layers' linears as int8 rows */
	struct w8 {
		const struct qp_gguf_tensor *t;
		int8_t *q;       /* rows x cols codes, owned */
		float *scale;    /* one per row, owned */
	} *w8;
	size_t n_w8;
	/* weights replaced by qp_llama_set_weight_f32: F32 tensors whose
	 * struct and data are owned */
	struct qp_gguf_tensor **own;
	size_t n_own;
};

static int kv_int(const struct qp_llama *m, const char *key, int64_t *out, bool required,
                  struct qp_err *err)
{
	const struct qp_gguf_kv *kv = qp_gguf_find_kv(m->f, key);
	if (!kv) {
		if (required)
			return qp_err_set(err, QP_EINVAL, "%s: key '%s' is missing", m->path, key);
		return 0;
	}
	switch (kv->type) {
	case QP_GGUF_UINT8: case QP_GGUF_UINT16: case QP_GGUF_UINT32: case QP_GGUF_UINT64:
		if (kv->v.u64 > (1u << 30))
			break;
		*out = (int64_t)kv->v.u64;
		return 0;
	case QP_GGUF_INT8: case QP_GGUF_INT16: case QP_GGUF_INT32: case QP_GGUF_INT64:
		if (kv->v.i64 < 0 || kv->v.i64 > (1 << 30))
			break;
		*out = kv->v.i64;
		return 0;
	default:
		break;
	}
	return qp_err_set(err, QP_ECORRUPT, "%s: key '%s' is not an integer in [0, 2^30]", m->path, key);
}

static int kv_float(const struct qp_llama *m, const char *key, float *out, struct qp_err *err)
{
	const struct qp_gguf_kv *kv = qp_gguf_find_kv(m->f, key);
	if (!kv)
		return 0;
	if (kv->type != QP_GGUF_FLOAT32 && kv->type != QP_GGUF_FLOAT64)
		return qp_err_set(err, QP_ECORRUPT, "%s: key '%s' is not a float", m->path, key);
	*out = (float)kv->v.f64;
	return 0;
}

/* Tensor by llama.cpp name from either source; NULL if absent. */
static const struct qp_gguf_tensor *find(const struct qp_llama *m, const char *name)
{
	return m->hf ? qp_llama_hf_find(m->hf, name) : qp_gguf_find_tensor(m->f, name);
}

/* Tensor name with shape [ne0, ne1] (ne1 0: 1-D of ne0); 2-D ones need a
 * dot product kernel for their type. */
static int need(struct qp_llama *m, const char *name, int64_t ne0, int64_t ne1,
                const struct qp_gguf_tensor **out, struct qp_err *err)
{
	const struct qp_gguf_tensor *t = find(m, name);
	*out = t;
	if (!t)
		return qp_err_set(err, QP_EINVAL, "%s: tensor '%s' is missing", m->path, name);
	int ndim = ne1 ? 2 : 1;
	int64_t got1 = t->ndim > 1 ? t->ne[1] : 0;
	if (t->ndim != ndim || t->ne[0] != ne0 || got1 != ne1)
		return qp_err_set(err, QP_EINVAL,
		                  "%s: tensor '%s' has shape [%lld, %lld], expected [%lld, %lld]", m->path,
		                  name, (long long)t->ne[0], (long long)got1, (long long)ne0, (long long)ne1);
	if (ndim == 2) {
		const struct qp_kernel_ops *ops = qp_kernels_get(t->type);
		if (!ops || !ops->vec_dot || !ops->dequantize_row)
			return qp_err_set(err, QP_EINVAL, "%s: tensor '%s' has type %s, which qpipe cannot "
			                  "multiply yet", m->path, name, qp_type_traits(t->type)->name);
	}
	return 0;
}

static int norm_weights(struct qp_llama *m, const char *name, float **out, struct qp_err *err)
{
	const struct qp_gguf_tensor *t;
	int rc = need(m, name, m->hp.n_embd, 0, &t, err);
	if (rc)
		return rc;
	*out = malloc((size_t)m->hp.n_embd * sizeof(float));
	if (!*out)
		return qp_err_nomem(err);
	if (qp_kernels_to_f32(t->type, t->data, *out, m->hp.n_embd) != 0)
		return qp_err_set(err, QP_EINVAL, "%s: tensor '%s': cannot read type %s", m->path, name,
		                  qp_type_traits(t->type)->name);
	return 0;
}

void qp_llama_free(struct qp_llama *m)
{
	for (size_t i = 0; m && i < m->n_w8; i++) {
		free(m->w8[i].q);
		free(m->w8[i].scale);
	}
	if (m)
		free(m->w8);
	if (!m)
		return;
	for (size_t i = 0; i < m->n_own; i++) {
		free((void *)m->own[i]->data);
		free(m->own[i]);
	}
	free(m->own);
	for (int64_t i = 0; m->layers && i < m->hp.n_layer; i++) {
		free(m->layers[i].attn_norm);
		free(m->layers[i].ffn_norm);
		free(m->layers[i].k_cache);
		free(m->layers[i].v_cache);
	}
	free(m->layers);
	free(m->out_norm);
	free(m->x);
	free(m->h);
	free(m->q);
	free(m->k);
	free(m->v);
	free(m->a);
	free(m->g);
	free(m->u);
	qp_gguf_close(m->f);
	qp_llama_hf_close(m->hf);
	free(m->inv_freq);
	free(m->path);
	free(m);
}

/* RoPE scaling as llama.cpp's converter writes it: llama.rope.scaling.type
 * (none, linear, yarn) with .factor and .original_context_length (yarn's
 * betas and attn_factor when present, else the defaults),
 * the older llama.rope.scale_linear, and llama3's rope_freqs.weight
 * (per-pair divisors of the frequencies). The rows are in the
 * interleaved layout export.gguf writes. */
static int gguf_rope(struct qp_llama *m, struct qp_err *err)
{
	struct qp_llama_hparams *hp = &m->hp;
	struct qp_rope *r = &hp->rope;
	int rc;
	memset(r, 0, sizeof(*r));
	r->theta = hp->rope_base;
	r->truncate = true;
	r->max_pos = hp->n_ctx_train;
	float factor = 0.0f, attn = 0.0f, bf = 0.0f, bs = 0.0f, lin = 0.0f;
	int64_t orig = 0;
	if ((rc = kv_float(m, "llama.rope.scaling.factor", &factor, err)) ||
	    (rc = kv_float(m, "llama.rope.scale_linear", &lin, err)) ||
	    (rc = kv_float(m, "llama.rope.scaling.attn_factor", &attn, err)) ||
	    (rc = kv_float(m, "llama.rope.scaling.yarn_beta_fast", &bf, err)) ||
	    (rc = kv_float(m, "llama.rope.scaling.yarn_beta_slow", &bs, err)) ||
	    (rc = kv_int(m, "llama.rope.scaling.original_context_length", &orig, false, err)))
		return rc;
	const struct qp_gguf_kv *type = qp_gguf_find_kv(m->f, "llama.rope.scaling.type");
	if (type && type->type != QP_GGUF_STRING)
		return qp_err_set(err, QP_ECORRUPT, "%s: key 'llama.rope.scaling.type' is not a string", m->path);
	char tname[32] = "none";
	if (type)
		snprintf(tname, sizeof(tname), "%.*s", (int)(type->v.str.len < 31 ? type->v.str.len : 31),
		         type->v.str.data);
	if (!strcmp(tname, "none")) {
		r->kind = lin > 0.0f && lin != 1.0f ? QP_ROPE_LINEAR : QP_ROPE_DEFAULT;
		factor = lin;
	} else if (!strcmp(tname, "linear")) {
		r->kind = QP_ROPE_LINEAR;
	} else if (!strcmp(tname, "yarn")) {
		r->kind = QP_ROPE_YARN;
	} else {
		return qp_err_set(err, QP_EINVAL, "%s: RoPE scaling type '%s' is not supported (supported: "
		                  "none, linear, yarn; llama3 as rope_freqs.weight)", m->path, tname);
	}
	r->factor = factor;
	r->orig_max_pos = orig ? orig : hp->n_ctx_train;
	/* ggml's yarn multiplies attn_factor into its own 1 + 0.1 ln(factor),
	 * where transformers' attention_factor replaces it */
	if (r->kind == QP_ROPE_YARN && factor > 1.0f)
		r->attention_factor = (attn > 0.0f ? attn : 1.0) * (0.1 * log(factor) + 1.0);
	r->beta_fast = bf;
	r->beta_slow = bs;
	const struct qp_gguf_tensor *ff = qp_gguf_find_tensor(m->f, "rope_freqs.weight");
	if (ff) {
		if (ff->type != QP_TYPE_F32 || ff->ndim != 1 || ff->ne[0] != hp->n_rot / 2)
			return qp_err_set(err, QP_EINVAL, "%s: tensor 'rope_freqs.weight' is not %lld f32 values",
			                  m->path, (long long)(hp->n_rot / 2));
		r->freq_factors = ff->data;
	}
	return qp_rope_check(r, hp->n_rot, m->path, err);
}

static int load_hparams(struct qp_llama *m, struct qp_err *err)
{
	const struct qp_gguf_kv *arch = qp_gguf_find_kv(m->f, "general.architecture");
	if (!arch || arch->type != QP_GGUF_STRING)
		return qp_err_set(err, QP_EINVAL, "%s: key 'general.architecture' is missing", m->path);
	if (arch->v.str.len != 5 || memcmp(arch->v.str.data, "llama", 5) != 0)
		return qp_err_set(err, QP_EINVAL, "%s: architecture '%.*s' is not supported (supported: %s)",
		                  m->path, (int)(arch->v.str.len > 64 ? 64 : arch->v.str.len),
		                  arch->v.str.data, qp_llama_supported);
	struct qp_llama_hparams *hp = &m->hp;
	int rc;
	hp->eps = 1e-5f;
	hp->rope_base = 10000.0f;
	hp->n_head_kv = -1;
	hp->n_rot = -1;
	if ((rc = kv_int(m, "llama.embedding_length", &hp->n_embd, true, err)) ||
	    (rc = kv_int(m, "llama.block_count", &hp->n_layer, true, err)) ||
	    (rc = kv_int(m, "llama.attention.head_count", &hp->n_head, true, err)) ||
	    (rc = kv_int(m, "llama.feed_forward_length", &hp->n_ff, true, err)) ||
	    (rc = kv_int(m, "llama.attention.head_count_kv", &hp->n_head_kv, false, err)) ||
	    (rc = kv_int(m, "llama.rope.dimension_count", &hp->n_rot, false, err)) ||
	    (rc = kv_int(m, "llama.context_length", &hp->n_ctx_train, false, err)) ||
	    (rc = kv_float(m, "llama.attention.layer_norm_rms_epsilon", &hp->eps, err)) ||
	    (rc = kv_float(m, "llama.rope.freq_base", &hp->rope_base, err)))
		return rc;
	if (hp->n_head_kv < 0)
		hp->n_head_kv = hp->n_head;
	if (hp->n_embd <= 0 || hp->n_layer <= 0 || hp->n_head <= 0 || hp->n_ff <= 0 ||
	    hp->n_head_kv <= 0 || hp->n_embd % hp->n_head != 0 || hp->n_head % hp->n_head_kv != 0)
		return qp_err_set(err, QP_EINVAL,
		                  "%s: %lld heads, %lld kv heads and width %lld do not fit together",
		                  m->path, (long long)hp->n_head, (long long)hp->n_head_kv,
		                  (long long)hp->n_embd);
	hp->head_dim = hp->n_embd / hp->n_head;
	if (hp->n_rot < 0)
		hp->n_rot = hp->head_dim;
	if (hp->n_rot > hp->head_dim || hp->n_rot % 2 != 0)
		return qp_err_set(err, QP_EINVAL, "%s: llama.rope.dimension_count %lld does not fit head size %lld",
		                  m->path, (long long)hp->n_rot, (long long)hp->head_dim);
	if (!(hp->rope_base > 0.0f) || !(hp->eps >= 0.0f))
		return qp_err_set(err, QP_EINVAL, "%s: rope base %g or rms epsilon %g is invalid", m->path,
		                  (double)hp->rope_base, (double)hp->eps);
	if ((rc = gguf_rope(m, err)))
		return rc;
	const struct qp_gguf_tensor *te = qp_gguf_find_tensor(m->f, "token_embd.weight");
	if (!te || te->ndim != 2)
		return qp_err_set(err, QP_EINVAL, "%s: tensor 'token_embd.weight' is missing or not 2-D", m->path);
	hp->n_vocab = te->ne[1];
	return 0;
}

static float *falloc(int64_t a, int64_t b)
{
	if (a <= 0 || b <= 0 || (uint64_t)a > SIZE_MAX / sizeof(float) / (uint64_t)b)
		return NULL;
	return malloc((size_t)a * (size_t)b * sizeof(float));
}

/* Source: a GGUF file (gguf), a folder (dir), or config + weights files. */
struct source {
	const char *gguf, *dir, *config, *weights;
};

static int open_any(struct qp_llama **out, const char *path, const struct source *src, int64_t n_ctx,
                    int threads, struct qp_err *err)
{
	*out = NULL;
	struct qp_llama *m = calloc(1, sizeof(*m));
	if (!m)
		return qp_err_nomem(err);
	m->path = strdup(path);
	if (!m->path) {
		free(m);
		return qp_err_nomem(err);
	}
	m->threads = threads < 1 ? 1 : threads;
	m->n_ctx = n_ctx;
	int rc;
	if (src->gguf) {
		if (!(rc = qp_gguf_open(&m->f, path, err)))
			rc = load_hparams(m, err);
	} else if (src->dir)
		rc = qp_llama_hf_open_dir(&m->hf, src->dir, n_ctx, &m->hp, err);
	else
		rc = qp_llama_hf_open(&m->hf, src->config, src->weights, n_ctx, &m->hp, err);
	if (rc)
		goto fail;
	if (!(m->inv_freq = calloc((size_t)m->hp.n_rot / 2 + 1, sizeof(double)))) {
		rc = qp_err_nomem(err);
		goto fail;
	}
	if (n_ctx < 1 || n_ctx > (1 << 20)) {
		rc = qp_err_set(err, QP_EINVAL, "n_ctx %lld is out of range [1, 1048576]", (long long)n_ctx);
		goto fail;
	}
	const struct qp_llama_hparams *hp = &m->hp;
	int64_t d = hp->n_embd, hd = hp->head_dim, nq = hp->n_head * hd, nkv = hp->n_head_kv * hd;
	if ((rc = need(m, "token_embd.weight", d, hp->n_vocab, &m->tok_embd, err)) ||
	    (rc = norm_weights(m, "output_norm.weight", &m->out_norm, err)))
		goto fail;
	m->output = m->tok_embd;
	if (find(m, "output.weight") &&
	    (rc = need(m, "output.weight", d, hp->n_vocab, &m->output, err)))
		goto fail;
	m->layers = calloc((size_t)hp->n_layer, sizeof(*m->layers));
	if (!m->layers) {
		rc = qp_err_nomem(err);
		goto fail;
	}
	for (int64_t i = 0; i < hp->n_layer; i++) {
		struct layer *l = &m->layers[i];
		char n[9][64];
		static const char *const names[9] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate",
		                                     "ffn_up", "ffn_down", "attn_norm", "ffn_norm"};
		for (int j = 0; j < 9; j++)
			snprintf(n[j], sizeof(n[j]), "blk.%lld.%s.weight", (long long)i, names[j]);
		if ((rc = need(m, n[0], d, nq, &l->wq, err)) || (rc = need(m, n[1], d, nkv, &l->wk, err)) ||
		    (rc = need(m, n[2], d, nkv, &l->wv, err)) || (rc = need(m, n[3], nq, d, &l->wo, err)) ||
		    (rc = need(m, n[4], d, hp->n_ff, &l->wg, err)) ||
		    (rc = need(m, n[5], d, hp->n_ff, &l->wu, err)) ||
		    (rc = need(m, n[6], hp->n_ff, d, &l->wd, err)) ||
		    (rc = norm_weights(m, n[7], &l->attn_norm, err)) ||
		    (rc = norm_weights(m, n[8], &l->ffn_norm, err)))
			goto fail;
		l->k_cache = falloc(n_ctx, nkv);
		l->v_cache = falloc(n_ctx, nkv);
		if (!l->k_cache || !l->v_cache) {
			rc = qp_err_nomem(err);
			goto fail;
		}
	}
	m->x = falloc(n_ctx, d);
	m->h = falloc(n_ctx, d);
	m->q = falloc(n_ctx, nq);
	m->k = falloc(n_ctx, nkv);
	m->v = falloc(n_ctx, nkv);
	m->a = falloc(n_ctx, nq);
	m->g = falloc(n_ctx, hp->n_ff);
	m->u = falloc(n_ctx, hp->n_ff);
	if (!m->x || !m->h || !m->q || !m->k || !m->v || !m->a || !m->g || !m->u) {
		rc = qp_err_nomem(err);
		goto fail;
	}
	*out = m;
	return 0;
fail:
	qp_llama_free(m);
	return rc;
}

int qp_llama_open(struct qp_llama **out, const char *path, int64_t n_ctx, int threads,
                  struct qp_err *err)
{
	struct stat st;
	bool dir = stat(path, &st) == 0 && S_ISDIR(st.st_mode);
	struct source src = {.gguf = dir ? NULL : path, .dir = dir ? path : NULL};
	return open_any(out, path, &src, n_ctx, threads, err);
}

int qp_llama_open_hf(struct qp_llama **out, const char *config_path, const char *weights_path,
                     int64_t n_ctx, int threads, struct qp_err *err)
{
	struct source src = {.config = config_path, .weights = weights_path};
	return open_any(out, weights_path, &src, n_ctx, threads, err);
}

int qp_llama_set_w8a8(struct qp_llama *m, struct qp_err *err)
{
	if (m->w8)
		return 0;
	size_t n = (size_t)m->hp.n_layer * 7;
	if (!(m->w8 = calloc(n, sizeof(*m->w8))))
		return qp_err_nomem(err);
	for (int64_t i = 0; i < m->hp.n_layer; i++) {
		const struct layer *l = &m->layers[i];
		const struct qp_gguf_tensor *ts[7] = {l->wq, l->wk, l->wv, l->wo, l->wg, l->wu, l->wd};
		for (int j = 0; j < 7; j++) {
			const struct qp_gguf_tensor *t = ts[j];
			struct w8 *w = &m->w8[m->n_w8++];
			int64_t rows = t->ne[1], cols = t->ne[0];
			float *f = falloc(rows, cols);
			w->t = t;
			w->q = malloc((size_t)(rows * cols));
			w->scale = falloc(rows, 1);
			int rc = !f || !w->q || !w->scale ? qp_err_nomem(err) : 0;
			if (!rc)
				rc = qp_convert_rows(QP_TYPE_F32, f, t->type, t->data, rows, cols, m->threads, err);
			if (!rc)
				rc = qp_w8a8_quantize_weights(w->q, w->scale, f, rows, cols, err);
			free(f);
			if (rc)
				return qp_err_prefix(err, "%s: tensor '%s'", m->path, t->name), rc;
		}
	}
	return 0;
}

const struct qp_llama_hparams *qp_llama_hparams(const struct qp_llama *m) { return &m->hp; }

void qp_llama_set_observer(struct qp_llama *m, qp_llama_observer fn, void *user)
{
	m->observe = fn;
	m->observe_user = user;
}

/* Hand x, the input of the weights w[0 .. n_w), to the observer if one is
 * set; the check is all an unobserved pass pays. */
static int observe(const struct qp_llama *m, const struct qp_gguf_tensor *const *w, int n_w,
                   const float *x, int64_t n, struct qp_err *err)
{
	if (!m->observe)
		return 0;
	const char *names[3];
	for (int i = 0; i < n_w; i++)
		names[i] = w[i]->name;
	return m->observe(m->observe_user, names, n_w, x, n, w[0]->ne[0], err);
}
int qp_llama_threads(const struct qp_llama *m) { return m->threads; }
const struct qp_gguf_file *qp_llama_gguf(const struct qp_llama *m) { return m->f; }

static int matmul(const struct qp_llama *m, float *y, const struct qp_gguf_tensor *w,
                  const float *x, int64_t n, struct qp_err *err)
{
	for (size_t i = 0; i < m->n_w8; i++)
		if (m->w8[i].t == w) {
			int rc = qp_w8a8_matmul(y, w->ne[1], m->w8[i].q, m->w8[i].scale, w->ne[1], w->ne[0], x, n, m->threads,
			                        err);
			return rc ? qp_err_prefix(err, "%s: tensor '%s' (w8a8)", m->path, w->name), rc : 0;
		}
	int rc = qp_ops_matmul(y, w->ne[1], w->type, w->data, w->ne[1], w->ne[0], x, n, m->threads, err);
	if (rc)
		qp_err_prefix(err, "%s: tensor '%s'", m->path, w->name);
	return rc;
}

struct attn_job {
	const struct qp_llama *m;
	const struct layer *l;
	int64_t pos;      /* position of the batch's first token */
	int64_t n;        /* tokens in the batch */
	int failed;
};

/* Queries of one head per qp_ops_attn call: enough to reuse each key and
 * value loaded, few enough that the keys a block reads past its first
 * query's end stay a small share. */
#define ATTN_BLOCK 16

/* Items are (head, block of tokens), head-major: the threads' ranges each
 * take whole heads where they can, and which thread runs a block never
 * changes its result. */
static void attn_rows(void *arg, int64_t i0, int64_t i1)
{
	struct attn_job *j = arg;
	const struct qp_llama_hparams *hp = &j->m->hp;
	const int64_t hd = hp->head_dim, nkv = hp->n_head_kv * hd, nq = hp->n_head * hd,
	              group = hp->n_head / hp->n_head_kv, n_blk = (j->n + ATTN_BLOCK - 1) / ATTN_BLOCK;
	float *scores = malloc((size_t)ATTN_BLOCK * (size_t)(j->pos + j->n) * sizeof(float));
	if (!scores) {
		__atomic_store_n(&j->failed, 1, __ATOMIC_RELAXED);
		return;
	}
	const float scale = 1.0f / sqrtf((float)hd);
	for (int64_t i = i0; i < i1; i++) {
		const int64_t h = i / n_blk, t0 = i % n_blk * ATTN_BLOCK, kvh = h / group;
		const int64_t n_q = j->n - t0 < ATTN_BLOCK ? j->n - t0 : ATTN_BLOCK;
		qp_ops_attn(j->m->a + t0 * nq + h * hd, nq, j->m->q + t0 * nq + h * hd, nq, n_q,
		            j->l->k_cache + kvh * hd * j->m->n_ctx, j->m->n_ctx, j->l->v_cache + kvh * hd, nkv,
		            j->pos + t0 + 1, hd, scale, scores);
	}
	free(scores);
}

/* x = token_embd[tokens], n tokens already checked to fit the context. */
static int embed(struct qp_llama *m, const int32_t *tokens, int64_t n, struct qp_err *err)
{
	const struct qp_llama_hparams *hp = &m->hp;
	int64_t d = hp->n_embd;
	size_t erow;
	if (qp_type_row_size(m->tok_embd->type, d, &erow))
		return qp_err_set(err, QP_EINVAL, "%s: token_embd.weight: bad row size", m->path);
	for (int64_t t = 0; t < n; t++) {
		if (tokens[t] < 0 || tokens[t] >= hp->n_vocab)
			return qp_err_set(err, QP_EINVAL, "token %lld: id %d is out of range (vocabulary of %lld)",
			                  (long long)t, tokens[t], (long long)hp->n_vocab);
		qp_kernels_to_f32(m->tok_embd->type, (const uint8_t *)m->tok_embd->data + (size_t)tokens[t] * erow,
		                  m->x + t * d, d);
	}
	return 0;
}

/* The per-token steps between the matrix products (norms, RoPE, SwiGLU,
 * the residual adds), spread over the threads by tokens once a batch is
 * long enough to pay for waking them: each token's result depends on
 * that token alone, so the split cannot change a bit. They ran on one
 * thread, about a tenth of a two-thread prefill. */
enum tok_step { TOK_NORM, TOK_ROPE, TOK_SILU, TOK_ADD };

struct tok_job {
	struct qp_llama *m;
	enum tok_step step;
	const float *w;      /* TOK_NORM: the norm's weights */
	int64_t pos;         /* TOK_ROPE: the batch's first position */
	double rope_scale;   /* TOK_ROPE */
};

/* below this many tokens the steps run on the calling thread */
#define TOK_PAR_MIN 16

static void tok_rows(void *arg, int64_t t0, int64_t t1)
{
	const struct tok_job *j = arg;
	struct qp_llama *m = j->m;
	const struct qp_llama_hparams *hp = &m->hp;
	const int64_t d = hp->n_embd, hd = hp->head_dim, nq = hp->n_head * hd, nkv = hp->n_head_kv * hd;
	for (int64_t t = t0; t < t1; t++)
		switch (j->step) {
		case TOK_NORM:
			qp_ops_rmsnorm(m->h + t * d, m->x + t * d, j->w, d, hp->eps);
			break;
		case TOK_ROPE: {
			/* the angles once for all of the token's heads: cosf and
			 * sinf per head were half of RoPE's time */
			float c[QP_ROPE_MAX_DIMS / 2], s[QP_ROPE_MAX_DIMS / 2];
			qp_rope_angles(&hp->rope, hp->n_rot, j->pos + t, m->inv_freq, j->rope_scale, c, s);
			qp_ops_rope_rotate(m->q + t * nq, hp->n_head, hd, hp->n_rot, hp->rope.neox, c, s);
			qp_ops_rope_rotate(m->k + t * nkv, hp->n_head_kv, hd, hp->n_rot, hp->rope.neox, c, s);
			break;
		}
		case TOK_SILU:
			/* a token at a time: the vector kernel leaves a row's last
			 * n_ff % 8 elements to scalar code, so a token's values do
			 * not depend on where it sits in the batch */
			qp_ops_silu_mul(m->g + t * hp->n_ff, m->u + t * hp->n_ff, hp->n_ff);
			break;
		case TOK_ADD:
			qp_ops_axpy(m->x + t * d, 1.0f, m->h + t * d, d);
			break;
		}
}

static void tok_step(struct qp_llama *m, enum tok_step step, const float *w, int64_t n, int64_t pos,
                     double rope_scale)
{
	struct tok_job j = {m, step, w, pos, rope_scale};
	qp_ops_parallel(n < TOK_PAR_MIN ? 1 : m->threads, n, tok_rows, &j);
}

/* Decoder layer li over the n tokens of m->x (positions pos ..), in place. */
static int layer_forward(struct qp_llama *m, int64_t li, int64_t n, int64_t pos, struct qp_err *err)
{
	const struct qp_llama_hparams *hp = &m->hp;
	const int64_t nkv = hp->n_head_kv * hp->head_dim;
	int rc;
	/* the frequencies of this batch (dynamic NTK depends on its length) */
	double rope_scale;
	qp_rope_freqs(&hp->rope, hp->n_rot, pos + n, m->inv_freq, &rope_scale);
	struct layer *l = &m->layers[li];
	tok_step(m, TOK_NORM, l->attn_norm, n, pos, rope_scale);
	const struct qp_gguf_tensor *qkv[3] = {l->wq, l->wk, l->wv}, *gu[2] = {l->wg, l->wu};
	if ((rc = observe(m, qkv, 3, m->h, n, err)) || (rc = matmul(m, m->q, l->wq, m->h, n, err)) || (rc = matmul(m, m->k, l->wk, m->h, n, err)) ||
	    (rc = matmul(m, m->v, l->wv, m->h, n, err)))
		return rc;
	tok_step(m, TOK_ROPE, NULL, n, pos, rope_scale);
	qp_ops_transpose(l->k_cache + pos, m->n_ctx, m->k, n, nkv);
	memcpy(l->v_cache + pos * nkv, m->v, (size_t)(n * nkv) * sizeof(float));
	struct attn_job job = {m, l, pos, n, 0};
	qp_ops_parallel(m->threads, hp->n_head * ((n + ATTN_BLOCK - 1) / ATTN_BLOCK), attn_rows, &job);
	if (job.failed)
		return qp_err_nomem(err);
	/* x += a Wo: the product lands in h, then is added */
	if ((rc = observe(m, &l->wo, 1, m->a, n, err)) || (rc = matmul(m, m->h, l->wo, m->a, n, err)))
		return rc;
	tok_step(m, TOK_ADD, NULL, n, pos, rope_scale);
	tok_step(m, TOK_NORM, l->ffn_norm, n, pos, rope_scale);
	if ((rc = observe(m, gu, 2, m->h, n, err)) || (rc = matmul(m, m->g, l->wg, m->h, n, err)) ||
	    (rc = matmul(m, m->u, l->wu, m->h, n, err)))
		return rc;
	tok_step(m, TOK_SILU, NULL, n, pos, rope_scale);
	if ((rc = observe(m, &l->wd, 1, m->g, n, err)) || (rc = matmul(m, m->h, l->wd, m->g, n, err)))
		return rc;
	tok_step(m, TOK_ADD, NULL, n, pos, rope_scale);
	return 0;
}

int qp_llama_eval(struct qp_llama *m, const int32_t *tokens, int64_t n, int64_t pos, float *logits,
                  struct qp_err *err)
{
	const struct qp_llama_hparams *hp = &m->hp;
	if (n < 1 || pos < 0 || pos + n > m->n_ctx)
		return qp_err_set(err, QP_EINVAL, "positions %lld to %lld do not fit the context of %lld",
		                  (long long)pos, (long long)(pos + n - 1), (long long)m->n_ctx);
	int rc;
	if ((rc = embed(m, tokens, n, err)))
		return rc;
	for (int64_t li = 0; li < hp->n_layer; li++)
		if ((rc = layer_forward(m, li, n, pos, err)))
			return rc;
	if (!logits)
		return 0;
	tok_step(m, TOK_NORM, m->out_norm, n, pos, 0.0);
	if ((rc = observe(m, &m->output, 1, m->h, n, err)))
		return rc;
	return matmul(m, logits, m->output, m->h, n, err);
}

/* n tokens at pos .. pos + n - 1 fit the context? */
static int check_batch(const struct qp_llama *m, int64_t n, int64_t pos, struct qp_err *err)
{
	if (n < 1 || pos < 0 || pos + n > m->n_ctx)
		return qp_err_set(err, QP_EINVAL, "positions %lld to %lld do not fit the context of %lld",
		                  (long long)pos, (long long)(pos + n - 1), (long long)m->n_ctx);
	return 0;
}

int qp_llama_embed(struct qp_llama *m, const int32_t *tokens, int64_t n, float *x, struct qp_err *err)
{
	int rc = check_batch(m, n, 0, err);
	if (rc || (rc = embed(m, tokens, n, err)))
		return rc;
	memcpy(x, m->x, (size_t)(n * m->hp.n_embd) * sizeof(float));
	return 0;
}

int qp_llama_layer(struct qp_llama *m, int64_t il, float *x, int64_t n, int64_t pos, struct qp_err *err)
{
	if (il < 0 || il >= m->hp.n_layer)
		return qp_err_set(err, QP_EINVAL, "%s: layer %lld does not exist (%lld layers)", m->path, (long long)il,
		                  (long long)m->hp.n_layer);
	int rc = check_batch(m, n, pos, err);
	if (rc)
		return rc;
	/* the layer runs on the model's own activations, so eval and this
	 * share one code path */
	size_t bytes = (size_t)(n * m->hp.n_embd) * sizeof(float);
	memcpy(m->x, x, bytes);
	if ((rc = layer_forward(m, il, n, pos, err)))
		return rc;
	memcpy(x, m->x, bytes);
	return 0;
}

int qp_llama_set_weight_f32(struct qp_llama *m, const char *name, const float *data, struct qp_err *err)
{
	if (m->w8)
		return qp_err_set(err, QP_EINVAL, "%s: tensor '%s': weights cannot be replaced in w8a8 mode", m->path, name);
	/* every pointer to the tensor: a tied output shares token_embd's */
	const struct qp_gguf_tensor **slots[2];
	const struct qp_gguf_tensor *cur = NULL;
	size_t n_slots = 0;
	const struct qp_gguf_tensor **all[2] = {&m->tok_embd, &m->output};
	for (int i = 0; i < 2; i++)
		if (!strcmp((*all[i])->name, name))
			slots[n_slots++] = all[i];
	for (int64_t li = 0; li < m->hp.n_layer && n_slots < 2; li++) {
		struct layer *l = &m->layers[li];
		const struct qp_gguf_tensor **ws[7] = {&l->wq, &l->wk, &l->wv, &l->wo, &l->wg, &l->wu, &l->wd};
		for (int j = 0; j < 7 && n_slots < 2; j++)
			if (!strcmp((*ws[j])->name, name))
				slots[n_slots++] = ws[j];
	}
	if (!n_slots)
		return qp_err_set(err, QP_ENOTFOUND, "%s: no 2-D weight '%s' in the forward pass", m->path, name);
	cur = *slots[0];
	int64_t nelem = cur->ne[0] * cur->ne[1];
	size_t bytes = (size_t)nelem * sizeof(float);
	for (size_t i = 0; i < m->n_own; i++)
		if (m->own[i] == cur) {
			memcpy((void *)cur->data, data, bytes);
			return 0;
		}
	struct qp_gguf_tensor *t = malloc(sizeof(*t)), **own = realloc(m->own, (m->n_own + 1) * sizeof(*own));
	float *copy = malloc(bytes);
	if (own)
		m->own = own;
	if (!t || !own || !copy) {
		free(t);
		free(copy);
		return qp_err_nomem(err);
	}
	memcpy(copy, data, bytes);
	*t = *cur; /* the name stays the mapped file's */
	t->type = QP_TYPE_F32;
	t->data = copy;
	t->nbytes = bytes;
	t->offset = 0;
	m->own[m->n_own++] = t;
	for (size_t i = 0; i < n_slots; i++)
		*slots[i] = t;
	return 0;
}
