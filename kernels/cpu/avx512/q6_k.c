/* Q6_K's quantizer at AVX-512: make_qx_quants' search (kernels/cpu/ref/
 * kquants.c) for all sixteen sub-blocks of a super-block at once, one per
 * lane of a zmm register, where AVX2's runs two sets of eight
 * (kernels/cpu/avx2/kquants_search.c, whose comments give the reasons the
 * order of work here follows). The block is then finished from the scales
 * by AVX2's code. Each lane does the scalar search's float operations in
 * its order (multiply, then add: no FMA; sums element by element), so the
 * blocks are the reference's bit for bit. What this search leaves out (a
 * lane that is not flat holding a value that is not finite; a stored
 * scale of zero) goes to AVX2's whole quantizer, which handles it. */
#include "kernels/cpu/avx512/avx512.h"

#include <immintrin.h>
#include <math.h>
#include <stdbool.h>

#include "kernels/blocks.h"
#include "kernels/cpu/avx2/kquants.h"
#include "kernels/cpu/avx512/simd.h"
#include "kernels/cpu/ref/kquants.h"

#define NMAX 32

/* the clamps of a level to -NMAX .. NMAX - 1 that can bind */
enum { CLO = 1, CHI = 2 };

/* clamp(nearest_int(iscale * x)) in floats: (v + 2^23 + 2^22) - (2^23 +
 * 2^22) rounds to nearest even as qp_kq_nearest_int does, for |v| < 2^22
 * (the caller's bound); two adds where a rounding instruction takes two
 * uops of the multiplier's port */
static inline __attribute__((always_inline)) __m512 level(__m512 iscale, __m512 x, const int clamps)
{
	const __m512 magic = _mm512_set1_ps(12582912.0f);
	__m512 l = _mm512_sub_ps(_mm512_add_ps(_mm512_mul_ps(iscale, x), magic), magic);
	if (clamps & CHI)
		l = _mm512_min_ps(l, _mm512_set1_ps(NMAX - 1));
	if (clamps & CLO)
		l = _mm512_max_ps(l, _mm512_set1_ps(-NMAX));
	return l;
}

/* the sums of T trials (1 or 2) side by side: one trial's two chains of
 * adds alone would leave the adders waiting on their latency */
static inline __attribute__((always_inline)) void sums(const int T, const int clamps, const __m512 *iscale,
                                                       const __m512 *x, const __m512 *w, const __m512 *wx,
                                                       __m512 *sumlx, __m512 *suml2)
{
	__m512 slx[2], sl2[2];
	for (int t = 0; t < 2; t++)
		slx[t] = sl2[t] = _mm512_setzero_ps();
	_Pragma("GCC unroll 4")
	for (int i = 0; i < 16; i++)
		_Pragma("GCC unroll 2")
		for (int t = 0; t < T; t++) {
			const __m512 l = level(iscale[t], x[i], clamps);
			slx[t] = _mm512_add_ps(slx[t], _mm512_mul_ps(wx[i], l));
			sl2[t] = _mm512_add_ps(sl2[t], _mm512_mul_ps(_mm512_mul_ps(w[i], l), l));
		}
	for (int t = 0; t < T; t++) {
		sumlx[t] = slx[t];
		suml2[t] = sl2[t];
	}
}

/* each (T, clamps) a function of its own, as AVX2's: inlined side by side,
 * the variants' levels are shared and spilled */
#define SUMS(T, name, clamps)                                                                                      \
	static __attribute__((noinline)) void name(const __m512 *iscale, const __m512 *x, const __m512 *w,          \
	                                           const __m512 *wx, __m512 *sumlx, __m512 *suml2)                  \
	{                                                                                                          \
		sums(T, clamps, iscale, x, w, wx, sumlx, suml2);                                                   \
	}
SUMS(1, sums_1_none, 0)
SUMS(1, sums_1_lo, CLO)
SUMS(1, sums_1_hi, CHI)
SUMS(1, sums_1_both, CLO | CHI)
SUMS(2, sums_2_none, 0)
SUMS(2, sums_2_lo, CLO)
SUMS(2, sums_2_hi, CHI)
SUMS(2, sums_2_both, CLO | CHI)
static void (*const sums_by[2][4])(const __m512 *, const __m512 *, const __m512 *, const __m512 *, __m512 *,
                                   __m512 *) = {
	{sums_1_none, sums_1_lo, sums_1_hi, sums_1_both},
	{sums_2_none, sums_2_lo, sums_2_hi, sums_2_both}};

/* make_qx_quants(16, NMAX, x, L, rmse_type 1 or w) of the sixteen groups
 * in lane layout (x[i] lane j: element i of group j), w their weights
 * (x^2 for the plain reference): the scales it returns, in *scale. False
 * where a lane that is not flat holds a value that is not finite, whose
 * levels only the integers give (AVX2's search). */
static bool qx16(const __m512 x[16], const __m512 w[16], __m512 *scale_out)
{
	const __m512 zero = _mm512_setzero_ps();
	/* the element of largest |x|, the first where several tie (the
	 * scalar `if (ax > amax)`, which no NaN passes) */
	__m512 max = zero, amax = zero;
	for (int i = 0; i < 16; i++) {
		const __m512 ax = _mm512_abs_ps(x[i]);
		const __mmask16 gt = _mm512_cmp_ps_mask(ax, amax, _CMP_GT_OQ);
		amax = _mm512_mask_mov_ps(amax, gt, ax);
		max = _mm512_mask_mov_ps(max, gt, x[i]);
	}
	const __mmask16 flat = _mm512_cmp_ps_mask(amax, _mm512_set1_ps(QP_KQ_GROUP_MAX_EPS), _CMP_LT_OQ);
	if (flat == 0xffff) {
		*scale_out = zero;
		return true;
	}
	__mmask16 bad = 0;
	__m512 xlo = x[0], xhi = x[0], wx[16];
	for (int i = 0; i < 16; i++) {
		wx[i] = _mm512_mul_ps(w[i], x[i]);
		bad |= _mm512_cmp_ps_mask(_mm512_abs_ps(x[i]), _mm512_set1_ps(INFINITY), _CMP_NLT_UQ);
		xlo = _mm512_min_ps(xlo, x[i]);
		xhi = _mm512_max_ps(xhi, x[i]);
	}
	/* Levels in floats need |iscale * x| < 2^22. In a lane that is not
	 * flat and holds finite values only, |max| >= GROUP_MAX_EPS, so
	 * iscale = RN(numer / max) is finite, and as |x| <= |max|, |iscale *
	 * x| <= |numer| (1 + 2^-23)^2 < 33 */
	if (bad & ~flat)
		return false;

	/* Every trial's sums, two trials at a time, then the comparisons in
	 * the scalar order. A pair's iscales are divided before the pair
	 * ahead of it is summed, and its fits after the pair behind it has
	 * started: the divider works beside the sums. Trial 0 is the scalar
	 * search's first pass, iscale = -NMAX / max; trials 1..18 are its is
	 * = -9..-1, 1..9, in that order. */
	__m512 iscale[19], sumlx[19], suml2[19], fit[19], fitlx[19];
	for (int k0 = 0; k0 < 19; k0 += 2) {
		for (int k = k0 == 0 ? 0 : k0 + 2; k < k0 + 4 && k < 19; k++) {
			const int is = k <= 9 ? k - 10 : k - 9;
			const float numer = k == 0 ? (float)-NMAX : -(NMAX + 0.1f * is);
			iscale[k] = _mm512_div_ps(_mm512_set1_ps(numer), max);
		}
		const int T = k0 == 18 ? 1 : 2;
		/* Rounding is monotonic, so a lane's levels lie between those of
		 * its smallest and largest x; the pair's iscales share their
		 * sign, and the one of larger magnitude (trial 0 before trial 1,
		 * then the later one: |numer| grows with is) reaches further on
		 * both sides: its ends say which clamps can bind */
		const __m512 iw = iscale[k0 == 0 || k0 == 18 ? k0 : k0 + 1];
		const __m512 ra = _mm512_roundscale_ps(_mm512_mul_ps(iw, xlo), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
		const __m512 rb = _mm512_roundscale_ps(_mm512_mul_ps(iw, xhi), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
		const __mmask16 lo = _mm512_cmp_ps_mask(_mm512_min_ps(ra, rb), _mm512_set1_ps(-NMAX), _CMP_LT_OQ);
		const __mmask16 hi = _mm512_cmp_ps_mask(_mm512_max_ps(ra, rb), _mm512_set1_ps(NMAX - 1), _CMP_GT_OQ);
		const int clamps = ((lo & ~flat) ? CLO : 0) | ((hi & ~flat) ? CHI : 0);
		sums_by[T - 1][clamps](iscale + k0, x, w, wx, sumlx + k0, suml2 + k0);
		for (int k = k0 - 2; k >= 0 && k < k0; k++) {
			fit[k] = _mm512_div_ps(sumlx[k], suml2[k]);
			fitlx[k] = _mm512_mul_ps(fit[k], sumlx[k]);
		}
	}
	fit[18] = _mm512_div_ps(sumlx[18], suml2[18]);
	fitlx[18] = _mm512_mul_ps(fit[18], sumlx[18]);
	/* `suml2 ? sumlx / suml2 : 0`: NaN is true */
	__m512 scale = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(suml2[0], zero, _CMP_NEQ_UQ), fit[0]);
	__m512 best = _mm512_mul_ps(scale, sumlx[0]);
	for (int k = 1; k < 19; k++) {
		const __mmask16 take =
			_mm512_cmp_ps_mask(suml2[k], zero, _CMP_GT_OQ) &
			_mm512_cmp_ps_mask(_mm512_mul_ps(sumlx[k], sumlx[k]), _mm512_mul_ps(best, suml2[k]), _CMP_GT_OQ);
		/* fit * sumlx made beforehand: the chain from one trial's best to
		 * the next is a multiply, a compare and a move */
		scale = _mm512_mask_mov_ps(scale, take, fit[k]);
		best = _mm512_mask_mov_ps(best, take, fitlx[k]);
	}
	*scale_out = _mm512_mask_mov_ps(scale, flat, zero);
	return true;
}

/* v[i] lane j = src[16 j + i]: a super-block's sixteen sub-blocks in lane
 * layout, AVX2's for each half */
static inline __attribute__((always_inline)) void to_lanes(const float *src, __m512 v[16])
{
	__m256 a[16], b[16];
	qp_avx2_to_lanes(src, 16, a);
	qp_avx2_to_lanes(src + 128, 16, b);
	for (int i = 0; i < 16; i++)
		v[i] = qp_avx512_join_ps(a[i], b[i]);
}

/* one super-block; qw its 256 importances, or NULL for the plain reference */
static void quantize_block(const float *x, struct qp_block_q6_K *y, const float *qw)
{
	__m512 xv[16], wv[16], sc;
	to_lanes(x, xv);
	if (qw) {
		to_lanes(qw, wv);
	} else {
		for (int i = 0; i < 16; i++)
			wv[i] = _mm512_mul_ps(xv[i], xv[i]);
	}
	if (qx16(xv, wv, &sc)) {
		const __m256 halves[2] = {qp_avx512_half_ps(sc, 0), qp_avx512_half_ps(sc, 1)};
		if (qp_avx2_q6_k_from_scales(x, halves, y))
			return;
	}
	qp_avx2_q6_k_quantize_block(x, y, qw);
}

static void quantize_row(const float *x, void *vy, int64_t n, const float *qw)
{
	struct qp_block_q6_K *y = vy;
	for (int64_t i = 0; i < n / QP_QK_K; i++)
		quantize_block(x + QP_QK_K * i, &y[i], qw ? qw + QP_QK_K * i : NULL);
}

void qp_q6_k_quantize_row_avx512(const float *x, void *vy, int64_t n)
{
	quantize_row(x, vy, n, NULL);
}

void qp_q6_k_quantize_row_imat_avx512(const float *x, void *vy, int64_t n, const float *imatrix)
{
	quantize_row(x, vy, n, imatrix);
}
