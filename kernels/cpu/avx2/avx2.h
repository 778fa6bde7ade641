/* AVX2 (+FMA, F16C) kernels. Built in their own library with -mavx2 -mfma
 * -mf16c; only dispatch.c calls them, and only after CPUID and XGETBV said
 * this machine can run them. Quantize and dequantize give the reference's
 * bits (kernels/cpu/ref/); dots match it within rounding. */
#ifndef QP_KERNELS_AVX2_H
#define QP_KERNELS_AVX2_H

#include <stddef.h>
#include <stdint.h>

/* f32 quantize/dequantize are copies: the scalar memcpy is already as fast */
void qp_f32_vec_dot_avx2(int64_t n, float *s, const void *x, const void *y);

void qp_f16_quantize_row_avx2(const float *x, void *y, int64_t n);
void qp_f16_dequantize_row_avx2(const void *x, float *y, int64_t n);
void qp_f16_vec_dot_avx2(int64_t n, float *s, const void *x, const void *y);

void qp_bf16_quantize_row_avx2(const float *x, void *y, int64_t n);
void qp_bf16_dequantize_row_avx2(const void *x, float *y, int64_t n);
void qp_bf16_vec_dot_avx2(int64_t n, float *s, const void *x, const void *y);

void qp_q8_0_quantize_row_avx2(const float *x, void *y, int64_t n);
void qp_q8_0_quantize_row_f16_avx2(const void *x, void *y, int64_t n);
void qp_q8_0_quantize_row_bf16_avx2(const void *x, void *y, int64_t n);
void qp_q8_0_dequantize_row_avx2(const void *x, float *y, int64_t n);
void qp_q8_0_vec_dot_avx2(int64_t n, float *s, const void *x, const void *y);

void qp_q8_1_quantize_row_avx2(const float *x, void *y, int64_t n);
void qp_q8_1_dequantize_row_avx2(const void *x, float *y, int64_t n);

void qp_q4_0_quantize_row_avx2(const float *x, void *y, int64_t n);
void qp_q4_0_dequantize_row_avx2(const void *x, float *y, int64_t n);
/* tile_q4_0.c; the panel functions are qp_ops_vec's (kernels/ops.h) */
void qp_q4_0_vec_dot_avx2(int64_t n, float *s, const void *x, const void *y);
size_t qp_q4_0_panel_bytes_avx2(int64_t n);
void qp_q4_0_panel_avx2(const void *x, size_t bx, int64_t nr, void *panel, int64_t n);
void qp_q4_0_panel_tile_avx2(int64_t n, float *s, int64_t lds, const void *panel, int64_t nr, const void *y,
                             size_t by, int64_t nc);

void qp_q4_1_quantize_row_avx2(const float *x, void *y, int64_t n);
void qp_q4_1_dequantize_row_avx2(const void *x, float *y, int64_t n);
void qp_q4_1_vec_dot_avx2(int64_t n, float *s, const void *x, const void *y);

void qp_q5_0_quantize_row_avx2(const float *x, void *y, int64_t n);
void qp_q5_0_dequantize_row_avx2(const void *x, float *y, int64_t n);
void qp_q5_0_vec_dot_avx2(int64_t n, float *s, const void *x, const void *y);

void qp_q5_1_quantize_row_avx2(const float *x, void *y, int64_t n);
void qp_q5_1_dequantize_row_avx2(const void *x, float *y, int64_t n);
void qp_q5_1_vec_dot_avx2(int64_t n, float *s, const void *x, const void *y);

/* The k-quants and ternary types. The k-quant quantizers run the
 * reference's scale search for 8 sub-blocks at once, each lane keeping the
 * scalar order of float operations (kquants_search.h), with and without an
 * imatrix; the ternary ones are plain SIMD. q8_K, the activations, has its
 * own. */
void qp_q2_k_quantize_row_avx2(const float *x, void *y, int64_t n);
void qp_q2_k_quantize_row_imat_avx2(const float *x, void *y, int64_t n, const float *imatrix);
void qp_q3_k_quantize_row_avx2(const float *x, void *y, int64_t n);
void qp_q3_k_quantize_row_imat_avx2(const float *x, void *y, int64_t n, const float *imatrix);
void qp_q4_k_quantize_row_avx2(const float *x, void *y, int64_t n);
void qp_q4_k_quantize_row_imat_avx2(const float *x, void *y, int64_t n, const float *imatrix);
void qp_q5_k_quantize_row_avx2(const float *x, void *y, int64_t n);
void qp_q5_k_quantize_row_imat_avx2(const float *x, void *y, int64_t n, const float *imatrix);
void qp_q6_k_quantize_row_avx2(const float *x, void *y, int64_t n);
void qp_q6_k_quantize_row_imat_avx2(const float *x, void *y, int64_t n, const float *imatrix);
void qp_tq1_0_quantize_row_avx2(const float *x, void *y, int64_t n);
void qp_tq2_0_quantize_row_avx2(const float *x, void *y, int64_t n);
void qp_q2_k_dequantize_row_avx2(const void *x, float *y, int64_t n);
void qp_q2_k_vec_dot_avx2(int64_t n, float *s, const void *x, const void *y);
void qp_q3_k_dequantize_row_avx2(const void *x, float *y, int64_t n);
void qp_q3_k_vec_dot_avx2(int64_t n, float *s, const void *x, const void *y);
void qp_q4_k_dequantize_row_avx2(const void *x, float *y, int64_t n);
void qp_q4_k_vec_dot_avx2(int64_t n, float *s, const void *x, const void *y);
void qp_q5_k_dequantize_row_avx2(const void *x, float *y, int64_t n);
void qp_q5_k_vec_dot_avx2(int64_t n, float *s, const void *x, const void *y);
void qp_q6_k_dequantize_row_avx2(const void *x, float *y, int64_t n);
void qp_q6_k_vec_dot_avx2(int64_t n, float *s, const void *x, const void *y);
void qp_q8_k_quantize_row_avx2(const float *x, void *y, int64_t n);
void qp_q8_k_dequantize_row_avx2(const void *x, float *y, int64_t n);
void qp_tq1_0_dequantize_row_avx2(const void *x, float *y, int64_t n);
void qp_tq1_0_vec_dot_avx2(int64_t n, float *s, const void *x, const void *y);
void qp_tq2_0_dequantize_row_avx2(const void *x, float *y, int64_t n);
void qp_tq2_0_vec_dot_avx2(int64_t n, float *s, const void *x, const void *y);


/* W8A8's int8 row codes and int32 dot: bit-exact with cpu/ref/i8.c, for
 * every int8 value, -128 included */
void qp_i8_quantize_row_avx2(const float *x, int8_t *q, float *scale, int64_t n);
int32_t qp_i8_dot_avx2(int64_t n, const int8_t *a, const int8_t *b);
void qp_i8_dot_rows_avx2(int64_t n, const int8_t *x, const int8_t *w, int64_t w_stride, int64_t n_rows,
                         int32_t *out);

/* vecops.c: kernels/ops.h's elementwise operations (qp_ops_vec) */
void qp_silu_mul_avx2(float *g, const float *u, int64_t n);
void qp_softmax_avx2(float *x, int64_t n);
void qp_attn_scores_avx2(float *s, int64_t lds, const float *q, int64_t q_stride, int64_t nq, const float *kt,
                         int64_t kt_stride, int64_t n_keys, int64_t hd);
void qp_attn_values_avx2(float *out, int64_t out_stride, const float *p, int64_t ldp, int64_t nq, int64_t len0,
                         const float *v, int64_t v_stride, int64_t hd);

/* tile.c: vec_dot_tile (kernels.h) of the types a forward pass spends
 * its time in; each pair's result is the vec_dot above, bit for bit */
void qp_f32_vec_dot_tile_avx2(int64_t n, float *s, int64_t lds, const void *x, size_t bx, int64_t nr,
                              const void *y, size_t by, int64_t nc);
void qp_f16_vec_dot_tile_avx2(int64_t n, float *s, int64_t lds, const void *x, size_t bx, int64_t nr,
                              const void *y, size_t by, int64_t nc);
void qp_q8_0_vec_dot_tile_avx2(int64_t n, float *s, int64_t lds, const void *x, size_t bx, int64_t nr,
                               const void *y, size_t by, int64_t nc);
/* tile_q4_0.c */
void qp_q4_0_vec_dot_tile_avx2(int64_t n, float *s, int64_t lds, const void *x, size_t bx, int64_t nr,
                               const void *y, size_t by, int64_t nc);
/* tile_kq.c: q2_K ... q6_K against q8_K */
void qp_q2_k_vec_dot_tile_avx2(int64_t n, float *s, int64_t lds, const void *x, size_t bx, int64_t nr,
                               const void *y, size_t by, int64_t nc);
void qp_q3_k_vec_dot_tile_avx2(int64_t n, float *s, int64_t lds, const void *x, size_t bx, int64_t nr,
                               const void *y, size_t by, int64_t nc);
void qp_q4_k_vec_dot_tile_avx2(int64_t n, float *s, int64_t lds, const void *x, size_t bx, int64_t nr,
                               const void *y, size_t by, int64_t nc);
void qp_q5_k_vec_dot_tile_avx2(int64_t n, float *s, int64_t lds, const void *x, size_t bx, int64_t nr,
                               const void *y, size_t by, int64_t nc);
void qp_q6_k_vec_dot_tile_avx2(int64_t n, float *s, int64_t lds, const void *x, size_t bx, int64_t nr,
                               const void *y, size_t by, int64_t nc);
/* f16's tile for many tokens, k in chunks (kernels/ops.h, qp_ops_vec) */
void qp_f16_vec_dot_tile_block_avx2(int64_t n, float *s, int64_t lds, const void *x, size_t bx, int64_t nr,
                                    const void *y, size_t by, int64_t nc);

#endif
