/* evaluate: metrics of a quantized model against its source.
 *
 * Now: size (MB = 10^6 bytes of tensor data), bits per weight (tensor data
 * bits over all elements, 1-D tensors included, as llama.cpp counts BPW),
 * and weight error per tensor and overall: rmse = sqrt(sum (w - q)^2 / n),
 * max_abs = max |w - q|, rel_err = sqrt(sum (w - q)^2 / sum w^2), where w is
 * the source weight converted to f32 and q the dequantized weight. */
#include <math.h>
#include <string.h>

#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "kernels/convert.h"
#include "kernels/vec.h"
#include "stages/common.h"
#include "stages/stage.h"

static const struct qp_param_decl params[] = {
	{.name = "model", .type = QP_P_INPUT, .doc = "the quantize stage to measure"},
	{.name = "reference", .type = QP_P_INPUT, .doc = "the unquantized model (model.local)"},
	{0},
};

static json_t *stats_json(const struct qp_err_stats *s)
{
	double n = s->n ? (double)s->n : 1.0;
	return json_pack("{s:f, s:f, s:f}", "rmse", sqrt(s->sum_sq_err / n), "max_abs", s->max_abs,
	                 "rel_err", s->sum_sq_ref > 0 ? sqrt(s->sum_sq_err / s->sum_sq_ref) : 0.0);
}

static int run(struct qp_stage_ctx *ctx, struct qp_err *err)
{
	const struct qp_artifact *qa = qp_ctx_input(ctx, "model");
	const struct qp_artifact *ra = qp_ctx_input(ctx, "reference");
	const char *gpath, *wpath;
	int rc;
	if ((rc = qp_stage_need_file(qa, "model.gguf", &gpath, err)) ||
	    (rc = qp_stage_weights_path(ra, &wpath, err)))
		return rc;
	struct qp_gguf_file *q = NULL;
	struct qp_st_model *ref = NULL;
	if ((rc = qp_gguf_open(&q, gpath, err)) || (rc = qp_st_open(&ref, wpath, err)))
		goto out;
	struct qp_err_stats all = {0};
	uint64_t bytes = 0;
	int64_t elems = 0;
	json_t *tensors = json_array();
	json_object_set_new(qp_ctx_metrics(ctx), "tensors", tensors);
	size_t nt = qp_gguf_tensor_count(q);
	for (size_t i = 0; i < nt; i++) {
		const struct qp_gguf_tensor *t = qp_gguf_tensor_at(q, i);
		const struct qp_st_tensor *r = qp_st_find(ref, t->name);
		if (!r) {
			rc = qp_err_set(err, QP_EINVAL, "%s: tensor '%s' is not in the reference model %s",
			                gpath, t->name, wpath);
			goto out;
		}
		int rt = qp_type_of_st_dtype(r->dtype);
		if (rt < 0 || r->nelem != t->nelem) {
			rc = qp_err_set(err, QP_EINVAL, "tensor '%s': reference has %lld %s elements, model %lld",
			                t->name, (long long)r->nelem, qp_st_dtype_name(r->dtype),
			                (long long)t->nelem);
			goto out;
		}
		bytes += t->nbytes;
		elems += t->nelem;
		int64_t cols = t->ne[0], rows = cols ? t->nelem / cols : 0;
		struct qp_err_stats s = {0};
		if ((rc = qp_compare_rows(&s, (enum qp_type)rt, r->data, t->type, t->data, rows, cols, err))) {
			qp_err_prefix(err, "tensor '%s'", t->name);
			goto out;
		}
		json_t *tj = stats_json(&s);
		json_object_set_new(tj, "name", json_string(t->name));
		json_object_set_new(tj, "type", json_string(qp_type_traits(t->type)->name));
		json_object_set_new(tj, "n", json_integer(t->nelem));
		json_array_append_new(tensors, tj);
		/* Overall error covers the weights that were quantized; 1-D
		 * tensors stay f32 and would only dilute it. */
		if (t->ndim >= 2) {
			all.sum_sq_err += s.sum_sq_err;
			all.sum_sq_ref += s.sum_sq_ref;
			all.n += s.n;
			if (s.max_abs > all.max_abs)
				all.max_abs = s.max_abs;
		}
		if ((rc = qp_ctx_progress(ctx, "tensors", (int64_t)i + 1, (int64_t)nt, err)))
			goto out;
	}
	json_t *met = qp_ctx_metrics(ctx);
	json_t *st = stats_json(&all);
	json_object_update(met, st);
	json_decref(st);
	json_object_set_new(met, "size_mb", json_real((double)bytes / 1e6));
	json_object_set_new(met, "bits_per_weight", json_real(elems ? 8.0 * (double)bytes / (double)elems : 0));
	json_object_set_new(met, "n_params", json_integer(elems));
	json_t *qm = qa->metrics;
	if (json_object_get(qm, "type"))
		json_object_set(met, "type", json_object_get(qm, "type"));
	if (json_object_get(qm, "fallback")) {
		json_object_set(met, "fallback", json_object_get(qm, "fallback"));
		json_object_set(met, "fallback_type", json_object_get(qm, "fallback_type"));
	}
	json_object_set_new(met, "reference", json_string(ra->instance));
out:
	qp_st_close(ref);
	qp_gguf_close(q);
	return rc;
}

const struct qp_stage_kind qp_kind_evaluate = {
	.name = "evaluate",
	.version = 1,
	.summary = "size, bits per weight and per-tensor weight error against the source model",
	.params = params,
	.run = run,
};
