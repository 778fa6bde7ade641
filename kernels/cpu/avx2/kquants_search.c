/* The k-quant scale searches, eight groups at a time; see
 * kquants_search.h. Each function follows its scalar twin in
 * kernels/cpu/ref/kquants.c line by line; where the scalar one leaves a
 * loop early (a flat group, an error sum already past the best, a trial
 * whose levels equal the previous one's), the lanes run on and discard the
 * result, which the scalar one's comments show cannot change it. */
#include "kernels/cpu/avx2/kquants_search.h"

#include "kernels/cpu/avx2/kquants.h"
#include "kernels/cpu/ref/kquants.h"

#include <math.h>

#define MAX_N 32

static inline __m256 sel(__m256 mask, __m256 yes, __m256 no)
{
	return _mm256_blendv_ps(no, yes, mask);
}

static inline __m256i seli(__m256 mask, __m256i yes, __m256i no)
{
	return _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(no), _mm256_castsi256_ps(yes), mask));
}

static inline __m256i clamp(__m256i l, __m256i lo, __m256i hi)
{
	return _mm256_max_epi32(lo, _mm256_min_epi32(hi, l));
}

/* the element of largest |x| per lane, the first one where several tie
 * (the scalar `if (ax > amax)`), and that |x| */
static inline void abs_max(int n, const __m256 *x, __m256 *max, __m256 *amax)
{
	const __m256 sign = _mm256_set1_ps(-0.0f);
	__m256 m = _mm256_setzero_ps(), am = _mm256_setzero_ps();
	for (int i = 0; i < n; i++) {
		const __m256 ax = _mm256_andnot_ps(sign, x[i]);
		const __m256 gt = _mm256_cmp_ps(ax, am, _CMP_GT_OQ);
		am = sel(gt, ax, am);
		m = sel(gt, x[i], m);
	}
	*max = m;
	*amax = am;
}

/* clamp(nearest_int(iscale * x), -nmax, nmax - 1) through the integers:
 * right for every value, garbage included */
static inline __m256 level_s(__m256 iscale, __m256 x, __m256i lo, __m256i hi)
{
	return _mm256_cvtepi32_ps(clamp(qp_avx2_nearest_int(_mm256_mul_ps(iscale, x)), lo, hi));
}

/* The sums of make_qx_quants' trials for T trials (1 or 2) of S sets at
 * once, its levels clamp(nearest_int(v), -nmax, nmax - 1), v = iscale * x,
 * made in floats: valid when no |v| reaches 2^22, where (v + 2^23 + 2^22) -
 * (2^23 + 2^22) rounds to nearest even as qp_kq_nearest_int does. The
 * clamp is min and max, at the ends chi and clo only, where the caller has
 * found that it can bind (min and max share ports with the multiplies).
 * Two trials share nothing but their inputs: each sum is a chain of
 * dependent adds, and four chains leave the adders waiting on latency
 * that eight hide. Each sum still adds its terms element by element. */
static inline __attribute__((always_inline)) void qx_sums(const int T, const int S, const int n, const bool clo,
                                                          const bool chi, const __m256 iscale[2][2], const __m256 *x,
                                                          const __m256 *w, const __m256 wx[2][MAX_N], __m256 flo,
                                                          __m256 fhi, __m256 sumlx[2][2], __m256 suml2[2][2])
{
	/* sums of their own, not the caller's: they could alias the inputs,
	 * and would go through memory at every add */
	__m256 slx[2][2], sl2[2][2];
	/* all four zeroed whatever T and S: gcc -O2 can't see that the
	 * unused ones are never read (-Wmaybe-uninitialized), and drops the
	 * dead stores */
	for (int t = 0; t < 2; t++)
		for (int s = 0; s < 2; s++)
			slx[t][s] = sl2[t][s] = _mm256_setzero_ps();
	_Pragma("GCC unroll 4")
	for (int i = 0; i < n; i++)
		_Pragma("GCC unroll 2")
		for (int t = 0; t < T; t++)
			_Pragma("GCC unroll 2")
			for (int s = 0; s < S; s++) {
				const __m256 v = _mm256_mul_ps(iscale[t][s], x[s * n + i]);
				__m256 l = _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
				if (chi)
					l = _mm256_min_ps(l, fhi);
				if (clo)
					l = _mm256_max_ps(l, flo);
				slx[t][s] = _mm256_add_ps(slx[t][s], _mm256_mul_ps(wx[s][i], l));
				sl2[t][s] = _mm256_add_ps(sl2[t][s], _mm256_mul_ps(_mm256_mul_ps(w[s * n + i], l), l));
			}
	for (int t = 0; t < T; t++)
		for (int s = 0; s < S; s++) {
			sumlx[t][s] = slx[t][s];
			suml2[t][s] = sl2[t][s];
		}
}

/* qx_sums for T trials of two sets of 16 (Q6_K's and Q3_K's shape), by
 * clamps (bit 0: clo, bit 1: chi), each a function of its own: inlined
 * side by side, the compiler shares the levels of the four variants and
 * spills them all */
#define QX_SUMS_2_16(T, name, clo, chi)                                                                             \
	static __attribute__((noinline)) void name(const __m256 iscale[2][2], const __m256 *x, const __m256 *w,     \
	                                           const __m256 wx[2][MAX_N], __m256 flo, __m256 fhi,               \
	                                           __m256 sumlx[2][2], __m256 suml2[2][2])                          \
	{                                                                                                          \
		qx_sums(T, 2, 16, clo, chi, iscale, x, w, wx, flo, fhi, sumlx, suml2);                             \
	}
QX_SUMS_2_16(1, qx_sums_1_2_16_none, false, false)
QX_SUMS_2_16(1, qx_sums_1_2_16_lo, true, false)
QX_SUMS_2_16(1, qx_sums_1_2_16_hi, false, true)
QX_SUMS_2_16(1, qx_sums_1_2_16_both, true, true)
QX_SUMS_2_16(2, qx_sums_2_2_16_none, false, false)
QX_SUMS_2_16(2, qx_sums_2_2_16_lo, true, false)
QX_SUMS_2_16(2, qx_sums_2_2_16_hi, false, true)
QX_SUMS_2_16(2, qx_sums_2_2_16_both, true, true)
static void (*const qx_sums_2_16[2][4])(const __m256[2][2], const __m256 *, const __m256 *, const __m256[2][MAX_N],
                                        __m256, __m256, __m256[2][2], __m256[2][2]) = {
	{qx_sums_1_2_16_none, qx_sums_1_2_16_lo, qx_sums_1_2_16_hi, qx_sums_1_2_16_both},
	{qx_sums_2_2_16_none, qx_sums_2_2_16_lo, qx_sums_2_2_16_hi, qx_sums_2_2_16_both}};

/* qx_sums with the clamps that can bind: whether a level can fall below
 * -nmax (above nmax - 1) in some lane that is not flat. Rounding is
 * monotonic, so every v lies between the v of the lane's smallest x and
 * that of its largest (lo, hi), and its level between theirs; and the
 * trials' iscales share their sign, so the one of larger magnitude (wide)
 * reaches further on both sides than the other: its ends decide for
 * both. */
static inline __attribute__((always_inline)) void qx_sums_clamped(const int T, const int wide, const int S, const int n,
                                                                  const __m256 iscale[2][2], const __m256 *x,
                                                                  const __m256 *w, const __m256 wx[2][MAX_N],
                                                                  const __m256 *lo, const __m256 *hi,
                                                                  const __m256 *flat, __m256 flo, __m256 fhi,
                                                                  __m256 sumlx[2][2], __m256 suml2[2][2])
{
	__m256 below = _mm256_setzero_ps(), above = _mm256_setzero_ps();
	for (int t = wide; t == wide; t++)
		for (int s = 0; s < S; s++) {
			const __m256 ra = _mm256_round_ps(_mm256_mul_ps(iscale[t][s], lo[s]),
			                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
			const __m256 rb = _mm256_round_ps(_mm256_mul_ps(iscale[t][s], hi[s]),
			                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
			below = _mm256_or_ps(below, _mm256_andnot_ps(flat[s], _mm256_cmp_ps(_mm256_min_ps(ra, rb), flo,
			                                                                    _CMP_LT_OQ)));
			above = _mm256_or_ps(above, _mm256_andnot_ps(flat[s], _mm256_cmp_ps(_mm256_max_ps(ra, rb), fhi,
			                                                                    _CMP_GT_OQ)));
		}
	const int clamps = (_mm256_movemask_ps(below) != 0) | (_mm256_movemask_ps(above) != 0) << 1;
	if (S == 2 && n == 16)
		qx_sums_2_16[T - 1][clamps](iscale, x, w, wx, flo, fhi, sumlx, suml2);
	else if (clamps == 3)
		qx_sums(T, S, n, true, true, iscale, x, w, wx, flo, fhi, sumlx, suml2);
	else if (clamps == 1)
		qx_sums(T, S, n, true, false, iscale, x, w, wx, flo, fhi, sumlx, suml2);
	else if (clamps == 2)
		qx_sums(T, S, n, false, true, iscale, x, w, wx, flo, fhi, sumlx, suml2);
	else
		qx_sums(T, S, n, false, false, iscale, x, w, wx, flo, fhi, sumlx, suml2);
}

/* The iscales of trials k0 and k0 + 1 (k0 alone for the 19th): trial 0 is
 * the scalar search's first pass, iscale = -nmax / max; trials 1..18 are
 * its is = -9..-1, 1..9, in that order (the first best wins). small[k0 /
 * 2] says whether their levels can be made in floats (see qx_sets). */
static inline __attribute__((always_inline)) void qx_iscales(const int S, const int nmax, int k0, const __m256 *max,
                                                             const __m256 *flat, bool finite, __m256 iscale[20][2],
                                                             bool small[10])
{
	const __m256 sign = _mm256_set1_ps(-0.0f), lim = _mm256_set1_ps(4194304.0f);
	bool ok = finite;
	for (int k = k0; k < k0 + 2 && k < 19; k++) {
		const int is = k <= 9 ? k - 10 : k - 9;
		const float numer = k == 0 ? (float)-nmax : -(nmax + 0.1f * is);
		_Pragma("GCC unroll 2")
		for (int s = 0; s < S; s++)
			iscale[k][s] = _mm256_div_ps(_mm256_set1_ps(numer), max[s]);
	}
	/* the trial of larger |iscale| (see qx_sums_clamped) bounds the
	 * other's |v| */
	const int wide = k0 == 0 || k0 == 18 ? k0 : k0 + 1;
	_Pragma("GCC unroll 2")
	for (int s = 0; s < S; s++) {
		const __m256 bound = _mm256_andnot_ps(sign, _mm256_mul_ps(iscale[wide][s], max[s]));
		ok = ok && !_mm256_movemask_ps(_mm256_andnot_ps(flat[s], _mm256_cmp_ps(bound, lim, _CMP_NLT_UQ)));
	}
	small[k0 / 2] = ok;
}

/* make_qx_quants for S sets of eight groups, interleaved as qkx_sets's.
 * Levels stay floats; trials compute them in floats (qx_sums) when no
 * |v| = |iscale * x| can reach 2^22, which holds when every x of a lane
 * that is not flat is finite and |iscale * max| < 2^22, max being the
 * element of largest magnitude. A trial's levels are a function of its
 * iscale alone, so the lanes keep the best trial's iscale, not its levels,
 * and compute those levels once at the end (in the integers, which give
 * the floats' levels wherever those apply). Trials run two at a time (the
 * 19th alone), and their outcomes are then taken in the scalar order. n
 * and nmax are constants where the callers' are, so the loops unroll. */
static inline __attribute__((always_inline)) void qx_sets(const int S, const int n, const int nmax, const __m256 *x,
                                                          const __m256 *w, __m256i *L, __m256 *scale_out)
{
	const __m256 zero = _mm256_setzero_ps();
	const __m256 sign = _mm256_set1_ps(-0.0f);
	const __m256i lo = _mm256_set1_epi32(-nmax), hi = _mm256_set1_epi32(nmax - 1);
	const __m256 flo = _mm256_set1_ps((float)-nmax), fhi = _mm256_set1_ps((float)(nmax - 1));
	__m256 max[2], flat[2], xlo[2], xhi[2], wx[2][MAX_N];
	__m256 scale[2] = {zero, zero}, best[2] = {zero, zero}, best_is[2] = {zero, zero}; /* set by trial 0 */
	bool finite = true;
	int all_flat = 1;
	_Pragma("GCC unroll 2")
	for (int s = 0; s < S; s++) {
		__m256 amax;
		abs_max(n, x + s * n, &max[s], &amax);
		flat[s] = _mm256_cmp_ps(amax, _mm256_set1_ps(QP_KQ_GROUP_MAX_EPS), _CMP_LT_OQ);
		all_flat &= _mm256_movemask_ps(flat[s]) == 0xff;
		__m256 bad = zero;
		xlo[s] = xhi[s] = x[s * n];
		for (int i = 0; i < n; i++) {
			wx[s][i] = _mm256_mul_ps(w[s * n + i], x[s * n + i]);
			bad = _mm256_or_ps(bad, _mm256_cmp_ps(_mm256_andnot_ps(sign, x[s * n + i]), _mm256_set1_ps(INFINITY),
			                                      _CMP_NLT_UQ));
			/* only used where every x is finite */
			xlo[s] = _mm256_min_ps(xlo[s], x[s * n + i]);
			xhi[s] = _mm256_max_ps(xhi[s], x[s * n + i]);
		}
		finite &= !_mm256_movemask_ps(_mm256_andnot_ps(flat[s], bad));
	}
	if (all_flat) {
		for (int i = 0; L && i < S * n; i++)
			L[i] = _mm256_setzero_si256();
		for (int s = 0; s < S; s++)
			scale_out[s] = zero;
		return;
	}
	/* Every trial's sums first, two trials at a time, then the scalar
	 * one's comparisons in its order: no trial's sums wait on another's
	 * outcome, and only the comparisons chain. The divisions (the next
	 * pair's iscale, this pair's fit) are issued between the pairs'
	 * sums, where the divider works beside them. */
	__m256 iscale[20][2], sumlx[20][2], suml2[20][2], fit[20][2];
	bool small[10];
	qx_iscales(S, nmax, 0, max, flat, finite, iscale, small);
	_Pragma("GCC unroll 1")
	for (int k0 = 0; k0 < 19; k0 += 2) {
		const int T = k0 == 18 ? 1 : 2;
		if (k0 + 2 < 19)
			qx_iscales(S, nmax, k0 + 2, max, flat, finite, iscale, small);
		if (small[k0 / 2]) {
			/* |numer| grows from trial 1 to 18 (is = -9..9), trial 0's
			 * (is = 0) being larger than trial 1's */
			qx_sums_clamped(T, k0 == 0 ? 0 : T - 1, S, n, (const __m256(*)[2])(iscale + k0), x, w, wx, xlo, xhi,
			                flat, flo, fhi, sumlx + k0, suml2 + k0);
		} else {
			for (int k = k0; k < k0 + T; k++)
				for (int s = 0; s < S; s++) {
					sumlx[k][s] = suml2[k][s] = zero;
					for (int i = 0; i < n; i++) {
						const __m256 l = level_s(iscale[k][s], x[s * n + i], lo, hi);
						sumlx[k][s] = _mm256_add_ps(sumlx[k][s], _mm256_mul_ps(wx[s][i], l));
						suml2[k][s] =
							_mm256_add_ps(suml2[k][s], _mm256_mul_ps(_mm256_mul_ps(w[s * n + i], l), l));
					}
				}
		}
		/* the previous pair's fits: its sums are done by now, where
		 * this pair's are still being added */
		for (int k = k0 - 2; k >= 0 && k < k0; k++)
			_Pragma("GCC unroll 2")
			for (int s = 0; s < S; s++)
				fit[k][s] = _mm256_div_ps(sumlx[k][s], suml2[k][s]);
	}
	_Pragma("GCC unroll 2")
	for (int s = 0; s < S; s++)
		fit[18][s] = _mm256_div_ps(sumlx[18][s], suml2[18][s]);
	_Pragma("GCC unroll 2")
	for (int s = 0; s < S; s++) {
		best_is[s] = iscale[0][s];
		/* `suml2 ? ...`: NaN is true */
		scale[s] = sel(_mm256_cmp_ps(suml2[0][s], zero, _CMP_NEQ_UQ), fit[0][s], zero);
		best[s] = _mm256_mul_ps(scale[s], sumlx[0][s]);
	}
	for (int k = 1; k < 19; k++)
		_Pragma("GCC unroll 2")
		for (int s = 0; s < S; s++) {
			const __m256 take = _mm256_and_ps(
				_mm256_cmp_ps(suml2[k][s], zero, _CMP_GT_OQ),
				_mm256_cmp_ps(_mm256_mul_ps(sumlx[k][s], sumlx[k][s]), _mm256_mul_ps(best[s], suml2[k][s]),
				              _CMP_GT_OQ));
			/* no branch on take: which lanes take a trial is data, and
			 * a mispredicted branch costs more than the division made
			 * for every trial */
			best_is[s] = sel(take, iscale[k][s], best_is[s]);
			scale[s] = sel(take, fit[k][s], scale[s]);
			best[s] = sel(take, _mm256_mul_ps(fit[k][s], sumlx[k][s]), best[s]);
		}
	/* levels as the scalar one stores them: l + nmax, or 0 for a flat group */
	const __m256i vnmax = _mm256_set1_epi32(nmax);
	for (int s = 0; s < S; s++) {
		for (int i = 0; L && i < n; i++) {
			const __m256i l = clamp(qp_avx2_nearest_int(_mm256_mul_ps(best_is[s], x[s * n + i])), lo, hi);
			L[s * n + i] = seli(flat[s], _mm256_setzero_si256(), _mm256_add_epi32(l, vnmax));
		}
		scale_out[s] = sel(flat[s], zero, scale[s]);
	}
}

/* Q6_K's and Q3_K's shapes, each a function of its own */
static __attribute__((noinline)) void qx_q6_k(const __m256 *x, const __m256 *w, __m256i *L, __m256 *scale)
{
	qx_sets(2, 16, 32, x, w, L, scale);
}

static __attribute__((noinline)) void qx_q3_k(const __m256 *x, const __m256 *w, __m256i *L, __m256 *scale)
{
	qx_sets(2, 16, 4, x, w, L, scale);
}

void qp_avx2_make_qx_quants_x8(int sets, int n, int nmax, const __m256 *x, const __m256 *w, __m256i *L,
                               __m256 *scale)
{
	/* the callers' shapes, with constants the loops unroll on */
	if (sets == 2 && n == 16 && nmax == 32)
		qx_q6_k(x, w, L, scale);
	else if (sets == 2 && n == 16 && nmax == 4)
		qx_q3_k(x, w, L, scale);
	else if (sets == 2)
		qx_sets(2, n, nmax, x, w, L, scale);
	else
		qx_sets(1, n, nmax, x, w, L, scale);
}

/* make_q3_quants for S sets of eight groups, interleaved as qkx_sets's:
 * each element's update waits on the previous one's, so one set alone
 * leaves the machine idle. */
static inline __attribute__((always_inline)) void q3_sets(const int S, int n, int nmax, const __m256 *x, __m256i *L,
                                                          __m256 *scale_out)
{
	const __m256 zero = _mm256_setzero_ps();
	const __m256i lo = _mm256_set1_epi32(-nmax), hi = _mm256_set1_epi32(nmax - 1);
	__m256 flat[2], w[2][MAX_N], wx[2][MAX_N], Lf[2][MAX_N], sumlx[2], suml2[2];
	int all_flat = 1;
	_Pragma("GCC unroll 2")
	for (int s = 0; s < S; s++) {
		const __m256 *xs = x + s * n;
		__m256 max, amax;
		abs_max(n, xs, &max, &amax);
		flat[s] = _mm256_cmp_ps(amax, _mm256_set1_ps(QP_KQ_GROUP_MAX_EPS), _CMP_LT_OQ);
		all_flat &= _mm256_movemask_ps(flat[s]) == 0xff;
		const __m256 iscale = _mm256_div_ps(_mm256_set1_ps((float)-nmax), max);
		sumlx[s] = suml2[s] = zero;
		for (int i = 0; i < n; i++) {
			Lf[s][i] = _mm256_cvtepi32_ps(clamp(qp_avx2_nearest_int(_mm256_mul_ps(iscale, xs[i])), lo, hi));
			w[s][i] = _mm256_mul_ps(xs[i], xs[i]);
			wx[s][i] = _mm256_mul_ps(w[s][i], xs[i]);
			sumlx[s] = _mm256_add_ps(sumlx[s], _mm256_mul_ps(wx[s][i], Lf[s][i]));
			suml2[s] = _mm256_add_ps(suml2[s], _mm256_mul_ps(_mm256_mul_ps(w[s][i], Lf[s][i]), Lf[s][i]));
		}
	}
	if (all_flat) {
		for (int i = 0; i < S * n; i++)
			L[i] = _mm256_setzero_si256();
		for (int s = 0; s < S; s++)
			scale_out[s] = zero;
		return;
	}
	/* A pass that changes no level of a lane leaves its state as it found
	 * it, so a later pass would change nothing either: running on until
	 * every lane is done, or 5 passes, gives each lane the scalar result. */
	for (int itry = 0; itry < 5; itry++) {
		__m256 changed = zero;
		for (int i = 0; i < n; i++) {
			_Pragma("GCC unroll 2")
			for (int s = 0; s < S; s++) {
				const __m256 xi = x[s * n + i], li = Lf[s][i];
				__m256 slx = _mm256_sub_ps(sumlx[s], _mm256_mul_ps(wx[s][i], li));
				const __m256 pos = _mm256_cmp_ps(slx, zero, _CMP_GT_OQ);
				__m256 sl2 = _mm256_sub_ps(suml2[s], _mm256_mul_ps(_mm256_mul_ps(w[s][i], li), li));
				const __m256 q = _mm256_div_ps(_mm256_mul_ps(xi, sl2), slx);
				const __m256 new_l = _mm256_cvtepi32_ps(clamp(qp_avx2_nearest_int(q), lo, hi));
				const __m256 differs = _mm256_cmp_ps(new_l, li, _CMP_NEQ_OQ);
				slx = _mm256_add_ps(slx, _mm256_mul_ps(wx[s][i], new_l));
				sl2 = _mm256_add_ps(sl2, _mm256_mul_ps(_mm256_mul_ps(w[s][i], new_l), new_l));
				const __m256 better = _mm256_and_ps(
					_mm256_cmp_ps(sl2, zero, _CMP_GT_OQ),
					_mm256_cmp_ps(_mm256_mul_ps(_mm256_mul_ps(slx, slx), suml2[s]),
					              _mm256_mul_ps(_mm256_mul_ps(sumlx[s], sumlx[s]), sl2), _CMP_GT_OQ));
				const __m256 upd = _mm256_and_ps(_mm256_and_ps(pos, differs), better);
				Lf[s][i] = sel(upd, new_l, li);
				sumlx[s] = sel(upd, slx, sumlx[s]);
				suml2[s] = sel(upd, sl2, suml2[s]);
				changed = _mm256_or_ps(changed, upd);
			}
		}
		if (!_mm256_movemask_ps(changed))
			break;
	}
	const __m256i vnmax = _mm256_set1_epi32(nmax);
	for (int s = 0; s < S; s++) {
		for (int i = 0; i < n; i++)
			L[s * n + i] = seli(flat[s], _mm256_setzero_si256(), _mm256_add_epi32(_mm256_cvttps_epi32(Lf[s][i]), vnmax));
		const __m256 scale = sel(_mm256_cmp_ps(suml2[s], zero, _CMP_GT_OQ), _mm256_div_ps(sumlx[s], suml2[s]), zero);
		scale_out[s] = sel(flat[s], zero, scale);
	}
}

void qp_avx2_make_q3_quants_x8(int sets, int n, int nmax, const __m256 *x, __m256i *L, __m256 *scale)
{
	if (sets == 2)
		q3_sets(2, n, nmax, x, L, scale);
	else
		q3_sets(1, n, nmax, x, L, scale);
}

/* clamp(nearest_int(v), 0, nmax) as a float, through the integers: right
 * for every v, garbage included */
static inline __m256 level_u(__m256 v, __m256i nmax)
{
	return _mm256_cvtepi32_ps(clamp(qp_avx2_nearest_int(v), _mm256_setzero_si256(), nmax));
}

/* levels[i] = clamp(nearest_int(iscale * xm[i]), 0, nmax) as floats for
 * |v| < 2^22: vroundps rounds to nearest even as the adder of
 * qp_kq_nearest_int does, and the clamp is min and max, at the ends clo and
 * chi only, the others being unable to bind (the multiplies and the clamps
 * share two ports). A level of -0 (from -1/2 < v < 0 with no lower clamp)
 * gives sums and errors the bits +0 does: its products are zeros added
 * to sums that start at +0, or squared, or offset by a minimum that a
 * difference with a nonzero x absorbs. */
static inline __attribute__((always_inline)) void levels_fast(const int n, const bool clo, const bool chi,
                                                              __m256 iscale, const __m256 *xm, __m256 nmax,
                                                              __m256 *levels)
{
	for (int i = 0; i < n; i++) {
		__m256 r = _mm256_round_ps(_mm256_mul_ps(iscale, xm[i]), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
		if (chi)
			r = _mm256_min_ps(r, nmax);
		if (clo)
			r = _mm256_max_ps(r, _mm256_setzero_ps());
		levels[i] = r;
	}
}

/* weights[i] * |diff| or weights[i] * diff^2 */
static inline __m256 err_term(__m256 w, __m256 diff, bool use_mad)
{
	if (use_mad)
		return _mm256_mul_ps(w, _mm256_andnot_ps(_mm256_set1_ps(-0.0f), diff));
	return _mm256_mul_ps(w, _mm256_mul_ps(diff, diff));
}

/* Whether every v = iscale * (x[i] - min) of every lane is below 2^22 in
 * magnitude, so levels_fast gives level_u's levels; and, when so, whether
 * the clamp at 0 (*clo) or at nmax (*chi) can bind. Rounding is monotonic
 * and iscale > 0 in a lane that passes, so v lies between iscale * (lo -
 * min) and iscale * (hi - min) for lo <= x[i] <= hi; a NaN anywhere fails
 * the comparison (x itself was checked for NaN once). */
static inline bool levels_small(__m256 iscale, __m256 lo, __m256 hi, __m256 min, __m256 nmax, int *clo, int *chi)
{
	const __m256 lim = _mm256_set1_ps(4194304.0f);
	const __m256 sign = _mm256_set1_ps(-0.0f);
	const __m256 va = _mm256_mul_ps(iscale, _mm256_sub_ps(lo, min));
	const __m256 vb = _mm256_mul_ps(iscale, _mm256_sub_ps(hi, min));
	const __m256 ok = _mm256_and_ps(_mm256_cmp_ps(_mm256_andnot_ps(sign, va), lim, _CMP_LT_OQ),
	                                _mm256_cmp_ps(_mm256_andnot_ps(sign, vb), lim, _CMP_LT_OQ));
	if (_mm256_movemask_ps(ok) != 0xff)
		return false;
	const __m256 ra = _mm256_round_ps(va, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
	const __m256 rb = _mm256_round_ps(vb, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
	*clo = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_min_ps(ra, rb), _mm256_setzero_ps(), _CMP_LT_OQ));
	*chi = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_max_ps(ra, rb), nmax, _CMP_GT_OQ));
	return true;
}

/* make_qkx2/qkx3_quants for S sets of eight groups, the sets' statements
 * interleaved: a trial is a chain of dependent adds and the next trial
 * waits on its outcome, so one set alone leaves the adders idle. */
static inline __attribute__((always_inline)) void
qkx_sets(const int S, int n, int nmax, const __m256 *x, const __m256 *w, __m256i *L, __m256 *scale_out,
         __m256 *the_min, float rmin, float rdelta, int nstep, bool use_mad, bool qkx3)
{
	const __m256 zero = _mm256_setzero_ps();
	const __m256i vnmax = _mm256_set1_epi32(nmax);
	const __m256 fnmax = _mm256_set1_ps((float)nmax);
	__m256 min[2], max[2], lo[2], sum_w[2], sum_x[2], flat[2], scale[2], best_error[2];
	/* a trial's levels are a function of its iscale and of the minimum
	 * x - min was taken from, so the lanes keep those two of the best
	 * trial and compute its levels once at the end */
	__m256 xm[2][MAX_N], best_is[2], best_base[2];
	bool finite = true;
	_Pragma("GCC unroll 2")
	for (int s = 0; s < S; s++) {
		const __m256 *xs = x + s * n, *ws = w + s * n;
		__m256 nan = _mm256_cmp_ps(xs[0], xs[0], _CMP_UNORD_Q);
		min[s] = max[s] = xs[0];
		sum_w[s] = ws[0];
		sum_x[s] = _mm256_mul_ps(sum_w[s], xs[0]);
		for (int i = 1; i < n; i++) {
			min[s] = sel(_mm256_cmp_ps(xs[i], min[s], _CMP_LT_OQ), xs[i], min[s]);
			max[s] = sel(_mm256_cmp_ps(xs[i], max[s], _CMP_GT_OQ), xs[i], max[s]);
			sum_w[s] = _mm256_add_ps(sum_w[s], ws[i]);
			sum_x[s] = _mm256_add_ps(sum_x[s], _mm256_mul_ps(ws[i], xs[i]));
			nan = _mm256_or_ps(nan, _mm256_cmp_ps(xs[i], xs[i], _CMP_UNORD_Q));
		}
		finite &= !_mm256_movemask_ps(nan);
		lo[s] = min[s];
		min[s] = sel(_mm256_cmp_ps(min[s], zero, _CMP_GT_OQ), zero, min[s]);
		/* make_qkx2_quants returns early on max == min,
		 * make_qkx3_quants on max <= min: levels 0, scale 0, the
		 * minimum as clamped */
		flat[s] = qkx3 ? _mm256_cmp_ps(max[s], min[s], _CMP_LE_OQ) : _mm256_cmp_ps(max[s], min[s], _CMP_EQ_OQ);

		const __m256 iscale = _mm256_div_ps(fnmax, _mm256_sub_ps(max[s], min[s]));
		scale[s] = _mm256_div_ps(_mm256_set1_ps(1.0f), iscale);
		best_error[s] = zero;
		best_is[s] = iscale;
		best_base[s] = min[s];
		for (int i = 0; i < n; i++) {
			xm[s][i] = _mm256_sub_ps(xs[i], min[s]);
			const __m256 l = level_u(_mm256_mul_ps(iscale, xm[s][i]), vnmax);
			const __m256 diff = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(scale[s], l), min[s]), xs[i]);
			best_error[s] = _mm256_add_ps(best_error[s], err_term(ws[i], diff, use_mad));
		}
	}
	for (int is = 0; nstep >= 1 && is <= nstep; is++) {
		const float num = rmin + rdelta * is + nmax;
		__m256 laux[2][MAX_N];
		__m256 sum_l[2], sum_l2[2], sum_xl[2], D[2], positive[2], iscale[2];
		int any = 0;
		_Pragma("GCC unroll 2")
		for (int s = 0; s < S; s++) {
			iscale[s] = _mm256_div_ps(_mm256_set1_ps(num), _mm256_sub_ps(max[s], min[s]));
			int clo, chi;
			if (finite && levels_small(iscale[s], lo[s], max[s], min[s], fnmax, &clo, &chi)) {
				if (!clo && !chi)
					levels_fast(n, false, false, iscale[s], xm[s], fnmax, laux[s]);
				else if (!clo)
					levels_fast(n, false, true, iscale[s], xm[s], fnmax, laux[s]);
				else
					levels_fast(n, true, true, iscale[s], xm[s], fnmax, laux[s]);
			} else {
				for (int i = 0; i < n; i++)
					laux[s][i] = level_u(_mm256_mul_ps(iscale[s], xm[s][i]), vnmax);
			}
			sum_l[s] = sum_l2[s] = sum_xl[s] = zero;
		}
		for (int i = 0; i < n; i++)
			_Pragma("GCC unroll 2")
			for (int s = 0; s < S; s++) {
				const __m256 wl = _mm256_mul_ps(w[s * n + i], laux[s][i]);
				sum_l[s] = _mm256_add_ps(sum_l[s], wl);
				sum_l2[s] = _mm256_add_ps(sum_l2[s], _mm256_mul_ps(wl, laux[s][i]));
				sum_xl[s] = _mm256_add_ps(sum_xl[s], _mm256_mul_ps(wl, x[s * n + i]));
			}
		_Pragma("GCC unroll 2")
		for (int s = 0; s < S; s++) {
			D[s] = _mm256_sub_ps(_mm256_mul_ps(sum_w[s], sum_l2[s]), _mm256_mul_ps(sum_l[s], sum_l[s]));
			positive[s] = _mm256_andnot_ps(flat[s], _mm256_cmp_ps(D[s], zero, _CMP_GT_OQ));
			any |= _mm256_movemask_ps(positive[s]);
		}
		if (!any)
			continue;
		__m256 this_scale[2], this_min[2], cur_error[2];
		_Pragma("GCC unroll 2")
		for (int s = 0; s < S; s++) {
			this_scale[s] = _mm256_div_ps(
				_mm256_sub_ps(_mm256_mul_ps(sum_w[s], sum_xl[s]), _mm256_mul_ps(sum_x[s], sum_l[s])), D[s]);
			this_min[s] = _mm256_div_ps(
				_mm256_sub_ps(_mm256_mul_ps(sum_l2[s], sum_x[s]), _mm256_mul_ps(sum_l[s], sum_xl[s])), D[s]);
			const __m256 pos_min = _mm256_cmp_ps(this_min[s], zero, _CMP_GT_OQ);
			this_scale[s] = sel(pos_min, _mm256_div_ps(sum_xl[s], sum_l2[s]), this_scale[s]);
			this_min[s] = sel(pos_min, zero, this_min[s]);
			cur_error[s] = zero;
		}
		for (int i = 0; i < n; i++)
			_Pragma("GCC unroll 2")
			for (int s = 0; s < S; s++) {
				const __m256 diff = _mm256_sub_ps(
					_mm256_add_ps(_mm256_mul_ps(this_scale[s], laux[s][i]), this_min[s]), x[s * n + i]);
				cur_error[s] = _mm256_add_ps(cur_error[s], err_term(w[s * n + i], diff, use_mad));
			}
		_Pragma("GCC unroll 2")
		for (int s = 0; s < S; s++) {
			const __m256 take = _mm256_and_ps(positive[s], _mm256_cmp_ps(cur_error[s], best_error[s], _CMP_LT_OQ));
			if (!_mm256_movemask_ps(take))
				continue;
			best_is[s] = sel(take, iscale[s], best_is[s]);
			best_base[s] = sel(take, min[s], best_base[s]);
			best_error[s] = sel(take, cur_error[s], best_error[s]);
			scale[s] = sel(take, this_scale[s], scale[s]);
			min[s] = sel(take, this_min[s], min[s]);
			/* later trials start from the new minimum, as the scalar
			 * search's do */
			for (int i = 0; i < n; i++)
				xm[s][i] = _mm256_sub_ps(x[s * n + i], min[s]);
		}
	}
	_Pragma("GCC unroll 2")
	for (int s = 0; s < S; s++) {
		the_min[s] = _mm256_xor_ps(min[s], _mm256_set1_ps(-0.0f)); /* -min, signed zero kept */
		for (int i = 0; i < n; i++) {
			const __m256 l = level_u(_mm256_mul_ps(best_is[s], _mm256_sub_ps(x[s * n + i], best_base[s])), vnmax);
			L[s * n + i] = _mm256_andnot_si256(_mm256_castps_si256(flat[s]), _mm256_cvttps_epi32(l));
		}
		scale_out[s] = sel(flat[s], zero, scale[s]);
	}
}

void qp_avx2_make_qkx_quants_x8(int sets, int n, int nmax, const __m256 *x, const __m256 *w, __m256i *L,
                                __m256 *scale, __m256 *the_min, float rmin, float rdelta, int nstep, bool use_mad,
                                bool qkx3)
{
	if (sets == 2)
		qkx_sets(2, n, nmax, x, w, L, scale, the_min, rmin, rdelta, nstep, use_mad, qkx3);
	else
		qkx_sets(1, n, nmax, x, w, L, scale, the_min, rmin, rdelta, nstep, use_mad, qkx3);
}
