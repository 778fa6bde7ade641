/* export.gguf: a quantized model as a GGUF file that llama.cpp loads.
 *
 * Input is quantize's model.gguf (Hugging Face names and row order) or its
 * model.safetensors in qpipe's quantized layout (formats/qlayout.h), and
 * its side files. A layout's methods are written as the GGUF type with the
 * same values where one exists (qp_ql_to_gguf); otherwise the export is
 * refused, unless `dequantize` is set: then such tensors are written as F32
 * holding exactly the method's values, a file for evaluating the method,
 * not for deploying it. Output renames tensors to llama.cpp's names, permutes the
 * rows of q_proj and k_proj from Hugging Face's rotate-half RoPE layout to
 * llama.cpp's interleaved one (the same permutation its convert script
 * applies; rows move whole, so quantized blocks are untouched), and adds the
 * llama architecture keys, the SentencePiece vocabulary and provenance keys
 * (qpipe.*) saying how the file was made. RoPE scaling goes in the form
 * llama.cpp's converter writes (set_rope), or the export is refused. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/gguf.h"
#include "formats/hfconfig.h"
#include "formats/llamanames.h"
#include "formats/qlayout.h"
#include "formats/spm.h"
#include "model/rope.h"
#include "stages/common.h"
#include "stages/quantize/preset.h"
#include "stages/stage.h"
#include "qp_config.h"

static const struct qp_param_decl params[] = {
	{.name = "model", .type = QP_P_INPUT, .doc = "the quantize stage"},
	{.name = "name", .type = QP_P_STRING, .def = "",
	 .doc = "general.name of the file (default: the quantize stage's instance)"},
	{.name = "dequantize", .type = QP_P_BOOL, .def = "false",
	 .doc = "write methods that have no GGUF type as F32 of their exact values (for evaluation)"},
	{0},
};

/* llama.cpp's llama_ftype for a file whose weights are mostly type t. */
static int file_type(enum qp_type t)
{
	switch (t) {
	case QP_TYPE_F32: return 0;
	case QP_TYPE_F16: return 1;
	case QP_TYPE_Q4_0: return 2;
	case QP_TYPE_Q4_1: return 3;
	case QP_TYPE_Q8_0: return 7;
	case QP_TYPE_Q5_0: return 8;
	case QP_TYPE_Q5_1: return 9;
	case QP_TYPE_BF16: return 32;
	/* single-type k-quant files: llama.cpp's _S variants are the closest names */
	case QP_TYPE_Q2_K: return 10;
	case QP_TYPE_Q3_K: return 11;
	case QP_TYPE_Q4_K: return 14;
	case QP_TYPE_Q5_K: return 16;
	case QP_TYPE_Q6_K: return 18;
	case QP_TYPE_TQ1_0: return 36;
	case QP_TYPE_TQ2_0: return 37;
	default: return -1;
	}
}

enum permute { NO_PERMUTE, PERMUTE_Q, PERMUTE_K };

/* llama.cpp's name for a Hugging Face Llama tensor into out; -1 if none.
 * q_proj and k_proj rows need permuting to llama.cpp's RoPE layout. */
static int gguf_name(const char *hf, char *out, size_t n, enum permute *perm)
{
	static const char q[] = ".self_attn.q_proj.weight", k[] = ".self_attn.k_proj.weight";
	size_t len = strlen(hf);
	*perm = NO_PERMUTE;
	if (len >= sizeof(q) - 1 && !strcmp(hf + len - (sizeof(q) - 1), q))
		*perm = PERMUTE_Q;
	if (len >= sizeof(k) - 1 && !strcmp(hf + len - (sizeof(k) - 1), k))
		*perm = PERMUTE_K;
	return qp_llamanames_to_gguf(hf, out, n);
}

static int set_tokenizer(struct qp_gguf_writer *w, const struct qp_spm *spm,
                         const struct qp_hf_tokenizer_config *tc, struct qp_err *err)
{
	size_t n = spm->n_pieces;
	const char **tokens = calloc(n ? n : 1, sizeof(char *));
	float *scores = calloc(n ? n : 1, sizeof(float));
	int32_t *ttype = calloc(n ? n : 1, sizeof(int32_t));
	int rc = 0;
	if (!tokens || !scores || !ttype) {
		rc = qp_err_nomem(err);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		tokens[i] = spm->pieces[i].piece;
		scores[i] = spm->pieces[i].score;
		ttype[i] = spm->pieces[i].type;
	}
	if ((rc = qp_gguf_set_str(w, "tokenizer.ggml.model", "llama", err)) ||
	    (rc = qp_gguf_set_arr_str(w, "tokenizer.ggml.tokens", tokens, n, err)) ||
	    (rc = qp_gguf_set_arr(w, "tokenizer.ggml.scores", QP_GGUF_FLOAT32, scores, n, err)) ||
	    (rc = qp_gguf_set_arr(w, "tokenizer.ggml.token_type", QP_GGUF_INT32, ttype, n, err)) ||
	    (rc = qp_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)spm->bos_id, err)) ||
	    (rc = qp_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)spm->eos_id, err)) ||
	    (rc = qp_gguf_set_u32(w, "tokenizer.ggml.unknown_token_id", (uint32_t)spm->unk_id, err)) ||
	    (rc = qp_gguf_set_bool(w, "tokenizer.ggml.add_bos_token", tc->add_bos_token, err)) ||
	    (rc = qp_gguf_set_bool(w, "tokenizer.ggml.add_eos_token", tc->add_eos_token, err)) ||
	    (rc = qp_gguf_set_bool(w, "tokenizer.ggml.add_space_prefix", spm->add_dummy_prefix, err)))
		goto out;
	if (spm->pad_id >= 0)
		rc = qp_gguf_set_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)spm->pad_id, err);
out:
	free(tokens);
	free(scores);
	free(ttype);
	return rc;
}

static int set_arch(struct qp_gguf_writer *w, const struct qp_hf_config *c, const char *name,
                    struct qp_err *err)
{
	int rc;
	if ((rc = qp_gguf_set_str(w, "general.architecture", "llama", err)) ||
	    (rc = qp_gguf_set_str(w, "general.name", name, err)) ||
	    (rc = qp_gguf_set_u32(w, "llama.context_length", (uint32_t)c->max_position_embeddings, err)) ||
	    (rc = qp_gguf_set_u32(w, "llama.embedding_length", (uint32_t)c->hidden_size, err)) ||
	    (rc = qp_gguf_set_u32(w, "llama.block_count", (uint32_t)c->num_hidden_layers, err)) ||
	    (rc = qp_gguf_set_u32(w, "llama.feed_forward_length", (uint32_t)c->intermediate_size, err)) ||
	    (rc = qp_gguf_set_u32(w, "llama.attention.head_count", (uint32_t)c->num_attention_heads, err)) ||
	    (rc = qp_gguf_set_u32(w, "llama.attention.head_count_kv", (uint32_t)c->num_key_value_heads, err)) ||
	    (rc = qp_gguf_set_f32(w, "llama.attention.layer_norm_rms_epsilon", (float)c->rms_norm_eps, err)) ||
	    (rc = qp_gguf_set_f32(w, "llama.rope.freq_base", (float)c->rope_theta, err)) ||
	    (rc = qp_gguf_set_u32(w, "llama.rope.dimension_count", (uint32_t)c->head_dim, err)) ||
	    (rc = qp_gguf_set_u32(w, "llama.vocab_size", (uint32_t)c->vocab_size, err)))
		return rc;
	return 0;
}

/* config.json's RoPE scaling as llama.cpp's convert_hf_to_gguf.py writes
 * it, and model/llama.c reads it back: linear and yarn as
 * llama.rope.scaling.* keys, llama3 as rope_freqs.weight, a divisor of
 * each pair's frequency, returned in *freqs (n_rot / 2 floats, the
 * caller's to free; NULL otherwise). Scalings with no GGUF form are
 * refused: dynamic NTK (llama.cpp has none) and yarn with truncate false.
 * yarn's attention factor: ggml multiplies llama.rope.scaling.attn_factor
 * into its own 1 + 0.1 ln(factor), so the key carries the ratio of the
 * factor transformers uses to that one, where it is not 1. */
static int set_rope(struct qp_gguf_writer *w, const struct qp_hf_config *c, const char *what, float **freqs,
                    struct qp_err *err)
{
	*freqs = NULL;
	struct qp_rope r;
	const int64_t n_rot = c->head_dim;
	int rc = qp_rope_from_hf_config(&r, c, n_rot, what, err);
	if (rc)
		return rc;
	switch (r.kind) {
	case QP_ROPE_DEFAULT:
		return 0;
	case QP_ROPE_LINEAR:
		if ((rc = qp_gguf_set_str(w, "llama.rope.scaling.type", "linear", err)))
			return rc;
		return qp_gguf_set_f32(w, "llama.rope.scaling.factor", (float)r.factor, err);
	case QP_ROPE_DYNAMIC:
		return qp_err_set(err, QP_EINVAL, "%s: RoPE scaling 'dynamic' (NTK) has no GGUF form: llama.cpp "
		                  "does not compute it; export a model without it, or evaluate the folder", what);
	case QP_ROPE_YARN: {
		if (!r.truncate)
			return qp_err_set(err, QP_EINVAL, "%s: RoPE scaling 'yarn' with truncate false has no GGUF "
			                  "form: llama.cpp rounds the correction range to whole dimensions", what);
		double inv[QP_ROPE_MAX_DIMS / 2], scale;
		qp_rope_freqs(&r, n_rot, 1, inv, &scale);
		double own = r.factor > 1.0 ? 0.1 * log(r.factor) + 1.0 : 1.0;
		if ((rc = qp_gguf_set_str(w, "llama.rope.scaling.type", "yarn", err)) ||
		    (rc = qp_gguf_set_f32(w, "llama.rope.scaling.factor", (float)r.factor, err)) ||
		    (rc = qp_gguf_set_u32(w, "llama.rope.scaling.original_context_length", (uint32_t)r.orig_max_pos,
		                          err)))
			return rc;
		if (fabs(scale / own - 1.0) > 1e-7 &&
		    (rc = qp_gguf_set_f32(w, "llama.rope.scaling.attn_factor", (float)(scale / own), err)))
			return rc;
		if (r.beta_fast > 0.0 &&
		    (rc = qp_gguf_set_f32(w, "llama.rope.scaling.yarn_beta_fast", (float)r.beta_fast, err)))
			return rc;
		if (r.beta_slow > 0.0 &&
		    (rc = qp_gguf_set_f32(w, "llama.rope.scaling.yarn_beta_slow", (float)r.beta_slow, err)))
			return rc;
		return 0;
	}
	case QP_ROPE_LLAMA3: {
		/* the converter's loop over the unscaled frequencies */
		float *f = malloc((size_t)(n_rot / 2) * sizeof(float));
		if (!f)
			return qp_err_nomem(err);
		const double lo_wavelen = r.orig_max_pos / r.low_freq_factor;
		const double hi_wavelen = r.orig_max_pos / r.high_freq_factor;
		for (int64_t i = 0; i < n_rot / 2; i++) {
			const double wavelen = 2.0 * M_PI * pow(r.theta, (double)(2 * i) / (double)n_rot);
			double div = 1.0;
			if (wavelen > lo_wavelen) {
				div = r.factor;
			} else if (wavelen >= hi_wavelen) {
				const double smooth = (r.orig_max_pos / wavelen - r.low_freq_factor) /
				                      (r.high_freq_factor - r.low_freq_factor);
				div = 1.0 / ((1.0 - smooth) / r.factor + smooth);
			}
			f[i] = (float)div;
		}
		*freqs = f;
		return 0;
	}
	}
	return 0;
}

/* One tensor to write, from either input format, Hugging Face named. */
struct src_tensor {
	const char *name;
	enum qp_type type;
	int ndim;
	int64_t ne[QP_GGUF_MAX_DIMS];
	const void *data;
	size_t nbytes;
	void *owned;       /* data when converted here */
};

struct source {
	struct qp_gguf_file *gguf;
	struct qp_ql_model *layout;
	struct src_tensor *t;
	size_t n;
	size_t n_unpacked;  /* method tensors written as F32 values */
};

static void source_free(struct source *s)
{
	for (size_t i = 0; s->t && i < s->n; i++)
		free(s->t[i].owned);
	free(s->t);
	qp_gguf_close(s->gguf);
	qp_ql_close(s->layout);
}

static int source_gguf(struct source *s, const char *path, struct qp_err *err)
{
	int rc = qp_gguf_open(&s->gguf, path, err);
	if (rc)
		return rc;
	s->n = qp_gguf_tensor_count(s->gguf);
	if (!(s->t = calloc(s->n ? s->n : 1, sizeof(*s->t))))
		return qp_err_nomem(err);
	for (size_t i = 0; i < s->n; i++) {
		const struct qp_gguf_tensor *t = qp_gguf_tensor_at(s->gguf, i);
		s->t[i] = (struct src_tensor){.name = t->name, .type = t->type, .ndim = t->ndim, .data = t->data,
		                              .nbytes = t->nbytes};
		memcpy(s->t[i].ne, t->ne, sizeof(s->t[i].ne));
	}
	return 0;
}

static int source_layout(struct source *s, const char *path, bool dequantize, int threads, struct qp_err *err)
{
	int rc = qp_ql_open(&s->layout, path, err);
	if (rc)
		return rc;
	s->n = qp_ql_count(s->layout);
	if (!(s->t = calloc(s->n ? s->n : 1, sizeof(*s->t))))
		return qp_err_nomem(err);
	for (size_t i = 0; i < s->n; i++) {
		const struct qp_ql_entry *e = qp_ql_at(s->layout, i);
		struct src_tensor *t = &s->t[i];
		t->name = e->name;
		t->ndim = e->ndim ? e->ndim : 1;
		if (t->ndim > QP_GGUF_MAX_DIMS)
			return qp_err_set(err, QP_EINVAL, "tensor '%s': %d dimensions (GGUF holds %d)", e->name, t->ndim,
			                  QP_GGUF_MAX_DIMS);
		for (int d = 0; d < t->ndim; d++)
			t->ne[d] = e->ndim ? e->shape[e->ndim - 1 - d] : 1;
		rc = qp_ql_to_gguf(s->layout, e, &t->type, &t->owned, &t->nbytes, threads, err);
		if (rc == QP_ENOTFOUND && dequantize) {
			t->type = QP_TYPE_F32;
			t->nbytes = (size_t)e->nelem * sizeof(float);
			if (!(t->owned = malloc(t->nbytes ? t->nbytes : 1)))
				return qp_err_nomem(err);
			rc = qp_ql_dequantize(s->layout, e, t->owned, threads, err);
			s->n_unpacked++;
		} else if (rc == QP_ENOTFOUND) {
			char why[QP_ERR_MSG_MAX];
			snprintf(why, sizeof(why), "%s", err->msg);
			return qp_err_set(err, QP_EINVAL,
			                  "%s: %s; set 'dequantize: true' to write its exact values as F32 (for evaluation)", path,
			                  why);
		}
		if (rc)
			return rc;
		t->data = t->owned;
	}
	return 0;
}

static int run(struct qp_stage_ctx *ctx, struct qp_err *err)
{
	const struct qp_artifact *in = qp_ctx_input(ctx, "model");
	const char *gpath, *cpath, *tpath, *tcpath;
	int rc;
	const char *lpath = qp_artifact_file(in, "model.safetensors");
	gpath = qp_artifact_file(in, "model.gguf");
	if (!gpath && !lpath)
		return qp_err_set(err, QP_EINVAL, "input '%s' has neither model.gguf nor model.safetensors: is it a quantize stage?",
		                  in->instance);
	if ((rc = qp_stage_need_file(in, "config.json", &cpath, err)))
		return rc;
	tpath = qp_artifact_file(in, "tokenizer.model");
	if (!tpath)
		return qp_err_set(err, QP_EINVAL,
		                  "input '%s' has no tokenizer.model: export.gguf writes SentencePiece vocabularies only",
		                  in->instance);
	struct qp_hf_config cfg;
	if ((rc = qp_hf_config_read(&cfg, cpath, err)))
		return rc;
	if (strcmp(cfg.model_type, "llama") != 0)
		return qp_err_set(err, QP_EINVAL, "%s: model_type '%s' is not supported (llama only)",
		                  cpath, cfg.model_type);
	struct qp_hf_tokenizer_config tc = {.add_bos_token = true, .add_eos_token = false};
	tcpath = qp_artifact_file(in, "tokenizer_config.json");
	if (tcpath && (rc = qp_hf_tokenizer_config_read(&tc, tcpath, err)))
		return rc;

	struct source src = {0};
	struct qp_spm *spm = NULL;
	struct qp_gguf_writer *w = NULL;
	size_t nt = 0;
	void **owned = NULL;
	float *rope_freqs = NULL;
	bool dequantize = qp_ctx_param(ctx, "dequantize")->i != 0;
	rc = gpath ? source_gguf(&src, gpath, err) : source_layout(&src, lpath, dequantize, qp_ctx_threads(ctx), err);
	if (rc || (rc = qp_spm_read(&spm, tpath, err)) || (rc = qp_gguf_writer_new(&w, err)))
		goto out;
	char method_s[256] = "", preset_s[32] = "";
	if (src.gguf) {
		const struct qp_gguf_kv *method = qp_gguf_find_kv(src.gguf, "qpipe.method");
		if (method && method->type == QP_GGUF_STRING)
			snprintf(method_s, sizeof(method_s), "%.*s", (int)method->v.str.len, method->v.str.data);
		/* a preset's mixture has llama.cpp's number for that preset */
		const struct qp_gguf_kv *preset = qp_gguf_find_kv(src.gguf, "qpipe.preset");
		if (preset && preset->type == QP_GGUF_STRING)
			snprintf(preset_s, sizeof(preset_s), "%.*s", (int)preset->v.str.len, preset->v.str.data);
	} else {
		const char *mv = qp_ql_metadata(src.layout, "qpipe.method");
		snprintf(method_s, sizeof(method_s), "%s", mv ? mv : "");
	}
	int mtype = qp_type_from_name(method_s);
	int ftype = preset_s[0] ? qp_preset_ftype(preset_s) : mtype >= 0 ? file_type((enum qp_type)mtype) : -1;
	const char *name = qp_ctx_param(ctx, "name")->s;
	/* cpath is a store object: name the file by the stage it came from */
	char cfg_label[300];
	snprintf(cfg_label, sizeof(cfg_label), "config.json of '%s'", in->instance);
	if ((rc = set_arch(w, &cfg, name[0] ? name : in->instance, err)) ||
	    (rc = set_rope(w, &cfg, cfg_label, &rope_freqs, err)) ||
	    (rc = set_tokenizer(w, spm, &tc, err)))
		goto out;
	if (rope_freqs) {
		const int64_t ne[1] = {cfg.head_dim / 2};
		if ((rc = qp_gguf_add_tensor(w, "rope_freqs.weight", QP_TYPE_F32, 1, ne, rope_freqs,
		                             (size_t)ne[0] * sizeof(float), err)))
			goto out;
	}
	if (ftype >= 0 && (rc = qp_gguf_set_u32(w, "general.file_type", (uint32_t)ftype, err)))
		goto out;
	if ((rc = qp_gguf_set_u32(w, "general.quantization_version", 2, err)) ||
	    (rc = qp_gguf_set_str(w, "qpipe.version", QP_VERSION, err)) ||
	    (rc = qp_gguf_set_str(w, "qpipe.stage_key", qp_ctx_key_hex(ctx), err)) ||
	    (rc = qp_gguf_set_str(w, "qpipe.stage", qp_ctx_instance(ctx), err)) ||
	    (rc = qp_gguf_set_str(w, "qpipe.source", in->instance, err)))
		goto out;
	/* quantize's own provenance travels on unchanged */
	if (src.layout) {
		static const char *const keys[] = {"qpipe.method", "qpipe.overrides", "qpipe.fallback_type",
		                                   "qpipe.fallback_tensors", "qpipe.quantize_key", NULL};
		for (size_t i = 0; keys[i] && !rc; i++) {
			const char *v = qp_ql_metadata(src.layout, keys[i]);
			if (v)
				rc = qp_gguf_set_str(w, keys[i], v, err);
		}
		if (!rc && src.n_unpacked)
			rc = qp_gguf_set_u32(w, "qpipe.dequantized_tensors", (uint32_t)src.n_unpacked, err);
		if (rc)
			goto out;
	}
	for (size_t i = 0; src.gguf && i < qp_gguf_kv_count(src.gguf); i++) {
		const struct qp_gguf_kv *kv = qp_gguf_kv_at(src.gguf, i);
		if (strncmp(kv->key, "qpipe.", 6) != 0)
			continue;
		if (kv->type == QP_GGUF_STRING) {
			char buf[1024];
			snprintf(buf, sizeof(buf), "%.*s", (int)kv->v.str.len, kv->v.str.data);
			rc = qp_gguf_set_str(w, kv->key, buf, err);
		} else if (kv->type == QP_GGUF_ARRAY && kv->arr_type == QP_GGUF_STRING) {
			const char **strs = calloc(kv->arr_n + 1, sizeof(char *));
			char **bufs = calloc(kv->arr_n + 1, sizeof(char *));
			rc = strs && bufs ? 0 : qp_err_nomem(err);
			for (uint64_t j = 0; j < kv->arr_n && !rc; j++) {
				bufs[j] = strndup(kv->arr_str[j].data, kv->arr_str[j].len);
				strs[j] = bufs[j];
				if (!bufs[j])
					rc = qp_err_nomem(err);
			}
			if (!rc)
				rc = qp_gguf_set_arr_str(w, kv->key, strs, kv->arr_n, err);
			for (uint64_t j = 0; bufs && j < kv->arr_n; j++)
				free(bufs[j]);
			free(bufs);
			free(strs);
		}
		if (rc)
			goto out;
	}

	nt = src.n;
	owned = calloc(nt ? nt : 1, sizeof(void *));
	if (!owned) {
		rc = qp_err_nomem(err);
		goto out;
	}
	for (size_t i = 0; i < nt; i++) {
		const struct src_tensor *t = &src.t[i];
		char gname[256];
		enum permute perm;
		if (gguf_name(t->name, gname, sizeof(gname), &perm) != 0) {
			rc = qp_err_set(err, QP_EINVAL, "%s: tensor '%s' has no llama.cpp name", gpath ? gpath : lpath, t->name);
			goto out;
		}
		const void *data = t->data;
		if (perm != NO_PERMUTE) {
			int64_t heads = perm == PERMUTE_Q ? cfg.num_attention_heads : cfg.num_key_value_heads;
			int64_t rows = t->ndim > 1 ? t->ne[1] : 1;
			if (heads <= 0 || rows % heads != 0 || (rows / heads) % 2 != 0) {
				rc = qp_err_set(err, QP_EINVAL, "tensor '%s': %lld rows do not split into %lld heads",
				                t->name, (long long)rows, (long long)heads);
				goto out;
			}
			owned[i] = malloc(t->nbytes ? t->nbytes : 1);
			if (!owned[i]) {
				rc = qp_err_nomem(err);
				goto out;
			}
			qp_llamanames_rope_rows(owned[i], t->data, rows, t->nbytes / (size_t)rows, heads);
			data = owned[i];
		}
		if ((rc = qp_gguf_add_tensor(w, gname, t->type, t->ndim, t->ne, data, t->nbytes, err)))
			goto out;
	}
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/model.gguf", qp_ctx_out_dir(ctx));
	if ((rc = qp_gguf_writer_write(w, path, err)) || (rc = qp_ctx_add_output(ctx, "model.gguf", err)))
		goto out;
	json_object_set_new(qp_ctx_metrics(ctx), "n_tensors", json_integer((json_int_t)nt));
	json_object_set_new(qp_ctx_metrics(ctx), "dequantized_tensors", json_integer((json_int_t)src.n_unpacked));
out:
	for (size_t i = 0; owned && i < nt; i++)
		free(owned[i]);
	free(owned);
	free(rope_freqs);
	qp_gguf_writer_free(w);
	qp_spm_free(spm);
	source_free(&src);
	return rc;
}

const struct qp_stage_kind qp_kind_export_gguf = {
	.name = "export.gguf",
	.version = 2, /* 2: RoPE scaling written (or refused) */
	.summary = "write a quantized Llama as a GGUF file that llama.cpp loads and runs (methods: where a GGUF type holds their values)",
	.params = params,
	.run = run,
	.mem_inputs = 2.0, /* source + converted copy (+ row buffers) */
	.mem_fixed = 64 << 20,
};
