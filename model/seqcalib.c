/* GPTQ's true-sequential calibration; see seqcalib.h. */
#include "model/seqcalib.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/calib.h"
#include "model/llama.h"

/* The reference's sequential groups, in llama.cpp's names (blk.N.X.weight). */
static const char *const groups[4][3] = {
	{"attn_q", "attn_k", "attn_v"}, {"attn_output"}, {"ffn_gate", "ffn_up"}, {"ffn_down"},
};

/* The observer of one group's pass: hands the input of the group's first
 * weight to calib. The rest of the layer is not needed for that, so the
 * observer then stops it; stopped says the stop was this one's. */
struct watch {
	struct qp_calib *c;
	const char *name;
	bool stopped;
};

static int watch_input(void *user, const char *const *names, int n_names, const float *x, int64_t n, int64_t k,
                       struct qp_err *err)
{
	struct watch *w = user;
	if (strcmp(names[0], w->name) != 0)
		return 0;
	int rc = qp_calib_observe(w->c, names, n_names, x, n, k, err);
	if (rc)
		return rc;
	w->stopped = true;
	return qp_err_set(err, QP_EINTR, "input of '%s' collected", w->name);
}

/* X^T X of the input of names[0] in layer il over every window's hidden
 * states (left as they are), full and f32 in *gram (malloc'd). */
static int group_gram(struct qp_llama *m, int64_t il, const char *name, const float *hidden, float *x,
                      int64_t samples, int64_t seq_len, int threads, float **gram, struct qp_err *err)
{
	size_t win = (size_t)(seq_len * qp_llama_hparams(m)->n_embd);
	struct qp_calib *c = NULL;
	struct watch w = {NULL, name, false};
	int rc = qp_calib_new(&c, true, threads, err);
	w.c = c;
	if (!rc)
		qp_llama_set_observer(m, watch_input, &w);
	for (int64_t s = 0; s < samples && !rc; s++) {
		memcpy(x, hidden + (size_t)s * win, win * sizeof(float));
		w.stopped = false;
		rc = qp_llama_layer(m, il, x, seq_len, 0, err);
		if (rc && w.stopped)
			rc = 0;
		else if (!rc)
			rc = qp_err_set(err, QP_EINVAL, "layer %lld: the pass never reached '%s'", (long long)il, name);
	}
	qp_llama_set_observer(m, NULL, NULL);
	if (!rc && !(*gram = qp_calib_hessian_f32(qp_calib_at(c, 0))))
		rc = qp_err_nomem(err);
	qp_calib_free(c);
	return rc;
}

int qp_seqcalib_run(struct qp_llama *m, const int32_t *tokens, int64_t samples, int64_t seq_len,
                    const struct qp_seq_callbacks *cb, int threads, struct qp_err *err)
{
	const struct qp_llama_hparams *hp = qp_llama_hparams(m);
	int64_t d = hp->n_embd, nq = hp->n_head * hp->head_dim;
	int64_t big = (nq > hp->n_ff ? nq : hp->n_ff) * d; /* the largest linear, in elements */
	if (samples < 1 || seq_len < 1 || (uint64_t)samples > SIZE_MAX / sizeof(float) / (uint64_t)(seq_len * d))
		return qp_err_set(err, QP_EINVAL, "%lld windows of %lld tokens do not fit in memory", (long long)samples,
		                  (long long)seq_len);
	size_t win = (size_t)(seq_len * d);
	float *hidden = malloc((size_t)samples * win * sizeof(float)), *x = malloc(win * sizeof(float));
	float *deq = malloc((size_t)big * sizeof(float)), *gram = NULL;
	int rc = !hidden || !x || !deq ? qp_err_nomem(err) : 0;
	for (int64_t s = 0; s < samples && !rc; s++)
		rc = qp_llama_embed(m, tokens + s * seq_len, seq_len, hidden + (size_t)s * win, err);
	for (int64_t il = 0; il < hp->n_layer && !rc; il++) {
		for (int g = 0; g < 4 && !rc; g++) {
			char names[3][64];
			enum qp_seq_state st[3];
			int n = 0;
			bool pass = false, any = false;
			for (; n < 3 && groups[g][n]; n++) {
				snprintf(names[n], sizeof(names[n]), "blk.%lld.%s.weight", (long long)il, groups[g][n]);
				st[n] = cb->state(cb->user, names[n]);
				pass |= st[n] == QP_SEQ_QUANTIZE;
				any |= st[n] != QP_SEQ_KEEP;
			}
			if (!any)
				continue;
			if (pass)
				rc = group_gram(m, il, names[0], hidden, x, samples, seq_len, threads, &gram, err);
			for (int k = 0; k < n && !rc; k++) {
				if (st[k] == QP_SEQ_KEEP)
					continue;
				if (!(rc = cb->quantize(cb->user, names[k], st[k] == QP_SEQ_DONE ? NULL : gram, deq, err)))
					rc = qp_llama_set_weight_f32(m, names[k], deq, err);
			}
			free(gram);
			gram = NULL;
		}
		/* the last layer's outputs feed nothing quantized here */
		for (int64_t s = 0; s < samples && !rc && il + 1 < hp->n_layer; s++)
			rc = qp_llama_layer(m, il, hidden + (size_t)s * win, seq_len, 0, err);
		if (!rc && cb->layer_done)
			rc = cb->layer_done(cb->user, il, hp->n_layer, err);
	}
	free(hidden);
	free(x);
	free(deq);
	return rc;
}
