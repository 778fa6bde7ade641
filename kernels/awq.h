/* AWQ (Lin et al., "AWQ: Activation-aware Weight Quantization for LLM
 * Compression and Acceleration", 2023): per-input-channel scales s that
 * protect the weights of salient channels before group RTN.
 *
 * For linears W_1..W_n reading one input x of cols channels (q/k/v_proj
 * read the attention norm's output, gate/up_proj the FFN norm's), the
 * search tries s = m^a for a = 0, 1/n_grid, ..., (n_grid-1)/n_grid, m the
 * per-channel mean |x| over calibration tokens (clamped below at 1e-4),
 * normalized as s / sqrt(max s * min s), as the reference llm-awq does;
 * each candidate quantizes every W_i diag(s) by RTN (kernels/qmethod.h)
 * and the loss is the linears' output error over the calibration tokens,
 *     sum_i || X W_i^T - X (Q(W_i diag(s)) diag(s)^-1)^T ||^2
 *   = sum_i tr(D_i H D_i^T),  D_i = W_i - Q(W_i diag(s)) diag(s)^-1,
 * with H = X^T X, so the statistics of the calibrate stage suffice and no
 * activations are kept. The lowest loss wins (a = 0, s = 1, is plain RTN,
 * so AWQ never does worse than RTN on this loss).
 *
 * The caller folds s into the model: W_i diag(s) is what gets quantized,
 * and the producer of x is divided by s (the RMSNorm weight, or the rows
 * of v_proj / up_proj), so the quantized model computes
 * Q(W diag(s)) (x / s).
 *
 * Clipping (llm-awq's auto_clip): after scaling, each group of `group`
 * weights of a row may be clipped to +-r * max|w| for r = 1 - k *
 * max_shrink / clip_grid, k = 0 .. clip_grid - 1, picking per (row, group)
 * the r with the least output error, tr(d H_gg d^T) over that group's
 * columns g; the clipped weights are then quantized by RTN. */
#ifndef QP_AWQ_H
#define QP_AWQ_H

#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"
#include "kernels/qmethod.h"

struct qp_awq_params {
	int bits;           /* 2..8 */
	int64_t group;      /* columns per scale (128) */
	bool sym;
	bool scale_f16;     /* RTN scales rounded to f16 (true) */
	int n_grid;         /* exponents tried (20) */
	bool clip;          /* clipping search after scaling */
	int clip_grid;      /* ratios tried (20) */
	float max_shrink;   /* smallest ratio is 1 - max_shrink (0.5) */
};

/* 4 bits, groups of 128, asymmetric, f16 scales, grid 20, clipping on
 * (20 steps, shrink to 0.5): llm-awq's defaults. */
void qp_awq_params_default(struct qp_awq_params *p);

/* The RTN spec under which the quantized W diag(s) is stored. */
void qp_awq_spec(const struct qp_awq_params *p, struct qp_qspec *out);

/* Search s (cols floats) for n linears w[i] (rows[i] x cols) sharing an
 * input with Gram matrix h (cols x cols, X^T X) and per-channel mean |x|
 * mean_abs. Writes the best exponent to *alpha and the losses of plain
 * RTN (a = 0) and of the best s to *loss_rtn and *loss_best. */
int qp_awq_search(const struct qp_awq_params *p, const float *const *w, const int64_t *rows, int n,
                  int64_t cols, const float *h, const float *mean_abs, float *s, float *alpha,
                  double *loss_rtn, double *loss_best, int threads, struct qp_err *err);

/* w (rows x cols) *= s per column, in place. */
void qp_awq_scale_cols(float *w, int64_t rows, int64_t cols, const float *s);
/* Divide the producer of the scaled input: rows of w (rows x cols) by s
 * per row (v_proj, up_proj), or a vector (a norm weight: rows = n, cols = 1). */
void qp_awq_unscale_rows(float *w, int64_t rows, int64_t cols, const float *s);

/* Quantize w (already scaled) by RTN after the clipping search when
 * p->clip, h being the Gram matrix of the scaled input (diag(1/s) H
 * diag(1/s): pass s to have it applied here, or NULL). out as
 * qp_qmethod_quantize fills it. */
int qp_awq_quantize(const struct qp_awq_params *p, const float *w, int64_t rows, int64_t cols,
                    const float *h, const float *s, struct qp_qtensor *out, int threads,
                    struct qp_err *err);

#endif
