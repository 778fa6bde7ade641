/* quantize: the weight tensors of a model to GGUF tensor types.
 *
 * The type of each 2-D tensor comes from one of:
 *  - type: one type for every 2-D tensor. A tensor whose rows do not divide
 *    into the type's blocks (stories260K's 172-wide FFN for 32-element
 *    blocks) is stored as the fallback type instead (default f16) and
 *    listed in the output's metadata and metrics, so the report can say so.
 *  - preset: llama-quantize's mixture of that name (Q4_K_M ...), tensor by
 *    tensor as llama.cpp picks it, fallbacks included (preset.c).
 * Then overrides, "PATTERN=TYPE" items matched with fnmatch against the
 * Hugging Face name, first match wins, set single tensors' types (mixed
 * precision); rows that do not divide take the fallback type as above.
 * 1-D tensors (norms, biases) stay F32, as llama.cpp keeps them. The
 * metrics count the tensors of each type and list every tensor's type.
 * With imatrix (a calibrate stage) each tensor is fitted by its
 * importances, as llama-quantize --imatrix does (imatrix.h).
 *
 * Output: model.gguf holding the tensors under their Hugging Face names and
 * shapes (ne reversed: ne[0] is the row length), plus the model's side
 * files (config.json, tokenizer ...). export.gguf turns it into a file
 * llama.cpp runs. */
#include <fnmatch.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/gguf.h"
#include "formats/hfconfig.h"
#include "formats/safetensors.h"
#include "kernels/convert.h"
#include "stages/common.h"
#include "stages/quantize/imatrix.h"
#include "stages/quantize/preset.h"
#include "stages/stage.h"

static const char *const types[] = {"", "f32", "f16", "bf16", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0",
                                    "q6_K", "q5_K", "q4_K", "q3_K", "q2_K", "tq2_0", "tq1_0", NULL};
static const char *const fallbacks[] = {"f16", "f32", "bf16", NULL};

static const struct qp_param_decl params[] = {
	{.name = "model", .type = QP_P_INPUT, .doc = "the model stage (model.local)"},
	{.name = "type", .type = QP_P_ENUM, .def = "", .choices = types,
	 .doc = "tensor type for the 2-D weights (this or preset)"},
	{.name = "preset", .type = QP_P_ENUM, .def = "", .choices = qp_preset_names,
	 .doc = "llama.cpp's per-tensor mixture of that name (this or type)"},
	{.name = "overrides", .type = QP_P_LIST, .def = "",
	 .doc = "PATTERN=TYPE items: fnmatch on Hugging Face names, first match wins"},
	{.name = "fallback", .type = QP_P_ENUM, .def = "f16", .choices = fallbacks,
	 .doc = "type for tensors whose rows do not divide into the type's blocks"},
	{.name = "imatrix", .type = QP_P_INPUT, .def = "",
	 .doc = "a calibrate stage: fit each tensor by its importances, as llama-quantize --imatrix"},
	{0},
};

struct plan_tensor {
	const struct qp_st_tensor *t;
	enum qp_type src, dst;
	int64_t rows, cols;
	size_t nbytes;
	void *data;
};

/* One overrides item, "PATTERN=TYPE". */
struct override {
	const char *item;    /* as written */
	char *pattern;       /* owned */
	enum qp_type type;
	bool used;           /* matched a 2-D tensor */
};

/* A type with kernels (one of types[]), by case-insensitive name; -1 if none. */
static int kernel_type(const char *name)
{
	int t = qp_type_from_name(name);
	for (size_t i = 1; types[i] && t >= 0; i++)
		if (qp_type_from_name(types[i]) == t)
			return t;
	return -1;
}

/* Exactly one of type and preset, and well-formed overrides; fills ov (one
 * per item) if not NULL. Runs at plan time too, so a bad recipe fails
 * before anything runs. */
static int check_params(const struct qp_stage_ctx *ctx, struct override *ov, struct qp_err *err)
{
	const char *type = qp_ctx_param(ctx, "type")->s, *preset = qp_ctx_param(ctx, "preset")->s;
	if (!type[0] && !preset[0])
		return qp_err_set(err, QP_EINVAL, "quantize needs 'type' or 'preset'");
	if (type[0] && preset[0])
		return qp_err_set(err, QP_EINVAL, "give 'type' or 'preset', not both (type %s, preset %s)",
		                  type, preset);
	const struct qp_value *o = qp_ctx_param(ctx, "overrides");
	for (size_t i = 0; i < o->n; i++) {
		const char *item = o->list[i] ? o->list[i] : "";
		const char *eq = strrchr(item, '=');
		if (!eq || eq == item || !eq[1])
			return qp_err_set(err, QP_EINVAL, "override '%s' is not PATTERN=TYPE", item);
		int t = kernel_type(eq + 1);
		if (t < 0)
			return qp_err_set(err, QP_EINVAL, "override '%s': unknown tensor type '%s'", item, eq + 1);
		if (ov) {
			ov[i].item = item;
			ov[i].type = (enum qp_type)t;
			if (!(ov[i].pattern = strndup(item, (size_t)(eq - item))))
				return qp_err_nomem(err);
		}
	}
	return 0;
}

static int hash_extra(const struct qp_stage_ctx *ctx, struct qp_hasher *h, struct qp_err *err)
{
	(void)h;
	return check_params(ctx, NULL, err);
}

/* The model facts a preset's choice depends on: config.json's shape, and
 * what the tensor list says (v_proj count, a separate lm_head or not). */
static int preset_model(struct qp_preset_model *out, const struct qp_artifact *in,
                        const struct qp_st_model *m, struct qp_err *err)
{
	const char *cpath = qp_artifact_file(in, "config.json");
	if (!cpath)
		return qp_err_set(err, QP_EINVAL, "input '%s' has no config.json: a preset needs the model's shape",
		                  in->instance);
	struct qp_hf_config cfg;
	int rc = qp_hf_config_read(&cfg, cpath, err);
	if (rc)
		return rc;
	*out = (struct qp_preset_model){.n_layer = cfg.num_hidden_layers, .n_head = cfg.num_attention_heads,
	                                .n_head_kv = cfg.num_key_value_heads, .tied = true};
	static const char vsuf[] = ".self_attn.v_proj.weight";
	for (size_t i = 0; i < qp_st_count(m); i++) {
		const char *name = qp_st_at(m, i)->name;
		size_t len = strlen(name);
		if (!strcmp(name, "lm_head.weight"))
			out->tied = false;
		if (len >= sizeof(vsuf) - 1 && !strcmp(name + len - (sizeof(vsuf) - 1), vsuf))
			out->n_attn_v++;
	}
	return 0;
}

static int run(struct qp_stage_ctx *ctx, struct qp_err *err)
{
	const struct qp_artifact *in = qp_ctx_input(ctx, "model");
	const char *type = qp_ctx_param(ctx, "type")->s, *preset = qp_ctx_param(ctx, "preset")->s;
	const struct qp_value *ovp = qp_ctx_param(ctx, "overrides");
	enum qp_type want = (enum qp_type)(type[0] ? qp_type_from_name(type) : QP_TYPE_F32);
	enum qp_type fallback = (enum qp_type)qp_type_from_name(qp_ctx_param(ctx, "fallback")->s);
	struct override *ov = calloc(ovp->n ? ovp->n : 1, sizeof(*ov));
	struct qp_preset_model pm = {0};
	const char *wpath;
	int rc;
	if (!ov)
		return qp_err_nomem(err);
	if ((rc = check_params(ctx, ov, err)) || (rc = qp_stage_weights_path(in, &wpath, err))) {
		for (size_t i = 0; i < ovp->n; i++)
			free(ov[i].pattern);
		free(ov);
		return rc;
	}
	struct qp_st_model *m = NULL;
	size_t n = 0;
	struct plan_tensor *pt = NULL;
	struct qp_gguf_writer *w = NULL;
	struct qp_quant_imatrix *im = NULL;
	const char **fb_names = NULL;
	size_t n_fb = 0;
	int64_t total_elems = 0, done_elems = 0;
	if ((rc = qp_st_open(&m, wpath, err)) ||
	    (rc = qp_quant_imatrix_open(&im, qp_ctx_input(ctx, "imatrix"), err)))
		goto out;
	if (preset[0] && (rc = preset_model(&pm, in, m, err)))
		goto out;
	n = qp_st_count(m);
	pt = calloc(n ? n : 1, sizeof(*pt));
	fb_names = calloc(n ? n : 1, sizeof(char *));
	if (!pt || !fb_names) {
		rc = qp_err_nomem(err);
		goto out;
	}
	/* Decide every tensor's type first, so bad input fails before any work. */
	for (size_t i = 0; i < n; i++) {
		const struct qp_st_tensor *t = qp_st_at(m, i);
		int src = qp_type_of_st_dtype(t->dtype);
		if (src < 0) {
			rc = qp_err_set(err, QP_EINVAL, "%s: tensor '%s': dtype %s is not a weight type",
			                t->file, t->name, qp_st_dtype_name(t->dtype));
			goto out;
		}
		pt[i].t = t;
		pt[i].src = (enum qp_type)src;
		pt[i].cols = t->ndim ? t->shape[t->ndim - 1] : 1;
		pt[i].rows = pt[i].cols ? t->nelem / pt[i].cols : 0;
		bool fell_back = false;
		if (t->ndim < 2) {
			pt[i].dst = QP_TYPE_F32;
		} else if (preset[0]) {
			int pt_type = qp_preset_tensor_type(preset, &pm, t->name, pt[i].cols);
			if (pt_type < 0) {
				rc = qp_err_set(err, QP_EINVAL,
				                "tensor '%s': rows of %lld do not divide into preset %s's blocks and llama.cpp has no fallback type for it",
				                t->name, (long long)pt[i].cols, preset);
				goto out;
			}
			pt[i].dst = (enum qp_type)pt_type;
		} else if (pt[i].cols % qp_type_traits(want)->blck != 0) {
			pt[i].dst = fallback;
			fell_back = true;
		} else {
			pt[i].dst = want;
		}
		for (size_t k = 0; t->ndim >= 2 && k < ovp->n; k++) {
			if (fnmatch(ov[k].pattern, t->name, 0) != 0)
				continue;
			ov[k].used = true;
			fell_back = pt[i].cols % qp_type_traits(ov[k].type)->blck != 0;
			pt[i].dst = fell_back ? fallback : ov[k].type;
			break;
		}
		if (fell_back)
			fb_names[n_fb++] = t->name;
		size_t row;
		if (qp_type_row_size(pt[i].dst, pt[i].cols, &row) || (pt[i].rows && row > SIZE_MAX / (size_t)pt[i].rows)) {
			rc = qp_err_set(err, QP_EINVAL, "%s: tensor '%s': too large", t->file, t->name);
			goto out;
		}
		pt[i].nbytes = row * (size_t)pt[i].rows;
		total_elems += t->nelem;
	}
	for (size_t k = 0; k < ovp->n; k++)
		if (!ov[k].used) {
			rc = qp_err_set(err, QP_EINVAL, "override '%s': pattern '%s' matches no 2-D weight tensor of '%s'",
			                ov[k].item, ov[k].pattern, in->instance);
			goto out;
		}
	if ((rc = qp_gguf_writer_new(&w, err)))
		goto out;
	for (size_t i = 0; i < n; i++) {
		const struct qp_st_tensor *t = pt[i].t;
		pt[i].data = malloc(pt[i].nbytes ? pt[i].nbytes : 1);
		if (!pt[i].data) {
			rc = qp_err_nomem(err);
			goto out;
		}
		rc = qp_quant_imatrix_convert(im, t->name, pt[i].dst, pt[i].data, pt[i].src, t->data,
		                              pt[i].rows, pt[i].cols, qp_ctx_threads(ctx), err);
		if (rc) {
			qp_err_prefix(err, "tensor '%s'", t->name);
			goto out;
		}
		int64_t ne[QP_GGUF_MAX_DIMS];
		int nd = t->ndim ? t->ndim : 1;
		if (nd > QP_GGUF_MAX_DIMS) {
			rc = qp_err_set(err, QP_EINVAL, "tensor '%s': %d dimensions (GGUF holds %d)", t->name,
			                nd, QP_GGUF_MAX_DIMS);
			goto out;
		}
		for (int d = 0; d < nd; d++)
			ne[d] = t->ndim ? t->shape[t->ndim - 1 - d] : 1;
		if ((rc = qp_gguf_add_tensor(w, t->name, pt[i].dst, nd, ne, pt[i].data, pt[i].nbytes, err)))
			goto out;
		done_elems += t->nelem;
		if ((rc = qp_ctx_progress(ctx, "tensors", done_elems, total_elems, err)))
			goto out;
	}
	const char *method = preset[0] ? preset : type;
	if ((rc = qp_gguf_set_str(w, "qpipe.method", method, err)) ||
	    (preset[0] && (rc = qp_gguf_set_str(w, "qpipe.preset", preset, err))) ||
	    (ovp->n && (rc = qp_gguf_set_arr_str(w, "qpipe.overrides", ovp->list, ovp->n, err))) ||
	    (rc = qp_gguf_set_str(w, "qpipe.fallback_type", qp_ctx_param(ctx, "fallback")->s, err)) ||
	    (rc = qp_gguf_set_arr_str(w, "qpipe.fallback_tensors", fb_names, n_fb, err)) ||
	    (rc = qp_gguf_set_str(w, "qpipe.quantize_key", qp_ctx_key_hex(ctx), err)) ||
	    (rc = qp_quant_imatrix_record(im, w, qp_ctx_metrics(ctx), err)))
		goto out;
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/model.gguf", qp_ctx_out_dir(ctx));
	if ((rc = qp_gguf_writer_write(w, path, err)) || (rc = qp_ctx_add_output(ctx, "model.gguf", err)))
		goto out;
	for (size_t i = 0; qp_model_side_files[i] && !rc; i++) {
		const char *src = qp_artifact_file(in, qp_model_side_files[i]);
		if (src)
			rc = qp_stage_copy_output(ctx, src, qp_model_side_files[i], err);
	}
	json_t *met = qp_ctx_metrics(ctx);
	json_t *fb = json_array();
	for (size_t i = 0; i < n_fb; i++)
		json_array_append_new(fb, json_string(fb_names[i]));
	json_t *counts = json_object(), *each = json_object();
	for (size_t i = 0; i < n; i++) {
		const char *tn = qp_type_traits(pt[i].dst)->name;
		json_t *c = json_object_get(counts, tn);
		json_object_set_new(counts, tn, json_integer(c ? json_integer_value(c) + 1 : 1));
		json_object_set_new(each, pt[i].t->name, json_string(tn));
	}
	json_object_set_new(met, "type", json_string(method));
	if (preset[0])
		json_object_set_new(met, "preset", json_string(preset));
	json_object_set_new(met, "type_counts", counts);
	json_object_set_new(met, "tensor_types", each);
	json_object_set_new(met, "fallback_type", json_string(qp_ctx_param(ctx, "fallback")->s));
	json_object_set_new(met, "fallback", fb);
out:
	qp_quant_imatrix_free(im);
	qp_gguf_writer_free(w);
	for (size_t i = 0; pt && i < n; i++)
		free(pt[i].data);
	free(pt);
	free(fb_names);
	for (size_t k = 0; k < ovp->n; k++)
		free(ov[k].pattern);
	free(ov);
	qp_st_close(m);
	return rc;
}

const struct qp_stage_kind qp_kind_quantize = {
	.name = "quantize",
	.version = 3,
	.summary = "quantize weight tensors to one GGUF type or llama.cpp's preset mixture, with per-tensor overrides",
	.params = params,
	.hash_extra = hash_extra,
	.run = run,
	.mem_inputs = 2.5, /* source + converted copy (+ row buffers) */
	.mem_fixed = 64 << 20,
};
