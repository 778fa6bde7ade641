/* quantize: the weight tensors of a model to GGUF tensor types or to a
 * quantization method (kernels/qmethod.h).
 *
 * The type of each 2-D tensor comes from one of:
 *  - type: one GGUF type for every 2-D tensor. A tensor whose rows do not
 *    divide into the type's blocks (stories260K's 172-wide FFN for
 *    32-element blocks) is stored as the fallback type instead (default
 *    f16) and listed in the output's metadata and metrics, so the report
 *    can say so.
 *  - preset: llama-quantize's mixture of that name (Q4_K_M ...), tensor by
 *    tensor as llama.cpp picks it, fallbacks included (preset.c).
 *  - method: a method spec, "rtn:bits=4:group=128", "nf4", "fp8:format=e5m2"
 *    ... (formats/qspec.h); a tensor whose shape the spec does not fit (a
 *    group that does not divide its rows) takes the fallback type, listed
 *    as above.
 * Then overrides, "PATTERN=TYPE" items matched with fnmatch against the
 * Hugging Face name, first match wins, set single tensors' types (mixed
 * precision); TYPE is a GGUF type or a method spec. 1-D tensors (norms,
 * biases) stay F32, as llama.cpp keeps them. The metrics count the tensors
 * of each type and list every tensor's type.
 *
 * Output, when every tensor has a GGUF type: model.gguf holding the tensors
 * under their Hugging Face names and shapes (ne reversed: ne[0] is the row
 * length). When a method is involved: model.safetensors in qpipe's
 * quantized layout (formats/qlayout.h), GGUF-typed tensors included. Plus
 * the model's side files (config.json, tokenizer ...) either way.
 * export.gguf turns either into a file llama.cpp runs. */
#include <fnmatch.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/gguf.h"
#include "formats/hfconfig.h"
#include "formats/qlayout.h"
#include "formats/qspec.h"
#include "formats/safetensors.h"
#include "kernels/convert.h"
#include "stages/common.h"
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
	 .doc = "llama.cpp's per-tensor mixture of that name (or type, or method)"},
	{.name = "method", .type = QP_P_STRING, .def = "",
	 .doc = "a method spec: rtn|binary|ternary|nf4|fp8|kmeans[:KEY=VALUE...] (see qpipe docs)"},
	{.name = "overrides", .type = QP_P_LIST, .def = "",
	 .doc = "PATTERN=TYPE items (TYPE: GGUF type or method spec): fnmatch on Hugging Face names, first match wins"},
	{.name = "fallback", .type = QP_P_ENUM, .def = "f16", .choices = fallbacks,
	 .doc = "type for tensors whose rows do not divide into the type's blocks"},
	{0},
};

/* What a tensor becomes: a GGUF type, or a method. */
struct target {
	bool is_method;
	enum qp_type type;
	struct qp_qspec spec;
};

struct plan_tensor {
	const struct qp_st_tensor *t;
	enum qp_type src;
	struct target dst;
	int64_t rows, cols;
	size_t nbytes;
	void *data;
};

/* One overrides item, "PATTERN=TYPE". */
struct override {
	const char *item;    /* as written */
	char *pattern;       /* owned */
	struct target to;
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

/* A GGUF type with kernels or a method spec, by its text. */
static int parse_target(struct target *to, const char *text, struct qp_err *err)
{
	memset(to, 0, sizeof(*to));
	if (qp_qspec_is_method(text)) {
		to->is_method = true;
		return qp_qspec_parse(&to->spec, text, err);
	}
	int t = kernel_type(text);
	if (t < 0)
		return qp_err_set(err, QP_EINVAL,
		                  "unknown tensor type '%s' (a GGUF type such as q4_0, or a method: rtn, binary, ternary, nf4, fp8, kmeans)",
		                  text);
	to->type = (enum qp_type)t;
	return 0;
}

/* Exactly one of type, preset and method, and well-formed overrides; fills
 * main and ov (one per item) if not NULL. Runs at plan time too, so a bad
 * recipe fails before anything runs. */
static int check_params(const struct qp_stage_ctx *ctx, struct target *main_to, struct override *ov,
                        struct qp_err *err)
{
	const char *type = qp_ctx_param(ctx, "type")->s, *preset = qp_ctx_param(ctx, "preset")->s;
	const char *method = qp_ctx_param(ctx, "method")->s;
	int given = !!type[0] + !!preset[0] + !!method[0];
	if (given == 0)
		return qp_err_set(err, QP_EINVAL, "quantize needs 'type', 'preset' or 'method'");
	if (given > 1)
		return qp_err_set(err, QP_EINVAL, "give one of 'type', 'preset' and 'method' (type '%s', preset '%s', method '%s')",
		                  type, preset, method);
	struct target scratch;
	if (!main_to)
		main_to = &scratch;
	memset(main_to, 0, sizeof(*main_to));
	if (method[0]) {
		if (!qp_qspec_is_method(method))
			return qp_err_set(err, QP_EINVAL, "method '%s' is not one of rtn, binary, ternary, nf4, fp8, kmeans",
			                  method);
		int rc = parse_target(main_to, method, err);
		if (rc)
			return rc;
	} else if (type[0]) {
		main_to->type = (enum qp_type)qp_type_from_name(type);
	}
	const struct qp_value *o = qp_ctx_param(ctx, "overrides");
	for (size_t i = 0; i < o->n; i++) {
		const char *item = o->list[i] ? o->list[i] : "";
		/* patterns are tensor names: the first '=' ends them */
		const char *eq = strchr(item, '=');
		if (!eq || eq == item || !eq[1])
			return qp_err_set(err, QP_EINVAL, "override '%s' is not PATTERN=TYPE", item);
		struct target to;
		int rc = parse_target(&to, eq + 1, err);
		if (rc)
			return qp_err_prefix(err, "override '%s'", item), rc;
		if (ov) {
			ov[i].item = item;
			ov[i].to = to;
			if (!(ov[i].pattern = strndup(item, (size_t)(eq - item))))
				return qp_err_nomem(err);
		}
	}
	return 0;
}

static int hash_extra(const struct qp_stage_ctx *ctx, struct qp_hasher *h, struct qp_err *err)
{
	(void)h;
	return check_params(ctx, NULL, NULL, err);
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

/* Does target to fit a tensor of rows x cols? (block size, or the spec's
 * groups) */
static bool fits(const struct target *to, int64_t rows, int64_t cols)
{
	if (to->is_method) {
		struct qp_err scratch = {0};
		return qp_qspec_check(&to->spec, rows, cols, &scratch) == 0;
	}
	return cols % qp_type_traits(to->type)->blck == 0;
}

static void target_name(const struct target *to, char *buf, size_t n)
{
	if (to->is_method)
		qp_qspec_format(&to->spec, buf, n);
	else
		snprintf(buf, n, "%s", qp_type_traits(to->type)->name);
}

/* Every tensor's target, before any work, so bad input fails first. */
static int plan_types(struct qp_stage_ctx *ctx, const struct qp_artifact *in, const struct qp_st_model *m,
                      const struct target *main_to, struct override *ov, size_t n_ov, enum qp_type fallback,
                      struct plan_tensor *pt, const char **fb_names, size_t *n_fb, struct qp_err *err)
{
	const char *preset = qp_ctx_param(ctx, "preset")->s;
	struct qp_preset_model pm = {0};
	int rc;
	if (preset[0] && (rc = preset_model(&pm, in, m, err)))
		return rc;
	size_t n = qp_st_count(m);
	for (size_t i = 0; i < n; i++) {
		const struct qp_st_tensor *t = qp_st_at(m, i);
		int src = qp_type_of_st_dtype(t->dtype);
		if (src < 0)
			return qp_err_set(err, QP_EINVAL, "%s: tensor '%s': dtype %s is not a weight type", t->file, t->name,
			                  qp_st_dtype_name(t->dtype));
		pt[i].t = t;
		pt[i].src = (enum qp_type)src;
		pt[i].cols = t->ndim ? t->shape[t->ndim - 1] : 1;
		pt[i].rows = pt[i].cols ? t->nelem / pt[i].cols : 0;
		struct target to = *main_to;
		bool fell_back = false;
		if (t->ndim < 2) {
			to = (struct target){.type = QP_TYPE_F32};
		} else if (preset[0]) {
			int pt_type = qp_preset_tensor_type(preset, &pm, t->name, pt[i].cols);
			if (pt_type < 0)
				return qp_err_set(err, QP_EINVAL,
				                  "tensor '%s': rows of %lld do not divide into preset %s's blocks and llama.cpp has no fallback type for it",
				                  t->name, (long long)pt[i].cols, preset);
			to.type = (enum qp_type)pt_type;
		} else if (!fits(&to, pt[i].rows, pt[i].cols)) {
			to = (struct target){.type = fallback};
			fell_back = true;
		}
		for (size_t k = 0; t->ndim >= 2 && k < n_ov; k++) {
			if (fnmatch(ov[k].pattern, t->name, 0) != 0)
				continue;
			ov[k].used = true;
			fell_back = !fits(&ov[k].to, pt[i].rows, pt[i].cols);
			to = fell_back ? (struct target){.type = fallback} : ov[k].to;
			break;
		}
		if (fell_back)
			fb_names[(*n_fb)++] = t->name;
		pt[i].dst = to;
		if (!to.is_method) {
			size_t row;
			if (qp_type_row_size(to.type, pt[i].cols, &row) ||
			    (pt[i].rows && row > SIZE_MAX / (size_t)pt[i].rows))
				return qp_err_set(err, QP_EINVAL, "%s: tensor '%s': too large", t->file, t->name);
			pt[i].nbytes = row * (size_t)pt[i].rows;
		}
	}
	for (size_t k = 0; k < n_ov; k++)
		if (!ov[k].used)
			return qp_err_set(err, QP_EINVAL, "override '%s': pattern '%s' matches no 2-D weight tensor of '%s'",
			                  ov[k].item, ov[k].pattern, in->instance);
	return 0;
}

/* One tensor converted into pt->data (GGUF type) or q (method). */
static int quantize_one(struct qp_stage_ctx *ctx, struct plan_tensor *pt, struct qp_qtensor *q,
                        struct qp_err *err)
{
	const struct qp_st_tensor *t = pt->t;
	int threads = qp_ctx_threads(ctx), rc;
	if (!pt->dst.is_method) {
		if (!(pt->data = malloc(pt->nbytes ? pt->nbytes : 1)))
			return qp_err_nomem(err);
		rc = qp_convert_rows(pt->dst.type, pt->data, pt->src, t->data, pt->rows, pt->cols, threads, err);
	} else {
		float *w = malloc((size_t)(t->nelem ? t->nelem : 1) * sizeof(float));
		if (!w)
			return qp_err_nomem(err);
		rc = qp_convert_rows(QP_TYPE_F32, w, pt->src, t->data, pt->rows, pt->cols, threads, err);
		if (!rc)
			rc = qp_qmethod_quantize(&pt->dst.spec, w, pt->rows, pt->cols, q, threads, err);
		free(w);
	}
	return rc ? qp_err_prefix(err, "tensor '%s'", t->name), rc : 0;
}

static bool st_float(enum qp_type t, enum qp_st_dtype *dt)
{
	*dt = t == QP_TYPE_F32 ? QP_ST_F32 : t == QP_TYPE_F16 ? QP_ST_F16 : QP_ST_BF16;
	return t == QP_TYPE_F32 || t == QP_TYPE_F16 || t == QP_TYPE_BF16;
}

/* Provenance keys, the same in either output format. */
struct provenance {
	const char *method, *preset, *fallback, *key;
	const struct qp_value *overrides;
	const char **fb_names;
	size_t n_fb;
};

static int write_layout(struct qp_stage_ctx *ctx, struct plan_tensor *pt, struct qp_qtensor *qt, size_t n,
                        const struct provenance *pv, const char *path, struct qp_err *err)
{
	struct qp_ql_writer *w;
	int rc = qp_ql_writer_new(&w, err);
	if (rc)
		return rc;
	for (size_t i = 0; i < n && !rc; i++) {
		const struct qp_st_tensor *t = pt[i].t;
		enum qp_st_dtype dt;
		if (pt[i].dst.is_method)
			rc = qp_ql_add_method(w, t->name, &pt[i].dst.spec, &qt[i], err);
		else if (st_float(pt[i].dst.type, &dt))
			rc = qp_ql_add_float(w, t->name, dt, t->ndim ? t->ndim : 1, t->ndim ? t->shape : (int64_t[]){1},
			                     pt[i].data, pt[i].nbytes, err);
		else
			rc = qp_ql_add_gguf(w, t->name, pt[i].dst.type, pt[i].rows, pt[i].cols, pt[i].data, pt[i].nbytes, err);
	}
	json_t *fb = json_array(), *ovs = json_array();
	for (size_t i = 0; i < pv->n_fb; i++)
		json_array_append_new(fb, json_string(pv->fb_names[i]));
	for (size_t i = 0; i < pv->overrides->n; i++)
		json_array_append_new(ovs, json_string(pv->overrides->list[i]));
	char *fbs = json_dumps(fb, JSON_COMPACT), *ovt = json_dumps(ovs, JSON_COMPACT);
	json_decref(fb);
	json_decref(ovs);
	if (!rc && (!fbs || !ovt))
		rc = qp_err_nomem(err);
	if (!rc && !((rc = qp_ql_set_metadata(w, "qpipe.method", pv->method, err)) ||
	             (rc = qp_ql_set_metadata(w, "qpipe.overrides", ovt, err)) ||
	             (rc = qp_ql_set_metadata(w, "qpipe.fallback_type", pv->fallback, err)) ||
	             (rc = qp_ql_set_metadata(w, "qpipe.fallback_tensors", fbs, err)) ||
	             (rc = qp_ql_set_metadata(w, "qpipe.quantize_key", pv->key, err))))
		rc = qp_ql_write(w, path, err);
	free(fbs);
	free(ovt);
	qp_ql_writer_free(w);
	(void)ctx;
	return rc;
}

static int write_gguf(struct plan_tensor *pt, size_t n, const struct provenance *pv, const char *path,
                      struct qp_err *err)
{
	struct qp_gguf_writer *w;
	int rc = qp_gguf_writer_new(&w, err);
	for (size_t i = 0; i < n && !rc; i++) {
		const struct qp_st_tensor *t = pt[i].t;
		int64_t ne[QP_GGUF_MAX_DIMS];
		int nd = t->ndim ? t->ndim : 1;
		if (nd > QP_GGUF_MAX_DIMS) {
			rc = qp_err_set(err, QP_EINVAL, "tensor '%s': %d dimensions (GGUF holds %d)", t->name, nd,
			                QP_GGUF_MAX_DIMS);
			break;
		}
		for (int d = 0; d < nd; d++)
			ne[d] = t->ndim ? t->shape[t->ndim - 1 - d] : 1;
		rc = qp_gguf_add_tensor(w, t->name, pt[i].dst.type, nd, ne, pt[i].data, pt[i].nbytes, err);
	}
	if (!rc && !((rc = qp_gguf_set_str(w, "qpipe.method", pv->method, err)) ||
	             (pv->preset[0] && (rc = qp_gguf_set_str(w, "qpipe.preset", pv->preset, err))) ||
	             (pv->overrides->n &&
	              (rc = qp_gguf_set_arr_str(w, "qpipe.overrides", pv->overrides->list, pv->overrides->n, err))) ||
	             (rc = qp_gguf_set_str(w, "qpipe.fallback_type", pv->fallback, err)) ||
	             (rc = qp_gguf_set_arr_str(w, "qpipe.fallback_tensors", pv->fb_names, pv->n_fb, err)) ||
	             (rc = qp_gguf_set_str(w, "qpipe.quantize_key", pv->key, err))))
		rc = qp_gguf_writer_write(w, path, err);
	qp_gguf_writer_free(w);
	return rc;
}

static int run(struct qp_stage_ctx *ctx, struct qp_err *err)
{
	const struct qp_artifact *in = qp_ctx_input(ctx, "model");
	const char *type = qp_ctx_param(ctx, "type")->s, *preset = qp_ctx_param(ctx, "preset")->s;
	const struct qp_value *ovp = qp_ctx_param(ctx, "overrides");
	enum qp_type fallback = (enum qp_type)qp_type_from_name(qp_ctx_param(ctx, "fallback")->s);
	struct override *ov = calloc(ovp->n ? ovp->n : 1, sizeof(*ov));
	struct target main_to;
	const char *wpath;
	int rc;
	if (!ov)
		return qp_err_nomem(err);
	struct qp_st_model *m = NULL;
	size_t n = 0, n_fb = 0;
	struct plan_tensor *pt = NULL;
	struct qp_qtensor *qt = NULL;
	const char **fb_names = NULL;
	int64_t total_elems = 0, done_elems = 0;
	if ((rc = check_params(ctx, &main_to, ov, err)) || (rc = qp_stage_weights_path(in, &wpath, err)) ||
	    (rc = qp_st_open(&m, wpath, err)))
		goto out;
	n = qp_st_count(m);
	pt = calloc(n ? n : 1, sizeof(*pt));
	qt = calloc(n ? n : 1, sizeof(*qt));
	fb_names = calloc(n ? n : 1, sizeof(char *));
	if (!pt || !qt || !fb_names) {
		rc = qp_err_nomem(err);
		goto out;
	}
	if ((rc = plan_types(ctx, in, m, &main_to, ov, ovp->n, fallback, pt, fb_names, &n_fb, err)))
		goto out;
	bool layout = false;
	for (size_t i = 0; i < n; i++) {
		layout |= pt[i].dst.is_method;
		total_elems += pt[i].t->nelem;
	}
	for (size_t i = 0; i < n; i++) {
		if ((rc = quantize_one(ctx, &pt[i], &qt[i], err)))
			goto out;
		done_elems += pt[i].t->nelem;
		if ((rc = qp_ctx_progress(ctx, "tensors", done_elems, total_elems, err)))
			goto out;
	}
	char method[256];
	if (preset[0])
		snprintf(method, sizeof(method), "%s", preset);
	else if (type[0])
		snprintf(method, sizeof(method), "%s", type);
	else
		target_name(&main_to, method, sizeof(method));
	const struct provenance pv = {.method = method, .preset = preset,
	                              .fallback = qp_ctx_param(ctx, "fallback")->s, .key = qp_ctx_key_hex(ctx),
	                              .overrides = ovp, .fb_names = fb_names, .n_fb = n_fb};
	const char *out_name = layout ? "model.safetensors" : "model.gguf";
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", qp_ctx_out_dir(ctx), out_name);
	rc = layout ? write_layout(ctx, pt, qt, n, &pv, path, err) : write_gguf(pt, n, &pv, path, err);
	if (rc || (rc = qp_ctx_add_output(ctx, out_name, err)))
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
		char tn[256];
		target_name(&pt[i].dst, tn, sizeof(tn));
		json_t *c = json_object_get(counts, tn);
		json_object_set_new(counts, tn, json_integer(c ? json_integer_value(c) + 1 : 1));
		json_object_set_new(each, pt[i].t->name, json_string(tn));
	}
	json_object_set_new(met, "type", json_string(method));
	if (preset[0])
		json_object_set_new(met, "preset", json_string(preset));
	json_object_set_new(met, "format", json_string(layout ? "qpipe-safetensors" : "gguf"));
	json_object_set_new(met, "type_counts", counts);
	json_object_set_new(met, "tensor_types", each);
	json_object_set_new(met, "fallback_type", json_string(qp_ctx_param(ctx, "fallback")->s));
	json_object_set_new(met, "fallback", fb);
out:
	for (size_t i = 0; pt && i < n; i++) {
		free(pt[i].data);
		qp_qtensor_free(&qt[i]);
	}
	free(pt);
	free(qt);
	free(fb_names);
	for (size_t k = 0; k < ovp->n; k++)
		free(ov[k].pattern);
	free(ov);
	qp_st_close(m);
	return rc;
}

const struct qp_stage_kind qp_kind_quantize = {
	.name = "quantize",
	.version = 4,
	.summary = "quantize weight tensors to a GGUF type, llama.cpp's preset mixture or a method (RTN, NF4, FP8 ...), with per-tensor overrides",
	.params = params,
	.hash_extra = hash_extra,
	.run = run,
	.mem_inputs = 2.5, /* source + converted copy (+ row buffers) */
	.mem_fixed = 64 << 20,
};
