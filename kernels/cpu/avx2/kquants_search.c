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

/* the scalar search's level of x, clamp(nearest_int(iscale * (x - min)),
 * 0, nmax), as a float, through the integers: right for every value,
 * garbage included */
static inline __m256 level_u(__m256 iscale, __m256 x, __m256 min, __m256i nmax)
{
	const __m256 v = _mm256_mul_ps(iscale, _mm256_sub_ps(x, min));
	return _mm256_cvtepi32_ps(clamp(qp_avx2_nearest_int(v), _mm256_setzero_si256(), nmax));
}

/* weights[i] * |diff| or weights[i] * diff^2 */
static inline __m256 err_term(__m256 w, __m256 diff, bool use_mad)
{
	if (use_mad)
		return _mm256_mul_ps(w, _mm256_andnot_ps(_mm256_set1_ps(-0.0f), diff));
	return _mm256_mul_ps(w, _mm256_mul_ps(diff, diff));
}

/* make_qkx2/qkx3_quants for two sets of eight groups.
 *
 * A trial is two chains of dependent adds, one element after the other:
 * the sums of its levels, then the error of the scale and minimum fitted
 * to them; and the next trial starts from the minimum the comparison of
 * that error leaves. One set's trials are a single chain, so the sets run
 * half a trial apart: each pass over the elements makes one set's levels
 * and sums beside the other set's error, two independent chains that
 * keep the adders busy where running the sets side by side, both summing
 * and then both measuring, left them waiting on each other's ends.
 *
 * The lanes keep the best trial's iscale and the minimum its x - min was
 * taken from, not its levels: levels are a function of those two, made
 * once at the end. */
struct qkx_set {
	const __m256 *x, *w;
	__m256 min, max, lo, sum_w, sum_x, flat;
	__m256 scale, best_error, best_is, best_base; /* the best trial so far */
	__m256 iscale;                                /* this trial's */
	__m256 sum_l, sum_l2, sum_xl;                 /* its sums */
	__m256 positive, this_scale, this_min;        /* its fit */
	int mode;                                     /* how its levels are made: see qkx_start */
	__m256 l[MAX_N];                              /* its levels */
};

/* the scalar search up to its first trial: min, max and the weighted sums,
 * and the error of the levels of iscale = nmax / (max - min) */
static inline __attribute__((always_inline)) void qkx_init(const int n, const int nmax, const bool use_mad,
                                                           const bool qkx3, const __m256 *x, const __m256 *w,
                                                           struct qkx_set *S, bool *finite)
{
	const __m256 zero = _mm256_setzero_ps();
	__m256 nan = _mm256_cmp_ps(x[0], x[0], _CMP_UNORD_Q);
	__m256 min = x[0], max = x[0], sum_w = w[0], sum_x = _mm256_mul_ps(w[0], x[0]);
	for (int i = 1; i < n; i++) {
		min = sel(_mm256_cmp_ps(x[i], min, _CMP_LT_OQ), x[i], min);
		max = sel(_mm256_cmp_ps(x[i], max, _CMP_GT_OQ), x[i], max);
		sum_w = _mm256_add_ps(sum_w, w[i]);
		sum_x = _mm256_add_ps(sum_x, _mm256_mul_ps(w[i], x[i]));
		nan = _mm256_or_ps(nan, _mm256_cmp_ps(x[i], x[i], _CMP_UNORD_Q));
	}
	*finite &= !_mm256_movemask_ps(nan);
	S->x = x;
	S->w = w;
	S->lo = min;
	min = sel(_mm256_cmp_ps(min, zero, _CMP_GT_OQ), zero, min);
	/* make_qkx2_quants returns early on max == min, make_qkx3_quants on
	 * max <= min: levels 0, scale 0, the minimum as clamped */
	S->flat = qkx3 ? _mm256_cmp_ps(max, min, _CMP_LE_OQ) : _mm256_cmp_ps(max, min, _CMP_EQ_OQ);
	const __m256 iscale = _mm256_div_ps(_mm256_set1_ps((float)nmax), _mm256_sub_ps(max, min));
	S->scale = _mm256_div_ps(_mm256_set1_ps(1.0f), iscale);
	const __m256i vnmax = _mm256_set1_epi32(nmax);
	__m256 best = zero;
	for (int i = 0; i < n; i++) {
		const __m256 l = level_u(iscale, x[i], min, vnmax);
		const __m256 diff = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(S->scale, l), min), x[i]);
		best = _mm256_add_ps(best, err_term(w[i], diff, use_mad));
	}
	S->best_error = best;
	S->best_is = iscale;
	S->best_base = min;
	S->min = min;
	S->max = max;
	S->sum_w = sum_w;
	S->sum_x = sum_x;
}

/* How trial is makes its levels (S->mode):
 *  - QKX_INT: level_u, through the integers, right for every value;
 *  - otherwise vroundps of v = iscale * (x - min), which rounds to nearest
 *    even as the adder of qp_kq_nearest_int does wherever |v| < 2^22; the
 *    clamps as integer min and max of the floats' bits (a non-negative
 *    float orders as its bits do, a negative one below them all), which
 *    leave the adders' ports to the sums; and only the clamps that can
 *    bind: rounding is monotonic, so every v of a lane lies between those
 *    of its smallest and largest x (lo, max), and so does its level.
 * Flat lanes (v = NaN) are discarded, whatever their levels. */
enum { QKX_INT = -1, QKX_CLAMP_LO = 1, QKX_CLAMP_HI = 2 };

static inline __attribute__((always_inline)) void qkx_start(const int nmax, const float rmin, const float rdelta,
                                                            int is, bool finite, struct qkx_set *S)
{
	const __m256 sign = _mm256_set1_ps(-0.0f);
	const float num = rmin + rdelta * is + nmax;
	const __m256 range = _mm256_sub_ps(S->max, S->min);
	S->iscale = _mm256_div_ps(_mm256_set1_ps(num), range);
	const __m256 va = _mm256_mul_ps(S->iscale, _mm256_sub_ps(S->lo, S->min));
	const __m256 vb = _mm256_mul_ps(S->iscale, range);
	const __m256 lim = _mm256_set1_ps(4194304.0f);
	const __m256 small = _mm256_and_ps(_mm256_cmp_ps(_mm256_andnot_ps(sign, va), lim, _CMP_LT_OQ),
	                                   _mm256_cmp_ps(_mm256_andnot_ps(sign, vb), lim, _CMP_LT_OQ));
	if (!finite || _mm256_movemask_ps(_mm256_or_ps(small, S->flat)) != 0xff) {
		S->mode = QKX_INT;
		return;
	}
	const __m256 ra = _mm256_round_ps(va, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
	const __m256 rb = _mm256_round_ps(vb, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
	const __m256 lo_binds = _mm256_cmp_ps(_mm256_min_ps(ra, rb), _mm256_setzero_ps(), _CMP_LT_OQ);
	const __m256 hi_binds = _mm256_cmp_ps(_mm256_max_ps(ra, rb), _mm256_set1_ps((float)nmax), _CMP_GT_OQ);
	S->mode = (_mm256_movemask_ps(_mm256_andnot_ps(S->flat, lo_binds)) ? QKX_CLAMP_LO : 0) |
	          (_mm256_movemask_ps(_mm256_andnot_ps(S->flat, hi_binds)) ? QKX_CLAMP_HI : 0);
}

/* the scale and minimum fitted to the levels just summed */
static inline __attribute__((always_inline)) void qkx_fit(struct qkx_set *S)
{
	const __m256 zero = _mm256_setzero_ps();
	const __m256 D = _mm256_sub_ps(_mm256_mul_ps(S->sum_w, S->sum_l2), _mm256_mul_ps(S->sum_l, S->sum_l));
	S->positive = _mm256_andnot_ps(S->flat, _mm256_cmp_ps(D, zero, _CMP_GT_OQ));
	const __m256 scale =
		_mm256_div_ps(_mm256_sub_ps(_mm256_mul_ps(S->sum_w, S->sum_xl), _mm256_mul_ps(S->sum_x, S->sum_l)), D);
	const __m256 min =
		_mm256_div_ps(_mm256_sub_ps(_mm256_mul_ps(S->sum_l2, S->sum_x), _mm256_mul_ps(S->sum_l, S->sum_xl)), D);
	const __m256 pos_min = _mm256_cmp_ps(min, zero, _CMP_GT_OQ);
	S->this_scale = sel(pos_min, _mm256_div_ps(S->sum_xl, S->sum_l2), scale);
	S->this_min = sel(pos_min, zero, min);
}

/* the trial's error against the best: later trials start from the
 * minimum of the one taken, as the scalar search's do */
static inline __attribute__((always_inline)) void qkx_take(struct qkx_set *S, __m256 cur_error)
{
	const __m256 take = _mm256_and_ps(S->positive, _mm256_cmp_ps(cur_error, S->best_error, _CMP_LT_OQ));
	S->best_is = sel(take, S->iscale, S->best_is);
	S->best_base = sel(take, S->min, S->best_base);
	S->best_error = sel(take, cur_error, S->best_error);
	S->scale = sel(take, S->this_scale, S->scale);
	S->min = sel(take, S->this_min, S->min);
}

/* One pass over the elements: when LEV, the levels and sums of A's trial
 * (its levels made as MODE says); when ERR, the error of B's fitted
 * trial, returned */
static inline __attribute__((always_inline)) __m256 qkx_pass(const int n, const int nmax, const bool use_mad,
                                                             const bool LEV, const int MODE, const bool ERR,
                                                             struct qkx_set *A, const struct qkx_set *B)
{
	const __m256 zero = _mm256_setzero_ps();
	const __m256 minus_one = _mm256_set1_ps(-1.0f);
	const __m256i bits_nmax = _mm256_castps_si256(_mm256_set1_ps((float)nmax));
	const __m256i vnmax = _mm256_set1_epi32(nmax);
	__m256 sum_l = zero, sum_l2 = zero, sum_xl = zero, err = zero;
	const __m256 min = LEV ? A->min : zero, iscale = LEV ? A->iscale : zero;
	const __m256 scale = ERR ? B->this_scale : zero, bmin = ERR ? B->this_min : zero;
	for (int i = 0; i < n; i++) {
		if (LEV) {
			const __m256 x = A->x[i];
			__m256 l;
			if (MODE == QKX_INT) {
				l = level_u(iscale, x, min, vnmax);
			} else {
				/* x - min, rounded once, on the multipliers' ports */
				const __m256 xm = _mm256_fmadd_ps(min, minus_one, x);
				__m256i b = _mm256_castps_si256(_mm256_round_ps(
					_mm256_mul_ps(iscale, xm), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
				if (MODE & QKX_CLAMP_HI)
					b = _mm256_min_epi32(b, bits_nmax);
				if (MODE & QKX_CLAMP_LO)
					b = _mm256_max_epi32(b, _mm256_setzero_si256());
				l = _mm256_castsi256_ps(b);
			}
			A->l[i] = l;
			const __m256 wl = _mm256_mul_ps(A->w[i], l);
			sum_l = _mm256_add_ps(sum_l, wl);
			sum_l2 = _mm256_add_ps(sum_l2, _mm256_mul_ps(wl, l));
			sum_xl = _mm256_add_ps(sum_xl, _mm256_mul_ps(wl, x));
		}
		if (ERR) {
			const __m256 diff = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(scale, B->l[i]), bmin), B->x[i]);
			err = _mm256_add_ps(err, err_term(B->w[i], diff, use_mad));
		}
	}
	if (LEV) {
		A->sum_l = sum_l;
		A->sum_l2 = sum_l2;
		A->sum_xl = sum_xl;
	}
	return err;
}

/* qkx_pass at A's mode, then B's outcome */
static inline __attribute__((always_inline)) void qkx_step(const int n, const int nmax, const bool use_mad,
                                                           const bool LEV, const bool ERR, struct qkx_set *A,
                                                           struct qkx_set *B)
{
	__m256 err;
	switch (LEV ? A->mode : 0) {
	case 0:
		err = qkx_pass(n, nmax, use_mad, LEV, 0, ERR, A, B);
		break;
	case QKX_CLAMP_HI:
		err = qkx_pass(n, nmax, use_mad, LEV, QKX_CLAMP_HI, ERR, A, B);
		break;
	case QKX_CLAMP_LO: /* rare alone: it shares the instance with both */
	case QKX_CLAMP_LO | QKX_CLAMP_HI:
		err = qkx_pass(n, nmax, use_mad, LEV, QKX_CLAMP_LO | QKX_CLAMP_HI, ERR, A, B);
		break;
	default:
		err = qkx_pass(n, nmax, use_mad, LEV, QKX_INT, ERR, A, B);
		break;
	}
	if (ERR)
		qkx_take(B, err);
}

/* sets 0 and 1 of x, w, L, scale_out and the_min; set 1 half a trial
 * behind set 0 */
static inline __attribute__((always_inline)) void
qkx_sets(const int n, const int nmax, const float rmin, const float rdelta, const int nstep, const bool use_mad,
         const bool qkx3, const __m256 *x, const __m256 *w, __m256i *L, __m256 *scale_out, __m256 *the_min)
{
	struct qkx_set S[2];
	bool finite = true;
	qkx_init(n, nmax, use_mad, qkx3, x, w, &S[0], &finite);
	qkx_init(n, nmax, use_mad, qkx3, x + n, w + n, &S[1], &finite);
	if (nstep >= 1) {
		struct qkx_set *A = &S[0], *B = &S[1];
		qkx_start(nmax, rmin, rdelta, 0, finite, A);
		qkx_step(n, nmax, use_mad, true, false, A, B);
		for (int is = 0; is <= nstep; is++) {
			qkx_fit(A);
			qkx_start(nmax, rmin, rdelta, is, finite, B);
			qkx_step(n, nmax, use_mad, true, true, B, A);
			qkx_fit(B);
			if (is < nstep) {
				qkx_start(nmax, rmin, rdelta, is + 1, finite, A);
				qkx_step(n, nmax, use_mad, true, true, A, B);
			} else {
				qkx_step(n, nmax, use_mad, false, true, A, B);
			}
		}
	}
	const __m256i vnmax = _mm256_set1_epi32(nmax);
	for (int s = 0; s < 2; s++) {
		the_min[s] = _mm256_xor_ps(S[s].min, _mm256_set1_ps(-0.0f)); /* -min, signed zero kept */
		for (int i = 0; i < n; i++) {
			const __m256 l = level_u(S[s].best_is, x[s * n + i], S[s].best_base, vnmax);
			L[s * n + i] = _mm256_andnot_si256(_mm256_castps_si256(S[s].flat), _mm256_cvttps_epi32(l));
		}
		scale_out[s] = sel(S[s].flat, _mm256_setzero_ps(), S[s].scale);
	}
}

/* The callers' parameters, each search a function of its own so that its
 * constants fold; anything else runs with them as variables */
#define QKX_SEARCHES(X)                                     \
	X(q4_k, 32, 15, -1.0f, 0.1f, 20, false, false)      \
	X(q5_k, 32, 31, -0.5f, 0.1f, 15, false, false)      \
	X(q4_k_imat, 32, 15, -0.9f, 0.05f, 36, false, true) \
	X(q5_k_imat, 32, 31, -0.9f, 0.05f, 36, false, true) \
	X(q2_k, 16, 3, -0.5f, 0.1f, 15, true, false)        \
	X(q2_k_imat, 16, 3, -0.9f, 0.05f, 36, false, true)

#define QKX_DEFINE(name, n, nmax, rmin, rdelta, nstep, use_mad, qkx3)                                        \
	static __attribute__((noinline)) void qkx_##name(const __m256 *x, const __m256 *w, __m256i *L,           \
	                                                 __m256 *scale, __m256 *the_min)                         \
	{                                                                                                        \
		qkx_sets(n, nmax, rmin, rdelta, nstep, use_mad, qkx3, x, w, L, scale, the_min);                  \
	}
QKX_SEARCHES(QKX_DEFINE)

static __attribute__((noinline)) void qkx_any(int n, int nmax, float rmin, float rdelta, int nstep, bool use_mad,
                                              bool qkx3, const __m256 *x, const __m256 *w, __m256i *L,
                                              __m256 *scale, __m256 *the_min)
{
	if (use_mad)
		qkx_sets(n, nmax, rmin, rdelta, nstep, true, false, x, w, L, scale, the_min);
	else if (qkx3)
		qkx_sets(n, nmax, rmin, rdelta, nstep, false, true, x, w, L, scale, the_min);
	else
		qkx_sets(n, nmax, rmin, rdelta, nstep, false, false, x, w, L, scale, the_min);
}

void qp_avx2_make_qkx_quants_x8(int sets, int n, int nmax, const __m256 *x, const __m256 *w, __m256i *L,
                                __m256 *scale, __m256 *the_min, float rmin, float rdelta, int nstep, bool use_mad,
                                bool qkx3)
{
	if (sets == 1) {
		/* one set searched beside a copy of itself, the copy's
		 * outcome dropped: a row's odd last block, rarely worth a
		 * search of its own */
		__m256 xx[2 * MAX_N] = {0}, ww[2 * MAX_N] = {0}, sc[2], mn[2];
		__m256i LL[2 * MAX_N];
		for (int i = 0; i < n; i++) {
			xx[i] = xx[n + i] = x[i];
			ww[i] = ww[n + i] = w[i];
		}
		qp_avx2_make_qkx_quants_x8(2, n, nmax, xx, ww, LL, sc, mn, rmin, rdelta, nstep, use_mad, qkx3);
		for (int i = 0; i < n; i++)
			L[i] = LL[i];
		scale[0] = sc[0];
		the_min[0] = mn[0];
		return;
	}
#define QKX_CALL(name, n_, nmax_, rmin_, rdelta_, nstep_, use_mad_, qkx3_)                                   \
	if (n == n_ && nmax == nmax_ && rmin == rmin_ && rdelta == rdelta_ && nstep == nstep_ &&               \
	    use_mad == use_mad_ && qkx3 == qkx3_) {                                                          \
		qkx_##name(x, w, L, scale, the_min);                                                             \
		return;                                                                                          \
	}
	QKX_SEARCHES(QKX_CALL)
#undef QKX_CALL
	qkx_any(n, nmax, rmin, rdelta, nstep, use_mad, qkx3, x, w, L, scale, the_min);
}
