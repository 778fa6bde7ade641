/* The k-quant scale searches of kernels/cpu/ref/kquants.c run for eight
 * groups at once, one group per lane (kquants.h's lane layout: x[i] holds
 * element i of each group). Include only from files built with -mavx2
 * -mfma -mf16c.
 *
 * Every lane does exactly the float operations the scalar search does for
 * its group, in the same order (multiply, then add: no FMA; sums element
 * by element), and each of the scalar search's branches becomes a per-lane
 * select that takes the same side: comparisons are ordered where C's are,
 * so NaN goes where `x < y` false sends it. The levels come back as int32
 * lanes, as the scalar search leaves them in L, and what the scalar search
 * returns (the scale) in scale[s] for set s. n is at most 32. */
#ifndef QP_KERNELS_AVX2_KQUANTS_SEARCH_H
#define QP_KERNELS_AVX2_KQUANTS_SEARCH_H

#include <immintrin.h>
#include <stdbool.h>

/* qp_kq_make_qx_quants(n, nmax, x, L, w): w the weights, x^2 where the
 * scalar one gets NULL; sets (1 or 2) as for qp_avx2_make_qkx_quants_x8,
 * the scales in scale[s]. L may be NULL: the scales alone (Q6_K, which
 * requantizes, needs the levels only where a scale rounds to zero). */
void qp_avx2_make_qx_quants_x8(int sets, int n, int nmax, const __m256 *x, const __m256 *w, __m256i *L,
                               __m256 *scale);

/* qp_kq_make_q3_quants(n, nmax, x, L), sets as above */
void qp_avx2_make_q3_quants_x8(int sets, int n, int nmax, const __m256 *x, __m256i *L, __m256 *scale);

/* qp_kq_make_qkx2_quants(..., use_mad), or qp_kq_make_qkx3_quants when
 * qkx3 (which never has use_mad), for sets (1 or 2) independent sets of
 * eight groups: x[s * n + i], w and L likewise, and set s's scales and
 * -min (the_min) in scale[s] and the_min[s]. Two sets run half a trial
 * apart, one set's sums beside the other's error, which hides the latency
 * of one set's chains of adds behind the other's; one set alone runs
 * beside a copy of itself. */
void qp_avx2_make_qkx_quants_x8(int sets, int n, int nmax, const __m256 *x, const __m256 *w, __m256i *L,
                                __m256 *scale, __m256 *the_min, float rmin, float rdelta, int nstep, bool use_mad,
                                bool qkx3);

#endif
