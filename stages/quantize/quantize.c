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
 * of each type and list every tensor's type. With imatrix (a calibrate
 * stage) each GGUF-typed tensor is fitted by its importances, as
 * llama-quantize --imatrix does (imatrix.h); with calib (a calibrate
 * stage), the gptq and awq methods read its input statistics
 * (calibrated.h). gptq with true_sequential measures each layer's inputs
 * itself, layer by layer through the layers already quantized
 * (model/seqcalib.h): it runs calib's windows (windows.safetensors)
 * through calib_model, the export.gguf stage calibrate ran, with the
 * dequantized GPTQ results put in place as it goes.
 *
 * Output, when every tensor has a GGUF type: model.gguf holding the tensors
 * under their Hugging Face names and shapes (ne reversed: ne[0] is the row
 * length). When a method is involved: model.safetensors in qpipe's
 * quantized layout (formats/qlayout.h), GGUF-typed tensors included. Plus
 * the model's side files (config.json, tokenizer ...) either way.
 * export.gguf turns either into a file llama.cpp runs. */
#include <fnmatch.h>
#include <signal.h>
#include <unistd.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/gguf.h"
#include "formats/hfconfig.h"
#include "formats/llamanames.h"
#include "formats/qlayout.h"
#include "formats/qspec.h"
#include "formats/safetensors.h"
#include "kernels/convert.h"
#include "model/llama.h"
#include "model/seqcalib.h"
#include "stages/common.h"
#include "kernels/smooth.h"
#include "stages/quantize/calibrated.h"
#include "stages/quantize/imatrix.h"
#include "stages/quantize/preset.h"
#include "stages/stage.h"

static const char *const types[] = {"", "f32", "f16", "bf16", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0",
                                    "q6_K", "q5_K", "q4_K", "q3_K", "q2_K", "tq2_0", "tq1_0", NULL};
static const char *const fallbacks[] = {"f16", "f32", "bf16", NULL};

static const struct qp_param_decl params[] = {
	{.name = "model", .type = QP_P_INPUT, .doc = "the model stage (model.local)"},
	{.name = "type", .type = QP_P_ENUM, .def = "", .choices = types,
	 .doc = "GGUF tensor type for the 2-D weights (or preset, or method)"},
	{.name = "preset", .type = QP_P_ENUM, .def = "", .choices = qp_preset_names,
	 .doc = "llama.cpp's per-tensor mixture of that name (or type, or method)"},
	{.name = "method", .type = QP_P_STRING, .def = "",
	 .doc = "a method spec: rtn|binary|ternary|nf4|fp8|kmeans|gptq|awq|smoothquant[:KEY=VALUE...] (formats/qspec.h, quantize/calibrated.h)"},
	{.name = "calib", .type = QP_P_INPUT, .def = "",
	 .doc = "a calibrate stage: the input statistics gptq, awq and smoothquant need"},
	{.name = "calib_model", .type = QP_P_INPUT, .def = "",
	 .doc = "gptq:true_sequential: the export.gguf stage calib ran (the unquantized model), run again layer by layer"},
	{.name = "overrides", .type = QP_P_LIST, .def = "",
	 .doc = "PATTERN=TYPE items (TYPE: GGUF type or method spec): fnmatch on Hugging Face names, first match wins"},
	{.name = "fallback", .type = QP_P_ENUM, .def = "f16", .choices = fallbacks,
	 .doc = "type for tensors whose rows do not divide into the type's blocks"},
	{.name = "imatrix", .type = QP_P_INPUT, .def = "",
	 .doc = "a calibrate stage: fit each tensor by its importances, as llama-quantize --imatrix"},
	{0},
};

/* What a tensor becomes: a GGUF type, or a method. */
struct target {
	bool is_method;
	bool calibrated;          /* GPTQ or AWQ (cal), stored under spec */
	bool smooth;              /* the model-wide choice is SmoothQuant (cal): f32 after smoothing */
	enum qp_type type;
	struct qp_qspec spec;
	struct qp_calibrated cal;
};

struct plan_tensor {
	const struct qp_st_tensor *t;
	enum qp_type src;
	struct target dst;
	float *f32;       /* AWQ: the weights after its scales were folded in (owned) */
	float *awq_s;     /* AWQ: the input scales this tensor's input was divided by (owned) */
	int64_t rows, cols;
	size_t nbytes;
	void *data;
	bool seq_done;    /* quantized (or loaded) by the true-sequential pass */
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
	if (method[0] && qp_calibrated_is(method)) {
		int rc = qp_calibrated_parse(&main_to->cal, method, err);
		if (rc)
			return rc;
		if (qp_ctx_param(ctx, "calib")->s[0] == '\0')
			return qp_err_set(err, QP_EINVAL, "method '%s' needs 'calib' (a calibrate stage)", method);
		/* other methods leave calib_model unread, as non-calibrated ones
		 * leave calib, so one matrix of methods can pass both */
		if (main_to->cal.true_sequential && qp_ctx_param(ctx, "calib_model")->s[0] == '\0')
			return qp_err_set(err, QP_EINVAL, "method '%s' needs 'calib_model' (the export.gguf stage calib ran)",
			                  method);
		if (main_to->cal.smooth) {
			main_to->smooth = true;
			main_to->type = QP_TYPE_F32;
		} else {
			main_to->is_method = main_to->calibrated = true;
			qp_calibrated_spec(&main_to->cal, &main_to->spec);
		}
	} else if (method[0]) {
		if (!qp_qspec_is_method(method))
			return qp_err_set(err, QP_EINVAL, "method '%s' is not one of rtn, binary, ternary, nf4, fp8, kmeans, gptq, awq",
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
	if (to->calibrated || to->smooth)
		qp_calibrated_format(&to->cal, buf, n);
	else if (to->is_method)
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
		to.smooth = false; /* per tensor: f32 */
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
static int quantize_one(struct qp_stage_ctx *ctx, struct plan_tensor *pt, const struct qp_calib_stats *stats,
                        struct qp_quant_imatrix *im, struct qp_qtensor *q, struct qp_err *err)
{
	const struct qp_st_tensor *t = pt->t;
	int threads = qp_ctx_threads(ctx), rc;
	/* the source, or AWQ's rescaled copy of it */
	enum qp_type st = pt->f32 ? QP_TYPE_F32 : pt->src;
	const void *sd = pt->f32 ? (const void *)pt->f32 : t->data;
	if (!pt->dst.is_method) {
		if (!(pt->data = malloc(pt->nbytes ? pt->nbytes : 1)))
			return qp_err_nomem(err);
		rc = qp_quant_imatrix_convert(im, t->name, pt->dst.type, pt->data, st, sd, pt->rows, pt->cols, threads, err);
	} else {
		float *w = malloc((size_t)(t->nelem ? t->nelem : 1) * sizeof(float)), *h = NULL;
		if (!w)
			return qp_err_nomem(err);
		rc = qp_convert_rows(QP_TYPE_F32, w, st, sd, pt->rows, pt->cols, threads, err);
		if (!rc && pt->dst.calibrated)
			rc = qp_calib_stats_input(stats, t->name, pt->cols, &h, NULL, err);
		if (!rc && pt->dst.calibrated && pt->dst.cal.awq)
			rc = qp_awq_quantize(&pt->dst.cal.awq_p, w, pt->rows, pt->cols, h, pt->awq_s, q, threads, err);
		else if (!rc && pt->dst.calibrated)
			rc = qp_gptq_quantize(&pt->dst.cal.gptq, w, h, pt->rows, pt->cols, q, threads, err);
		else if (!rc)
			rc = qp_qmethod_quantize(&pt->dst.spec, w, pt->rows, pt->cols, q, threads, err);
		free(h);
		free(w);
	}
	return rc ? qp_err_prefix(err, "tensor '%s'", t->name), rc : 0;
}

/* Index of the tensor named prefix + suffix, or -1. */
static ptrdiff_t find_pt(const struct plan_tensor *pt, size_t n, const char *prefix, const char *suffix)
{
	char name[512];
	snprintf(name, sizeof(name), "%s%s", prefix, suffix);
	for (size_t i = 0; i < n; i++)
		if (!strcmp(pt[i].t->name, name))
			return (ptrdiff_t)i;
	return -1;
}

/* f32 copy of a tensor's current values into pt->f32 (once). */
static int ensure_f32(struct plan_tensor *pt, int threads, struct qp_err *err)
{
	if (pt->f32)
		return 0;
	if (!(pt->f32 = malloc((size_t)(pt->t->nelem ? pt->t->nelem : 1) * sizeof(float))))
		return qp_err_nomem(err);
	return qp_convert_rows(QP_TYPE_F32, pt->f32, pt->src, pt->t->data, pt->rows, pt->cols, threads, err);
}

/* AWQ and SmoothQuant, before anything is quantized: per layer and per
 * shared input, per-channel scales s folded into the model (linears'
 * columns times s, the producer of the input divided by s). AWQ's s
 * minimise the output error (awq.h), SmoothQuant's move activation
 * outliers into the weights (smooth.h). Producers: the two RMSNorms, and
 * for AWQ only the rows of up_proj (for down_proj) and of v_proj (for
 * o_proj, only when their shapes agree, as llm-awq requires; with
 * grouped-query attention o_proj keeps s = 1). */
static int fold_input_scales(struct qp_stage_ctx *ctx, struct plan_tensor *pt, size_t n, const struct qp_calib_stats *stats,
                    const struct qp_calibrated *cal, json_t *report, struct qp_err *err)
{
	static const struct {
		const char *lin[3];
		const char *producer;
		bool producer_rows;
	} groups[] = {
		{{"self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight"}, "input_layernorm.weight", false},
		{{"mlp.gate_proj.weight", "mlp.up_proj.weight", NULL}, "post_attention_layernorm.weight", false},
		{{"mlp.down_proj.weight", NULL, NULL}, "mlp.up_proj.weight", true},
		{{"self_attn.o_proj.weight", NULL, NULL}, "self_attn.v_proj.weight", true},
	};
	int threads = qp_ctx_threads(ctx), rc = 0;
	for (int layer = 0;; layer++) {
		char prefix[64];
		snprintf(prefix, sizeof(prefix), "model.layers.%d.", layer);
		if (find_pt(pt, n, prefix, groups[0].lin[0]) < 0)
			return 0;
		for (size_t g = 0; g < sizeof(groups) / sizeof(groups[0]) && !rc; g++) {
			ptrdiff_t li[3] = {-1, -1, -1}, pi = find_pt(pt, n, prefix, groups[g].producer);
			const float *w[3];
			int64_t rows[3];
			int nl = 0;
			for (int k = 0; k < 3 && groups[g].lin[k]; k++) {
				ptrdiff_t i = find_pt(pt, n, prefix, groups[g].lin[k]);
				if (i < 0 || !(pt[i].dst.calibrated || cal->smooth))
					continue;
				li[nl] = i;
				if ((rc = ensure_f32(&pt[i], threads, err)))
					return rc;
				w[nl] = pt[i].f32;
				rows[nl++] = pt[i].rows;
			}
			if (!nl || pi < 0)
				continue;
			int64_t cols = pt[li[0]].cols;
			if (groups[g].producer_rows && (cal->smooth || pt[pi].rows != cols))
				continue; /* SmoothQuant smooths the norms' outputs; the shapes do not let s be folded */
			float *h = NULL, *m = NULL, *sc = malloc((size_t)cols * sizeof(float)), alpha = 0;
			double l_rtn = 0, l_best = 0;
			if (!sc)
				rc = qp_err_nomem(err);
			else if (cal->smooth && !(rc = qp_calib_stats_vec(stats, pt[li[0]].t->name, "act_max_abs", cols, &m, err)))
				qp_smooth_scales(w, rows, nl, cols, m, cal->alpha, sc);
			else if (!cal->smooth && !(rc = qp_calib_stats_input(stats, pt[li[0]].t->name, cols, &h, &m, err)))
				rc = qp_awq_search(&cal->awq_p, w, rows, nl, cols, h, m, sc, &alpha, &l_rtn, &l_best, threads, err);
			if (!rc)
				rc = ensure_f32(&pt[pi], threads, err);
			if (!rc) {
				qp_awq_unscale_rows(pt[pi].f32, groups[g].producer_rows ? pt[pi].rows : pt[pi].t->nelem,
				                    groups[g].producer_rows ? pt[pi].cols : 1, sc);
				for (int k = 0; k < nl && !rc; k++) {
					qp_awq_scale_cols(pt[li[k]].f32, pt[li[k]].rows, cols, sc);
					if (!(pt[li[k]].awq_s = malloc((size_t)cols * sizeof(float))))
						rc = qp_err_nomem(err);
					else
						memcpy(pt[li[k]].awq_s, sc, (size_t)cols * sizeof(float));
				}
				if (!cal->smooth) {
					json_t *e = json_object();
					json_object_set_new(e, "alpha", json_real(alpha));
					json_object_set_new(e, "loss_rtn", json_real(l_rtn));
					json_object_set_new(e, "loss_awq", json_real(l_best));
					json_object_set_new(report, pt[li[0]].t->name, e);
				}
			}
			free(h);
			free(m);
			free(sc);
			if (!rc)
				rc = qp_ctx_progress(ctx, "input scales", layer * 4 + (int64_t)g + 1, layer * 4 + 4, err);
		}
		if (rc)
			return rc;
	}
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

static int write_layout(struct plan_tensor *pt, struct qp_qtensor *qt, size_t n,
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
	return rc;
}

static int write_gguf(struct plan_tensor *pt, size_t n, const struct provenance *pv,
                      const struct qp_quant_imatrix *im, json_t *met, const char *path, struct qp_err *err)
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
	             (rc = qp_gguf_set_str(w, "qpipe.quantize_key", pv->key, err)) ||
	             (rc = qp_quant_imatrix_record(im, w, met, err))))
		rc = qp_gguf_writer_write(w, path, err);
	qp_gguf_writer_free(w);
	return rc;
}

/* GPTQ and AWQ take long: each finished tensor is saved in the instance's
 * partial folder (a one-entry layout file, written atomically), and a
 * rerun of the same key after a crash loads it instead of recomputing.
 * The key covers the weights, the statistics and every parameter, and
 * the computation is deterministic, so the result is the same bytes. */
static void piece_path(char *buf, size_t n, const char *dir, const char *name)
{
	snprintf(buf, n, "%s/%s.safetensors", dir, name);
}

static int save_piece(const char *dir, const struct plan_tensor *pt, const struct qp_qtensor *q, struct qp_err *err)
{
	char path[PATH_MAX];
	piece_path(path, sizeof(path), dir, pt->t->name);
	struct qp_ql_writer *w;
	int rc = qp_ql_writer_new(&w, err);
	if (!rc && !(rc = qp_ql_add_method(w, pt->t->name, &pt->dst.spec, q, err)))
		rc = qp_ql_write(w, path, err);
	qp_ql_writer_free(w);
	return rc;
}

static int load_piece(const char *dir, const struct plan_tensor *pt, struct qp_qtensor *q, bool *found,
                      struct qp_err *err)
{
	char path[PATH_MAX];
	piece_path(path, sizeof(path), dir, pt->t->name);
	*found = false;
	if (access(path, F_OK) != 0)
		return 0;
	struct qp_ql_model *m;
	int rc = qp_ql_open(&m, path, err);
	if (rc)
		return qp_err_prefix(err, "partial result (remove it to recompute)"), rc;
	const struct qp_ql_entry *e = qp_ql_find(m, pt->t->name);
	if (!e || e->kind != QP_QL_METHOD || e->shape[0] != pt->rows || e->shape[1] != pt->cols)
		rc = qp_err_set(err, QP_ECORRUPT, "%s: not the partial result of tensor '%s'", path, pt->t->name);
	else
		rc = qp_ql_qtensor(m, e, q, err);
	qp_ql_close(m);
	*found = rc == 0;
	return rc;
}

/* Tests of resuming kill the stage after QPIPE_TEST_KILL_AFTER_TENSORS
 * tensors were saved, as a crash or an out-of-memory kill would. */
static void crash_hook(int64_t saved)
{
	const char *v = getenv("QPIPE_TEST_KILL_AFTER_TENSORS");
	if (v && atoll(v) == saved)
		raise(SIGKILL);
}

/* GPTQ's true-sequential mode: the driver (model/seqcalib.h) asks, by
 * llama.cpp name, what to do with each linear, and hands over the Gram
 * matrix of its input through the layers quantized so far; each result is
 * saved as a piece like any GPTQ tensor, so a killed run resumes from
 * them (the driver then re-runs the finished layers from their loaded
 * weights, which gives the same hidden states). */
struct seq_run {
	struct qp_stage_ctx *ctx;
	struct plan_tensor *pt;
	struct qp_qtensor *qt;
	size_t n;
	const char *partial;
	const struct qp_llama *m;
	float *buf;            /* a dequantized weight in Hugging Face row order */
	int64_t saved, resumed;
};

static ptrdiff_t seq_find(const struct seq_run *r, const char *gg)
{
	char hf[256];
	if (qp_llamanames_to_hf(gg, hf, sizeof(hf)) != 0)
		return -1;
	return find_pt(r->pt, r->n, hf, "");
}

static enum qp_seq_state seq_state(void *user, const char *gg)
{
	struct seq_run *r = user;
	ptrdiff_t i = seq_find(r, gg);
	if (i < 0 || !r->pt[i].dst.calibrated)
		return QP_SEQ_KEEP;
	char path[PATH_MAX];
	piece_path(path, sizeof(path), r->partial, r->pt[i].t->name);
	return access(path, F_OK) == 0 ? QP_SEQ_DONE : QP_SEQ_QUANTIZE;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);
	return n >= k && !strcmp(s + n - k, suffix);
}

static int seq_quantize(void *user, const char *gg, const float *gram, float *deq, struct qp_err *err)
{
	struct seq_run *r = user;
	ptrdiff_t i = seq_find(r, gg);
	struct plan_tensor *pt = &r->pt[i];
	const struct qp_gguf_tensor *gt = qp_gguf_find_tensor(qp_llama_gguf(r->m), gg);
	if (gt->ne[0] != pt->cols || gt->ne[1] != pt->rows)
		return qp_err_set(err, QP_EINVAL, "calib_model: tensor '%s' is %lld x %lld, but '%s' of the model is %lld x %lld",
		                  gg, (long long)gt->ne[1], (long long)gt->ne[0], pt->t->name, (long long)pt->rows,
		                  (long long)pt->cols);
	int threads = qp_ctx_threads(r->ctx);
	bool found;
	int rc = load_piece(r->partial, pt, &r->qt[i], &found, err);
	if (rc)
		return rc;
	if (found) {
		r->resumed++;
	} else if (!gram) {
		return qp_err_set(err, QP_ECORRUPT, "%s: the partial result of tensor '%s' went away", r->partial, pt->t->name);
	} else {
		if ((rc = qp_convert_rows(QP_TYPE_F32, r->buf, pt->src, pt->t->data, pt->rows, pt->cols, threads, err)) ||
		    (rc = qp_gptq_quantize(&pt->dst.cal.gptq, r->buf, gram, pt->rows, pt->cols, &r->qt[i], threads, err)))
			return qp_err_prefix(err, "tensor '%s'", pt->t->name), rc;
		if ((rc = save_piece(r->partial, pt, &r->qt[i], err)))
			return rc;
		crash_hook(++r->saved);
	}
	pt->seq_done = true;
	/* the forward pass reads q and k in llama.cpp's RoPE row order */
	const struct qp_llama_hparams *hp = qp_llama_hparams(r->m);
	int64_t heads = ends_with(gg, ".attn_q.weight") ? hp->n_head : ends_with(gg, ".attn_k.weight") ? hp->n_head_kv : 0;
	if ((rc = qp_qmethod_dequantize(&pt->dst.spec, &r->qt[i], heads ? r->buf : deq, err)))
		return qp_err_prefix(err, "tensor '%s'", pt->t->name), rc;
	if (heads)
		qp_llamanames_rope_rows((uint8_t *)deq, (const uint8_t *)r->buf, pt->rows, (size_t)pt->cols * sizeof(float),
		                        heads);
	return 0;
}

static int seq_layer_done(void *user, int64_t il, int64_t n_layer, struct qp_err *err)
{
	struct seq_run *r = user;
	return qp_ctx_progress(r->ctx, "layers (gptq true-sequential)", il + 1, n_layer, err);
}

/* Every GPTQ tensor of the layers, quantized through the layers before it;
 * their pieces saved in partial. */
static int run_sequential(struct qp_stage_ctx *ctx, struct plan_tensor *pt, struct qp_qtensor *qt, size_t n,
                          const char *partial, int64_t *saved, int64_t *resumed, struct qp_err *err)
{
	const struct qp_artifact *ca = qp_ctx_input(ctx, "calib"), *ma = qp_ctx_input(ctx, "calib_model");
	const json_t *ran = ca->metrics ? json_object_get(ca->metrics, "gguf") : NULL;
	if (json_is_string(ran) && strcmp(json_string_value(ran), ma->instance) != 0)
		return qp_err_set(err, QP_EINVAL, "calib_model is '%s', but calibrate '%s' ran '%s'", ma->instance, ca->instance,
		                  json_string_value(ran));
	const char *wpath, *gpath;
	struct qp_st_model *win = NULL;
	struct qp_llama *m = NULL;
	struct seq_run r = {.ctx = ctx, .pt = pt, .qt = qt, .n = n, .partial = partial};
	int rc;
	if ((rc = qp_stage_need_file(ca, "windows.safetensors", &wpath, err)) ||
	    (rc = qp_stage_need_file(ma, "model.gguf", &gpath, err)) || (rc = qp_st_open(&win, wpath, err)))
		return rc;
	const struct qp_st_tensor *t = qp_st_find(win, "tokens");
	/* read in place: calibrate's writer aligns the data section */
	if (!t || t->dtype != QP_ST_I32 || t->ndim != 2 || t->shape[0] < 1 || t->shape[1] < 1 ||
	    (uintptr_t)t->data % sizeof(int32_t) != 0) {
		rc = qp_err_set(err, QP_ECORRUPT, "%s: no aligned I32 tensor 'tokens' of [samples, seq_len]", wpath);
		goto out;
	}
	int64_t samples = t->shape[0], seq_len = t->shape[1], big = 1;
	for (size_t i = 0; i < n; i++)
		big = pt[i].t->nelem > big ? pt[i].t->nelem : big;
	if (!(r.buf = malloc((size_t)big * sizeof(float)))) {
		rc = qp_err_nomem(err);
		goto out;
	}
	if ((rc = qp_llama_open(&m, gpath, seq_len, qp_ctx_threads(ctx), err)))
		goto out;
	r.m = m;
	const struct qp_seq_callbacks cb = {&r, seq_state, seq_quantize, seq_layer_done};
	rc = qp_seqcalib_run(m, t->data, samples, seq_len, &cb, qp_ctx_threads(ctx), err);
	json_t *sm = json_object();
	json_object_set_new(sm, "windows", json_integer(samples));
	json_object_set_new(sm, "seq_len", json_integer(seq_len));
	json_object_set_new(sm, "hidden_state_bytes",
	                    json_integer((json_int_t)(samples * seq_len * qp_llama_hparams(m)->n_embd) * 4));
	json_object_set_new(qp_ctx_metrics(ctx), "true_sequential", sm);
out:
	*saved = r.saved;
	*resumed = r.resumed;
	free(r.buf);
	qp_llama_free(m);
	qp_st_close(win);
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
	struct qp_calib_stats *stats = NULL;
	size_t n = 0, n_fb = 0;
	struct plan_tensor *pt = NULL;
	struct qp_qtensor *qt = NULL;
	struct qp_quant_imatrix *im = NULL;
	const char **fb_names = NULL;
	int64_t total_elems = 0, done_elems = 0;
	if ((rc = check_params(ctx, &main_to, ov, err)) || (rc = qp_stage_weights_path(in, &wpath, err)) ||
	    (rc = qp_st_open(&m, wpath, err)) ||
	    (rc = qp_quant_imatrix_open(&im, qp_ctx_input(ctx, "imatrix"), err)))
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
	json_t *awq_report = json_object();
	json_object_set_new(qp_ctx_metrics(ctx), "awq", awq_report);
	if (main_to.calibrated || main_to.smooth) {
		const struct qp_artifact *ca = qp_ctx_input(ctx, "calib");
		const char *spath;
		if ((rc = qp_stage_need_file(ca, "stats.safetensors", &spath, err)) ||
		    (rc = qp_calib_stats_open(&stats, spath, err)))
			goto out;
		/* weights calibrate saw no input of (embeddings, lm_head) keep the fallback type */
		for (size_t i = 0; i < n; i++) {
			if (!pt[i].dst.calibrated)
				continue;
			if (!qp_calib_stats_has(stats, pt[i].t->name)) {
				pt[i].dst = (struct target){.type = fallback};
				size_t row;
				qp_type_row_size(fallback, pt[i].cols, &row);
				pt[i].nbytes = row * (size_t)pt[i].rows;
				fb_names[n_fb++] = pt[i].t->name;
			}
		}
		if ((main_to.cal.awq || main_to.smooth) && (rc = fold_input_scales(ctx, pt, n, stats, &main_to.cal, awq_report, err)))
			goto out;
	}
	bool layout = false;
	for (size_t i = 0; i < n; i++) {
		layout |= pt[i].dst.is_method;
		total_elems += pt[i].t->nelem;
	}
	const char *partial = NULL;
	int64_t resumed = 0, saved = 0;
	if (main_to.calibrated && (rc = qp_ctx_partial_dir(ctx, &partial, err)))
		goto out;
	if (main_to.calibrated && main_to.cal.true_sequential &&
	    (rc = run_sequential(ctx, pt, qt, n, partial, &saved, &resumed, err)))
		goto out;
	for (size_t i = 0; i < n; i++) {
		bool was_saved = false;
		if (pt[i].seq_done) {
			/* quantized above */
		} else if (pt[i].dst.calibrated && (rc = load_piece(partial, &pt[i], &qt[i], &was_saved, err))) {
			goto out;
		} else if (was_saved) {
			resumed++;
		} else {
			if ((rc = quantize_one(ctx, &pt[i], stats, im, &qt[i], err)))
				goto out;
			if (pt[i].dst.calibrated) {
				if ((rc = save_piece(partial, &pt[i], &qt[i], err)))
					goto out;
				crash_hook(++saved);
			}
		}
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
	rc = layout ? write_layout(pt, qt, n, &pv, path, err) : write_gguf(pt, n, &pv, im, qp_ctx_metrics(ctx), path, err);
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
	if (main_to.calibrated)
		json_object_set_new(met, "resumed_tensors", json_integer(resumed));
	if (preset[0])
		json_object_set_new(met, "preset", json_string(preset));
	json_object_set_new(met, "format", json_string(layout ? "qpipe-safetensors" : "gguf"));
	json_object_set_new(met, "type_counts", counts);
	json_object_set_new(met, "tensor_types", each);
	json_object_set_new(met, "fallback_type", json_string(qp_ctx_param(ctx, "fallback")->s));
	json_object_set_new(met, "fallback", fb);
	if (layout)
		rc = qp_quant_imatrix_record(im, NULL, met, err);
out:
	qp_quant_imatrix_free(im);
	for (size_t i = 0; pt && i < n; i++) {
		free(pt[i].data);
		free(pt[i].f32);
		free(pt[i].awq_s);
		qp_qtensor_free(&qt[i]);
	}
	qp_calib_stats_close(stats);
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
	.version = 5,  /* 5: gptq's canonical text names true_sequential */
	.summary = "quantize weight tensors to a GGUF type, llama.cpp's preset mixture or a method (RTN, NF4, FP8 ...), with per-tensor overrides",
	.params = params,
	.hash_extra = hash_extra,
	.run = run,
	.mem_inputs = 2.5, /* source + converted copy (+ row buffers) */
	.mem_fixed = 64 << 20,
};
