/* The k-quant scale searches; see kquants.h. */
#include "kernels/cpu/ref/kquants.h"

#include <math.h>

#define MAX_N 32 /* largest group: q4_K/q5_K sub-blocks */

static inline int clampi(int v, int lo, int hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

float qp_kq_make_qx_quants(int n, int nmax, const float *x, int8_t *L, const float *qw)
{
	float max = 0;
	float amax = 0;
	for (int i = 0; i < n; i++) {
		const float ax = fabsf(x[i]);
		if (ax > amax) {
			amax = ax;
			max = x[i];
		}
	}
	if (amax < QP_KQ_GROUP_MAX_EPS) {
		memset(L, 0, (size_t)n);
		return 0.f;
	}
	/* the weights do not depend on the trial scale: compute them once */
	float w[MAX_N];
	for (int i = 0; i < n; i++)
		w[i] = qw ? qw[i] : x[i] * x[i];

	float iscale = -nmax / max;
	float sumlx = 0;
	float suml2 = 0;
	for (int i = 0; i < n; i++) {
		const int l = clampi(qp_kq_nearest_int(iscale * x[i]), -nmax, nmax - 1);
		L[i] = (int8_t)(l + nmax);
		sumlx += w[i] * x[i] * l;
		suml2 += w[i] * l * l;
	}
	float scale = suml2 ? sumlx / suml2 : 0.0f;
	float best = scale * sumlx;
	for (int is = -9; is <= 9; is++) {
		if (is == 0)
			continue;
		iscale = -(nmax + 0.1f * is) / max;
		int8_t Lt[MAX_N];
		sumlx = suml2 = 0;
		for (int i = 0; i < n; i++) {
			const int l = clampi(qp_kq_nearest_int(iscale * x[i]), -nmax, nmax - 1);
			Lt[i] = (int8_t)l;
			sumlx += w[i] * x[i] * l;
			suml2 += w[i] * l * l;
		}
		if (suml2 > 0 && sumlx * sumlx > best * suml2) {
			/* llama.cpp rounds again here; the levels are the ones
			 * just computed */
			for (int i = 0; i < n; i++)
				L[i] = (int8_t)(nmax + Lt[i]);
			scale = sumlx / suml2;
			best = scale * sumlx;
		}
	}
	return scale;
}

float qp_kq_make_q3_quants(int n, int nmax, const float *x, int8_t *L)
{
	float max = 0;
	float amax = 0;
	for (int i = 0; i < n; i++) {
		const float ax = fabsf(x[i]);
		if (ax > amax) {
			amax = ax;
			max = x[i];
		}
	}
	if (amax < QP_KQ_GROUP_MAX_EPS) {
		memset(L, 0, (size_t)n);
		return 0.f;
	}
	const float iscale = -nmax / max;
	float sumlx = 0;
	float suml2 = 0;
	float w[MAX_N];
	for (int i = 0; i < n; i++) {
		const int l = clampi(qp_kq_nearest_int(iscale * x[i]), -nmax, nmax - 1);
		L[i] = (int8_t)l;
		w[i] = x[i] * x[i];
		sumlx += w[i] * x[i] * l;
		suml2 += w[i] * l * l;
	}
	for (int itry = 0; itry < 5; itry++) {
		int n_changed = 0;
		for (int i = 0; i < n; i++) {
			float slx = sumlx - w[i] * x[i] * L[i];
			if (slx > 0) {
				float sl2 = suml2 - w[i] * L[i] * L[i];
				const int new_l = clampi(qp_kq_nearest_int(x[i] * sl2 / slx), -nmax, nmax - 1);
				if (new_l != L[i]) {
					slx += w[i] * x[i] * new_l;
					sl2 += w[i] * new_l * new_l;
					if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
						L[i] = (int8_t)new_l;
						sumlx = slx;
						suml2 = sl2;
						n_changed++;
					}
				}
			}
		}
		if (!n_changed)
			break;
	}
	for (int i = 0; i < n; i++)
		L[i] = (int8_t)(L[i] + nmax);
	return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/* The search shared by make_qkx2_quants and make_qkx3_quants once min and
 * max are known and max > min.
 *
 * Two shortcuts, neither of which can change the result:
 *  - a trial scale whose levels equal the previous trial's has the same
 *    sums, the same fit and the same error, so it cannot beat the best,
 *    which is at most that error;
 *  - with non-negative weights every term of the error sum is >= 0, and a
 *    float sum of non-negative terms never decreases, so once the partial
 *    sum reaches the best error the trial is lost (NaN stays NaN, and
 *    loses too). */
static float qkx_search(int n, int nmax, const float *x, const float *weights, uint8_t *L, float *the_min,
                        float min, float max, float sum_w, float sum_x, float rmin, float rdelta, int nstep,
                        bool use_mad)
{
	float xm[MAX_N];
	bool nonneg = true;
	for (int i = 0; i < n; i++) {
		xm[i] = x[i] - min;
		nonneg &= weights[i] >= 0;
	}
	float iscale = nmax / (max - min);
	float scale = 1 / iscale;
	float best_error = 0;
	for (int i = 0; i < n; i++) {
		const int l = qp_kq_nearest_int(iscale * xm[i]);
		L[i] = (uint8_t)clampi(l, 0, nmax);
		float diff = scale * L[i] + min - x[i];
		diff = use_mad ? fabsf(diff) : diff * diff;
		best_error += weights[i] * diff;
	}
	if (nstep < 1) {
		*the_min = -min;
		return scale;
	}
	uint8_t laux[2][MAX_N] = {{0}};
	int cur = 0;
	for (int is = 0; is <= nstep; is++) {
		iscale = (rmin + rdelta * is + nmax) / (max - min);
		uint8_t *Laux = laux[cur];
		const uint8_t *prev = laux[cur ^ 1];
		bool same = is > 0;
		float sum_l = 0, sum_l2 = 0, sum_xl = 0;
		for (int i = 0; i < n; i++) {
			const int l = clampi(qp_kq_nearest_int(iscale * xm[i]), 0, nmax);
			Laux[i] = (uint8_t)l;
			same &= prev[i] == l;
		}
		if (same)
			continue;
		cur ^= 1;
		for (int i = 0; i < n; i++) {
			const int l = Laux[i];
			const float w = weights[i];
			sum_l += w * l;
			sum_l2 += w * l * l;
			sum_xl += w * l * x[i];
		}
		const float D = sum_w * sum_l2 - sum_l * sum_l;
		if (!(D > 0))
			continue;
		float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
		float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
		if (this_min > 0) {
			this_min = 0;
			this_scale = sum_xl / sum_l2;
		}
		float cur_error = 0;
		int i = 0;
		if (use_mad) {
			for (; i < n; i++) {
				const float diff = this_scale * Laux[i] + this_min - x[i];
				cur_error += weights[i] * fabsf(diff);
				if (nonneg && cur_error >= best_error)
					break;
			}
		} else {
			for (; i < n; i++) {
				const float diff = this_scale * Laux[i] + this_min - x[i];
				cur_error += weights[i] * (diff * diff);
				if (nonneg && cur_error >= best_error)
					break;
			}
		}
		if (i == n && cur_error < best_error) {
			memcpy(L, Laux, (size_t)n);
			best_error = cur_error;
			scale = this_scale;
			/* llama.cpp's later trials start from this minimum: both
			 * x - min and max - min move with it */
			min = this_min;
			for (int k = 0; k < n; k++)
				xm[k] = x[k] - min;
		}
	}
	*the_min = -min;
	return scale;
}

float qp_kq_make_qkx2_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L,
                             float *the_min, float rmin, float rdelta, int nstep, bool use_mad)
{
	float min = x[0];
	float max = x[0];
	float sum_w = weights[0];
	float sum_x = sum_w * x[0];
	for (int i = 1; i < n; i++) {
		if (x[i] < min)
			min = x[i];
		if (x[i] > max)
			max = x[i];
		const float w = weights[i];
		sum_w += w;
		sum_x += w * x[i];
	}
	if (min > 0)
		min = 0;
	if (max == min) {
		memset(L, 0, (size_t)n);
		*the_min = -min;
		return 0.f;
	}
	return qkx_search(n, nmax, x, weights, L, the_min, min, max, sum_w, sum_x, rmin, rdelta, nstep, use_mad);
}

float qp_kq_make_qkx3_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L,
                             float *the_min, float rmin, float rdelta, int nstep)
{
	float min = x[0];
	float max = x[0];
	float sum_w = weights[0];
	float sum_x = sum_w * x[0];
	for (int i = 1; i < n; i++) {
		if (x[i] < min)
			min = x[i];
		if (x[i] > max)
			max = x[i];
		const float w = weights[i];
		sum_w += w;
		sum_x += w * x[i];
	}
	if (min > 0)
		min = 0;
	if (max <= min) {
		memset(L, 0, (size_t)n);
		*the_min = -min;
		return 0.f;
	}
	return qkx_search(n, nmax, x, weights, L, the_min, min, max, sum_w, sum_x, rmin, rdelta, nstep, false);
}

float qp_kq_make_qp_quants(int n, int nmax, const float *x, uint8_t *L, const float *quant_weights)
{
	float max = 0;
	for (int i = 0; i < n; i++)
		max = max > x[i] ? max : x[i];
	if (max < QP_KQ_GROUP_MAX_EPS) {
		memset(L, 0, (size_t)n);
		return 0.f;
	}
	float iscale = nmax / max;
	for (int i = 0; i < n; i++)
		L[i] = (uint8_t)qp_kq_nearest_int(iscale * x[i]);
	const float scale = 1 / iscale;
	float best_mse = 0;
	for (int i = 0; i < n; i++) {
		const float diff = x[i] - scale * L[i];
		best_mse += quant_weights[i] * diff * diff;
	}
	for (int is = -4; is <= 4; is++) {
		if (is == 0)
			continue;
		const float iscale_is = (0.1f * is + nmax) / max;
		const float scale_is = 1 / iscale_is;
		float mse = 0;
		for (int i = 0; i < n; i++) {
			int l = qp_kq_nearest_int(iscale_is * x[i]);
			l = l < nmax ? l : nmax;
			const float diff = x[i] - scale_is * l;
			mse += quant_weights[i] * diff * diff;
		}
		if (mse < best_mse) {
			best_mse = mse;
			iscale = iscale_is;
		}
	}
	float sumlx = 0;
	float suml2 = 0;
	for (int i = 0; i < n; i++) {
		int l = qp_kq_nearest_int(iscale * x[i]);
		l = l < nmax ? l : nmax;
		L[i] = (uint8_t)l;
		const float w = quant_weights[i];
		sumlx += w * x[i] * l;
		suml2 += w * l * l;
	}
	for (int itry = 0; itry < 5; itry++) {
		int n_changed = 0;
		for (int i = 0; i < n; i++) {
			const float w = quant_weights[i];
			float slx = sumlx - w * x[i] * L[i];
			float sl2 = suml2 - w * L[i] * L[i];
			if (slx > 0 && sl2 > 0) {
				int new_l = qp_kq_nearest_int(x[i] * sl2 / slx);
				new_l = new_l < nmax ? new_l : nmax;
				if (new_l != L[i]) {
					slx += w * x[i] * new_l;
					sl2 += w * new_l * new_l;
					if (slx * slx * suml2 > sumlx * sumlx * sl2) {
						L[i] = (uint8_t)new_l;
						sumlx = slx;
						suml2 = sl2;
						n_changed++;
					}
				}
			}
		}
		if (!n_changed)
			break;
	}
	return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}
