/* Tensor types, numbered as GGUF numbers them (ggml_type), so a type id read
 * from a GGUF file is a qp_type without translation.
 *
 * This table knows every GGUF type's block geometry, so readers can validate
 * files that hold types qpipe has no kernels for yet; which types have
 * kernels is the kernel table's business (kernels.h). */
#ifndef QP_TYPES_H
#define QP_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum qp_type {
	QP_TYPE_F32 = 0,
	QP_TYPE_F16 = 1,
	QP_TYPE_Q4_0 = 2,
	QP_TYPE_Q4_1 = 3,
	/* 4, 5: removed from GGUF (Q4_2, Q4_3) */
	QP_TYPE_Q5_0 = 6,
	QP_TYPE_Q5_1 = 7,
	QP_TYPE_Q8_0 = 8,
	QP_TYPE_Q8_1 = 9,
	QP_TYPE_Q2_K = 10,
	QP_TYPE_Q3_K = 11,
	QP_TYPE_Q4_K = 12,
	QP_TYPE_Q5_K = 13,
	QP_TYPE_Q6_K = 14,
	QP_TYPE_Q8_K = 15,
	QP_TYPE_IQ2_XXS = 16,
	QP_TYPE_IQ2_XS = 17,
	QP_TYPE_IQ3_XXS = 18,
	QP_TYPE_IQ1_S = 19,
	QP_TYPE_IQ4_NL = 20,
	QP_TYPE_IQ3_S = 21,
	QP_TYPE_IQ2_S = 22,
	QP_TYPE_IQ4_XS = 23,
	QP_TYPE_I8 = 24,
	QP_TYPE_I16 = 25,
	QP_TYPE_I32 = 26,
	QP_TYPE_I64 = 27,
	QP_TYPE_F64 = 28,
	QP_TYPE_IQ1_M = 29,
	QP_TYPE_BF16 = 30,
	/* 31..33: removed (Q4_0_4_4 ...) */
	QP_TYPE_TQ1_0 = 34,
	QP_TYPE_TQ2_0 = 35,
	/* 36..38: removed (IQ4_NL_4_4 ...) */
	QP_TYPE_MXFP4 = 39,
	QP_TYPE_COUNT = 40,
};

/* Geometry of one type; blck == 0 marks an unused id. */
struct qp_type_traits {
	const char *name;   /* GGUF's name: "q4_0", "f16" ... */
	int64_t blck;       /* elements per block */
	size_t type_size;   /* bytes per block */
	bool quantized;     /* blocks carry scales (not a plain number type) */
};

/* Traits of t, or NULL if t is out of range or an unused id. */
const struct qp_type_traits *qp_type_traits(int t);

/* Type by name, case-insensitive ("Q8_0", "f16"); -1 if unknown. */
int qp_type_from_name(const char *name);

/* Bytes of a row of n elements of type t into *out; fails (returns -1) if t
 * is unknown, n is not a multiple of the block size, or the size overflows. */
int qp_type_row_size(int t, int64_t n, size_t *out);

#endif
