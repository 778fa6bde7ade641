/* Calibration through already-quantized layers: GPTQ's true-sequential
 * mode (IST-DASLab/gptq llama.py llama_sequential; AutoGPTQ with
 * true_sequential=True).
 *
 * The windows' embeddings enter layer 0. For each decoder layer i, its
 * linears in four groups, in this order:
 *     [attn_q, attn_k, attn_v]  [attn_output]  [ffn_gate, ffn_up]  [ffn_down]
 * each group's input is collected by running layer i over every window
 * with the groups before it already quantized (their dequantized values
 * substituted into the model), X^T X is summed in double over all tokens
 * as calibrate sums it (model/calib.h), the caller quantizes the group's
 * weights from it, and their dequantized values go into the model. When
 * the whole layer is quantized it runs once more over the windows, and
 * its outputs are layer i + 1's inputs.
 *
 * Memory: the hidden states of every window, samples * seq_len * n_embd
 * floats (64 windows of 512 tokens at width 512: 64 MiB), one window of
 * scratch, a Hessian (k * k doubles, k up to n_ff) and its f32 copy, and
 * the model's f32 copies of the substituted weights. */
#ifndef QP_SEQCALIB_H
#define QP_SEQCALIB_H

#include <stdint.h>

#include "common/err.h"

struct qp_llama;

/* What the caller does with a weight (llama.cpp name). */
enum qp_seq_state {
	QP_SEQ_KEEP,      /* not quantized here: the model keeps the file's values */
	QP_SEQ_QUANTIZE,  /* to quantize from its input's Gram matrix */
	QP_SEQ_DONE,      /* a result exists already (a resumed run): no Gram needed */
};

struct qp_seq_callbacks {
	void *user;
	enum qp_seq_state (*state)(void *user, const char *name);
	/* Quantize weight name (rows x cols) from gram (cols x cols, X^T X
	 * summed over tokens; NULL when state said QP_SEQ_DONE), and write its
	 * dequantized values to deq (rows x cols). */
	int (*quantize)(void *user, const char *name, const float *gram, float *deq, struct qp_err *err);
	/* Layer il (of n_layer) is quantized; NULL: no report. */
	int (*layer_done)(void *user, int64_t il, int64_t n_layer, struct qp_err *err);
};

/* Run the true-sequential procedure above over tokens[samples][seq_len]
 * (each window from position 0; m's context must hold seq_len), calling
 * cb for every linear of every layer. A group whose weights are all
 * QP_SEQ_DONE or QP_SEQ_KEEP skips its pass over the windows. m ends with
 * the dequantized weights in place. */
int qp_seqcalib_run(struct qp_llama *m, const int32_t *tokens, int64_t samples, int64_t seq_len,
                    const struct qp_seq_callbacks *cb, int threads, struct qp_err *err);

#endif
