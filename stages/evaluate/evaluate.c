/* evaluate: metrics of a quantized model.
 *
 * metrics (a list) picks what is measured:
 *   size          size (MB = 10^6 bytes of tensor data), bits per weight
 *                 (tensor data bits over all elements, 1-D tensors
 *                 included, as llama.cpp counts BPW); always computed
 *   weight_error  per tensor and overall, against `reference`:
 *                 rmse = sqrt(sum (w - q)^2 / n), max_abs = max |w - q|,
 *                 rel_err = sqrt(sum (w - q)^2 / sum w^2), w the source
 *                 weight in f32, q the dequantized weight
 *   ppl           perplexity of the exported GGUF (`gguf`, the
 *                 export.gguf stage) on `text`, by llama.cpp's
 *                 llama-perplexity method (model/perplexity.h): n_ctx
 *                 tokens per chunk, the first `chunks` chunks (0: all),
 *                 with the GGUF's own tokenizer */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/os.h"
#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "kernels/convert.h"
#include "kernels/vec.h"
#include "model/llama.h"
#include "model/perplexity.h"
#include "model/tokenizer.h"
#include "stages/common.h"
#include "stages/stage.h"

static const struct qp_param_decl params[] = {
	{.name = "model", .type = QP_P_INPUT, .doc = "the quantize stage to measure"},
	{.name = "reference", .type = QP_P_INPUT, .def = "",
	 .doc = "the unquantized model (model.local); needed for weight_error"},
	{.name = "gguf", .type = QP_P_INPUT, .def = "",
	 .doc = "the export.gguf stage of the same model; needed for ppl"},
	{.name = "metrics", .type = QP_P_LIST, .def = "size,weight_error",
	 .doc = "what to measure: size, weight_error, ppl"},
	{.name = "text", .type = QP_P_PATH, .def = "", .doc = "text file for ppl"},
	{.name = "n_ctx", .type = QP_P_INT, .def = "512", .min = 8, .max = 1048576,
	 .doc = "ppl: tokens per chunk"},
	{.name = "chunks", .type = QP_P_INT, .def = "0", .min = 0, .max = 1e9,
	 .doc = "ppl: chunks to score, 0 for all the text holds"},
	{0},
};

static const char *const known_metrics[] = {"size", "weight_error", "ppl", NULL};

static int ppl_progress(void *arg, int64_t done, int64_t total, struct qp_err *err)
{
	return qp_ctx_progress(arg, "ppl chunks", done, total, err);
}

static int run_ppl(struct qp_stage_ctx *ctx, struct qp_err *err)
{
	const struct qp_artifact *ga = qp_ctx_input(ctx, "gguf");
	const char *text_path = qp_ctx_param(ctx, "text")->s;
	if (!ga)
		return qp_err_set(err, QP_EINVAL, "metric 'ppl' needs parameter 'gguf' (the export.gguf stage)");
	if (!text_path[0])
		return qp_err_set(err, QP_EINVAL, "metric 'ppl' needs parameter 'text' (a text file)");
	const char *gpath;
	int rc = qp_stage_need_file(ga, "model.gguf", &gpath, err);
	if (rc)
		return rc;
	struct qp_ppl_params p = {.n_ctx = qp_ctx_param(ctx, "n_ctx")->i,
	                          .chunks = qp_ctx_param(ctx, "chunks")->i, .first = -1};
	struct qp_llama *m = NULL;
	struct qp_tokenizer *tok = NULL;
	char *text = NULL;
	size_t len, n = 0;
	int32_t *ids = NULL;
	if ((rc = qp_llama_open(&m, gpath, p.n_ctx, qp_ctx_threads(ctx), err)) ||
	    (rc = qp_tokenizer_from_gguf(&tok, qp_llama_gguf(m), err)) ||
	    (rc = qp_os_read_file(&text, &len, text_path, (size_t)1 << 31, err)) ||
	    (rc = qp_tokenizer_encode(tok, text, len, true, &ids, &n, err)))
		goto out;
	struct qp_ppl_result r;
	if ((rc = qp_ppl_run(&r, m, ids, (int64_t)n, qp_tokenizer_bos(tok), &p, ppl_progress, ctx, err))) {
		if (rc != QP_EINTR)
			qp_err_prefix(err, "%s", text_path);
		goto out;
	}
	json_t *met = qp_ctx_metrics(ctx);
	json_object_set_new(met, "ppl", json_real(r.ppl));
	json_object_set_new(met, "ppl_err", json_real(r.ppl_err));
	json_object_set_new(met, "ppl_nll", json_real(r.nll));
	json_object_set_new(met, "ppl_method", json_string("llama.cpp: chunks of n_ctx, BOS first, second half scored"));
	json_object_set_new(met, "n_ctx", json_integer(p.n_ctx));
	json_object_set_new(met, "chunks", json_integer(r.n_chunks));
	json_object_set_new(met, "tokens_scored", json_integer(r.n_scored));
	json_object_set_new(met, "text_tokens", json_integer(r.n_tokens));
	json_object_set_new(met, "tokenizer", json_string(qp_tokenizer_describe(tok)));
	json_object_set_new(met, "gguf", json_string(ga->instance));
	json_object_set_new(met, "text", json_string(text_path));
out:
	free(ids);
	free(text);
	qp_tokenizer_free(tok);
	qp_llama_free(m);
	return rc;
}

static bool want_metric(const struct qp_value *v, const char *name)
{
	for (size_t i = 0; i < v->n; i++)
		if (!strcmp(v->list[i], name))
			return true;
	return false;
}

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
	const struct qp_value *metrics = qp_ctx_param(ctx, "metrics");
	for (size_t i = 0; i < metrics->n; i++) {
		bool ok = false;
		for (size_t j = 0; known_metrics[j]; j++)
			ok |= !strcmp(metrics->list[i], known_metrics[j]);
		if (!ok)
			return qp_err_set(err, QP_EINVAL, "unknown metric '%s' (known: size, weight_error, ppl)",
			                  metrics->list[i]);
	}
	bool weight_error = want_metric(metrics, "weight_error");
	if (weight_error && !ra)
		return qp_err_set(err, QP_EINVAL, "metric 'weight_error' needs parameter 'reference' (the source model)");
	const char *gpath, *wpath = NULL;
	int rc;
	if ((rc = qp_stage_need_file(qa, "model.gguf", &gpath, err)) ||
	    (weight_error && (rc = qp_stage_weights_path(ra, &wpath, err))))
		return rc;
	struct qp_gguf_file *q = NULL;
	struct qp_st_model *ref = NULL;
	if ((rc = qp_gguf_open(&q, gpath, err)) || (weight_error && (rc = qp_st_open(&ref, wpath, err))))
		goto out;
	struct qp_err_stats all = {0};
	uint64_t bytes = 0;
	int64_t elems = 0;
	json_t *tensors = json_array();
	json_object_set_new(qp_ctx_metrics(ctx), "tensors", tensors);
	size_t nt = qp_gguf_tensor_count(q);
	for (size_t i = 0; i < nt; i++) {
		const struct qp_gguf_tensor *t = qp_gguf_tensor_at(q, i);
		bytes += t->nbytes;
		elems += t->nelem;
		if (!weight_error)
			continue;
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
	if (weight_error) {
		json_t *st = stats_json(&all);
		json_object_update(met, st);
		json_decref(st);
		json_object_set_new(met, "reference", json_string(ra->instance));
	} else {
		json_object_del(met, "tensors");
	}
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
	if (want_metric(metrics, "ppl")) {
		qp_gguf_close(q);
		q = NULL;
		rc = run_ppl(ctx, err);
	}
out:
	qp_st_close(ref);
	qp_gguf_close(q);
	return rc;
}

const struct qp_stage_kind qp_kind_evaluate = {
	.name = "evaluate",
	.version = 3,
	.summary = "size, bits per weight, weight error against the source, perplexity",
	.params = params,
	.run = run,
	.mem_inputs = 2.5, /* source + converted copy (+ row buffers) */
	.mem_fixed = 64 << 20,
};
