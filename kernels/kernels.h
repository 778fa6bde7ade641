/* The kernel library: one row of operations per tensor type, chosen at run
 * time from the CPU's features (xxHash's dispatch shape).
 *
 * Every operation has a scalar reference in kernels/cpu/ref/ that defines the
 * format; SIMD variants (kernels/cpu/avx2/ ...) must match it: bit for bit
 * for quantize and dequantize, within NMSE for dot products. Stages call
 * these; they carry no inner loops of their own. */
#ifndef QP_KERNELS_H
#define QP_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "kernels/types.h"

enum qp_kernel_level {
	QP_LEVEL_SCALAR = 0,
	QP_LEVEL_AVX2 = 1,
	QP_LEVEL_AVX512 = 2, /* x86-64 with AVX-512 F/BW/DQ/VL: avx2's kernels
	                      * where it has none of its own */
	QP_LEVEL_NEON = 3,   /* reserved: no variants yet */
	QP_LEVEL_COUNT
};

/* Operations of one type at one level. n counts elements and is a multiple
 * of the type's block size. A NULL member means "not available". */
struct qp_kernel_ops {
	/* x[n] f32 -> n/blck blocks at y. Each block is quantized on its
	 * own: one call over several rows gives the bytes of one call per row
	 * (qp_convert_rows calls it on several rows at once) */
	void (*quantize_row)(const float *x, void *y, int64_t n);
	/* n/blck blocks at x -> y[n] f32 */
	void (*dequantize_row)(const void *x, float *y, int64_t n);
	/* *s = dot(x, y): x in this type, y in vec_dot_type (the activation
	 * format, as llama.cpp pairs them: q4_0 with q8_0, q4_1 with q8_1 ...) */
	void (*vec_dot)(int64_t n, float *s, const void *x, const void *y);
	enum qp_type vec_dot_type;
	/* x[n] f32 -> n/blck blocks at y, the fit weighted by imatrix[n]
	 * (one importance per column, as llama-quantize --imatrix passes
	 * it); NULL where the type has no weighted quantizer */
	void (*quantize_row_imat)(const float *x, void *y, int64_t n, const float *imatrix);
	/* The products of nr rows of this type (x, rows bx bytes apart) with
	 * nc rows of vec_dot_type (y, by bytes apart), for matrix products:
	 * s[c * lds + r] = vec_dot(n, x_r, y_c) for r < nr, c < nc, bit for
	 * bit what this level's vec_dot gives each pair, but with each block
	 * loaded once for several rows and tokens. NULL where a level has
	 * none: the product then goes pair by pair through vec_dot (the
	 * scalar reference never has one; vec_dot is its definition). */
	void (*vec_dot_tile)(int64_t n, float *s, int64_t lds, const void *x, size_t bx, int64_t nr,
	                     const void *y, size_t by, int64_t nc);
	/* x[n] f16 (bf16) -> n/blck blocks at y, the bytes that converting x
	 * to f32 and quantize_row would give, without the conversion pass:
	 * what qp_convert_rows calls for an f16 (bf16) source. NULL where the
	 * level has none; the reference never has one (convert_rows converts
	 * and calls quantize_row), and no NULL is filled from it. */
	void (*quantize_row_f16)(const void *x, void *y, int64_t n);
	void (*quantize_row_bf16)(const void *x, void *y, int64_t n);
};

/* Choose the level: force_name ("scalar", "avx2", "avx512", "auto" or NULL) wins, else
 * the QPIPE_KERNELS environment variable, else the best the CPU and OS
 * support (CPUID plus XGETBV). Call once from main before any thread starts.
 * Fails if a forced level is unknown or unsupported here. */
int qp_kernels_init(const char *force_name, struct qp_err *err);

/* The level in use, and one line saying why it was chosen. */
enum qp_kernel_level qp_kernels_level(void);
const char *qp_kernels_reason(void);

/* Name of a level ("scalar", "avx2" ...); level by name, -1 if unknown. */
const char *qp_kernel_level_name(enum qp_kernel_level level);
int qp_kernel_level_from_name(const char *name);

/* The level whose variants stand in for the ones level has none of (avx512
 * runs avx2's), or -1 below scalar. Every level a CPU runs, it runs the
 * levels below it. */
int qp_kernel_level_below(enum qp_kernel_level level);

/* 1 if this binary has the level built in and this CPU/OS can run it. */
int qp_kernel_level_supported(enum qp_kernel_level level);

/* Ops of type t at the selected level (each operation it has no variant of
 * from the levels below it, down to scalar); NULL if qpipe has no kernels
 * for t. */
const struct qp_kernel_ops *qp_kernels_get(enum qp_type t);

/* Ops of type t at exactly this level, for tests that run every variant;
 * NULL if that level has no variant of t or is unsupported here. */
const struct qp_kernel_ops *qp_kernels_get_level(enum qp_type t, enum qp_kernel_level level);

/* CUDA variants fill a table of the same shape; NULL until a CUDA build
 * provides them and a device is present. */
const struct qp_kernel_ops *qp_kernels_get_cuda(enum qp_type t);

/* Dequantize n elements of type t at src into dst[n] through the selected
 * table; -1 if qpipe has no dequantize for t or n is not a multiple of its
 * block size. */
int qp_kernels_to_f32(enum qp_type t, const void *src, float *dst, int64_t n);

#endif
