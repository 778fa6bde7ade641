/* The Hugging Face folder loader of the forward pass (see llama_hf.h). */
#include "model/llama_hf.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/os.h"
#include "formats/gguf.h"
#include "formats/hfconfig.h"
#include "formats/llamanames.h"
#include "formats/safetensors.h"
#include "model/llama.h"

const char qp_llama_hf_supported[] = "LlamaForCausalLM, MistralForCausalLM";

#define NAME_MAX_LEN 96

struct qp_llama_hf {
	struct qp_st_model *st;
	struct qp_gguf_tensor *t;    /* views of st's tensors, llama.cpp names */
	char (*names)[NAME_MAX_LEN]; /* the views' names */
	size_t n;
};

void qp_llama_hf_close(struct qp_llama_hf *h)
{
	if (!h)
		return;
	qp_st_close(h->st);
	free(h->t);
	free(h->names);
	free(h);
}

const struct qp_gguf_tensor *qp_llama_hf_find(const struct qp_llama_hf *h, const char *gguf_name)
{
	for (size_t i = 0; i < h->n; i++)
		if (!strcmp(h->t[i].name, gguf_name))
			return &h->t[i];
	return NULL;
}

static bool ends_with(const char *s, const char *tail)
{
	size_t n = strlen(s), m = strlen(tail);
	return n >= m && !strcmp(s + n - m, tail);
}

/* Hyperparameters and RoPE from the config; file names config_path. */
static int fill_hparams(struct qp_llama_hparams *hp, const struct qp_hf_config *c, int64_t n_ctx,
                        const char *file, struct qp_err *err)
{
	const char *arch = c->architecture;
	bool llama = !strcmp(arch, "LlamaForCausalLM") || (!arch[0] && !strcmp(c->model_type, "llama"));
	bool mistral = !strcmp(arch, "MistralForCausalLM") || (!arch[0] && !strcmp(c->model_type, "mistral"));
	if (!llama && !mistral)
		return qp_err_set(err, QP_EINVAL, "%s: architecture '%s' is not supported (supported: %s)", file,
		                  arch[0] ? arch : c->model_type, qp_llama_hf_supported);
	/* Mistral differs from Llama only by its sliding-window attention;
	 * it is the same pass while the window covers the whole context. */
	if (mistral && c->sliding_window > 0 && c->sliding_window < n_ctx)
		return qp_err_set(err, QP_EINVAL,
		                  "%s: sliding_window %d is shorter than n_ctx %lld; qpipe computes full "
		                  "attention only", file, c->sliding_window, (long long)n_ctx);
	if (strcmp(c->hidden_act, "silu"))
		return qp_err_set(err, QP_EINVAL, "%s: hidden_act '%s' is not supported (the pass computes SwiGLU: "
		                  "silu)", file, c->hidden_act);
	if (c->partial_rotary_factor != 1.0)
		return qp_err_set(err, QP_EINVAL, "%s: partial_rotary_factor %g is not supported (Llama rotates "
		                  "whole heads)", file, c->partial_rotary_factor);
	memset(hp, 0, sizeof(*hp));
	hp->n_vocab = c->vocab_size;
	hp->n_embd = c->hidden_size;
	hp->n_layer = c->num_hidden_layers;
	hp->n_head = c->num_attention_heads;
	hp->n_head_kv = c->num_key_value_heads;
	hp->head_dim = c->head_dim;
	hp->n_ff = c->intermediate_size;
	hp->n_rot = c->head_dim;
	hp->n_ctx_train = c->max_position_embeddings;
	hp->eps = (float)c->rms_norm_eps;
	hp->rope_base = (float)c->rope_theta;
	if (hp->n_head % hp->n_head_kv != 0)
		return qp_err_set(err, QP_EINVAL, "%s: %lld attention heads are not a multiple of %lld kv heads",
		                  file, (long long)hp->n_head, (long long)hp->n_head_kv);
	return qp_rope_from_hf_config(&hp->rope, c, hp->n_rot, file, err);
}

static int view_type(enum qp_st_dtype d, enum qp_type *out)
{
	switch (d) {
	case QP_ST_F32: *out = QP_TYPE_F32; return 0;
	case QP_ST_F16: *out = QP_TYPE_F16; return 0;
	case QP_ST_BF16: *out = QP_TYPE_BF16; return 0;
	default: return -1;
	}
}

/* Every tensor of the file as a view under its llama.cpp name. */
static int make_views(struct qp_llama_hf *h, bool tied, struct qp_err *err)
{
	size_t n = qp_st_count(h->st);
	h->t = calloc(n ? n : 1, sizeof(*h->t));
	h->names = calloc(n ? n : 1, sizeof(*h->names));
	if (!h->t || !h->names)
		return qp_err_nomem(err);
	for (size_t i = 0; i < n; i++) {
		const struct qp_st_tensor *s = qp_st_at(h->st, i);
		/* transformers < 4.31 saved the RoPE table; it is recomputed */
		if (ends_with(s->name, ".rotary_emb.inv_freq"))
			continue;
		if (tied && !strcmp(s->name, "lm_head.weight"))
			continue; /* tie_word_embeddings: transformers uses the embeddings */
		struct qp_gguf_tensor *v = &h->t[h->n];
		if (qp_llamanames_to_gguf(s->name, h->names[h->n], NAME_MAX_LEN))
			return qp_err_set(err, QP_EINVAL, "%s: tensor '%s' is not one the Llama forward pass computes "
			                  "(a bias, or another architecture?)", s->file, s->name);
		enum qp_type type;
		if (view_type(s->dtype, &type))
			return qp_err_set(err, QP_EINVAL, "%s: tensor '%s' has dtype %s; the forward pass reads F32, "
			                  "F16 and BF16", s->file, s->name, qp_st_dtype_name(s->dtype));
		if (s->ndim < 1 || s->ndim > 2)
			return qp_err_set(err, QP_EINVAL, "%s: tensor '%s' has %d dimensions, expected 1 or 2", s->file,
			                  s->name, s->ndim);
		v->name = h->names[h->n];
		v->type = type;
		v->ndim = s->ndim;
		/* safetensors [rows, cols] is GGUF's ne [cols, rows] */
		for (int d = 0; d < s->ndim; d++)
			v->ne[d] = s->shape[s->ndim - 1 - d];
		for (int d = s->ndim; d < QP_GGUF_MAX_DIMS; d++)
			v->ne[d] = 1;
		v->nelem = s->nelem;
		v->offset = s->file_offset;
		v->data = s->data;
		v->nbytes = s->nbytes;
		h->n++;
	}
	return 0;
}

/* Each tensor the pass reads, by its Hugging Face name, so a missing one is
 * named as the checkpoint names it. */
static int check_present(const struct qp_llama_hf *h, const struct qp_llama_hparams *hp,
                         const char *file, struct qp_err *err)
{
	static const char *const per_layer[] = {
		"input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.k_proj.weight",
		"self_attn.v_proj.weight", "self_attn.o_proj.weight", "post_attention_layernorm.weight",
		"mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight",
	};
	static const char *const global[] = {"model.embed_tokens.weight", "model.norm.weight"};
	char hf[NAME_MAX_LEN], gg[NAME_MAX_LEN];
	for (int64_t l = -1; l < hp->n_layer; l++) {
		size_t count = l < 0 ? 2 : sizeof(per_layer) / sizeof(per_layer[0]);
		for (size_t j = 0; j < count; j++) {
			if (l < 0)
				snprintf(hf, sizeof(hf), "%s", global[j]);
			else
				snprintf(hf, sizeof(hf), "model.layers.%lld.%s", (long long)l, per_layer[j]);
			if (qp_llamanames_to_gguf(hf, gg, sizeof(gg)) == 0 && qp_llama_hf_find(h, gg))
				continue;
			return qp_err_set(err, QP_EINVAL, "%s: tensor '%s' is missing", file, hf);
		}
	}
	return 0;
}

int qp_llama_hf_open(struct qp_llama_hf **out, const char *config_path, const char *weights_path,
                     int64_t n_ctx, struct qp_llama_hparams *hp, struct qp_err *err)
{
	*out = NULL;
	struct qp_hf_config c;
	int rc = qp_hf_config_read(&c, config_path, err);
	if (rc || (rc = fill_hparams(hp, &c, n_ctx, config_path, err)))
		return rc;
	struct qp_llama_hf *h = calloc(1, sizeof(*h));
	if (!h)
		return qp_err_nomem(err);
	if ((rc = qp_st_open(&h->st, weights_path, err)))
		goto fail;
	/* tied when the config says so, or when the file has no lm_head */
	bool tied = c.tie_word_embeddings || !qp_st_find(h->st, "lm_head.weight");
	if ((rc = make_views(h, tied, err)) || (rc = check_present(h, hp, weights_path, err)))
		goto fail;
	*out = h;
	return 0;
fail:
	qp_llama_hf_close(h);
	return rc;
}

int qp_llama_hf_open_dir(struct qp_llama_hf **out, const char *dir, int64_t n_ctx,
                         struct qp_llama_hparams *hp, struct qp_err *err)
{
	char cfg[PATH_MAX], w[PATH_MAX];
	if ((size_t)snprintf(cfg, sizeof(cfg), "%s/config.json", dir) >= sizeof(cfg))
		return qp_err_set(err, QP_EINVAL, "%s: path too long", dir);
	snprintf(w, sizeof(w), "%s/model.safetensors.index.json", dir);
	if (!qp_os_exists(w))
		snprintf(w, sizeof(w), "%s/model.safetensors", dir);
	return qp_llama_hf_open(out, cfg, w, n_ctx, hp, err);
}
