/* AVX-512 (F, BW, DQ, VL) kernels. Built in their own library with those
 * flags on top of AVX2's; only dispatch.c calls them, and only after CPUID
 * and XGETBV said this machine can run them. A kernel is here only where
 * the width gains over AVX2's: the level runs AVX2's for the rest.
 * Quantizers give the reference's bits (kernels/cpu/ref/). */
#ifndef QP_KERNELS_AVX512_H
#define QP_KERNELS_AVX512_H

#include <stdint.h>

void qp_q4_k_quantize_row_avx512(const float *x, void *y, int64_t n);
void qp_q4_k_quantize_row_imat_avx512(const float *x, void *y, int64_t n, const float *imatrix);
void qp_q5_k_quantize_row_avx512(const float *x, void *y, int64_t n);
void qp_q5_k_quantize_row_imat_avx512(const float *x, void *y, int64_t n, const float *imatrix);
void qp_q6_k_quantize_row_avx512(const float *x, void *y, int64_t n);
void qp_q6_k_quantize_row_imat_avx512(const float *x, void *y, int64_t n, const float *imatrix);

#endif
