/* KL divergence of a quantized model's next-token distribution from a
 * base (unquantized) model's, with the statistics llama-perplexity
 * --kl-divergence reports. Per scored token t (the same tokens
 * model/perplexity.h scores: positions n_ctx/2 .. n_ctx - 2 of each chunk
 * predicting the next token), with p = softmax(base logits) and
 * q = softmax(quantized logits), all in double:
 *   kld_t  = sum_i p_i (log p_i - log q_i)            (nats, >= 0)
 *   dp_t   = q[next] - p[next]                        (next: the text's token)
 *   top1_t = argmax p == argmax q
 * and over all N scored tokens:
 *   kld      mean of kld_t;  kld_err: its standard error
 *   kld_median, kld_p99: percentiles of kld_t, linearly interpolated
 *            between sorted values at fraction * (N - 1), as llama.cpp does
 *   rms_dp   100 * sqrt(mean dp_t^2), in percent as llama.cpp prints it
 *   top1_pct 100 * (tokens with top1_t) / N
 * llama.cpp stores the base log-probabilities as uint16 (a rounding of
 * about 16/65535 nats); qp_kld_add uses exact float logits instead, and
 * qp_kld_add_stored the base's stored distributions (model/logits_file.h:
 * its error bounds and measured errors). */
#ifndef QP_KLD_H
#define QP_KLD_H

#include <stdint.h>

#include "common/err.h"

struct qp_logits_file;

struct qp_kld_acc {
	double *kld;            /* kld_t of every token so far */
	int64_t n, cap;
	double sum, sum2;       /* of kld_t and kld_t^2 */
	double dp2;             /* sum of dp_t^2 */
	double dp;              /* sum of dp_t */
	int64_t same_top;
};

struct qp_kld_result {
	double kld, kld_err, kld_median, kld_p99, kld_max;
	double rms_dp, mean_dp; /* percent */
	double top1_pct;
	int64_t n;
};

/* Add tokens first <= j < n - 1 of one window: base[j] and quant[j] are
 * the n_vocab logits of position j from each model, tokens[j + 1] the
 * next token. */
int qp_kld_add(struct qp_kld_acc *acc, const float *base, const float *quant, int64_t n_vocab,
               const int32_t *tokens, int64_t n, int64_t first, struct qp_err *err);

/* Add the scored tokens of chunk c of base (a base-logits file): quant
 * holds the n_ctx * n_vocab logits of the quantized model on that chunk
 * (the file's tokens), the base's p comes from the file. */
int qp_kld_add_stored(struct qp_kld_acc *acc, const struct qp_logits_file *base, int64_t c, const float *quant,
                      struct qp_err *err);

/* The statistics above (sorts acc->kld). */
void qp_kld_finish(struct qp_kld_result *out, struct qp_kld_acc *acc);

void qp_kld_acc_free(struct qp_kld_acc *acc);

#endif
