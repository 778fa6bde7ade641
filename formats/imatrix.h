/* llama.cpp's importance matrix, in the GGUF layout llama-imatrix writes
 * (tools/imatrix/imatrix.cpp) and llama-quantize --imatrix reads
 * (common/imatrix-loader.cpp, tools/quantize/quantize.cpp):
 *
 *   general.type         "imatrix"
 *   imatrix.datasets     string array: the calibration text(s)
 *   imatrix.chunk_count  u32: chunks (samples) of text run
 *   imatrix.chunk_size   u32: tokens per chunk
 *   per weight W (llama.cpp name, e.g. blk.0.attn_q.weight), in name order:
 *     W.in_sum2  F32 [k, 1]: sum over tokens of x_j^2, x the input of W
 *     W.counts   F32 [1, 1]: tokens summed
 *     W.in_sum   F32 [k, 1]: sum over tokens of x_j (newer files; optional)
 *
 * llama-quantize weights column j of W by in_sum2[j] / counts (all ones
 * where the count is 0); it refuses a file without the three imatrix.*
 * keys. A file may hold several matrices per weight (MoE experts: counts
 * [1, n_mat], in_sum2 [k, n_mat]); the reader accepts that layout and
 * divides each matrix by its own count. */
#ifndef QP_IMATRIX_H
#define QP_IMATRIX_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

/* One weight's sums, for the writer (all borrowed). */
struct qp_imatrix_entry {
	const char *name;      /* llama.cpp weight name */
	int64_t k;             /* input channels: the weight's row length */
	const float *in_sum2;  /* [k] */
	const float *in_sum;   /* [k], or NULL to leave W.in_sum out */
	int64_t count;         /* tokens summed */
};

/* Write n entries (any order; the file has them sorted by name) and the
 * metadata to path atomically. */
int qp_imatrix_write(const char *path, const struct qp_imatrix_entry *e, size_t n,
                     const char *const *datasets, size_t n_datasets, uint32_t chunk_count,
                     uint32_t chunk_size, struct qp_err *err);

struct qp_imatrix;

/* Map and check path as llama-quantize loads it: every in_sum2 has its
 * counts (and in_sum, when present, as many values), all F32, the
 * imatrix.* keys present, no value NaN or infinite. Errors name the file
 * and the tensor or key. */
int qp_imatrix_open(struct qp_imatrix **out, const char *path, struct qp_err *err);
void qp_imatrix_close(struct qp_imatrix *im);

/* Weights held; imatrix.chunk_count; the i-th weight's name (borrowed
 * until close), in file order. */
size_t qp_imatrix_count(const struct qp_imatrix *im);
uint32_t qp_imatrix_chunk_count(const struct qp_imatrix *im);
const char *qp_imatrix_name(const struct qp_imatrix *im, size_t i);

/* The importances llama-quantize hands its quantizer for weight name:
 * out[j] = in_sum2[j] / count, in float, as it computes them. QP_ENOTFOUND
 * when the file has no entry for name (llama.cpp then quantizes without);
 * QP_EINVAL naming the weight when the entry does not hold k values. */
int qp_imatrix_weights(const struct qp_imatrix *im, const char *name, int64_t k, float *out,
                       struct qp_err *err);

#endif
