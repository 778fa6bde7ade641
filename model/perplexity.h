/* Perplexity by llama.cpp's llama-perplexity method: the whole text is
 * tokenized once (with BOS), cut into chunks of n_ctx tokens, the first
 * token of each chunk is replaced by BOS, each chunk runs from an empty KV
 * cache, and only the predictions of tokens n_ctx/2 + 1 .. n_ctx - 1 of
 * each chunk (from the logits of positions n_ctx/2 .. n_ctx - 2) are
 * scored. PPL = exp(mean NLL); its uncertainty is llama.cpp's:
 * PPL * sqrt((E[nll^2] - E[nll]^2) / (N - 1)) over the N scored tokens. */
#ifndef QP_PERPLEXITY_H
#define QP_PERPLEXITY_H

#include <stdint.h>

#include "common/err.h"

struct qp_llama;

struct qp_ppl_params {
	int64_t n_ctx;    /* tokens per chunk (at most the model's KV cache) */
	int64_t chunks;   /* chunks to run; 0: all that fit in the text */
	int64_t first;    /* first scored position in a chunk; -1: n_ctx / 2 */
};

struct qp_ppl_result {
	double ppl, ppl_err;
	double nll;           /* mean NLL per scored token, nats */
	int64_t n_chunks;     /* chunks run */
	int64_t n_scored;     /* tokens scored */
	int64_t n_tokens;     /* tokens in the whole text */
};

/* Running sums over scored tokens. */
struct qp_nll_sums {
	double nll, nll2;     /* sum of -log p and of (log p)^2 */
	int64_t n;
};

/* Called after each chunk; a nonzero return (with err set) stops the run. */
typedef int (*qp_ppl_progress_fn)(void *arg, int64_t done, int64_t total, struct qp_err *err);

/* Run tokens[n] as one window from an empty cache (positions 0 .. n-1)
 * and add the NLL of tokens[j + 1] under the logits of position j, for
 * first <= j < n - 1, into sums. logits is scratch of n * n_vocab floats. */
int qp_ppl_window(struct qp_nll_sums *sums, struct qp_llama *m, const int32_t *tokens, int64_t n,
                  int64_t first, float *logits, struct qp_err *err);

/* The method above over tokens[n_tokens] (already tokenized with BOS);
 * bos replaces each chunk's first token. Fails with a clear message when
 * the text holds fewer than n_ctx tokens. */
int qp_ppl_run(struct qp_ppl_result *out, struct qp_llama *m, const int32_t *tokens,
               int64_t n_tokens, int32_t bos, const struct qp_ppl_params *p,
               qp_ppl_progress_fn progress, void *arg, struct qp_err *err);

/* The chunks the method runs over n_tokens: how many (p->chunks or all
 * that fit) and the first scored position; fails with a clear message
 * when the text holds fewer than n_ctx tokens. */
int qp_ppl_plan(int64_t *n_chunks, int64_t *first, int64_t n_tokens, const struct qp_ppl_params *p,
                struct qp_err *err);

/* Chunk c of tokens (n_ctx tokens) into chunk, its first token replaced
 * by bos when bos >= 0. */
void qp_ppl_chunk(int32_t *chunk, const int32_t *tokens, int64_t c, int64_t n_ctx, int32_t bos);

/* PPL and its uncertainty from sums, as above. */
void qp_ppl_finish(struct qp_ppl_result *out, const struct qp_nll_sums *sums);

/* Perplexity by Hugging Face's strided sliding window, the loop of the
 * transformers docs page "Perplexity of fixed-length models": the text is
 * tokenized once by the tokenizer's rules (BOS once, at the start; no
 * per-window BOS); windows [begin, end) with begin = 0, stride, 2 stride,
 * ... and end = min(begin + max_length, n_tokens), until a window reaches
 * the end of the text. Each window runs from an empty cache and scores
 * only its last trg_len = end - prev_end tokens (prev_end: the previous
 * window's end, 0 at first), with the labels shifted inside the window,
 * so a window's first token is never scored (the text's first token
 * never is). PPL = exp(sum of the scored tokens' NLL / their count).
 *
 * The docs page weights each window's mean loss by num_valid_tokens - 1
 * (trg_len - 1), although every window after the first scores trg_len
 * tokens; older versions of the page weighted by trg_len and divided by
 * the last end. This is the exact token mean, which the docs' figure
 * approaches as trg_len grows (they differ by under 1/trg_len). ppl_err is
 * computed over the scored tokens as for llama.cpp's method. */
struct qp_ppl_hf_params {
	int64_t max_length;   /* tokens per window (at most the model's KV cache) */
	int64_t stride;       /* 1 .. max_length */
	int64_t windows;      /* windows to run, the first ones; 0: all */
};

/* How many windows the method runs over n_tokens (p->windows or all);
 * fails with a clear message on bad parameters or a text of < 2 tokens. */
int qp_ppl_hf_plan(int64_t *n_windows, int64_t n_tokens, const struct qp_ppl_hf_params *p,
                   struct qp_err *err);

/* The method over tokens[n_tokens]; out->n_chunks counts the windows. */
int qp_ppl_hf_run(struct qp_ppl_result *out, struct qp_llama *m, const int32_t *tokens,
                  int64_t n_tokens, const struct qp_ppl_hf_params *p, qp_ppl_progress_fn progress,
                  void *arg, struct qp_err *err);

#endif
