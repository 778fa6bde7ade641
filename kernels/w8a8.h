/* W8A8: int8 weights times int8 activations, SmoothQuant's linear layer
 * (Xiao et al., "SmoothQuant: Accurate and Efficient Post-Training
 * Quantization for Large Language Models", 2023), with its per-token
 * dynamic activation quantization and per-channel weights.
 *
 * Codes: a row x of n floats (one token's activations, or one output
 * channel's weights) is stored as int8 q[n] and one float scale
 *     s = max|x| / 127   (1 where that is 0: all-zero or underflowing rows)
 *     q = clamp(rint(x / s), -127, 127)   (round half to even)
 * so x ~ q * s; kernels/cpu/ref/i8.c is the definition, and says why x / s
 * rather than x * (1 / s). Weights are quantized once, by
 * qp_w8a8_quantize_weights; activations inside qp_w8a8_matmul, per call.
 *
 * Product: y[t][o] = (float)acc * (s_x[t] * s_w[o]) with
 * acc = sum_i q_x[t][i] * q_w[o][i] in int32, exact: every |q| <= 128, so
 * any partial sum of k <= QP_W8A8_MAX_K products fits. The float part is
 * those three roundings in that order (what ggml does with a q8_0 block's
 * sumi), so results are identical at every kernel level and thread count.
 *
 * The int8 operations belong to no tensor type, so they keep their own
 * small table here instead of a row of kernels.h's; the level is the one
 * qp_kernels_init chose. */
#ifndef QP_W8A8_H
#define QP_W8A8_H

#include <stdint.h>

#include "common/err.h"
#include "kernels/kernels.h"

/* The longest row whose int32 dot is exact for any int8 codes:
 * 131071 * 128^2 < 2^31. */
#define QP_W8A8_MAX_K 131071

/* One kernel level's int8 operations. */
struct qp_w8a8_ops {
	/* x[n] -> codes q[n] and *scale, as above; any n >= 0 */
	void (*quantize_row)(const float *x, int8_t *q, float *scale, int64_t n);
	/* sum a[i] * b[i], i < n <= QP_W8A8_MAX_K, in int32 */
	int32_t (*dot)(int64_t n, const int8_t *a, const int8_t *b);
	/* out[r] = dot(n, w + r * w_stride, x) for r < n_rows: one token
	 * against a block of weight rows, the product's inner step */
	void (*dot_rows)(int64_t n, const int8_t *x, const int8_t *w, int64_t w_stride, int64_t n_rows,
	                 int32_t *out);
};

/* The operations at the level qp_kernels_init selected (scalar before it). */
const struct qp_w8a8_ops *qp_w8a8_ops(void);

/* The operations at exactly level, for tests that run every variant; NULL
 * where that level has none or cannot run here. */
const struct qp_w8a8_ops *qp_w8a8_ops_level(enum qp_kernel_level level);

/* Per-output-channel weight codes: row r of w (rows x cols f32, row =
 * output channel) -> q[r * cols ..] and scale[r]. Fails naming the row and
 * column of a non-finite weight, or on cols outside [1, QP_W8A8_MAX_K];
 * q and scale are then left unspecified. */
int qp_w8a8_quantize_weights(int8_t *q, float *scale, const float *w, int64_t rows, int64_t cols,
                             struct qp_err *err);

/* y[t * ldy + r] = W8A8 product of weight row r (w: n_rows x k codes,
 * w_scale[n_rows]) and token t of x (n_tok x k f32, quantized per token
 * inside), for r < n_rows, t < n_tok. Rows are split across up to threads
 * threads as in qp_ops_matmul; the result does not depend on their number.
 * Non-finite activations give defined but meaningless output. Fails on k
 * outside [1, QP_W8A8_MAX_K], ldy < n_rows, or out of memory. */
int qp_w8a8_matmul(float *y, int64_t ldy, const int8_t *w, const float *w_scale, int64_t n_rows, int64_t k,
                   const float *x, int64_t n_tok, int threads, struct qp_err *err);

#endif
