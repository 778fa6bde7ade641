/* calibrate: activation statistics of a model over calibration text, for
 * the quantizers that weigh weights by their inputs (llama.cpp's k-quants
 * with an importance matrix, GPTQ, AWQ, SmoothQuant).
 *
 * Input `gguf` is an export.gguf stage of the unquantized model (qpipe's
 * forward pass reads GGUF). The text is tokenized once, with BOS, by the
 * GGUF's own tokenizer; then `samples` windows of `seq_len` tokens start
 * at seeded random offsets (GPTQ's sampling of c4), offset i being
 *   splitmix64_i(seed) mod (text_tokens - seq_len + 1)
 * with splitmix64_i the i-th output (i = 1, 2, ...) of the generator
 * seeded with `seed` (state += 0x9e3779b97f4a7c15, then the usual
 * xor-shift-multiply finalizer). Each window's first token is replaced by
 * BOS, as llama-imatrix does with each chunk, and the window runs from an
 * empty KV cache. The input of every 2-D weight of the layers (and of
 * output.weight with process_output, as llama-imatrix --process-output;
 * like it, nothing for a model whose output is its tied token_embd) is
 * summed over every token of every window.
 *
 * Outputs:
 *  imatrix.gguf       llama.cpp's importance matrix in its GGUF layout
 *                     (formats/imatrix.h): per weight, by llama.cpp name,
 *                     W.in_sum2 (sum of x^2 per input channel), W.counts
 *                     (tokens), W.in_sum; imatrix.datasets (the text's
 *                     file name), imatrix.chunk_count (samples),
 *                     imatrix.chunk_size (seq_len). llama-quantize --imatrix
 *                     takes it; so does quantize's `imatrix` input.
 *  stats.safetensors  per distinct input, under the Hugging Face name of
 *                     the first weight that reads it (q_proj for
 *                     q/k/v_proj, gate_proj for gate/up_proj, o_proj,
 *                     down_proj; lm_head with process_output):
 *                       W.hessian       F32 [k, k]  H = X^T X summed over all
 *                                                   tokens (GPTQ divides by
 *                                                   the count itself); only
 *                                                   with hessian: true
 *                       W.act_mean_abs  F32 [k]     mean |x_j| (AWQ)
 *                       W.act_max_abs   F32 [k]     max |x_j| (SmoothQuant)
 *                     __metadata__: "W.tokens" = tokens summed (decimal);
 *                     for every weight V, "V.input" = the W holding its
 *                     input's statistics (k_proj and v_proj point at
 *                     q_proj, up_proj at gate_proj, each owner at itself);
 *                     qpipe.samples, qpipe.seq_len, qpipe.seed,
 *                     qpipe.text, qpipe.sample_offsets (comma-separated).
 *  windows.safetensors  the windows as they were run: "tokens", I32
 *                     [samples, seq_len], first token BOS-replaced, so a
 *                     later stage (GPTQ's true-sequential mode) re-runs the
 *                     same tokens without tokenizing again.
 * Metrics: samples, seq_len, tokens, tokens_per_s (forward pass and
 * statistics together), text_tokens, inputs (distinct inputs recorded),
 * threads, output_collected.
 *
 * Memory: the mapped model plus, with hessian, k * k doubles per input
 * (about 0.85 of the layers' parameter count for a Llama) and their f32
 * copies while stats.safetensors is written. */
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/os.h"
#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "model/calib.h"
#include "model/llama.h"
#include "model/tokenizer.h"
#include "stages/common.h"
#include "stages/stage.h"

static const struct qp_param_decl params[] = {
	{.name = "gguf", .type = QP_P_INPUT, .doc = "the export.gguf stage of the unquantized model"},
	{.name = "text", .type = QP_P_PATH, .doc = "calibration text file (not the evaluation text)"},
	{.name = "samples", .type = QP_P_INT, .def = "128", .min = 1, .max = 1e6,
	 .doc = "windows of text run through the model"},
	{.name = "seq_len", .type = QP_P_INT, .def = "512", .min = 2, .max = 1048576,
	 .doc = "tokens per window"},
	{.name = "seed", .type = QP_P_INT, .def = "0", .min = 0, .max = 4294967295.0,
	 .doc = "seed of the windows' random offsets"},
	{.name = "hessian", .type = QP_P_BOOL, .def = "true",
	 .doc = "also keep X^T X per input (k x k; GPTQ needs it, the imatrix does not)"},
	{.name = "process_output", .type = QP_P_BOOL, .def = "false",
	 .doc = "also collect the output projection's input, as llama-imatrix --process-output"},
	{0},
};

static uint64_t splitmix64(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* The windows' offsets, comma-separated, for the stats' metadata. */
static char *offsets_text(const int64_t *off, int64_t n)
{
	size_t cap = (size_t)n * 21 + 1;
	char *s = malloc(cap), *p = s;
	for (int64_t i = 0; s && i < n; i++)
		p += snprintf(p, cap - (size_t)(p - s), i ? ",%" PRId64 : "%" PRId64, off[i]);
	return s;
}

static int write_windows(struct qp_stage_ctx *ctx, const int32_t *wins, int64_t samples, int64_t seq_len,
                         struct qp_err *err)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/windows.safetensors", qp_ctx_out_dir(ctx));
	const int64_t shape[2] = {samples, seq_len};
	struct qp_st_writer *w = NULL;
	int rc = qp_st_writer_new(&w, err);
	if (!rc && !(rc = qp_st_writer_add(w, "tokens", QP_ST_I32, 2, shape, wins,
	                                   (size_t)(samples * seq_len) * sizeof(int32_t), err)))
		rc = qp_st_writer_write(w, path, err);
	qp_st_writer_free(w);
	return rc ? rc : qp_ctx_add_output(ctx, "windows.safetensors", err);
}

static int write_outputs(struct qp_stage_ctx *ctx, const struct qp_calib *c, const int64_t *off,
                         struct qp_err *err)
{
	const char *text = qp_ctx_param(ctx, "text")->s;
	const char *base = strrchr(text, '/') ? strrchr(text, '/') + 1 : text;
	int64_t samples = qp_ctx_param(ctx, "samples")->i, seq_len = qp_ctx_param(ctx, "seq_len")->i;
	char path[PATH_MAX], s_samples[24], s_len[24], s_seed[24];
	/* the file name only: the key covers the text by content, so the
	 * output must not depend on where the file lies */
	const char *datasets[1] = {base};
	snprintf(path, sizeof(path), "%s/imatrix.gguf", qp_ctx_out_dir(ctx));
	int rc = qp_calib_write_imatrix(c, path, datasets, 1, (uint32_t)samples, (uint32_t)seq_len, err);
	if (rc || (rc = qp_ctx_add_output(ctx, "imatrix.gguf", err)))
		return rc;
	char *offs = offsets_text(off, samples);
	if (!offs)
		return qp_err_nomem(err);
	snprintf(s_samples, sizeof(s_samples), "%" PRId64, samples);
	snprintf(s_len, sizeof(s_len), "%" PRId64, seq_len);
	snprintf(s_seed, sizeof(s_seed), "%" PRId64, qp_ctx_param(ctx, "seed")->i);
	const char *meta[] = {"qpipe.samples", s_samples, "qpipe.seq_len", s_len, "qpipe.seed", s_seed,
	                      "qpipe.text", base, "qpipe.sample_offsets", offs};
	snprintf(path, sizeof(path), "%s/stats.safetensors", qp_ctx_out_dir(ctx));
	rc = qp_calib_write_stats(c, path, meta, sizeof(meta) / sizeof(meta[0]) / 2, err);
	free(offs);
	return rc ? rc : qp_ctx_add_output(ctx, "stats.safetensors", err);
}

static int run(struct qp_stage_ctx *ctx, struct qp_err *err)
{
	const struct qp_artifact *ga = qp_ctx_input(ctx, "gguf");
	const char *text_path = qp_ctx_param(ctx, "text")->s;
	int64_t samples = qp_ctx_param(ctx, "samples")->i, seq_len = qp_ctx_param(ctx, "seq_len")->i;
	uint64_t seed = (uint64_t)qp_ctx_param(ctx, "seed")->i;
	bool with_output = false;
	int threads = qp_ctx_threads(ctx);
	const char *gpath;
	int rc = qp_stage_need_file(ga, "model.gguf", &gpath, err);
	if (rc)
		return rc;
	struct qp_llama *m = NULL;
	struct qp_tokenizer *tok = NULL;
	struct qp_calib *c = NULL;
	char *text = NULL;
	size_t len, n = 0;
	int32_t *ids = NULL, *wins = NULL;
	int64_t *off = NULL;
	float *logits = NULL;
	if ((rc = qp_llama_open(&m, gpath, seq_len, threads, err)) ||
	    (rc = qp_tokenizer_from_gguf(&tok, qp_llama_gguf(m), err)) ||
	    (rc = qp_os_read_file(&text, &len, text_path, (size_t)1 << 31, err)) ||
	    (rc = qp_tokenizer_encode(tok, text, len, true, &ids, &n, err)))
		goto out;
	if ((int64_t)n < seq_len) {
		rc = qp_err_set(err, QP_EINVAL, "%s: %zu tokens, fewer than seq_len %" PRId64, text_path, n, seq_len);
		goto out;
	}
	/* llama-imatrix collects the output projection only under the name
	 * output.weight: a tied token_embd would otherwise be weighted by it */
	with_output = qp_ctx_param(ctx, "process_output")->i != 0 &&
	              qp_gguf_find_tensor(qp_llama_gguf(m), "output.weight") != NULL;
	int64_t nv = qp_llama_hparams(m)->n_vocab;
	/* seq_len <= 2^20 and samples <= 10^6: the product fits */
	wins = malloc((size_t)(samples * seq_len) * sizeof(int32_t));
	off = malloc((size_t)samples * sizeof(int64_t));
	if (with_output && (uint64_t)nv <= SIZE_MAX / sizeof(float) / (uint64_t)seq_len)
		logits = malloc((size_t)seq_len * (size_t)nv * sizeof(float));
	if (!wins || !off || (with_output && !logits)) {
		rc = qp_err_nomem(err);
		goto out;
	}
	if ((rc = qp_calib_new(&c, qp_ctx_param(ctx, "hessian")->i != 0, threads, err)))
		goto out;
	qp_llama_set_observer(m, qp_calib_observe, c);
	int32_t bos = qp_tokenizer_bos(tok);
	uint64_t state = seed;
	double t0 = qp_os_now();
	for (int64_t s = 0; s < samples; s++) {
		off[s] = (int64_t)(splitmix64(&state) % (uint64_t)((int64_t)n - seq_len + 1));
		int32_t *win = wins + s * seq_len;
		memcpy(win, ids + off[s], (size_t)seq_len * sizeof(int32_t));
		if (bos >= 0)
			win[0] = bos;
		/* position 0 onwards: the cache's earlier contents are never read */
		if ((rc = qp_llama_eval(m, win, seq_len, 0, logits, err))) {
			qp_err_prefix(err, "%s: sample %" PRId64 " (token offset %" PRId64 ")", text_path, s, off[s]);
			goto out;
		}
		if ((rc = qp_ctx_progress(ctx, "samples", s + 1, samples, err)))
			goto out;
	}
	double secs = qp_os_now() - t0;
	if ((rc = write_outputs(ctx, c, off, err)) || (rc = write_windows(ctx, wins, samples, seq_len, err)))
		goto out;
	json_t *met = qp_ctx_metrics(ctx);
	json_object_set_new(met, "samples", json_integer(samples));
	json_object_set_new(met, "seq_len", json_integer(seq_len));
	json_object_set_new(met, "tokens", json_integer(samples * seq_len));
	json_object_set_new(met, "tokens_per_s", json_real(secs > 0 ? (double)(samples * seq_len) / secs : 0.0));
	json_object_set_new(met, "text_tokens", json_integer((json_int_t)n));
	json_object_set_new(met, "inputs", json_integer((json_int_t)qp_calib_count(c)));
	json_object_set_new(met, "threads", json_integer(threads));
	json_object_set_new(met, "output_collected", json_boolean(with_output));
	json_object_set_new(met, "gguf", json_string(ga->instance));
out:
	qp_calib_free(c);
	free(logits);
	free(off);
	free(wins);
	free(ids);
	free(text);
	qp_tokenizer_free(tok);
	qp_llama_free(m);
	return rc;
}

const struct qp_stage_kind qp_kind_calibrate = {
	.name = "calibrate",
	.version = 2,  /* 2: windows.safetensors */
	.summary = "activation statistics over calibration text: llama.cpp's imatrix, Hessians, per-channel scales",
	.params = params,
	.run = run,
	/* the mapped model, Hessians in double (~1.7x an f32 model's bytes)
	 * and their f32 copies while writing */
	.mem_inputs = 4.0,
	.mem_fixed = 64 << 20,
};
