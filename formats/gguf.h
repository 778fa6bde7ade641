/* GGUF v3: validated reader and writer.
 *
 * Layout (little-endian): magic "GGUF", u32 version, u64 n_tensors,
 * u64 n_kv; n_kv key/value pairs (string key, u32 value type, value);
 * n_tensors tensor infos (string name, u32 n_dims, u64 ne[n_dims],
 * u32 type, u64 offset into the data section); padding to the alignment
 * (general.alignment, default 32); the data section. A string is u64
 * length + bytes, no NUL. The reader checks every count, length, type,
 * dimension, offset and size (llama.cpp's gguf.cpp is the checklist) and
 * names the tensor or key and the byte offset when it refuses a file. */
#ifndef QP_GGUF_H
#define QP_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "kernels/types.h"

enum qp_gguf_vtype {
	QP_GGUF_UINT8 = 0, QP_GGUF_INT8 = 1, QP_GGUF_UINT16 = 2, QP_GGUF_INT16 = 3,
	QP_GGUF_UINT32 = 4, QP_GGUF_INT32 = 5, QP_GGUF_FLOAT32 = 6, QP_GGUF_BOOL = 7,
	QP_GGUF_STRING = 8, QP_GGUF_ARRAY = 9, QP_GGUF_UINT64 = 10, QP_GGUF_INT64 = 11,
	QP_GGUF_FLOAT64 = 12,
	QP_GGUF_VTYPE_COUNT
};

#define QP_GGUF_MAX_DIMS 4
#define QP_GGUF_DEFAULT_ALIGNMENT 32

struct qp_gguf_str {
	uint64_t len;
	const char *data;  /* not NUL-terminated; borrowed from the mapping */
};

struct qp_gguf_kv {
	const char *key;            /* NUL-terminated copy, valid until close */
	enum qp_gguf_vtype type;
	union {
		uint64_t u64;           /* any unsigned integer type, widened */
		int64_t i64;            /* any signed integer type, widened */
		double f64;             /* FLOAT32 or FLOAT64, widened */
		bool b;
		struct qp_gguf_str str;
	} v;
	/* ARRAY only: element type, count, and the elements. Numeric arrays
	 * point at the raw little-endian values in the mapping (arr_data; not
	 * necessarily aligned for the element type: copy out with memcpy; a
	 * BOOL is one byte, nonzero for true); string arrays are decoded into
	 * arr_str (valid until close). */
	enum qp_gguf_vtype arr_type;
	uint64_t arr_n;
	const void *arr_data;
	const struct qp_gguf_str *arr_str;
};

struct qp_gguf_tensor {
	const char *name;           /* valid until close */
	enum qp_type type;
	int ndim;
	int64_t ne[QP_GGUF_MAX_DIMS];  /* ne[0] is the row length (innermost) */
	int64_t nelem;
	uint64_t offset;            /* relative to the data section */
	const void *data;           /* mapped */
	size_t nbytes;
};

struct qp_gguf_file;

/* Map and validate the file at path; tensor data stays in the mapping. */
int qp_gguf_open(struct qp_gguf_file **out, const char *path, struct qp_err *err);
/* Validate a GGUF image in memory (data borrowed: it must outlive the
 * file); name is used in error messages. */
int qp_gguf_parse(struct qp_gguf_file **out, const void *data, size_t len, const char *name,
                  struct qp_err *err);
void qp_gguf_close(struct qp_gguf_file *f);

uint32_t qp_gguf_version(const struct qp_gguf_file *f);
/* Bytes; general.alignment or 32. */
uint64_t qp_gguf_alignment(const struct qp_gguf_file *f);
/* Absolute file offset of the data section. */
uint64_t qp_gguf_data_offset(const struct qp_gguf_file *f);
size_t qp_gguf_kv_count(const struct qp_gguf_file *f);
const struct qp_gguf_kv *qp_gguf_kv_at(const struct qp_gguf_file *f, size_t i);
const struct qp_gguf_kv *qp_gguf_find_kv(const struct qp_gguf_file *f, const char *key);
size_t qp_gguf_tensor_count(const struct qp_gguf_file *f);
const struct qp_gguf_tensor *qp_gguf_tensor_at(const struct qp_gguf_file *f, size_t i);
const struct qp_gguf_tensor *qp_gguf_find_tensor(const struct qp_gguf_file *f, const char *name);

/* "u8", "str", "arr" ... (gguf.cpp's names); NULL if out of range. */
const char *qp_gguf_vtype_name(enum qp_gguf_vtype t);
/* Bytes of one value of a fixed-size type; 0 for STRING, ARRAY or out of range. */
size_t qp_gguf_vtype_size(enum qp_gguf_vtype t);

struct qp_gguf_writer;

int qp_gguf_writer_new(struct qp_gguf_writer **out, struct qp_err *err);
void qp_gguf_writer_free(struct qp_gguf_writer *w);
/* Scalar keys. Setting a key twice replaces its value; order of first set is kept. */
int qp_gguf_set_u32(struct qp_gguf_writer *w, const char *key, uint32_t v, struct qp_err *err);
int qp_gguf_set_i32(struct qp_gguf_writer *w, const char *key, int32_t v, struct qp_err *err);
int qp_gguf_set_u64(struct qp_gguf_writer *w, const char *key, uint64_t v, struct qp_err *err);
int qp_gguf_set_f32(struct qp_gguf_writer *w, const char *key, float v, struct qp_err *err);
int qp_gguf_set_bool(struct qp_gguf_writer *w, const char *key, bool v, struct qp_err *err);
int qp_gguf_set_str(struct qp_gguf_writer *w, const char *key, const char *v, struct qp_err *err);
/* Any scalar type: value points at one value of that C type (bool for BOOL,
 * const char * for STRING). */
int qp_gguf_set_scalar(struct qp_gguf_writer *w, const char *key, enum qp_gguf_vtype type,
                       const void *value, struct qp_err *err);
/* Numeric array of n elements of a non-string, non-array type (copied). */
int qp_gguf_set_arr(struct qp_gguf_writer *w, const char *key, enum qp_gguf_vtype type,
                    const void *data, size_t n, struct qp_err *err);
/* String array (copied). */
int qp_gguf_set_arr_str(struct qp_gguf_writer *w, const char *key, const char *const *strs,
                        size_t n, struct qp_err *err);
/* Add a tensor; data is borrowed until write returns; nbytes must match
 * the type's row size times the row count. */
int qp_gguf_add_tensor(struct qp_gguf_writer *w, const char *name, enum qp_type type, int ndim,
                       const int64_t *ne, const void *data, size_t nbytes, struct qp_err *err);
/* Write the file atomically (tensors in the order added, each aligned). */
int qp_gguf_writer_write(struct qp_gguf_writer *w, const char *path, struct qp_err *err);

#endif
