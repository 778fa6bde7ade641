/* evaluate.base: the base (unquantized) model's next-token distributions
 * on the tokens evaluate's kld scores, computed once and stored, so that
 * every evaluate of every method reads them instead of running the base
 * model again.
 *
 * Input `gguf` is the export.gguf stage of the base model; `text`, `n_ctx`
 * and `chunks` pick the tokens exactly as evaluate's ppl and kld do
 * (model/perplexity.h: the text tokenized once with BOS by the GGUF's own
 * tokenizer, chunks of n_ctx with BOS first, positions n_ctx/2 .. n_ctx - 2
 * scored). An evaluate takes this stage as its `base` and checks that its
 * own text, n_ctx and chunks give the same tokens and that the vocabulary
 * agrees.
 *
 * Output base_logits.qpl (model/logits_file.h: layout, size per token and
 * measured precision). Metrics: n_ctx, chunks, tokens_scored, text_tokens,
 * base_ppl and base_nll (the base's own perplexity on those tokens, from
 * the exact float logits), file_bytes, bytes_per_token (the file over the
 * scored tokens), llama_cpp_bytes_per_token (about 2 * n_vocab + 8, the size of
 * llama-perplexity's uint16 base file per token, for comparison), tokenizer. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/hash.h"
#include "common/os.h"
#include "model/llama.h"
#include "model/logits_file.h"
#include "model/perplexity.h"
#include "model/tokenizer.h"
#include "stages/common.h"
#include "stages/stage.h"

static const struct qp_param_decl params[] = {
	{.name = "gguf", .type = QP_P_INPUT, .doc = "the export.gguf stage of the unquantized model"},
	{.name = "text", .type = QP_P_PATH, .doc = "text file the kld is measured on (evaluate's text)"},
	{.name = "n_ctx", .type = QP_P_INT, .def = "512", .min = 8, .max = 1048576, .doc = "tokens per chunk"},
	{.name = "chunks", .type = QP_P_INT, .def = "0", .min = 0, .max = 1e9,
	 .doc = "chunks to store, 0 for all the text holds"},
	{0},
};

static int run(struct qp_stage_ctx *ctx, struct qp_err *err)
{
	const struct qp_artifact *ga = qp_ctx_input(ctx, "gguf");
	const char *text_path = qp_ctx_param(ctx, "text")->s, *gpath;
	int rc = qp_stage_need_file(ga, "model.gguf", &gpath, err);
	if (rc)
		return rc;
	struct qp_ppl_params p = {.n_ctx = qp_ctx_param(ctx, "n_ctx")->i, .chunks = qp_ctx_param(ctx, "chunks")->i,
	                          .first = -1};
	struct qp_llama *m = NULL;
	struct qp_tokenizer *tok = NULL;
	struct qp_logits_writer *w = NULL;
	char *text = NULL;
	size_t len, n = 0;
	int32_t *ids = NULL, *tokens = NULL;
	float *logits = NULL;
	int64_t n_chunks, first, n_ctx = p.n_ctx;
	if ((rc = qp_llama_open(&m, gpath, n_ctx, qp_ctx_threads(ctx), err)) ||
	    (rc = qp_tokenizer_from_gguf(&tok, qp_llama_gguf(m), err)) ||
	    (rc = qp_os_read_file(&text, &len, text_path, (size_t)1 << 31, err)) ||
	    (rc = qp_tokenizer_encode(tok, text, len, true, &ids, &n, err)))
		goto out;
	if ((rc = qp_ppl_plan(&n_chunks, &first, (int64_t)n, &p, err))) {
		qp_err_prefix(err, "%s", text_path);
		goto out;
	}
	int64_t nv = qp_llama_hparams(m)->n_vocab;
	int32_t bos = qp_tokenizer_bos(tok);
	if (!(tokens = malloc((size_t)(n_chunks * n_ctx) * sizeof(int32_t))) ||
	    !(logits = malloc((size_t)n_ctx * (size_t)nv * sizeof(float)))) {
		rc = qp_err_nomem(err);
		goto out;
	}
	for (int64_t c = 0; c < n_chunks; c++)
		qp_ppl_chunk(tokens + c * n_ctx, ids, c, n_ctx, bos);
	/* identities recorded for whoever reads the file; evaluate checks the
	 * tokens themselves */
	char model_id[512], text_id[512], hex[QP_HASH_HEX_LEN + 1];
	qp_hash_hex(&ga->key, hex);
	snprintf(model_id, sizeof(model_id), "%s (key %s)", ga->instance, hex);
	struct qp_hash th;
	qp_hash_buf(&th, text, len);
	qp_hash_hex(&th, hex);
	const char *base_name = strrchr(text_path, '/');
	snprintf(text_id, sizeof(text_id), "%s (%zu bytes, xxh128 %s)", base_name ? base_name + 1 : text_path, len, hex);
	struct qp_logits_info info = {.n_vocab = nv, .n_ctx = n_ctx, .n_chunks = n_chunks, .first = first, .bos = bos,
	                              .n_text = (int64_t)n, .model = model_id,
	                              .tokenizer = qp_tokenizer_describe(tok), .text = text_id, .tokens = tokens};
	char out_path[4096];
	snprintf(out_path, sizeof(out_path), "%s/base_logits.qpl", qp_ctx_out_dir(ctx));
	if ((rc = qp_logits_writer_open(&w, out_path, &info, err)))
		goto out;
	struct qp_nll_sums sums = {0};
	for (int64_t c = 0; c < n_chunks; c++) {
		const int32_t *chunk = tokens + c * n_ctx;
		if ((rc = qp_ppl_window(&sums, m, chunk, n_ctx, first, logits, err)) ||
		    (rc = qp_logits_writer_chunk(w, logits, err)) ||
		    (rc = qp_ctx_progress(ctx, "base chunks", c + 1, n_chunks, err))) {
			if (rc != QP_EINTR)
				qp_err_prefix(err, "%s", text_path);
			goto out;
		}
	}
	if ((rc = qp_logits_writer_finish(w, err)) || (rc = qp_ctx_add_output(ctx, "base_logits.qpl", err)))
		goto out;
	struct qp_ppl_result r;
	qp_ppl_finish(&r, &sums);
	json_t *met = qp_ctx_metrics(ctx);
	uint64_t bytes = qp_logits_writer_bytes(w);
	json_object_set_new(met, "n_ctx", json_integer(n_ctx));
	json_object_set_new(met, "chunks", json_integer(n_chunks));
	json_object_set_new(met, "tokens_scored", json_integer(sums.n));
	json_object_set_new(met, "text_tokens", json_integer((int64_t)n));
	json_object_set_new(met, "base_ppl", json_real(r.ppl));
	json_object_set_new(met, "base_nll", json_real(r.nll));
	json_object_set_new(met, "file_bytes", json_integer((json_int_t)bytes));
	json_object_set_new(met, "bytes_per_token", json_real(sums.n ? (double)bytes / (double)sums.n : 0.0));
	json_object_set_new(met, "llama_cpp_bytes_per_token", json_integer(2 * (2 * ((nv + 1) / 2) + 4)));
	json_object_set_new(met, "tokenizer", json_string(qp_tokenizer_describe(tok)));
	json_object_set_new(met, "text", json_string(text_path));
	json_object_set_new(met, "gguf", json_string(ga->instance));
out:
	qp_logits_writer_free(w);
	free(logits);
	free(tokens);
	free(ids);
	free(text);
	qp_tokenizer_free(tok);
	qp_llama_free(m);
	return rc;
}

const struct qp_stage_kind qp_kind_evaluate_base = {
	.name = "evaluate.base",
	.version = 1,
	.summary = "the base model's next-token distributions on evaluate's scored tokens, stored once for kld",
	.params = params,
	.run = run,
	.mem_inputs = 1.5, /* the mapped model and its f32 copies */
	.mem_fixed = 64 << 20,
};
