/* export.hf: a quantized model as a Hugging Face checkpoint in the GPTQ or
 * AWQ layout (formats/hfquant.h) that transformers loads.
 *
 * Input is quantize's model.safetensors in qpipe's layout whose decoder
 * linears are RTN entries (rtn, gptq or awq methods); embeddings, norms
 * and lm_head are written as F16 of their values (transformers' GPTQ and
 * AWQ quantize the decoder linears only). config.json gains the
 * quantization_config transformers' quantizer reads:
 *   gptq: quant_method "gptq", bits, group_size (-1 per channel),
 *         desc_act (g_idx present), sym, static_groups, damp_percent,
 *         true_sequential (as quantize's gptq method says),
 *         checkpoint_format "gptq" (or "gptq_v2" when a zero point of 0
 *         cannot take AutoGPTQ's -1)
 *   awq:  quant_method "awq", bits 4, group_size, zero_point true,
 *         version "gemm"
 * A layer linear that is not RTN (a fallback, another method) makes the
 * export fail naming it: transformers would look for its qweight. */
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/os.h"
#include "formats/hfquant.h"
#include "formats/qlayout.h"
#include "formats/qspec.h"
#include "formats/safetensors.h"
#include "kernels/convert.h"
#include "kernels/kernels.h"
#include "stages/common.h"
#include "stages/quantize/calibrated.h"
#include "stages/stage.h"

static const char *const formats[] = {"gptq", "awq", NULL};

static const struct qp_param_decl params[] = {
	{.name = "model", .type = QP_P_INPUT, .doc = "the quantize stage (rtn, gptq or awq method)"},
	{.name = "format", .type = QP_P_ENUM, .def = "gptq", .choices = formats,
	 .doc = "checkpoint layout: gptq (AutoGPTQ) or awq (autoawq GEMM)"},
	{0},
};

static bool is_layer_linear(const char *name)
{
	return !strncmp(name, "model.layers.", 13) && strstr(name, "_proj.weight");
}

/* name with ".weight" replaced by suffix, kept by the caller's list. */
static char *part_name(const char *name, const char *suffix)
{
	size_t n = strlen(name);
	const size_t w = strlen(".weight");
	char *out = malloc(n + strlen(suffix) + 1);
	if (out) {
		memcpy(out, name, n - w);
		strcpy(out + n - w, suffix);
	}
	return out;
}

struct owned {
	void **p;
	size_t n, cap;
};

static void *keep(struct owned *o, void *p)
{
	if (!p)
		return NULL;
	if (o->n == o->cap) {
		size_t cap = o->cap ? 2 * o->cap : 64;
		void **q = realloc(o->p, cap * sizeof(*q));
		if (!q) {
			free(p);
			return NULL;
		}
		o->p = q;
		o->cap = cap;
	}
	return o->p[o->n++] = p;
}

static int write_config(struct qp_stage_ctx *ctx, const char *src, json_t *qc, struct qp_err *err)
{
	json_error_t je;
	json_t *cfg = json_load_file(src, 0, &je);
	if (!json_is_object(cfg)) {
		json_decref(cfg);
		json_decref(qc);
		return qp_err_set(err, QP_EINVAL, "%s:%d:%d: %s", src, je.line, je.column, je.text);
	}
	json_object_set_new(cfg, "quantization_config", qc);
	json_object_set_new(cfg, "torch_dtype", json_string("float16"));
	char *text = json_dumps(cfg, JSON_INDENT(2) | JSON_SORT_KEYS);
	json_decref(cfg);
	if (!text)
		return qp_err_nomem(err);
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/config.json", qp_ctx_out_dir(ctx));
	size_t len = strlen(text);
	text[len] = '\n';
	int rc = qp_os_write_file_atomic(path, text, len + 1, err);
	free(text);
	return rc ? rc : qp_ctx_add_output(ctx, "config.json", err);
}

static int run(struct qp_stage_ctx *ctx, struct qp_err *err)
{
	const struct qp_artifact *in = qp_ctx_input(ctx, "model");
	enum qp_hfq_format f = strcmp(qp_ctx_param(ctx, "format")->s, "awq") ? QP_HFQ_GPTQ : QP_HFQ_AWQ;
	const char *lpath = qp_artifact_file(in, "model.safetensors"), *cpath;
	int rc;
	if (!lpath)
		return qp_err_set(err, QP_EINVAL, "input '%s' has no model.safetensors: export.hf takes a quantize stage with method rtn, gptq or awq",
		                  in->instance);
	if ((rc = qp_stage_need_file(in, "config.json", &cpath, err)))
		return rc;
	struct qp_ql_model *m = NULL;
	struct qp_st_writer *w = NULL;
	struct owned own = {0};
	struct qp_qspec first = {0};
	bool have_first = false, v2 = false, desc_act = false;
	if ((rc = qp_ql_open(&m, lpath, err)) || (rc = qp_st_writer_new(&w, err)))
		goto out;
	size_t n = qp_ql_count(m);
	/* GPTQ's zeros: v1 unless some zero point is 0 */
	for (size_t i = 0; i < n && f == QP_HFQ_GPTQ; i++) {
		const struct qp_ql_entry *e = qp_ql_at(m, i);
		if (e->kind != QP_QL_METHOD || !is_layer_linear(e->name))
			continue;
		struct qp_qtensor q;
		if ((rc = qp_ql_qtensor(m, e, &q, err)))
			goto out;
		v2 |= qp_hfq_needs_v2(&q);
		desc_act |= q.g_idx != NULL;
		qp_qtensor_free(&q);
	}
	for (size_t i = 0; i < n; i++) {
		const struct qp_ql_entry *e = qp_ql_at(m, i);
		/* transformers quantizes decoder linears only: the rest goes out as F16 values */
		if (e->kind != QP_QL_METHOD || !is_layer_linear(e->name)) {
			if (is_layer_linear(e->name)) {
				rc = qp_err_set(err, QP_EINVAL, "%s: layer weight '%s' is not quantized (%s); %s needs every decoder linear as RTN",
				                lpath, e->name, e->kind == QP_QL_GGUF ? qp_type_traits(e->type)->name : "float",
				                f == QP_HFQ_GPTQ ? "GPTQ" : "AWQ");
				goto out;
			}
			uint16_t *h = keep(&own, malloc((size_t)(e->nelem ? e->nelem : 1) * 2));
			float *v = malloc((size_t)(e->nelem ? e->nelem : 1) * 4);
			if (!h || !v) {
				free(v);
				rc = qp_err_nomem(err);
				goto out;
			}
			rc = qp_ql_dequantize(m, e, v, qp_ctx_threads(ctx), err);
			if (!rc)
				qp_kernels_get(QP_TYPE_F16)->quantize_row(v, h, e->nelem);
			free(v);
			if (rc || (rc = qp_st_writer_add(w, e->name, QP_ST_F16, e->ndim, e->shape, h, (size_t)e->nelem * 2, err)))
				goto out;
			continue;
		}
		if (have_first && (e->spec.bits != first.bits || e->spec.group != first.group || e->spec.sym != first.sym ||
		                   e->spec.gran != first.gran)) {
			char a[256], b[256];
			qp_qspec_format(&e->spec, a, sizeof(a));
			qp_qspec_format(&first, b, sizeof(b));
			rc = qp_err_set(err, QP_EINVAL, "tensor '%s' is %s but others are %s: one quantization_config covers them all",
			                e->name, a, b);
			goto out;
		}
		first = e->spec;
		have_first = true;
		struct qp_qtensor q;
		struct qp_hfq_tensor t;
		if ((rc = qp_ql_qtensor(m, e, &q, err)))
			goto out;
		rc = qp_hfq_from_rtn(f, &e->spec, &q, v2, &t, err);
		qp_qtensor_free(&q);
		if (rc) {
			qp_err_prefix(err, "tensor '%s'", e->name);
			goto out;
		}
		/* the writer borrows: hand the arrays to own */
		char *nq = keep(&own, part_name(e->name, ".qweight")), *nz = keep(&own, part_name(e->name, ".qzeros"));
		char *ns = keep(&own, part_name(e->name, ".scales")), *ng = keep(&own, part_name(e->name, ".g_idx"));
		keep(&own, t.qweight), keep(&own, t.qzeros), keep(&own, t.scales);
		if (t.g_idx)
			keep(&own, t.g_idx);
		int64_t gshape[1] = {e->shape[1]};
		if (!nq || !nz || !ns || !ng)
			rc = qp_err_nomem(err);
		if (!rc)
			rc = qp_st_writer_add(w, nq, QP_ST_I32, 2, t.qweight_shape, t.qweight,
			                      (size_t)(t.qweight_shape[0] * t.qweight_shape[1]) * 4, err);
		if (!rc)
			rc = qp_st_writer_add(w, nz, QP_ST_I32, 2, t.qzeros_shape, t.qzeros,
			                      (size_t)(t.qzeros_shape[0] * t.qzeros_shape[1]) * 4, err);
		if (!rc)
			rc = qp_st_writer_add(w, ns, QP_ST_F16, 2, t.scales_shape, t.scales,
			                      (size_t)(t.scales_shape[0] * t.scales_shape[1]) * 2, err);
		if (!rc && t.g_idx)
			rc = qp_st_writer_add(w, ng, QP_ST_I32, 1, gshape, t.g_idx, (size_t)gshape[0] * 4, err);
		if (rc)
			goto out;
	}
	if (!have_first) {
		rc = qp_err_set(err, QP_EINVAL, "%s: no RTN-quantized tensor to export", lpath);
		goto out;
	}
	json_t *qc;
	if (f == QP_HFQ_GPTQ) {
		struct qp_calibrated cal = {0};
		const char *mv = qp_ql_metadata(m, "qpipe.method");
		struct qp_err scratch = {0};
		bool gptq = mv && qp_calibrated_is(mv) && !qp_calibrated_parse(&cal, mv, &scratch) && !cal.awq;
		qc = json_pack("{s:s,s:i,s:I,s:b,s:b,s:b,s:f,s:b,s:s,s:n,s:n}", "quant_method", "gptq", "bits", first.bits,
		               "group_size", (json_int_t)(first.gran == QP_QG_GROUP ? first.group : -1), "desc_act", desc_act,
		               "sym", first.sym, "static_groups", gptq && cal.gptq.static_groups, "damp_percent",
		               gptq ? cal.gptq.damp_percent : 0.01, "true_sequential", gptq && cal.true_sequential, "checkpoint_format",
		               v2 ? "gptq_v2" : "gptq", "model_name_or_path", "model_file_base_name");
	} else {
		qc = json_pack("{s:s,s:i,s:I,s:b,s:s,s:n}", "quant_method", "awq", "bits", first.bits, "group_size",
		               (json_int_t)first.group, "zero_point", 1, "version", "gemm", "modules_to_not_convert");
	}
	if (!qc) {
		rc = qp_err_nomem(err);
		goto out;
	}
	if ((rc = qp_st_writer_set_metadata(w, "format", "pt", err)))
		goto out;
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/model.safetensors", qp_ctx_out_dir(ctx));
	if ((rc = qp_st_writer_write(w, path, err)) || (rc = qp_ctx_add_output(ctx, "model.safetensors", err)) ||
	    (rc = write_config(ctx, cpath, qc, err)))
		goto out;
	for (size_t i = 0; qp_model_side_files[i] && !rc; i++) {
		const char *src = qp_artifact_file(in, qp_model_side_files[i]);
		if (src && strcmp(qp_model_side_files[i], "config.json"))
			rc = qp_stage_copy_output(ctx, src, qp_model_side_files[i], err);
	}
	json_object_set_new(qp_ctx_metrics(ctx), "checkpoint_format",
	                    json_string(f == QP_HFQ_AWQ ? "awq-gemm" : v2 ? "gptq_v2" : "gptq"));
out:
	qp_st_writer_free(w);
	for (size_t i = 0; i < own.n; i++)
		free(own.p[i]);
	free(own.p);
	qp_ql_close(m);
	return rc;
}

const struct qp_stage_kind qp_kind_export_hf = {
	.name = "export.hf",
	.version = 1,
	.summary = "write an RTN/GPTQ/AWQ-quantized Llama as a GPTQ or AWQ checkpoint transformers loads",
	.params = params,
	.run = run,
	.mem_inputs = 3.0,
	.mem_fixed = 64 << 20,
};
