/* qpipe's safetensors layout for quantized models ("qpipe.layout" 1).
 *
 * One safetensors file holds every tensor of the model as an entry of one
 * of three kinds:
 *
 *   float   stored as itself under its Hugging Face name (F32, F16, BF16):
 *           norms, and weights kept unquantized
 *   gguf    a GGUF block type (q8_0, q4_K ...): "<name>.qblocks", U8
 *           [rows, row_bytes], the rows exactly as GGUF stores them
 *   method  a kernels/qmethod.h method: its arrays as tensors named
 *             <name>.qcodes          U8  [rows, row_bytes]  packed codes
 *             <name>.qscales         F16 or F32 (as the spec's scale=)
 *                                         [scale_rows, scale_cols]; NF4
 *                                         without dq: F32 [n_blocks]
 *             <name>.qzeros          U8  [scale_rows, scale_cols]   RTN
 *             <name>.qg_idx          I32 [cols]        RTN with act-order
 *             <name>.qlut            F32 [lut_rows, 2^bits]      KMEANS
 *             <name>.qabsmax_codes   U8  [n_blocks]            NF4 + dq
 *             <name>.qabsmax_scales  F32 [ceil(n_blocks / 256)] NF4 + dq
 *             <name>.qabsmax_offset  F32 [1]                   NF4 + dq
 *
 * __metadata__ holds "qpipe.layout": "1" and, for every gguf or method
 * entry, "qpipe.tensor.<name>": a JSON object {"shape": [rows, cols]} plus
 * "type": "<gguf type name>" or "method": "<canonical spec text>"
 * (formats/qspec.h). Other "qpipe.*" keys carry provenance.
 *
 * The reader checks everything against the spec before any value is used:
 * every part present with the exact dtype and shape, no tensor left
 * unaccounted, zero points within [0, 2^bits), g_idx within the groups,
 * ternary codes other than 3; errors name the file, the tensor and the
 * byte offset. */
#ifndef QP_QLAYOUT_H
#define QP_QLAYOUT_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "formats/safetensors.h"
#include "kernels/qmethod.h"
#include "kernels/types.h"

enum qp_ql_kind { QP_QL_FLOAT, QP_QL_GGUF, QP_QL_METHOD };

struct qp_ql_entry {
	const char *name;          /* Hugging Face name; valid until qp_ql_close */
	enum qp_ql_kind kind;
	int ndim;                  /* float: the tensor's; gguf, method: 2 */
	int64_t shape[QP_ST_MAX_DIMS];
	int64_t nelem;
	enum qp_type type;         /* float: F32/F16/BF16; gguf: its type; method: none (-1 cast) */
	struct qp_qspec spec;      /* method */
	const struct qp_st_tensor *data;  /* float: the tensor; gguf: .qblocks; method: .qcodes */
	size_t nbytes;             /* stored bytes of every part */
};

struct qp_ql_model;

/* Open and validate a layout file (or parse one in memory, data borrowed,
 * for fuzzers). A safetensors file without "qpipe.layout" is refused:
 * plain models are read with formats/safetensors.h. */
int qp_ql_open(struct qp_ql_model **out, const char *path, struct qp_err *err);
int qp_ql_parse(struct qp_ql_model **out, const void *data, size_t len, const char *name,
                struct qp_err *err);
void qp_ql_close(struct qp_ql_model *m);

/* Entries sorted by name. */
size_t qp_ql_count(const struct qp_ql_model *m);
const struct qp_ql_entry *qp_ql_at(const struct qp_ql_model *m, size_t i);
const struct qp_ql_entry *qp_ql_find(const struct qp_ql_model *m, const char *name);
/* __metadata__ value, or NULL. */
const char *qp_ql_metadata(const struct qp_ql_model *m, const char *key);
/* Is the file at path in this layout? (reads its header only) */
int qp_ql_probe(const char *path, int *is_layout, struct qp_err *err);

/* A method entry's arrays, copied into q (scales widened to f32); free
 * with qp_qtensor_free. */
int qp_ql_qtensor(const struct qp_ql_model *m, const struct qp_ql_entry *e, struct qp_qtensor *q,
                  struct qp_err *err);

/* Every element of an entry as f32 into out (nelem floats), through the
 * kernel table (float, gguf) or qp_qmethod_dequantize (method). */
int qp_ql_dequantize(const struct qp_ql_model *m, const struct qp_ql_entry *e, float *out, int threads,
                     struct qp_err *err);

/* An entry as GGUF tensor data of the same values, where one exists:
 * float and gguf entries as they are; RTN symmetric with f16 scales in
 * groups of 32 at 8, 5 or 4 bits as q8_0, q5_0 or q4_0 (the same
 * d * (q - z) with z = 128, 16, 8), ternary with f16 scales in groups of
 * 256 as tq2_0. Every mapped row is dequantized again and must equal the
 * method's values exactly. *bytes is allocated (free it). Otherwise
 * QP_ENOTFOUND, with a message naming the entry and its method. */
int qp_ql_to_gguf(const struct qp_ql_model *m, const struct qp_ql_entry *e, enum qp_type *type, void **bytes,
                  size_t *nbytes, int threads, struct qp_err *err);

/* ---- writing ---- */
struct qp_ql_writer;

int qp_ql_writer_new(struct qp_ql_writer **out, struct qp_err *err);
void qp_ql_writer_free(struct qp_ql_writer *w);
/* data borrowed until write returns. */
int qp_ql_add_float(struct qp_ql_writer *w, const char *name, enum qp_st_dtype dtype, int ndim,
                    const int64_t *shape, const void *data, size_t nbytes, struct qp_err *err);
int qp_ql_add_gguf(struct qp_ql_writer *w, const char *name, enum qp_type type, int64_t rows,
                   int64_t cols, const void *data, size_t nbytes, struct qp_err *err);
/* q's arrays borrowed until write returns. */
int qp_ql_add_method(struct qp_ql_writer *w, const char *name, const struct qp_qspec *spec,
                     const struct qp_qtensor *q, struct qp_err *err);
int qp_ql_set_metadata(struct qp_ql_writer *w, const char *key, const char *value, struct qp_err *err);
int qp_ql_write(struct qp_ql_writer *w, const char *path, struct qp_err *err);

#endif
