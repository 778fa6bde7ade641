/* Scalar reference kernels: the definition of each format.
 *
 * Quantize and dequantize follow llama.cpp's quantize_row_*_ref and
 * dequantize_row_* operation for operation (same order, no fused
 * multiply-add: the project builds with -ffp-contract=off), so their bytes
 * and floats are bit-identical to ggml's C reference and to gguf-py. The dot
 * products follow ggml's generic (non-SIMD) vec_dot functions.
 *
 * n counts elements and must be a multiple of the type's block size. Only
 * finite input has a meaning; NaN or Inf input still gives deterministic,
 * memory-safe output (see qp_ref_to_i8). */
#ifndef QP_KERNELS_REF_H
#define QP_KERNELS_REF_H

#include <math.h>
#include <stdint.h>

void qp_f32_quantize_row_ref(const float *x, void *y, int64_t n);
void qp_f32_dequantize_row_ref(const void *x, float *y, int64_t n);
void qp_f32_vec_dot_ref(int64_t n, float *s, const void *x, const void *y);

void qp_f16_quantize_row_ref(const float *x, void *y, int64_t n);
void qp_f16_dequantize_row_ref(const void *x, float *y, int64_t n);
void qp_f16_vec_dot_ref(int64_t n, float *s, const void *x, const void *y);

void qp_bf16_quantize_row_ref(const float *x, void *y, int64_t n);
void qp_bf16_dequantize_row_ref(const void *x, float *y, int64_t n);
void qp_bf16_vec_dot_ref(int64_t n, float *s, const void *x, const void *y);

void qp_q8_0_quantize_row_ref(const float *x, void *y, int64_t n);
void qp_q8_0_dequantize_row_ref(const void *x, float *y, int64_t n);
/* y in q8_0 */
void qp_q8_0_vec_dot_ref(int64_t n, float *s, const void *x, const void *y);

/* q8_1 is an activation format: llama.cpp has no dot with q8_1 on the left */
void qp_q8_1_quantize_row_ref(const float *x, void *y, int64_t n);
void qp_q8_1_dequantize_row_ref(const void *x, float *y, int64_t n);

void qp_q4_0_quantize_row_ref(const float *x, void *y, int64_t n);
void qp_q4_0_dequantize_row_ref(const void *x, float *y, int64_t n);
/* y in q8_0 */
void qp_q4_0_vec_dot_ref(int64_t n, float *s, const void *x, const void *y);

void qp_q4_1_quantize_row_ref(const float *x, void *y, int64_t n);
void qp_q4_1_dequantize_row_ref(const void *x, float *y, int64_t n);
/* y in q8_1 */
void qp_q4_1_vec_dot_ref(int64_t n, float *s, const void *x, const void *y);

void qp_q5_0_quantize_row_ref(const float *x, void *y, int64_t n);
void qp_q5_0_dequantize_row_ref(const void *x, float *y, int64_t n);
/* y in q8_0 */
void qp_q5_0_vec_dot_ref(int64_t n, float *s, const void *x, const void *y);

void qp_q5_1_quantize_row_ref(const float *x, void *y, int64_t n);
void qp_q5_1_dequantize_row_ref(const void *x, float *y, int64_t n);
/* y in q8_1 */
void qp_q5_1_vec_dot_ref(int64_t n, float *s, const void *x, const void *y);

/* The k-quants and ternary types. Their dots take y in q8_K, as ggml pairs
 * them. quantize_row is llama.cpp's quantize_row_*_ref, which is also what
 * llama-quantize runs for these types without an imatrix; quantize_row_imat
 * is its quantize_*_K with quant_weights (imatrix: n weights, one per
 * column of the row). */
void qp_q2_k_quantize_row_ref(const float *x, void *y, int64_t n);
void qp_q2_k_quantize_row_imat_ref(const float *x, void *y, int64_t n, const float *imatrix);
void qp_q2_k_dequantize_row_ref(const void *x, float *y, int64_t n);
void qp_q2_k_vec_dot_ref(int64_t n, float *s, const void *x, const void *y);

void qp_q3_k_quantize_row_ref(const float *x, void *y, int64_t n);
void qp_q3_k_quantize_row_imat_ref(const float *x, void *y, int64_t n, const float *imatrix);
void qp_q3_k_dequantize_row_ref(const void *x, float *y, int64_t n);
void qp_q3_k_vec_dot_ref(int64_t n, float *s, const void *x, const void *y);

void qp_q4_k_quantize_row_ref(const float *x, void *y, int64_t n);
void qp_q4_k_quantize_row_imat_ref(const float *x, void *y, int64_t n, const float *imatrix);
void qp_q4_k_dequantize_row_ref(const void *x, float *y, int64_t n);
void qp_q4_k_vec_dot_ref(int64_t n, float *s, const void *x, const void *y);

void qp_q5_k_quantize_row_ref(const float *x, void *y, int64_t n);
void qp_q5_k_quantize_row_imat_ref(const float *x, void *y, int64_t n, const float *imatrix);
void qp_q5_k_dequantize_row_ref(const void *x, float *y, int64_t n);
void qp_q5_k_vec_dot_ref(int64_t n, float *s, const void *x, const void *y);

void qp_q6_k_quantize_row_ref(const float *x, void *y, int64_t n);
void qp_q6_k_quantize_row_imat_ref(const float *x, void *y, int64_t n, const float *imatrix);
void qp_q6_k_dequantize_row_ref(const void *x, float *y, int64_t n);
void qp_q6_k_vec_dot_ref(int64_t n, float *s, const void *x, const void *y);

/* q8_K is an activation format: no dot with q8_K on the left */
void qp_q8_k_quantize_row_ref(const float *x, void *y, int64_t n);
void qp_q8_k_dequantize_row_ref(const void *x, float *y, int64_t n);

/* llama.cpp ignores an imatrix for the ternary types */
void qp_tq1_0_quantize_row_ref(const float *x, void *y, int64_t n);
void qp_tq1_0_dequantize_row_ref(const void *x, float *y, int64_t n);
void qp_tq1_0_vec_dot_ref(int64_t n, float *s, const void *x, const void *y);

void qp_tq2_0_quantize_row_ref(const float *x, void *y, int64_t n);
void qp_tq2_0_dequantize_row_ref(const void *x, float *y, int64_t n);
void qp_tq2_0_vec_dot_ref(int64_t n, float *s, const void *x, const void *y);

/* W8A8's per-row int8 codes (cpu/ref/i8.c defines them): q[n] and one
 * scale for x[n]; and sum a[i] * b[i] in int32, exact for n <= 131071
 * (kernels/w8a8.h). Any n >= 0, no block structure. */
void qp_i8_quantize_row_ref(const float *x, int8_t *q, float *scale, int64_t n);
int32_t qp_i8_dot_ref(int64_t n, const int8_t *a, const int8_t *b);
/* out[r] = dot of row r of w (at w + r * w_stride) with x, r < n_rows */
void qp_i8_dot_rows_ref(int64_t n, const int8_t *x, const int8_t *w, int64_t w_stride, int64_t n_rows,
                        int32_t *out);

/* The float -> 8-bit conversions of llama.cpp's reference, made total.
 * C leaves a conversion of NaN or of an out-of-range value undefined; on
 * x86, where llama.cpp's model files are made, the compiler emits cvttss2si
 * (truncate; NaN and anything outside int32 give INT32_MIN) and keeps the
 * low byte. That is what these do, in defined C, and what the SIMD variants
 * get from cvttps2dq, so all levels agree even on degenerate blocks (a
 * subnormal scale whose inverse overflows, a min-max range past FLT_MAX).
 * For in-range values both are plain truncation. */
static inline int32_t qp_ref_cvtt_i32(float x)
{
	if (x >= -2147483648.0f && x < 2147483648.0f)
		return (int32_t)x;
	return INT32_MIN;
}

/* as (int8_t)x on x86 */
static inline int qp_ref_to_i8(float x)
{
	const int b = (int)((uint32_t)qp_ref_cvtt_i32(x) & 0xffu);
	return b > 127 ? b - 256 : b;
}

/* The low 32 bits of lroundf(x) (round half away from zero) as x86-64's
 * libm gives it: for NaN, Inf and values past the range of long it returns
 * LONG_MIN, whose low bits are 0. The ternary quantizers narrow lroundf's
 * long to int; only the low bits reach their bytes. */
static inline uint32_t qp_ref_lroundf_low(float x)
{
	if (x >= -2147483648.0f && x < 2147483648.0f)
		return (uint32_t)(int32_t)roundf(x);
	if (x >= -9223372036854775808.0f && x < 9223372036854775808.0f)
		return (uint32_t)(uint64_t)(int64_t)roundf(x);
	return 0;
}

/* as (uint8_t)x on x86 */
static inline int qp_ref_to_u8(float x)
{
	return (int)((uint32_t)qp_ref_cvtt_i32(x) & 0xffu);
}

#endif
