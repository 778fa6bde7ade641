/* quantize's optional `imatrix` input (a calibrate stage): each tensor is
 * quantized with its importances, as llama-quantize --imatrix does.
 *
 * The importances of a weight are its imatrix entry's in_sum2 / counts
 * (llama.cpp name, found through the Hugging Face name; q/k rows being
 * permuted on export does not matter: importances are per column). A
 * tensor with an entry is fitted by its type's weighted quantizer
 * (quantize_row_imat: the k-quants); one without an entry (token_embd,
 * output unless calibrated with process_output) is quantized without, as
 * llama.cpp does; an entry whose length is not the row length is an
 * error, as in llama.cpp. A quantized type with no weighted quantizer here
 * (q8_0 ... q4_0) quantizes without and is listed in the metrics as
 * imatrix_unused. */
#ifndef QP_QUANTIZE_IMATRIX_H
#define QP_QUANTIZE_IMATRIX_H

#include <stdint.h>

#include <jansson.h>

#include "common/err.h"
#include "kernels/types.h"
#include "stages/stage.h"

struct qp_gguf_writer;
struct qp_quant_imatrix;

/* Open the imatrix.gguf of calibrate artifact a; a NULL (no imatrix
 * input) gives *out NULL, and the calls below then quantize without. */
int qp_quant_imatrix_open(struct qp_quant_imatrix **out, const struct qp_artifact *a,
                          struct qp_err *err);
void qp_quant_imatrix_free(struct qp_quant_imatrix *im);

/* qp_convert_rows of tensor hf_name (rows x cols, src type st) to dt,
 * weighted by its importances where im has them and dt can use them. */
int qp_quant_imatrix_convert(struct qp_quant_imatrix *im, const char *hf_name, enum qp_type dt,
                             void *dst, enum qp_type st, const void *src, int64_t rows,
                             int64_t cols, int threads, struct qp_err *err);

/* Provenance (qpipe.imatrix: the calibrate instance) into w (if not NULL) and metrics
 * (imatrix, imatrix_tensors: how many were weighted, imatrix_unused) into
 * met; nothing when im is NULL. */
int qp_quant_imatrix_record(const struct qp_quant_imatrix *im, struct qp_gguf_writer *w,
                            json_t *met, struct qp_err *err);

#endif
