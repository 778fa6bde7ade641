/* The k-quant scale searches, eight groups at a time; see
 * kquants_search.h. Each function follows its scalar twin in
 * kernels/cpu/ref/kquants.c line by line; where the scalar one leaves a
 * loop early (a flat group, an error sum already past the best, a trial
 * whose levels equal the previous one's), the lanes run on and discard the
 * result, which the scalar one's comments show cannot change it. */
#include "kernels/cpu/avx2/kquants_search.h"

#include "kernels/cpu/avx2/kquants.h"
#include "kernels/cpu/ref/kquants.h"

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

__m256 qp_avx2_make_qx_quants_x8(int n, int nmax, const __m256 *x, const __m256 *w, __m256i *L)
{
	const __m256 zero = _mm256_setzero_ps();
	__m256 max, amax;
	abs_max(n, x, &max, &amax);
	const __m256 flat = _mm256_cmp_ps(amax, _mm256_set1_ps(QP_KQ_GROUP_MAX_EPS), _CMP_LT_OQ);
	if (_mm256_movemask_ps(flat) == 0xff) {
		for (int i = 0; i < n; i++)
			L[i] = _mm256_setzero_si256();
		return zero;
	}
	const __m256i lo = _mm256_set1_epi32(-nmax), hi = _mm256_set1_epi32(nmax - 1);
	__m256 wx[MAX_N];
	for (int i = 0; i < n; i++)
		wx[i] = _mm256_mul_ps(w[i], x[i]);

	__m256 iscale = _mm256_div_ps(_mm256_set1_ps((float)-nmax), max);
	__m256 sumlx = zero, suml2 = zero;
	for (int i = 0; i < n; i++) {
		const __m256i l = clamp(qp_avx2_nearest_int(_mm256_mul_ps(iscale, x[i])), lo, hi);
		L[i] = l;
		const __m256 lf = _mm256_cvtepi32_ps(l);
		sumlx = _mm256_add_ps(sumlx, _mm256_mul_ps(wx[i], lf));
		suml2 = _mm256_add_ps(suml2, _mm256_mul_ps(_mm256_mul_ps(w[i], lf), lf));
	}
	/* `suml2 ? ...`: NaN is true */
	__m256 scale = sel(_mm256_cmp_ps(suml2, zero, _CMP_NEQ_UQ), _mm256_div_ps(sumlx, suml2), zero);
	__m256 best = _mm256_mul_ps(scale, sumlx);
	for (int is = -9; is <= 9; is++) {
		if (is == 0)
			continue;
		iscale = _mm256_div_ps(_mm256_set1_ps(-(nmax + 0.1f * is)), max);
		__m256i Lt[MAX_N];
		sumlx = suml2 = zero;
		for (int i = 0; i < n; i++) {
			const __m256i l = clamp(qp_avx2_nearest_int(_mm256_mul_ps(iscale, x[i])), lo, hi);
			Lt[i] = l;
			const __m256 lf = _mm256_cvtepi32_ps(l);
			sumlx = _mm256_add_ps(sumlx, _mm256_mul_ps(wx[i], lf));
			suml2 = _mm256_add_ps(suml2, _mm256_mul_ps(_mm256_mul_ps(w[i], lf), lf));
		}
		const __m256 take = _mm256_and_ps(_mm256_cmp_ps(suml2, zero, _CMP_GT_OQ),
		                                  _mm256_cmp_ps(_mm256_mul_ps(sumlx, sumlx), _mm256_mul_ps(best, suml2), _CMP_GT_OQ));
		if (!_mm256_movemask_ps(take))
			continue;
		for (int i = 0; i < n; i++)
			L[i] = seli(take, Lt[i], L[i]);
		scale = sel(take, _mm256_div_ps(sumlx, suml2), scale);
		best = sel(take, _mm256_mul_ps(scale, sumlx), best);
	}
	/* levels as the scalar one stores them: l + nmax, or 0 for a flat group */
	const __m256i vnmax = _mm256_set1_epi32(nmax);
	for (int i = 0; i < n; i++)
		L[i] = seli(flat, _mm256_setzero_si256(), _mm256_add_epi32(L[i], vnmax));
	return sel(flat, zero, scale);
}

__m256 qp_avx2_make_q3_quants_x8(int n, int nmax, const __m256 *x, __m256i *L)
{
	const __m256 zero = _mm256_setzero_ps();
	__m256 max, amax;
	abs_max(n, x, &max, &amax);
	const __m256 flat = _mm256_cmp_ps(amax, _mm256_set1_ps(QP_KQ_GROUP_MAX_EPS), _CMP_LT_OQ);
	if (_mm256_movemask_ps(flat) == 0xff) {
		for (int i = 0; i < n; i++)
			L[i] = _mm256_setzero_si256();
		return zero;
	}
	const __m256i lo = _mm256_set1_epi32(-nmax), hi = _mm256_set1_epi32(nmax - 1);
	const __m256 iscale = _mm256_div_ps(_mm256_set1_ps((float)-nmax), max);
	__m256 w[MAX_N], wx[MAX_N], Lf[MAX_N];
	__m256 sumlx = zero, suml2 = zero;
	for (int i = 0; i < n; i++) {
		Lf[i] = _mm256_cvtepi32_ps(clamp(qp_avx2_nearest_int(_mm256_mul_ps(iscale, x[i])), lo, hi));
		w[i] = _mm256_mul_ps(x[i], x[i]);
		wx[i] = _mm256_mul_ps(w[i], x[i]);
		sumlx = _mm256_add_ps(sumlx, _mm256_mul_ps(wx[i], Lf[i]));
		suml2 = _mm256_add_ps(suml2, _mm256_mul_ps(_mm256_mul_ps(w[i], Lf[i]), Lf[i]));
	}
	/* A pass that changes no level of a lane leaves its state as it found
	 * it, so a later pass would change nothing either: running on until
	 * every lane is done, or 5 passes, gives each lane the scalar result. */
	for (int itry = 0; itry < 5; itry++) {
		__m256 changed = zero;
		for (int i = 0; i < n; i++) {
			__m256 slx = _mm256_sub_ps(sumlx, _mm256_mul_ps(wx[i], Lf[i]));
			const __m256 pos = _mm256_cmp_ps(slx, zero, _CMP_GT_OQ);
			__m256 sl2 = _mm256_sub_ps(suml2, _mm256_mul_ps(_mm256_mul_ps(w[i], Lf[i]), Lf[i]));
			const __m256 q = _mm256_div_ps(_mm256_mul_ps(x[i], sl2), slx);
			const __m256 new_l = _mm256_cvtepi32_ps(clamp(qp_avx2_nearest_int(q), lo, hi));
			const __m256 differs = _mm256_cmp_ps(new_l, Lf[i], _CMP_NEQ_OQ);
			slx = _mm256_add_ps(slx, _mm256_mul_ps(wx[i], new_l));
			sl2 = _mm256_add_ps(sl2, _mm256_mul_ps(_mm256_mul_ps(w[i], new_l), new_l));
			const __m256 better = _mm256_and_ps(
				_mm256_cmp_ps(sl2, zero, _CMP_GT_OQ),
				_mm256_cmp_ps(_mm256_mul_ps(_mm256_mul_ps(slx, slx), suml2),
				              _mm256_mul_ps(_mm256_mul_ps(sumlx, sumlx), sl2), _CMP_GT_OQ));
			const __m256 upd = _mm256_and_ps(_mm256_and_ps(pos, differs), better);
			Lf[i] = sel(upd, new_l, Lf[i]);
			sumlx = sel(upd, slx, sumlx);
			suml2 = sel(upd, sl2, suml2);
			changed = _mm256_or_ps(changed, upd);
		}
		if (!_mm256_movemask_ps(changed))
			break;
	}
	const __m256i vnmax = _mm256_set1_epi32(nmax);
	for (int i = 0; i < n; i++)
		L[i] = seli(flat, _mm256_setzero_si256(), _mm256_add_epi32(_mm256_cvttps_epi32(Lf[i]), vnmax));
	const __m256 scale = sel(_mm256_cmp_ps(suml2, zero, _CMP_GT_OQ), _mm256_div_ps(sumlx, suml2), zero);
	return sel(flat, zero, scale);
}

/* clamp(qp_avx2_nearest_int(v), 0, nmax) as a float */
static inline __m256 level_u(__m256 v, __m256i nmax)
{
	return _mm256_cvtepi32_ps(clamp(qp_avx2_nearest_int(v), _mm256_setzero_si256(), nmax));
}

/* weights[i] * |diff| or weights[i] * diff^2 */
static inline __m256 err_term(__m256 w, __m256 diff, bool use_mad)
{
	if (use_mad)
		return _mm256_mul_ps(w, _mm256_andnot_ps(_mm256_set1_ps(-0.0f), diff));
	return _mm256_mul_ps(w, _mm256_mul_ps(diff, diff));
}

__m256 qp_avx2_make_qkx_quants_x8(int n, int nmax, const __m256 *x, const __m256 *w, __m256i *L, __m256 *the_min,
                                  float rmin, float rdelta, int nstep, bool use_mad, bool qkx3)
{
	const __m256 zero = _mm256_setzero_ps();
	const __m256i vnmax = _mm256_set1_epi32(nmax);
	__m256 min = x[0], max = x[0];
	__m256 sum_w = w[0];
	__m256 sum_x = _mm256_mul_ps(sum_w, x[0]);
	for (int i = 1; i < n; i++) {
		min = sel(_mm256_cmp_ps(x[i], min, _CMP_LT_OQ), x[i], min);
		max = sel(_mm256_cmp_ps(x[i], max, _CMP_GT_OQ), x[i], max);
		sum_w = _mm256_add_ps(sum_w, w[i]);
		sum_x = _mm256_add_ps(sum_x, _mm256_mul_ps(w[i], x[i]));
	}
	min = sel(_mm256_cmp_ps(min, zero, _CMP_GT_OQ), zero, min);
	/* make_qkx2_quants returns early on max == min, make_qkx3_quants on
	 * max <= min: levels 0, scale 0, the minimum as clamped */
	const __m256 flat = qkx3 ? _mm256_cmp_ps(max, min, _CMP_LE_OQ) : _mm256_cmp_ps(max, min, _CMP_EQ_OQ);

	__m256 iscale = _mm256_div_ps(_mm256_set1_ps((float)nmax), _mm256_sub_ps(max, min));
	__m256 scale = _mm256_div_ps(_mm256_set1_ps(1.0f), iscale);
	__m256 best_L[MAX_N];
	__m256 best_error = zero;
	for (int i = 0; i < n; i++) {
		best_L[i] = level_u(_mm256_mul_ps(iscale, _mm256_sub_ps(x[i], min)), vnmax);
		const __m256 diff = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(scale, best_L[i]), min), x[i]);
		best_error = _mm256_add_ps(best_error, err_term(w[i], diff, use_mad));
	}
	for (int is = 0; nstep >= 1 && is <= nstep; is++) {
		const float num = rmin + rdelta * is + nmax;
		iscale = _mm256_div_ps(_mm256_set1_ps(num), _mm256_sub_ps(max, min));
		__m256 laux[MAX_N];
		__m256 sum_l = zero, sum_l2 = zero, sum_xl = zero;
		for (int i = 0; i < n; i++) {
			const __m256 l = level_u(_mm256_mul_ps(iscale, _mm256_sub_ps(x[i], min)), vnmax);
			laux[i] = l;
			const __m256 wl = _mm256_mul_ps(w[i], l);
			sum_l = _mm256_add_ps(sum_l, wl);
			sum_l2 = _mm256_add_ps(sum_l2, _mm256_mul_ps(wl, l));
			sum_xl = _mm256_add_ps(sum_xl, _mm256_mul_ps(wl, x[i]));
		}
		const __m256 D = _mm256_sub_ps(_mm256_mul_ps(sum_w, sum_l2), _mm256_mul_ps(sum_l, sum_l));
		const __m256 positive = _mm256_andnot_ps(flat, _mm256_cmp_ps(D, zero, _CMP_GT_OQ));
		if (!_mm256_movemask_ps(positive))
			continue;
		__m256 this_scale = _mm256_div_ps(_mm256_sub_ps(_mm256_mul_ps(sum_w, sum_xl), _mm256_mul_ps(sum_x, sum_l)), D);
		__m256 this_min = _mm256_div_ps(_mm256_sub_ps(_mm256_mul_ps(sum_l2, sum_x), _mm256_mul_ps(sum_l, sum_xl)), D);
		const __m256 pos_min = _mm256_cmp_ps(this_min, zero, _CMP_GT_OQ);
		this_scale = sel(pos_min, _mm256_div_ps(sum_xl, sum_l2), this_scale);
		this_min = sel(pos_min, zero, this_min);
		__m256 cur_error = zero;
		for (int i = 0; i < n; i++) {
			const __m256 diff = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(this_scale, laux[i]), this_min), x[i]);
			cur_error = _mm256_add_ps(cur_error, err_term(w[i], diff, use_mad));
		}
		const __m256 take = _mm256_and_ps(positive, _mm256_cmp_ps(cur_error, best_error, _CMP_LT_OQ));
		if (!_mm256_movemask_ps(take))
			continue;
		for (int i = 0; i < n; i++)
			best_L[i] = sel(take, laux[i], best_L[i]);
		best_error = sel(take, cur_error, best_error);
		scale = sel(take, this_scale, scale);
		min = sel(take, this_min, min);
	}
	*the_min = _mm256_xor_ps(min, _mm256_set1_ps(-0.0f)); /* -min, signed zero kept */
	for (int i = 0; i < n; i++)
		L[i] = _mm256_andnot_si256(_mm256_castps_si256(flat), _mm256_cvttps_epi32(best_L[i]));
	return sel(flat, zero, scale);
}
