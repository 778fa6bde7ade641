/* Calibration statistics: what the inputs of a model's 2-D weights look
 * like over calibration text, gathered while qp_llama runs it (install
 * qp_calib_observe as its observer) and written out as llama.cpp's
 * importance matrix and as a safetensors file of per-input statistics.
 *
 * One record per distinct input: the weights multiplying the same
 * activations (q/k/v, gate/up) share one record, so the Hessian of such
 * an input is computed and stored once. */
#ifndef QP_CALIB_H
#define QP_CALIB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

struct qp_calib_input {
	char **weights;        /* llama.cpp names of the weights taking this input (owned) */
	int n_weights;
	int64_t k;             /* channels: the weights' row length */
	int64_t tokens;        /* rows of activations summed */
	double *sum;           /* [k] sum of x_j */
	double *sum_sq;        /* [k] sum of x_j^2 */
	double *sum_abs;       /* [k] sum of |x_j| */
	float *max_abs;        /* [k] max of |x_j| */
	double *hessian;       /* [k * k] X^T X, lower triangle (j <= i) valid; NULL if not kept */
};

struct qp_calib;

/* An empty collection; hessian: also keep X^T X per input (k * k doubles
 * each); threads: for the Hessian's products. */
int qp_calib_new(struct qp_calib **out, bool hessian, int threads, struct qp_err *err);
void qp_calib_free(struct qp_calib *c);

/* A qp_llama_observer (pass the struct qp_calib as user): adds the n rows
 * of x to the record of names[0], made on first sight. Fails when the same
 * weight comes back with another width or other sharers. */
int qp_calib_observe(void *c, const char *const *names, int n_names, const float *x, int64_t n,
                     int64_t k, struct qp_err *err);

/* Records, in order of first observation; borrowed until free. */
size_t qp_calib_count(const struct qp_calib *c);
const struct qp_calib_input *qp_calib_at(const struct qp_calib *c, size_t i);

/* A record's X^T X as the full symmetric cols x cols matrix in f32, the
 * form stats.safetensors holds and GPTQ takes (malloc'd); NULL without
 * memory or when the Hessian was not kept. */
float *qp_calib_hessian_f32(const struct qp_calib_input *r);

/* llama.cpp's imatrix GGUF (formats/imatrix.h) at path: an entry per
 * weight (sharers repeat their input's sums, as llama-imatrix writes them),
 * with datasets and chunks as its metadata. */
int qp_calib_write_imatrix(const struct qp_calib *c, const char *path, const char *const *datasets,
                           size_t n_datasets, uint32_t chunk_count, uint32_t chunk_size,
                           struct qp_err *err);

/* The statistics as safetensors at path, under Hugging Face names; per
 * record, named after its first weight W (q_proj for q/k/v, gate_proj for
 * gate/up):
 *   W.hessian       F32 [k, k]  X^T X summed over tokens (full, symmetric;
 *                               only when kept)
 *   W.act_mean_abs  F32 [k]     sum |x_j| / tokens
 *   W.act_max_abs   F32 [k]     max |x_j|
 * and in __metadata__: "W.tokens" (the count, decimal) and, for every
 * weight V of the record W included, "V.input" = "W": where V's input
 * statistics are. meta holds n_meta extra key, value pairs
 * (meta[2i], meta[2i + 1]). Fails naming a weight with no Hugging Face
 * name. */
int qp_calib_write_stats(const struct qp_calib *c, const char *path, const char *const *meta,
                         size_t n_meta, struct qp_err *err);

#endif
