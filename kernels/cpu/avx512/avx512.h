/* AVX-512 (F, BW, DQ, VL, VNNI) kernels. Built in their own library with
 * those flags on top of AVX2's; only dispatch.c and ops.c call them, and
 * only after CPUID and XGETBV said this machine can run them. A kernel is
 * here only where the width, the 32 registers or VNNI's one-instruction
 * byte dot gain over AVX2's: the level runs AVX2's for the rest.
 * Quantizers give the reference's bits (kernels/cpu/ref/); the integer
 * dots give AVX2's. */
#ifndef QP_KERNELS_AVX512_H
#define QP_KERNELS_AVX512_H

#include <stddef.h>
#include <stdint.h>

void qp_q4_k_quantize_row_avx512(const float *x, void *y, int64_t n);
void qp_q4_k_quantize_row_imat_avx512(const float *x, void *y, int64_t n, const float *imatrix);
void qp_q5_k_quantize_row_avx512(const float *x, void *y, int64_t n);
void qp_q5_k_quantize_row_imat_avx512(const float *x, void *y, int64_t n, const float *imatrix);
void qp_q6_k_quantize_row_avx512(const float *x, void *y, int64_t n);
void qp_q6_k_quantize_row_imat_avx512(const float *x, void *y, int64_t n, const float *imatrix);

/* q8_0.c: the dot and its tile (kernels.h), VNNI's */
void qp_q8_0_vec_dot_avx512(int64_t n, float *s, const void *x, const void *y);
void qp_q8_0_vec_dot_tile_avx512(int64_t n, float *s, int64_t lds, const void *x, size_t bx, int64_t nr,
                                 const void *y, size_t by, int64_t nc);

/* q4_0.c: q4_0's panel tile (kernels/ops.h, qp_ops_vec) over AVX2's panel */
void qp_q4_0_panel_tile_avx512(int64_t n, float *s, int64_t lds, const void *panel, int64_t nr, const void *y,
                               size_t by, int64_t nc);

#endif
