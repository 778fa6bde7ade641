#include "model/perplexity.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/ops.h"
#include "model/llama.h"

struct nll_job {
	const float *logits;
	const int32_t *tokens;
	int64_t nv, first;
	double *nll;
};

static void nll_rows(void *arg, int64_t j0, int64_t j1)
{
	const struct nll_job *J = arg;
	for (int64_t j = J->first + j0; j < J->first + j1; j++)
		J->nll[j - J->first] = qp_ops_nll(J->logits + j * J->nv, J->nv, J->tokens[j + 1]);
}

/* Each token's NLL over the threads (a softmax over the vocabulary each,
 * 1% of a one-thread perplexity run, on one thread while the others
 * waited), then added in token order, so the sums do not depend on the
 * threads. */
int qp_ppl_window(struct qp_nll_sums *sums, struct qp_llama *m, const int32_t *tokens, int64_t n,
                  int64_t first, float *logits, struct qp_err *err)
{
	int rc = qp_llama_eval(m, tokens, n, 0, logits, err);
	if (rc)
		return rc;
	const int64_t nv = qp_llama_hparams(m)->n_vocab, f = first < 0 ? 0 : first, count = n - 1 - f;
	if (count <= 0)
		return 0;
	double *nll = malloc((size_t)count * sizeof(double));
	if (!nll)
		return qp_err_nomem(err);
	struct nll_job job = {logits, tokens, nv, f, nll};
	qp_ops_parallel(qp_llama_threads(m), count, nll_rows, &job);
	for (int64_t j = 0; j < count; j++) {
		sums->nll += nll[j];
		sums->nll2 += nll[j] * nll[j];
		sums->n++;
	}
	free(nll);
	return 0;
}

void qp_ppl_finish(struct qp_ppl_result *out, const struct qp_nll_sums *s)
{
	out->n_scored = s->n;
	if (s->n == 0) {
		out->nll = out->ppl = out->ppl_err = 0.0;
		return;
	}
	double mean = s->nll / (double)s->n;
	double var = s->nll2 / (double)s->n - mean * mean;
	out->nll = mean;
	out->ppl = exp(mean);
	out->ppl_err = var > 0.0 && s->n > 1 ? out->ppl * sqrt(var / (double)(s->n - 1)) : 0.0;
}

int qp_ppl_plan(int64_t *n_chunks, int64_t *first, int64_t n_tokens, const struct qp_ppl_params *p,
                struct qp_err *err)
{
	int64_t n_ctx = p->n_ctx;
	*first = p->first < 0 ? n_ctx / 2 : p->first;
	if (n_ctx < 2 || *first >= n_ctx - 1)
		return qp_err_set(err, QP_EINVAL, "n_ctx %lld leaves no token to score", (long long)n_ctx);
	if (n_tokens < n_ctx)
		return qp_err_set(err, QP_EINVAL,
		                  "the text is %lld tokens long, shorter than one chunk of n_ctx %lld tokens",
		                  (long long)n_tokens, (long long)n_ctx);
	*n_chunks = n_tokens / n_ctx;
	if (p->chunks > 0 && p->chunks < *n_chunks)
		*n_chunks = p->chunks;
	return 0;
}

void qp_ppl_chunk(int32_t *chunk, const int32_t *tokens, int64_t c, int64_t n_ctx, int32_t bos)
{
	memcpy(chunk, tokens + c * n_ctx, (size_t)n_ctx * sizeof(int32_t));
	if (bos >= 0)
		chunk[0] = bos;
}

int qp_ppl_run(struct qp_ppl_result *out, struct qp_llama *m, const int32_t *tokens,
               int64_t n_tokens, int32_t bos, const struct qp_ppl_params *p,
               qp_ppl_progress_fn progress, void *arg, struct qp_err *err)
{
	memset(out, 0, sizeof(*out));
	int64_t n_ctx = p->n_ctx, n_chunks, first;
	int rc = qp_ppl_plan(&n_chunks, &first, n_tokens, p, err);
	if (rc)
		return rc;
	int64_t nv = qp_llama_hparams(m)->n_vocab;
	float *logits = malloc((size_t)n_ctx * (size_t)nv * sizeof(float));
	int32_t *chunk = malloc((size_t)n_ctx * sizeof(int32_t));
	if (!logits || !chunk) {
		rc = qp_err_nomem(err);
		goto out;
	}
	struct qp_nll_sums sums = {0};
	for (int64_t c = 0; c < n_chunks && !rc; c++) {
		qp_ppl_chunk(chunk, tokens, c, n_ctx, bos);
		rc = qp_ppl_window(&sums, m, chunk, n_ctx, first, logits, err);
		if (!rc && progress)
			rc = progress(arg, c + 1, n_chunks, err);
	}
	if (!rc) {
		qp_ppl_finish(out, &sums);
		out->n_chunks = n_chunks;
		out->n_tokens = n_tokens;
	}
out:
	free(logits);
	free(chunk);
	return rc;
}

int qp_ppl_hf_plan(int64_t *n_windows, int64_t n_tokens, const struct qp_ppl_hf_params *p,
                   struct qp_err *err)
{
	if (p->max_length < 2)
		return qp_err_set(err, QP_EINVAL, "a window of %lld token(s) leaves none to score",
		                  (long long)p->max_length);
	if (p->stride < 1 || p->stride > p->max_length)
		return qp_err_set(err, QP_EINVAL, "stride %lld is outside 1 .. %lld, the window length (n_ctx)",
		                  (long long)p->stride, (long long)p->max_length);
	if (n_tokens < 2)
		return qp_err_set(err, QP_EINVAL, "the text is %lld token(s) long: nothing to score",
		                  (long long)n_tokens);
	/* windows until one reaches the end: begin = k stride for k = 0 ..
	 * while begin + max_length < n_tokens, then one more */
	int64_t n = n_tokens <= p->max_length ? 1 : (n_tokens - p->max_length + p->stride - 1) / p->stride + 1;
	*n_windows = p->windows > 0 && p->windows < n ? p->windows : n;
	return 0;
}

int qp_ppl_hf_run(struct qp_ppl_result *out, struct qp_llama *m, const int32_t *tokens,
                  int64_t n_tokens, const struct qp_ppl_hf_params *p, qp_ppl_progress_fn progress,
                  void *arg, struct qp_err *err)
{
	memset(out, 0, sizeof(*out));
	int64_t n_windows;
	int rc = qp_ppl_hf_plan(&n_windows, n_tokens, p, err);
	if (rc)
		return rc;
	int64_t nv = qp_llama_hparams(m)->n_vocab;
	int64_t len = p->max_length < n_tokens ? p->max_length : n_tokens;
	float *logits = malloc((size_t)len * (size_t)nv * sizeof(float));
	if (!logits)
		return qp_err_nomem(err);
	struct qp_nll_sums sums = {0};
	int64_t prev_end = 0;
	for (int64_t w = 0; w < n_windows && !rc; w++) {
		int64_t begin = w * p->stride;
		int64_t end = begin + p->max_length < n_tokens ? begin + p->max_length : n_tokens;
		int64_t n = end - begin, trg = end - prev_end;
		/* targets: window positions max(n - trg, 1) .. n - 1, each scored
		 * from the logits of the position before it */
		int64_t first_target = n - trg > 1 ? n - trg : 1;
		rc = qp_ppl_window(&sums, m, tokens + begin, n, first_target - 1, logits, err);
		prev_end = end;
		if (!rc && progress)
			rc = progress(arg, w + 1, n_windows, err);
	}
	if (!rc) {
		qp_ppl_finish(out, &sums);
		out->n_chunks = n_windows;
		out->n_tokens = n_tokens;
	}
	free(logits);
	return rc;
}
