/* quantize's calibrated methods, GPTQ and AWQ: their recipe text, and the
 * statistics of a calibrate stage they read.
 *
 *   gptq[:bits=N][:group=N|:group=-1][:sym|:asym][:act_order][:static_groups]
 *       [:damp=F][:block=N][:scale=f16|f32][:true_sequential]
 *   awq[:bits=N][:group=N][:sym|:asym][:grid=N][:clip=true|false]
 *      [:clip_grid=N][:shrink=F][:scale=f16|f32]
 *   smoothquant[:alpha=F]
 * SmoothQuant (kernels/smooth.h) only smooths: the q/k/v and gate/up
 * inputs' factors are folded into the norms and the weights, which stay
 * f32 (model.gguf); the int8 weights and per-token int8 activations are
 * the evaluation's act_quant: w8a8, where a W8A8 runtime would make them.
 *
 * Defaults: AutoGPTQ's (4 bits, group 128, asym, damp 0.01, block 128)
 * and llm-awq's (4 bits, group 128, asym, grid 20, clipping on). Both
 * store their result as RTN entries of qpipe's layout, so evaluation and
 * export read them like any RTN tensor; AWQ's scales are folded into the
 * model (norm weights, v_proj / up_proj rows), as AWQ checkpoints do.
 *
 * H is the Gram matrix X^T X that calibrate measured on the unquantized
 * model: GPTQ by default quantizes every layer from those statistics
 * ("static" calibration). With true_sequential (the reference's name:
 * IST-DASLab/gptq --true-sequential, AutoGPTQ true_sequential=True) it
 * measures H layer by layer through the already-quantized predecessors
 * instead (model/seqcalib.h), re-running calibrate's windows through the
 * unquantized model's GGUF (quantize's calib_model input). */
#ifndef QP_QUANTIZE_CALIBRATED_H
#define QP_QUANTIZE_CALIBRATED_H

#include <stdbool.h>

#include "common/err.h"
#include "formats/safetensors.h"
#include "kernels/awq.h"
#include "kernels/gptq.h"

struct qp_calibrated {
	bool awq;                  /* else GPTQ, unless smooth */
	bool smooth;               /* SmoothQuant: smoothing only, weights kept in f32 */
	float alpha;               /* SmoothQuant's migration strength (0.5) */
	bool true_sequential;      /* GPTQ: H through the already-quantized layers */
	struct qp_gptq_params gptq;
	struct qp_awq_params awq_p;
};

/* Does text name a calibrated method (gptq, awq, smoothquant, with options)? */
bool qp_calibrated_is(const char *text);
int qp_calibrated_parse(struct qp_calibrated *c, const char *text, struct qp_err *err);

/* Canonical text (every option), as metrics and metadata record it. */
void qp_calibrated_format(const struct qp_calibrated *c, char *buf, size_t n);
/* The RTN spec its tensors are stored under. */
void qp_calibrated_spec(const struct qp_calibrated *c, struct qp_qspec *out);

/* A calibrate stage's stats.safetensors, opened. */
struct qp_calib_stats;
int qp_calib_stats_open(struct qp_calib_stats **out, const char *path, struct qp_err *err);
void qp_calib_stats_close(struct qp_calib_stats *s);
/* Did calibrate record the input of weight (Hugging Face name)? */
bool qp_calib_stats_has(const struct qp_calib_stats *s, const char *weight);
/* A vector statistic ("act_max_abs", "act_mean_abs") of weight's input
 * (cols floats, malloc'd copy). */
int qp_calib_stats_vec(const struct qp_calib_stats *s, const char *weight, const char *what, int64_t cols,
                       float **out, struct qp_err *err);

/* For weight name (Hugging Face), the Gram matrix of its input (cols x
 * cols, malloc'd copy) and mean |x| (cols, malloc'd) when mean_abs is not
 * NULL. QP_ENOTFOUND when calibrate recorded no input for it. */
int qp_calib_stats_input(const struct qp_calib_stats *s, const char *weight, int64_t cols, float **gram,
                         float **mean_abs, struct qp_err *err);

#endif
