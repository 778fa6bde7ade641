/* safetensors: reader (mmap, lazy, single file or sharded folder) and writer.
 *
 * File layout: u64 little-endian header length N, N bytes of JSON
 * {"name": {"dtype": "F16", "shape": [..], "data_offsets": [begin, end]}, ...
 *  "__metadata__": {str: str}}, then the data section; offsets are relative
 * to the data section. Every offset and size is checked against the file;
 * errors name the file, the tensor and the byte offset. */
#ifndef QP_SAFETENSORS_H
#define QP_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

enum qp_st_dtype {
	QP_ST_BOOL, QP_ST_U8, QP_ST_I8, QP_ST_U16, QP_ST_I16, QP_ST_F16, QP_ST_BF16,
	QP_ST_U32, QP_ST_I32, QP_ST_F32, QP_ST_U64, QP_ST_I64, QP_ST_F64,
	QP_ST_F8_E4M3, QP_ST_F8_E5M2,
	QP_ST_DTYPE_COUNT
};

#define QP_ST_MAX_DIMS 8

struct qp_st_tensor {
	const char *name;            /* valid until qp_st_close */
	enum qp_st_dtype dtype;
	int ndim;
	int64_t shape[QP_ST_MAX_DIMS];
	int64_t nelem;               /* product of shape */
	const void *data;            /* mapped, read-only, valid until qp_st_close */
	size_t nbytes;
	const char *file;            /* the shard holding it; valid until qp_st_close */
	uint64_t file_offset;        /* absolute byte offset of data in that file */
};

struct qp_st_model;

/* Open path: a .safetensors file, a model.safetensors.index.json, or a folder
 * holding either (the index wins). Tensors are listed in header order, shard
 * by shard. */
int qp_st_open(struct qp_st_model **out, const char *path, struct qp_err *err);
void qp_st_close(struct qp_st_model *m);
/* Parse one safetensors file already in memory (data borrowed: it must
 * outlive the model); name is used in error messages. For fuzzers and for
 * bytes that did not come from a file. */
int qp_st_parse(struct qp_st_model **out, const void *data, size_t len, const char *name,
                struct qp_err *err);

size_t qp_st_count(const struct qp_st_model *m);
const struct qp_st_tensor *qp_st_at(const struct qp_st_model *m, size_t i);
/* NULL if absent. */
const struct qp_st_tensor *qp_st_find(const struct qp_st_model *m, const char *name);
/* __metadata__ value of the (first) file, or NULL. */
const char *qp_st_metadata(const struct qp_st_model *m, const char *key);

/* "F16" ...; element size in bytes (1 for the F8 types and BOOL). */
const char *qp_st_dtype_name(enum qp_st_dtype d);
size_t qp_st_dtype_size(enum qp_st_dtype d);
/* dtype by its safetensors name; -1 if unknown. */
int qp_st_dtype_from_name(const char *name);

struct qp_st_writer;

int qp_st_writer_new(struct qp_st_writer **out, struct qp_err *err);
void qp_st_writer_free(struct qp_st_writer *w);
/* Add a tensor; data is borrowed until qp_st_writer_write returns. nbytes
 * must equal the shape's element count times the dtype size. */
int qp_st_writer_add(struct qp_st_writer *w, const char *name, enum qp_st_dtype dtype,
                     int ndim, const int64_t *shape, const void *data, size_t nbytes,
                     struct qp_err *err);
int qp_st_writer_set_metadata(struct qp_st_writer *w, const char *key, const char *value,
                              struct qp_err *err);
/* Write to path atomically (tensors sorted by name, as the Python writer does). */
int qp_st_writer_write(struct qp_st_writer *w, const char *path, struct qp_err *err);

#endif
