/* Attention's two products as the scalar reference defines them
 * (kernels/ops.h, qp_ops_vec's attn_scores and attn_values): fmaf, one
 * rounding per step, the same as a SIMD level's FMA lanes. Both sums add
 * float chains of QP_ATTN_BLOCK terms into a double: the values' sum runs
 * over up to n_ctx positions, and a float chain that long moved q4_0's
 * statistics in tests/e2e/test_kld past their tolerance; the scores' plain
 * chain over head_dim moved q4_0's WikiText perplexity from 0.09% to 0.14%
 * off llama.cpp's.
 *
 * Inline, so that a SIMD level's tails (the keys past its last vector, the
 * dimensions past its last 8) run this code compiled with the level's own
 * flags rather than a copy of it: a decode step meets those tails at every
 * head of every layer. */
#ifndef QP_KERNELS_REF_ATTN_H
#define QP_KERNELS_REF_ATTN_H

#include <math.h>
#include <stdint.h>

#define QP_ATTN_BLOCK 16

/* s[i * lds + j] = q_i . k_j for i < nq, j < n_keys (q_i at q + i * q_stride,
 * component d of k_j at kt[d * kt_stride + j]) */
static inline void qp_attn_scores_ref(float *s, int64_t lds, const float *q, int64_t q_stride, int64_t nq,
                                      const float *kt, int64_t kt_stride, int64_t n_keys, int64_t hd)
{
	for (int64_t i = 0; i < nq; i++)
		for (int64_t j = 0; j < n_keys; j++) {
			double tot = 0.0;
			for (int64_t d0 = 0; d0 < hd; d0 += QP_ATTN_BLOCK) {
				float blk = 0.0f;
				for (int64_t d = d0; d < d0 + QP_ATTN_BLOCK && d < hd; d++)
					blk = fmaf(q[i * q_stride + d], kt[d * kt_stride + j], blk);
				tot += (double)blk;
			}
			s[i * lds + j] = (float)tot;
		}
}

/* out_i[d] = sum over j < len0 + i of p[i * ldp + j] * v[j * v_stride + d],
 * for i < nq, d < hd (out_i at out + i * out_stride) */
static inline void qp_attn_values_ref(float *out, int64_t out_stride, const float *p, int64_t ldp, int64_t nq,
                                      int64_t len0, const float *v, int64_t v_stride, int64_t hd)
{
	for (int64_t i = 0; i < nq; i++)
		for (int64_t d = 0; d < hd; d++) {
			double tot = 0.0;
			for (int64_t b0 = 0; b0 < len0 + i; b0 += QP_ATTN_BLOCK) {
				float blk = 0.0f;
				for (int64_t j = b0; j < b0 + QP_ATTN_BLOCK && j < len0 + i; j++)
					blk = fmaf(p[i * ldp + j], v[j * v_stride + d], blk);
				tot += (double)blk;
			}
			out[i * out_stride + d] = (float)tot;
		}
}

#endif
