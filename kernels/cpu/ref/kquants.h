/* The scale searches the k-quant references share (llama.cpp's
 * make_qx_quants, make_q3_quants, make_qkx2_quants, make_qkx3_quants and
 * make_qp_quants in ggml-quants.c), for kernels/cpu/ref/q*_k.c only.
 *
 * Each does llama.cpp's float operations in llama.cpp's order, so its
 * results are bit-identical; where it does less work (a step whose levels
 * equal the previous step's, an error sum already past the best), the
 * skipped work could not have changed the result. Each comment says why. */
#ifndef QP_KERNELS_REF_KQUANTS_H
#define QP_KERNELS_REF_KQUANTS_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "kernels/blocks.h"

/* llama.cpp's GROUP_MAX_EPS: a group whose largest |x| is below is zero */
#define QP_KQ_GROUP_MAX_EPS 1e-15f

/* Round to nearest, ties to even, through the float adder (ggml's
 * nearest_int): exact for |x| <= 2^22; outside that, and for Inf and NaN,
 * a deterministic garbage value that every level reproduces. */
static inline int qp_kq_nearest_int(float x)
{
	const float v = x + 12582912.0f;
	int32_t i;
	memcpy(&i, &v, sizeof(i));
	return (i & 0x007fffff) - 0x00400000;
}

/* Symmetric levels L[i] = l + nmax, l in -nmax..nmax-1, and the scale.
 * rmse_type 1 weights by qw (or x^2 if qw is NULL); llama.cpp's other
 * rmse types are unused by the k-quants and not provided. */
float qp_kq_make_qx_quants(int n, int nmax, const float *x, int8_t *L, const float *qw);

/* q3_K's reference search: levels L[i] in 0..2*nmax-1, weights x^2 */
float qp_kq_make_q3_quants(int n, int nmax, const float *x, int8_t *L);

/* Asymmetric levels L[i] in 0..nmax, scale returned, -min in *the_min;
 * nstep + 1 scales tried around nmax / (max - min). make_qkx2_quants when
 * weights decide only the fit (the references); make_qkx3_quants differs
 * in rejecting max <= min instead of max == min and is the imatrix path. */
float qp_kq_make_qkx2_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L,
                             float *the_min, float rmin, float rdelta, int nstep, bool use_mad);
float qp_kq_make_qkx3_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L,
                             float *the_min, float rmin, float rdelta, int nstep);

/* Non-negative levels L[i] in 0..nmax for the sub-block scales of the
 * imatrix paths, weighted by quant_weights */
float qp_kq_make_qp_quants(int n, int nmax, const float *x, uint8_t *L, const float *quant_weights);

/* The second halves' first step, shared with the SIMD quantizers, which
 * fit the sub-blocks faster and requantize on their own: quantize the
 * sub-block scales (and minimums) as the reference does and store them, with
 * d (and dmin), in y. The _imat ones fit them weighted by each sub-block's
 * total weight sw. qp_kq_q6_k_pack_scales returns false when every scale is
 * ~0: y is then all zero and complete. */
void qp_kq_q2_k_pack_scales(struct qp_block_q2_K *y, const float scales[16], const float mins[16]);
void qp_kq_q2_k_pack_scales_imat(struct qp_block_q2_K *y, const float scales[16], const float mins[16],
                                 const float sw[16]);
void qp_kq_q3_k_pack_scales(struct qp_block_q3_K *y, const float scales[16]);
void qp_kq_q3_k_pack_scales_imat(struct qp_block_q3_K *y, const float scales[16], const float sw[16]);
bool qp_kq_q6_k_pack_scales(struct qp_block_q6_K *y, const float scales[16]);
/* q4_K's and q5_K's (8 scales and 8 minimums, 6 bits each) */
void qp_kq_q4_k_pack_scales(struct qp_block_q4_K *y, const float scales[8], const float mins[8]);
void qp_kq_q4_k_pack_scales_imat(struct qp_block_q4_K *y, const float scales[8], const float mins[8],
                                 const float sw[8]);
void qp_kq_q5_k_pack_scales(struct qp_block_q5_K *y, const float scales[8], const float mins[8]);
void qp_kq_q5_k_pack_scales_imat(struct qp_block_q5_K *y, const float scales[8], const float mins[8],
                                 const float sw[8]);

/* The 6-bit scale j and minimum of q4_K/q5_K's packed scales */
static inline void qp_kq_scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m)
{
	if (j < 4) {
		*d = q[j] & 63;
		*m = q[j + 4] & 63;
	} else {
		*d = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
		*m = (uint8_t)((q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4));
	}
}

/* Pack 8 6-bit scales and minimums as q4_K/q5_K store them */
static inline void qp_kq_pack_scale_min_k4(uint8_t scales[12], const uint8_t ls[8], const uint8_t lm[8])
{
	for (int j = 0; j < 8; j++) {
		if (j < 4) {
			scales[j] = ls[j];
			scales[j + 4] = lm[j];
		} else {
			scales[j + 4] = (uint8_t)((ls[j] & 0xF) | ((lm[j] & 0xF) << 4));
			scales[j - 4] |= (uint8_t)((ls[j] >> 4) << 6);
			scales[j - 0] |= (uint8_t)((lm[j] >> 4) << 6);
		}
	}
}

/* The 16 6-bit scales of a q3_K block, biased by 32, unpacked */
static inline void qp_kq_q3_scales(const uint8_t packed[12], int8_t out[16])
{
	for (int j = 0; j < 16; j++) {
		const int lo = j < 8 ? packed[j] & 0xF : packed[j - 8] >> 4;
		const int hi = (packed[8 + j % 4] >> (2 * (j / 4))) & 3;
		out[j] = (int8_t)((lo | (hi << 4)) - 32);
	}
}

#endif
