/* GPTQ for one linear layer (Frantar et al., "GPTQ: Accurate Post-Training
 * Quantization for Generative Pre-trained Transformers", 2022), in the
 * blocked Cholesky form of the paper's Algorithm 1 with the conventions of
 * its reference code (IST-DASLab/gptq fasterquant, as AutoGPTQ carries it):
 *
 *   1. with one scale per row (group -1), scale and zero come from the
 *      original weights, before anything else;
 *   2. dead inputs: where H[i,i] == 0, H[i,i] = 1 and column i of W = 0;
 *   3. static_groups: every group's scale and zero from this W, in the
 *      original column order;
 *   4. act_order: columns (of W, rows and columns of H) permuted by
 *      descending diag(H), ties kept in column order (a stable sort; the
 *      reference's torch.argsort leaves ties unspecified);
 *   5. H[i,i] += damp_percent * mean(diag H); U = the upper Cholesky
 *      factor of H^-1 (H^-1 = U^T U). The reference factors H, inverts
 *      and factors again; U is also the inverse of V in H = V V^T (V
 *      upper), which LAPACK gets in half the flops (gptq.c, inverse_factor);
 *   6. columns in blocks of `block`: within a block, column j is quantized
 *      (q = Q(w_j)), e = (w_j - q) / U[j,j], and the block's later columns
 *      get w_k -= e U[j,k]; after the block, the lazy batch update
 *      W[:, i2:] -= E U[i1:i2, i2:] (one GEMM);
 *   7. a dynamic group's scale and zero are set when its first column
 *      comes up, from W as it stood at the start of that column's block
 *      (the reference reads them from W, which a block only updates when it
 *      ends; with group == block, the usual 128, this is every earlier
 *      column's update);
 *   8. act_order un-permutes the result.
 *
 * Q is RTN's quantizer of kernels/qmethod.h (qp_rtn_scale_zero and
 * qp_rtn_code), which is GPTQ's; the output is an RTN qp_qtensor, so
 * qp_qmethod_dequantize with qp_gptq_spec's spec gives the quantized
 * weights. Scales and zeros are [rows x cols/group] (rows x 1 per row);
 * with act_order and dynamic groups, group g holds the columns at permuted
 * positions [g*group, (g+1)*group), and g_idx maps each original column to
 * its group (AutoGPTQ's g_idx); static groups keep the natural layout and
 * g_idx stays NULL.
 *
 * Precision: H, its factors and the working weights are double. The
 * reference runs in float32 on a GPU, where the order of additions is
 * unspecified anyway; in double, two correct implementations agree to
 * ~1e-15 and so pick the same codes, which is what lets a test hold this
 * code against an independent one. Q itself sees each working weight
 * rounded to float, as qmethod's functions take it, and dequantized
 * values are float.
 *
 * Dense linear algebra goes through LAPACK (dpotrf, dtrtri) and CBLAS
 * (dgemm) from OpenBLAS. OpenBLAS's thread count is process-wide:
 * qp_gptq_quantize sets it for its own calls and puts the caller's back,
 * so two threads must not run it (or other OpenBLAS work) at once; a
 * stage runs in its own process. */
#ifndef QP_GPTQ_H
#define QP_GPTQ_H

#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"
#include "kernels/qmethod.h"

struct qp_gptq_params {
	int bits;             /* 2, 3, 4 or 8 */
	int64_t group;        /* columns per scale, dividing cols; -1: one scale per row */
	bool sym;             /* symmetric: zero fixed at 2^(bits-1) */
	bool act_order;       /* desc_act: quantize columns by descending diag(H) */
	bool static_groups;   /* group scales from the original W, before any update */
	double damp_percent;  /* fraction of mean(diag H) added to diag(H), in [0, 1] (0.01) */
	int64_t block;        /* columns per lazy batch (128) */
	bool scale_f16;       /* scales rounded to f16, as GPTQ checkpoints store them */
};

/* 4 bits, groups of 128, asymmetric, no act_order, damping 0.01, block
 * 128, f16 scales: AutoGPTQ's defaults. */
void qp_gptq_params_default(struct qp_gptq_params *p);

/* Check params against a rows x cols layer; fails naming the parameter. */
int qp_gptq_check(const struct qp_gptq_params *p, int64_t rows, int64_t cols, struct qp_err *err);

/* The RTN spec under which qp_qmethod_dequantize reads GPTQ's output. */
void qp_gptq_spec(const struct qp_gptq_params *p, struct qp_qspec *out);

/* Quantize w (rows x cols f32, row = output channel) given h (cols x cols
 * f32, H = 2/n sum x x^T over n calibration inputs x of the layer, as the
 * reference accumulates it; any positive multiple gives the same result
 * up to rounding). out is overwritten (not freed first) and left zeroed on
 * failure. Up to threads threads split the rows; the result does not
 * depend on their number. Fails on bad params, non-finite w or h, or an H
 * that is not positive definite after damping. */
int qp_gptq_quantize(const struct qp_gptq_params *p, const float *w, const float *h, int64_t rows,
                     int64_t cols, struct qp_qtensor *out, int threads, struct qp_err *err);

/* Fold n_tok more inputs x (n_tok x cols f32, one input a row) into h
 * (cols x cols f32) holding the mean over *n inputs so far:
 * h = (*n h + 2 sum x x^T) / (*n + n_tok); *n += n_tok. Start from h = 0,
 * *n = 0. Fails only when OpenBLAS cannot be loaded (blas.h). */
int qp_gptq_hessian_add(float *h, int64_t *n, const float *x, int64_t n_tok, int64_t cols,
                        struct qp_err *err);

#endif
