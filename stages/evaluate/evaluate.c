/* evaluate: metrics of a quantized model.
 *
 * metrics (a list) picks what is measured:
 *   size          of `model` (a quantize stage, or a model folder's plain
 *                 safetensors as they are):
 *                 size (MB = 10^6 bytes of tensor data), bits per weight
 *                 (tensor data bits over all elements, 1-D tensors
 *                 included, as llama.cpp counts BPW); always computed.
 *                 For qpipe's safetensors layout (a quantize method) the
 *                 bytes are every stored part: codes, scales, zero points,
 *                 LUTs, second-level constants
 *   weight_error  per tensor and overall, against `reference`:
 *                 rmse = sqrt(sum (w - q)^2 / n), max_abs = max |w - q|,
 *                 rel_err = sqrt(sum (w - q)^2 / sum w^2), w the source
 *                 weight in f32, q the dequantized weight
 *   ppl           perplexity of the exported GGUF (`gguf`, the
 *                 export.gguf stage; or a Hugging Face model folder,
 *                 model.local or hf.download, run from its safetensors)
 *                 on `text`, with the model's own tokenizer, by
 *                 ppl_method (model/perplexity.h):
 *                   llama.cpp  llama-perplexity's: n_ctx tokens per
 *                              chunk, the first `chunks` chunks (0: all)
 *                   hf         transformers' strided sliding window:
 *                              windows of n_ctx tokens every `stride`
 *                              (0: n_ctx / 2), each scoring the tokens
 *                              past the previous window's end; `chunks`
 *                              limits the windows
 *                 ppl_method, n_ctx, stride (hf), chunks and tokenizer
 *                 are in the metrics, for the report
 *   kld           KL divergence of `gguf` from `base` (the export.gguf
 *                 stage of the unquantized model, e.g. a quantize of type
 *                 f32 or f16 and its export) on the very tokens ppl scores
 *                 (the second half of each chunk), as llama-perplexity
 *                 --kl-divergence reports it (model/kld.h): with p the
 *                 base's and q this model's next-token softmax,
 *                   kld        mean over tokens of sum_i p_i (log p_i - log q_i)
 *                              (nats; kld_err its standard error)
 *                   kld_median, kld_p99, kld_max: of the per-token values,
 *                              percentiles interpolated as llama.cpp does
 *                   rms_dp     100 * sqrt(mean (q[next] - p[next])^2), percent,
 *                              next the text's next token (mean_dp: the mean)
 *                   top1_pct   percent of tokens where argmax p == argmax q
 *                 `base` is either an evaluate.base stage (stages/evaluate/
 *                 base.c: the base's distributions computed once, stored
 *                 compactly, read here; its text, n_ctx and chunks must
 *                 give this stage's very tokens and its vocabulary this
 *                 model's, else the stage fails saying which differs) or
 *                 an export.gguf stage (the base model then runs here,
 *                 chunk by chunk beside the quantized one, from exact
 *                 float logits, and each evaluation pays for it again).
 *                 Wiring: give the base its own stages without the matrix
 *                 coordinate,
 *                   base_q:    { uses: quantize, with: { model: model, type: f16 } }
 *                   base_gguf: { uses: export.gguf, with: { model: base_q } }
 *                   base:      { uses: evaluate.base, with: { gguf: base_gguf,
 *                                text: ..., n_ctx: 512, chunks: 8 } }
 *                 and `base: base` in evaluate's with; having no
 *                 coordinate in common, it pairs with every instance.
 *                 With stored logits kld differs from the exact path by
 *                 the file's rounding (model/logits_file.h: about 7e-5 relative
 *                 on kld for q8_0 and q4_0, rms_dp and top1_pct exact), and the
 *                 metric base_logits names the file's base
 *   speed         on `gguf`, after one untimed warm-up each: prefill_tok_s,
 *                 n_ctx tokens in one batch from an empty cache (the first
 *                 chunk of `text`, or fixed stand-in tokens without text),
 *                 and decode_tok_s, decode_tokens single-token steps over
 *                 the KV cache; threads (the stage's thread count) and
 *                 load_s (opening the GGUF and building the model)
 *   mc            multiple-choice accuracy of `gguf` on each of `tasks`
 *                 (HellaSwag or PIQA JSON Lines, told apart by their
 *                 fields), the first mc_limit items of each (0: all),
 *                 scored zero-shot by log-likelihood as lm-evaluation-
 *                 harness does (model/mc.h): for a task named T
 *                 (hellaswag, piqa) T_acc, T_acc_norm (by log-likelihood
 *                 per character of the choice), their standard errors
 *                 T_acc_stderr, T_acc_norm_stderr, T_n items and T_file.
 *                 Each item's tokens must fit n_ctx
 *   act_quant     w8a8: ppl, kld, speed and mc run the model with its
 *                 layers' linears as int8 per output channel and their
 *                 inputs quantized per token to int8 (qp_llama_set_w8a8),
 *                 the base model (kld) unchanged
 *   memory        peak_rss_mb: the stage process's peak resident set
 *                 (getrusage ru_maxrss, MB = 10^6 bytes) at its end, so it
 *                 includes whatever the other metrics loaded (the base
 *                 model too, with kld) */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "common/os.h"
#include "formats/gguf.h"
#include "formats/hfconfig.h"
#include "formats/qlayout.h"
#include "formats/qspec.h"
#include "formats/safetensors.h"
#include "formats/spm.h"
#include "kernels/convert.h"
#include "kernels/vec.h"
#include "model/kld.h"
#include "model/llama.h"
#include "model/logits_file.h"
#include "model/mc.h"
#include "model/perplexity.h"
#include "model/tokenizer.h"
#include "stages/common.h"
#include "stages/stage.h"

static const char *const act_quants[] = {"none", "w8a8", NULL};
static const char *const ppl_methods[] = {"llama.cpp", "hf", NULL};

static const struct qp_param_decl params[] = {
	{.name = "model", .type = QP_P_INPUT,
	 .doc = "the quantize stage to measure, or a model folder (model.local, hf.download) as it is"},
	{.name = "reference", .type = QP_P_INPUT, .def = "",
	 .doc = "the unquantized model (model.local); needed for weight_error"},
	{.name = "gguf", .type = QP_P_INPUT, .def = "",
	 .doc = "the export.gguf stage of the same model, or a model folder (model.local, hf.download); "
	        "needed for ppl, kld, speed, mc"},
	{.name = "base", .type = QP_P_INPUT, .def = "",
	 .doc = "kld: the unquantized model: an evaluate.base stage (stored logits), its export.gguf stage "
	        "or its folder"},
	{.name = "metrics", .type = QP_P_LIST, .def = "size,weight_error",
	 .doc = "what to measure: size, weight_error, ppl, kld, speed, mc, memory"},
	{.name = "text", .type = QP_P_PATH, .def = "", .doc = "text file for ppl"},
	{.name = "n_ctx", .type = QP_P_INT, .def = "512", .min = 8, .max = 1048576,
	 .doc = "ppl: tokens per chunk"},
	{.name = "act_quant", .type = QP_P_ENUM, .def = "none", .choices = act_quants,
	 .doc = "none, or w8a8: the layers' linears int8 per channel, inputs int8 per token (SmoothQuant's setting)"},
	{.name = "chunks", .type = QP_P_INT, .def = "0", .min = 0, .max = 1e9,
	 .doc = "ppl: chunks (hf: windows) to score, 0 for all the text holds"},
	{.name = "ppl_method", .type = QP_P_ENUM, .def = "llama.cpp", .choices = ppl_methods,
	 .doc = "ppl: llama.cpp (chunks, BOS first, second half scored) or hf (transformers' strided sliding window)"},
	{.name = "stride", .type = QP_P_INT, .def = "0", .min = 0, .max = 1048576,
	 .doc = "ppl with ppl_method hf: tokens between window starts, 1 .. n_ctx; 0 for n_ctx / 2"},
	{.name = "tasks", .type = QP_P_PATHS, .def = "",
	 .doc = "mc: HellaSwag / PIQA JSONL task files, at most one of each"},
	{.name = "mc_limit", .type = QP_P_INT, .def = "0", .min = 0, .max = 1e9,
	 .doc = "mc: items scored per task, the first ones; 0 for all"},
	{.name = "decode_tokens", .type = QP_P_INT, .def = "64", .min = 1, .max = 1048576,
	 .doc = "speed: single-token decode steps timed (at most n_ctx - 1)"},
	{0},
};

static const char *const known_metrics[] = {"size", "weight_error", "ppl", "kld", "speed", "mc", "memory", NULL};

static int text_progress(void *arg, const char *what, int64_t done, int64_t total, struct qp_err *err)
{
	return qp_ctx_progress(arg, what, done, total, err);
}

static double peak_rss_mb(void)
{
	struct rusage ru;
	if (getrusage(RUSAGE_SELF, &ru))
		return 0.0;
	return (double)ru.ru_maxrss * 1024.0 / 1e6; /* Linux: KiB */
}

/* Deterministic stand-in tokens for speed when there is no text. */
static void synth_tokens(int32_t *t, int64_t n, int64_t n_vocab, int32_t bos)
{
	for (int64_t i = 0; i < n; i++)
		t[i] = (int32_t)((i * 7919 + 13) % n_vocab);
	if (bos >= 0 && n > 0)
		t[0] = bos;
}

static int run_speed(struct qp_stage_ctx *ctx, struct qp_llama *m, const int32_t *ids, size_t n_ids,
                     int32_t bos, int64_t n_ctx, float *logits, struct qp_err *err)
{
	int64_t nv = qp_llama_hparams(m)->n_vocab;
	int64_t n_dec = qp_ctx_param(ctx, "decode_tokens")->i;
	if (n_dec > n_ctx - 1)
		n_dec = n_ctx - 1;
	int32_t *t = malloc((size_t)n_ctx * sizeof(int32_t));
	if (!t)
		return qp_err_nomem(err);
	if (ids && (int64_t)n_ids >= n_ctx)
		qp_ppl_chunk(t, ids, 0, n_ctx, bos);
	else
		synth_tokens(t, n_ctx, nv, bos);
	int rc;
	double t0, prefill = 0, decode = 0;
	/* prefill: one warm-up batch, then one timed batch of n_ctx tokens */
	if ((rc = qp_llama_eval(m, t, n_ctx, 0, logits, err)))
		goto out;
	t0 = qp_os_now();
	if ((rc = qp_llama_eval(m, t, n_ctx, 0, logits, err)))
		goto out;
	prefill = qp_os_now() - t0;
	/* decode: the token at position 0 is the warm-up step, then n_dec
	 * single-token steps at positions 1 .. n_dec over the KV cache */
	if ((rc = qp_llama_eval(m, t, 1, 0, logits, err)))
		goto out;
	t0 = qp_os_now();
	for (int64_t i = 1; i <= n_dec && !rc; i++)
		rc = qp_llama_eval(m, t + i, 1, i, logits, err);
	decode = qp_os_now() - t0;
	if (rc)
		goto out;
	json_t *met = qp_ctx_metrics(ctx);
	json_object_set_new(met, "prefill_tok_s", json_real(prefill > 0 ? (double)n_ctx / prefill : 0.0));
	json_object_set_new(met, "decode_tok_s", json_real(decode > 0 ? (double)n_dec / decode : 0.0));
	json_object_set_new(met, "prefill_tokens", json_integer(n_ctx));
	json_object_set_new(met, "decode_tokens", json_integer(n_dec));
out:
	free(t);
	return rc;
}

struct mc_progress {
	struct qp_stage_ctx *ctx;
	char what[64];
};

static int mc_item_done(void *arg, const struct qp_mc_task *t, const struct qp_mc_scored *s,
                        struct qp_err *err)
{
	struct mc_progress *p = arg;
	return qp_ctx_progress(p->ctx, p->what, (int64_t)s->index + 1, (int64_t)t->n_items, err);
}

/* The task files of parameter 'tasks' (non-empty entries), up to max of them; returns how many. */
static size_t mc_task_paths(const struct qp_stage_ctx *ctx, const char **paths, size_t max)
{
	const struct qp_value *v = qp_ctx_param(ctx, "tasks");
	size_t n = 0;
	for (size_t i = 0; i < v->n && n < max; i++)
		if (v->list[i] && v->list[i][0])
			paths[n++] = v->list[i];
	return n;
}

#define MC_MAX_TASKS 16

/* mc: every task file is read (and checked) before any is scored. */
static int run_mc(struct qp_stage_ctx *ctx, struct qp_llama *m, const struct qp_tokenizer *tok,
                  struct qp_err *err)
{
	const char *paths[MC_MAX_TASKS];
	size_t n = mc_task_paths(ctx, paths, MC_MAX_TASKS);
	struct qp_mc_task *tasks[MC_MAX_TASKS] = {0};
	int64_t limit = qp_ctx_param(ctx, "mc_limit")->i;
	int rc = 0;
	for (size_t i = 0; i < n && !rc; i++) {
		if ((rc = qp_mc_load(&tasks[i], paths[i], limit, err)))
			break;
		for (size_t j = 0; j < i; j++)
			if (!strcmp(tasks[j]->name, tasks[i]->name))
				rc = qp_err_set(err, QP_EINVAL, "tasks: %s and %s are both %s tasks (give one of each)",
				                paths[j], paths[i], tasks[i]->name);
	}
	json_t *met = qp_ctx_metrics(ctx);
	for (size_t i = 0; i < n && !rc; i++) {
		struct qp_mc_result r;
		struct mc_progress pr = {.ctx = ctx};
		snprintf(pr.what, sizeof(pr.what), "%s items", tasks[i]->name);
		if ((rc = qp_mc_run(&r, m, tok, tasks[i], mc_item_done, &pr, err)))
			break;
		static const char *const keys[] = {"acc", "acc_stderr", "acc_norm", "acc_norm_stderr"};
		const double vals[] = {r.acc, r.acc_stderr, r.acc_norm, r.acc_norm_stderr};
		char key[96];
		for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
			snprintf(key, sizeof(key), "%s_%s", tasks[i]->name, keys[k]);
			json_object_set_new(met, key, json_real(vals[k]));
		}
		snprintf(key, sizeof(key), "%s_n", tasks[i]->name);
		json_object_set_new(met, key, json_integer(r.n));
		snprintf(key, sizeof(key), "%s_file", tasks[i]->name);
		json_object_set_new(met, key, json_string(paths[i]));
	}
	if (!rc)
		json_object_set_new(met, "mc_method",
		                    json_string("lm-eval zero-shot: sum log p(\" \" + choice | context), BOS first; "
		                                "acc_norm per character"));
	for (size_t i = 0; i < n; i++)
		qp_mc_task_free(tasks[i]);
	return rc;
}

/* The model of input a: its model.gguf, or else the Hugging Face
 * checkpoint (config.json and safetensors) of a model folder stage; *path
 * names it in messages. */
static int open_model(struct qp_llama **m, const char **path, const struct qp_artifact *a, int64_t n_ctx,
                      int threads, struct qp_err *err)
{
	const char *cfg = qp_artifact_file(a, "config.json");
	*path = qp_artifact_file(a, "model.gguf");
	if (*path)
		return qp_llama_open(m, *path, n_ctx, threads, err);
	if (!cfg)
		return qp_err_set(err, QP_EINVAL, "input '%s' has neither model.gguf nor config.json: give an "
		                  "export.gguf stage or a model folder (model.local, hf.download)", a->instance);
	int rc = qp_stage_weights_path(a, path, err);
	return rc ? rc : qp_llama_open_hf(m, cfg, *path, n_ctx, threads, err);
}

/* The tokenizer of input a, opened as m: the GGUF's own, or the folder's
 * tokenizer.json (else its tokenizer.model) with its tokenizer_config.json
 * rules, as transformers' AutoTokenizer picks. */
static int open_tokenizer(struct qp_tokenizer **tok, const struct qp_llama *m, const struct qp_artifact *a,
                          struct qp_err *err)
{
	if (qp_llama_gguf(m))
		return qp_tokenizer_from_gguf(tok, qp_llama_gguf(m), err);
	const char *sp, *tc = qp_artifact_file(a, "tokenizer_config.json");
	const char *tj = qp_artifact_file(a, "tokenizer.json");
	if (tj) {
		char *js = NULL, *cs = NULL;
		size_t jn = 0, cn = 0;
		int rc = qp_os_read_file(&js, &jn, tj, (size_t)1 << 30, err);
		if (!rc && tc)
			rc = qp_os_read_file(&cs, &cn, tc, (size_t)1 << 24, err);
		if (!rc)
			rc = qp_tokenizer_from_json_mem(tok, js, jn, tj, cs, cn, tc, err);
		free(js);
		free(cs);
		return rc;
	}
	struct qp_hf_tokenizer_config c = {.add_bos_token = true, .add_eos_token = false};
	int rc = qp_stage_need_file(a, "tokenizer.model", &sp, err);
	if (rc || (tc && (rc = qp_hf_tokenizer_config_read(&c, tc, err))))
		return rc;
	struct qp_spm *spm;
	if ((rc = qp_spm_read(&spm, sp, err)))
		return rc;
	struct qp_tokenizer_rules rules = {.add_bos = c.add_bos_token, .add_eos = c.add_eos_token};
	rc = qp_tokenizer_from_spm(tok, spm, &rules, err);
	qp_spm_free(spm);
	return rc;
}

static int hf_progress(void *ctx, int64_t done, int64_t total, struct qp_err *err)
{
	return qp_ctx_progress(ctx, "ppl windows", done, total, err);
}

/* Stored base logits must cover the very chunks this stage scores:
 * the same count, length, first scored position and tokens. */
static int check_stored(const struct qp_logits_file *f, const struct qp_artifact *ba, const int32_t *ids,
                        int64_t n_chunks, int64_t n_ctx, int32_t bos, struct qp_err *err)
{
	const struct qp_logits_info *in = qp_logits_info(f);
	if (in->n_ctx != n_ctx || in->n_chunks != n_chunks || in->first != n_ctx / 2)
		return qp_err_set(err, QP_EINVAL,
		                  "kld: base '%s' holds %lld chunks of n_ctx %lld, this evaluate scores %lld of n_ctx %lld "
		                  "(give both the same text, n_ctx and chunks)",
		                  ba->instance, (long long)in->n_chunks, (long long)in->n_ctx, (long long)n_chunks,
		                  (long long)n_ctx);
	for (int64_t c = 0; c < n_chunks; c++)
		for (int64_t j = 0; j < n_ctx; j++) {
			int32_t want = j == 0 && bos >= 0 ? bos : ids[c * n_ctx + j], have = in->tokens[c * n_ctx + j];
			if (want != have)
				return qp_err_set(err, QP_EINVAL,
				                  "kld: base '%s' was computed on other tokens: chunk %lld position %lld is token "
				                  "%d there, %d here (text or tokenizer differ; its text: %s)",
				                  ba->instance, (long long)c, (long long)j, have, want, in->text);
		}
	return 0;
}

/* ppl, kld, speed and mc: the metrics that run the model. */
static int run_text(struct qp_stage_ctx *ctx, bool want_ppl, bool want_kld, bool want_speed,
                    bool want_mc, struct qp_err *err)
{
	const struct qp_artifact *ga = qp_ctx_input(ctx, "gguf");
	const struct qp_artifact *ba = qp_ctx_input(ctx, "base");
	const char *text_path = qp_ctx_param(ctx, "text")->s;
	const char *first_metric = want_ppl ? "ppl" : want_kld ? "kld" : want_speed ? "speed" : "mc";
	if (!ga)
		return qp_err_set(err, QP_EINVAL, "metric '%s' needs parameter 'gguf' (the export.gguf stage), or "
		                  "a model folder there", first_metric);
	if (want_kld && !ba)
		return qp_err_set(err, QP_EINVAL,
		                  "metric 'kld' needs parameter 'base' (the evaluate.base or export.gguf stage of the "
		                  "unquantized model)");
	const char *task_paths[MC_MAX_TASKS + 1];
	size_t n_tasks = mc_task_paths(ctx, task_paths, MC_MAX_TASKS + 1);
	if (want_mc && n_tasks == 0)
		return qp_err_set(err, QP_EINVAL, "metric 'mc' needs parameter 'tasks' (HellaSwag or PIQA JSONL files)");
	if (n_tasks > MC_MAX_TASKS)
		return qp_err_set(err, QP_EINVAL, "tasks: more than %d files", MC_MAX_TASKS);
	bool need_text = want_ppl || want_kld;
	if (need_text && !text_path[0])
		return qp_err_set(err, QP_EINVAL, "metric '%s' needs parameter 'text' (a text file)",
		                  want_ppl ? "ppl" : "kld");
	const char *gpath = NULL, *bpath = NULL;
	const char *lpath = want_kld ? qp_artifact_file(ba, "base_logits.qpl") : NULL;
	int rc;
	struct qp_ppl_params p = {.n_ctx = qp_ctx_param(ctx, "n_ctx")->i,
	                          .chunks = qp_ctx_param(ctx, "chunks")->i, .first = -1};
	int threads = qp_ctx_threads(ctx);
	struct qp_llama *m = NULL, *base = NULL;
	struct qp_tokenizer *tok = NULL;
	struct qp_kld_acc kacc = {0};
	struct qp_logits_file *stored = NULL;
	char *text = NULL;
	size_t len, n = 0;
	int32_t *ids = NULL, *chunk = NULL;
	float *logits = NULL, *blogits = NULL;
	json_t *met = qp_ctx_metrics(ctx);
	double t0 = qp_os_now();
	bool w8a8 = !strcmp(qp_ctx_param(ctx, "act_quant")->s, "w8a8");
	if ((rc = open_model(&m, &gpath, ga, p.n_ctx, threads, err)) || (w8a8 && (rc = qp_llama_set_w8a8(m, err))))
		goto out;
	json_object_set_new(met, "act_quant", json_string(w8a8 ? "w8a8" : "none"));
	double load_s = qp_os_now() - t0;
	if ((rc = open_tokenizer(&tok, m, ga, err)))
		goto out;
	if (text_path[0] && ((rc = qp_os_read_file(&text, &len, text_path, (size_t)1 << 31, err)) ||
	                     (rc = qp_tokenizer_encode(tok, text, len, true, &ids, &n, err))))
		goto out;
	int64_t nv = qp_llama_hparams(m)->n_vocab, n_ctx = p.n_ctx;
	if (want_kld && lpath) {
		if ((rc = qp_logits_open(&stored, lpath, err))) {
			qp_err_prefix(err, "kld: base '%s'", ba->instance);
			goto out;
		}
		const struct qp_logits_info *bi = qp_logits_info(stored);
		if (bi->n_vocab != nv) {
			rc = qp_err_set(err, QP_EINVAL, "kld: base '%s' has %lld tokens in its vocabulary, %s has %lld",
			                ba->instance, (long long)bi->n_vocab, gpath, (long long)nv);
			goto out;
		}
	} else if (want_kld) {
		if ((rc = open_model(&base, &bpath, ba, n_ctx, threads, err)))
			goto out;
		if (qp_llama_hparams(base)->n_vocab != nv) {
			rc = qp_err_set(err, QP_EINVAL, "kld: base %s has %lld tokens in its vocabulary, %s has %lld",
			                bpath, (long long)qp_llama_hparams(base)->n_vocab, gpath, (long long)nv);
			goto out;
		}
	}
	logits = malloc((size_t)n_ctx * (size_t)nv * sizeof(float));
	if (!logits || (base && !(blogits = malloc((size_t)n_ctx * (size_t)nv * sizeof(float))))) {
		rc = qp_err_nomem(err);
		goto out;
	}
	bool hf = !strcmp(qp_ctx_param(ctx, "ppl_method")->s, "hf");
	if (want_ppl && hf) {
		struct qp_ppl_hf_params hp = {.max_length = n_ctx, .stride = qp_ctx_param(ctx, "stride")->i,
		                              .windows = p.chunks};
		if (!hp.stride)
			hp.stride = n_ctx / 2;
		struct qp_ppl_result r;
		if ((rc = qp_ppl_hf_run(&r, m, ids, (int64_t)n, &hp, hf_progress, ctx, err))) {
			if (rc != QP_EINTR)
				qp_err_prefix(err, "%s", text_path);
			goto out;
		}
		json_object_set_new(met, "ppl", json_real(r.ppl));
		json_object_set_new(met, "ppl_err", json_real(r.ppl_err));
		json_object_set_new(met, "ppl_nll", json_real(r.nll));
		char desc[256];
		snprintf(desc, sizeof(desc), "hf: strided sliding window (transformers docs), windows of n_ctx "
		         "every %lld tokens, each scoring the tokens past the previous one's end, BOS once",
		         (long long)hp.stride);
		json_object_set_new(met, "ppl_method", json_string(desc));
		json_object_set_new(met, "stride", json_integer(hp.stride));
		json_object_set_new(met, "n_ctx", json_integer(n_ctx));
		json_object_set_new(met, "chunks", json_integer(r.n_chunks));
		json_object_set_new(met, "tokens_scored", json_integer(r.n_scored));
		json_object_set_new(met, "text_tokens", json_integer((int64_t)n));
		json_object_set_new(met, "tokenizer", json_string(qp_tokenizer_describe(tok)));
		json_object_set_new(met, "text", json_string(text_path));
		want_ppl = false; /* done: the chunks below are kld's only */
	}
	if (want_ppl || want_kld) {
		int32_t bos = qp_tokenizer_bos(tok);
		int64_t n_chunks, first;
		if ((rc = qp_ppl_plan(&n_chunks, &first, (int64_t)n, &p, err))) {
			qp_err_prefix(err, "%s", text_path);
			goto out;
		}
		if (!(chunk = malloc((size_t)n_ctx * sizeof(int32_t)))) {
			rc = qp_err_nomem(err);
			goto out;
		}
		if (stored && (rc = check_stored(stored, ba, ids, n_chunks, n_ctx, bos, err)))
			goto out;
		struct qp_nll_sums sums = {0};
		const char *what = want_kld ? "kld chunks" : "ppl chunks";
		for (int64_t c = 0; c < n_chunks; c++) {
			qp_ppl_chunk(chunk, ids, c, n_ctx, bos);
			if ((rc = qp_ppl_window(&sums, m, chunk, n_ctx, first, logits, err)) ||
			    (stored && (rc = qp_kld_add_stored(&kacc, stored, c, logits, err))) ||
			    (base && ((rc = qp_llama_eval(base, chunk, n_ctx, 0, blogits, err)) ||
			              (rc = qp_kld_add(&kacc, blogits, logits, nv, chunk, n_ctx, first, err)))) ||
			    (rc = text_progress(ctx, what, c + 1, n_chunks, err))) {
				if (rc != QP_EINTR)
					qp_err_prefix(err, "%s", text_path);
				goto out;
			}
		}
		if (want_ppl) {
			struct qp_ppl_result r;
			qp_ppl_finish(&r, &sums);
			json_object_set_new(met, "ppl", json_real(r.ppl));
			json_object_set_new(met, "ppl_err", json_real(r.ppl_err));
			json_object_set_new(met, "ppl_nll", json_real(r.nll));
			json_object_set_new(met, "ppl_method",
			                    json_string("llama.cpp: chunks of n_ctx, BOS first, second half scored"));
		}
		if (want_kld) {
			struct qp_kld_result k;
			qp_kld_finish(&k, &kacc);
			json_object_set_new(met, "kld", json_real(k.kld));
			json_object_set_new(met, "kld_err", json_real(k.kld_err));
			json_object_set_new(met, "kld_median", json_real(k.kld_median));
			json_object_set_new(met, "kld_p99", json_real(k.kld_p99));
			json_object_set_new(met, "kld_max", json_real(k.kld_max));
			json_object_set_new(met, "rms_dp", json_real(k.rms_dp));
			json_object_set_new(met, "mean_dp", json_real(k.mean_dp));
			json_object_set_new(met, "top1_pct", json_real(k.top1_pct));
			json_object_set_new(met, "base", json_string(ba->instance));
			json_object_set_new(met, "base_logits", json_string(stored ? qp_logits_info(stored)->model : "live"));
		}
		json_object_set_new(met, "n_ctx", json_integer(n_ctx));
		json_object_set_new(met, hf ? "kld_chunks" : "chunks", json_integer(n_chunks));
		json_object_set_new(met, hf ? "kld_tokens_scored" : "tokens_scored", json_integer(sums.n));
		json_object_set_new(met, "text_tokens", json_integer((int64_t)n));
		json_object_set_new(met, "tokenizer", json_string(qp_tokenizer_describe(tok)));
		json_object_set_new(met, "text", json_string(text_path));
	}
	json_object_set_new(met, "gguf", json_string(ga->instance));
	if (want_mc && (rc = run_mc(ctx, m, tok, err)))
		goto out;
	if (want_speed) {
		if ((rc = run_speed(ctx, m, ids, n, qp_tokenizer_bos(tok), n_ctx, logits, err)))
			goto out;
		json_object_set_new(met, "load_s", json_real(load_s));
		json_object_set_new(met, "threads", json_integer(threads));
	}
out:
	qp_logits_close(stored);
	qp_kld_acc_free(&kacc);
	free(chunk);
	free(logits);
	free(blogits);
	free(ids);
	free(text);
	qp_tokenizer_free(tok);
	qp_llama_free(base);
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
			return qp_err_set(err, QP_EINVAL, "unknown metric '%s' (known: size, weight_error, ppl, kld, speed, mc, memory)",
			                  metrics->list[i]);
	}
	bool weight_error = want_metric(metrics, "weight_error");
	if (weight_error && !ra)
		return qp_err_set(err, QP_EINVAL, "metric 'weight_error' needs parameter 'reference' (the source model)");
	const char *gpath = qp_artifact_file(qa, "model.gguf"), *lpath = qp_artifact_file(qa, "model.safetensors");
	const char *wpath = NULL, *mpath = gpath ? gpath : lpath;
	int rc, layout = 1;
	/* a model folder (model.local, hf.download) is measured as it is */
	if (!gpath && qp_artifact_file(qa, "config.json") && (rc = qp_stage_weights_path(qa, &lpath, err)) == 0 &&
	    (rc = qp_ql_probe(lpath, &layout, err)))
		return rc;
	mpath = gpath ? gpath : lpath;
	if (!mpath)
		return qp_err_set(err, QP_EINVAL, "input '%s' has neither model.gguf nor model.safetensors: is it a quantize stage?",
		                  qa->instance);
	if (weight_error && (rc = qp_stage_weights_path(ra, &wpath, err)))
		return rc;
	struct qp_gguf_file *q = NULL;
	struct qp_ql_model *ql = NULL;
	struct qp_st_model *ref = NULL, *plain = NULL;
	float *deq = NULL;
	if ((rc = gpath ? qp_gguf_open(&q, gpath, err) : layout ? qp_ql_open(&ql, lpath, err) : qp_st_open(&plain, lpath, err)) ||
	    (weight_error && (rc = qp_st_open(&ref, wpath, err))))
		goto out;
	struct qp_err_stats all = {0};
	uint64_t bytes = 0;
	int64_t elems = 0;
	json_t *tensors = json_array();
	json_object_set_new(qp_ctx_metrics(ctx), "tensors", tensors);
	size_t nt = q ? qp_gguf_tensor_count(q) : ql ? qp_ql_count(ql) : qp_st_count(plain);
	for (size_t i = 0; i < nt; i++) {
		/* one view of a tensor of any of the formats */
		const struct qp_gguf_tensor *gt = q ? qp_gguf_tensor_at(q, i) : NULL;
		const struct qp_ql_entry *le = ql ? qp_ql_at(ql, i) : NULL;
		const struct qp_st_tensor *pt = plain ? qp_st_at(plain, i) : NULL;
		if (pt && qp_type_of_st_dtype(pt->dtype) < 0) {
			rc = qp_err_set(err, QP_EINVAL, "%s: tensor '%s' has dtype %s, not a weight type", lpath, pt->name,
			                qp_st_dtype_name(pt->dtype));
			goto out;
		}
		const char *name = gt ? gt->name : le ? le->name : pt->name;
		int64_t nelem = gt ? gt->nelem : le ? le->nelem : pt->nelem;
		int ndim = gt ? gt->ndim : le ? le->ndim : pt->ndim;
		int64_t cols = gt ? gt->ne[0] : le ? (le->ndim ? le->shape[le->ndim - 1] : 1) : pt->ndim ? pt->shape[pt->ndim - 1] : 1,
		        rows = cols ? nelem / cols : 0;
		char tname[256];
		if (pt)
			snprintf(tname, sizeof(tname), "%s", qp_type_traits((enum qp_type)qp_type_of_st_dtype(pt->dtype))->name);
		else if (gt || le->kind != QP_QL_METHOD)
			snprintf(tname, sizeof(tname), "%s", qp_type_traits(gt ? gt->type : le->type)->name);
		else
			qp_qspec_format(&le->spec, tname, sizeof(tname));
		bytes += gt ? gt->nbytes : le ? le->nbytes : pt->nbytes;
		elems += nelem;
		if (!weight_error)
			continue;
		const struct qp_st_tensor *r = qp_st_find(ref, name);
		if (!r) {
			rc = qp_err_set(err, QP_EINVAL, "%s: tensor '%s' is not in the reference model %s", mpath, name, wpath);
			goto out;
		}
		int rt = qp_type_of_st_dtype(r->dtype);
		if (rt < 0 || r->nelem != nelem) {
			rc = qp_err_set(err, QP_EINVAL, "tensor '%s': reference has %lld %s elements, model %lld", name,
			                (long long)r->nelem, qp_st_dtype_name(r->dtype), (long long)nelem);
			goto out;
		}
		struct qp_err_stats s = {0};
		if (le) {
			free(deq);
			if (!(deq = malloc((size_t)(nelem ? nelem : 1) * sizeof(float)))) {
				rc = qp_err_nomem(err);
				goto out;
			}
			if ((rc = qp_ql_dequantize(ql, le, deq, qp_ctx_threads(ctx), err)))
				goto out;
		}
		enum qp_type mt = gt ? gt->type : pt ? (enum qp_type)qp_type_of_st_dtype(pt->dtype) : QP_TYPE_F32;
		if ((rc = qp_compare_rows(&s, (enum qp_type)rt, r->data, mt, gt ? gt->data : pt ? pt->data : deq,
		                          rows, cols, err))) {
			qp_err_prefix(err, "tensor '%s'", name);
			goto out;
		}
		json_t *tj = stats_json(&s);
		json_object_set_new(tj, "name", json_string(name));
		json_object_set_new(tj, "type", json_string(tname));
		json_object_set_new(tj, "n", json_integer(nelem));
		json_array_append_new(tensors, tj);
		/* Overall error covers the weights that were quantized; 1-D
		 * tensors stay f32 and would only dilute it. */
		if (ndim >= 2) {
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
	bool want_ppl = want_metric(metrics, "ppl"), want_kld = want_metric(metrics, "kld"),
	     want_speed = want_metric(metrics, "speed"), want_mc = want_metric(metrics, "mc");
	if (want_ppl || want_kld || want_speed || want_mc) {
		qp_gguf_close(q);
		q = NULL;
		qp_ql_close(ql);
		ql = NULL;
		qp_st_close(plain);
		plain = NULL;
		rc = run_text(ctx, want_ppl, want_kld, want_speed, want_mc, err);
	}
	if (!rc && want_metric(metrics, "memory"))
		json_object_set_new(met, "peak_rss_mb", json_real(peak_rss_mb()));
out:
	free(deq);
	qp_st_close(ref);
	qp_st_close(plain);
	qp_gguf_close(q);
	qp_ql_close(ql);
	return rc;
}

const struct qp_stage_kind qp_kind_evaluate = {
	.name = "evaluate",
	/* 5: q4_0 products as exact block dots (7cc017a), and SwiGLU a token
	 * at a time (182464a): q4_0 metrics, and those of models whose n_ff is
	 * not a multiple of 8, moved */
	.version = 5,
	.summary = "size, bits per weight, weight error against the source, perplexity, KL divergence, speed, "
	           "multiple-choice accuracy, memory",
	.params = params,
	.run = run,
	.mem_inputs = 2.5, /* source + converted copy (+ row buffers) */
	.mem_fixed = 64 << 20,
};
