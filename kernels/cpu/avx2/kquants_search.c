/* Q4_K and Q5_K quantize: the reference's make_qkx2_quants run for the
 * eight sub-blocks of a super-block at once, one sub-block per lane.
 *
 * Every lane does exactly the float operations the scalar search does for
 * its sub-block, in the same order (multiply, then add: no FMA; sums
 * element by element), and the scalar search's branches become per-lane
 * selects that take the same side: comparisons are ordered, so NaN takes
 * the side `x < y` false takes in C. The result is the reference's bits;
 * test_kernels holds it to that on every row kind, and the conformance
 * test to llama.cpp. The sub-block fits then go through the reference's
 * own second half (qp_kq_q4_k_from_fits). */
#include "kernels/blocks.h"
#include "kernels/cpu/avx2/avx2.h"
#include "kernels/cpu/ref/kquants.h"

#include <immintrin.h>
#include <math.h>

static inline __m256 sel(__m256 mask, __m256 yes, __m256 no)
{
	return _mm256_blendv_ps(no, yes, mask);
}

/* clamp(nearest_int(v), 0, nmax) as a float, nearest_int through the
 * float adder as the reference does */
static inline __m256 level(__m256 v, __m256i nmax)
{
	const __m256 s = _mm256_add_ps(v, _mm256_set1_ps(12582912.0f));
	__m256i l = _mm256_sub_epi32(_mm256_and_si256(_mm256_castps_si256(s), _mm256_set1_epi32(0x007fffff)),
	                             _mm256_set1_epi32(0x00400000));
	l = _mm256_max_epi32(_mm256_setzero_si256(), _mm256_min_epi32(nmax, l));
	return _mm256_cvtepi32_ps(l);
}

/* make_qkx2_quants(32, nmax, ..., use_mad = false) for 8 sub-blocks:
 * x[i] and w[i] hold element i of each; scale_out, min_out (the_min) and
 * L (levels, sub-block j at L + 32 j) as the scalar one leaves them */
static void qkx2_x8(const __m256 x[32], const __m256 w[32], int nmax, float rmin, float rdelta, int nstep,
                    float scale_out[8], float min_out[8], uint8_t *L)
{
	const __m256 zero = _mm256_setzero_ps();
	const __m256i vnmax = _mm256_set1_epi32(nmax);
	__m256 min = x[0], max = x[0];
	__m256 sum_w = w[0];
	__m256 sum_x = _mm256_mul_ps(sum_w, x[0]);
	for (int i = 1; i < 32; i++) {
		min = sel(_mm256_cmp_ps(x[i], min, _CMP_LT_OQ), x[i], min);
		max = sel(_mm256_cmp_ps(x[i], max, _CMP_GT_OQ), x[i], max);
		sum_w = _mm256_add_ps(sum_w, w[i]);
		sum_x = _mm256_add_ps(sum_x, _mm256_mul_ps(w[i], x[i]));
	}
	min = sel(_mm256_cmp_ps(min, zero, _CMP_GT_OQ), zero, min);
	const __m256 flat = _mm256_cmp_ps(max, min, _CMP_EQ_OQ);

	__m256 iscale = _mm256_div_ps(_mm256_set1_ps((float)nmax), _mm256_sub_ps(max, min));
	__m256 scale = _mm256_div_ps(_mm256_set1_ps(1.0f), iscale);
	__m256 best_L[32];
	__m256 best_error = zero;
	for (int i = 0; i < 32; i++) {
		best_L[i] = level(_mm256_mul_ps(iscale, _mm256_sub_ps(x[i], min)), vnmax);
		const __m256 diff = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(scale, best_L[i]), min), x[i]);
		best_error = _mm256_add_ps(best_error, _mm256_mul_ps(w[i], _mm256_mul_ps(diff, diff)));
	}
	for (int is = 0; is <= nstep; is++) {
		const float num = rmin + rdelta * is + nmax;
		iscale = _mm256_div_ps(_mm256_set1_ps(num), _mm256_sub_ps(max, min));
		__m256 laux[32];
		__m256 sum_l = zero, sum_l2 = zero, sum_xl = zero;
		for (int i = 0; i < 32; i++) {
			const __m256 l = level(_mm256_mul_ps(iscale, _mm256_sub_ps(x[i], min)), vnmax);
			laux[i] = l;
			const __m256 wl = _mm256_mul_ps(w[i], l);
			sum_l = _mm256_add_ps(sum_l, wl);
			sum_l2 = _mm256_add_ps(sum_l2, _mm256_mul_ps(wl, l));
			sum_xl = _mm256_add_ps(sum_xl, _mm256_mul_ps(wl, x[i]));
		}
		const __m256 D = _mm256_sub_ps(_mm256_mul_ps(sum_w, sum_l2), _mm256_mul_ps(sum_l, sum_l));
		const __m256 positive = _mm256_cmp_ps(D, zero, _CMP_GT_OQ);
		if (!_mm256_movemask_ps(positive))
			continue;
		__m256 this_scale = _mm256_div_ps(_mm256_sub_ps(_mm256_mul_ps(sum_w, sum_xl), _mm256_mul_ps(sum_x, sum_l)), D);
		__m256 this_min = _mm256_div_ps(_mm256_sub_ps(_mm256_mul_ps(sum_l2, sum_x), _mm256_mul_ps(sum_l, sum_xl)), D);
		const __m256 pos_min = _mm256_cmp_ps(this_min, zero, _CMP_GT_OQ);
		this_scale = sel(pos_min, _mm256_div_ps(sum_xl, sum_l2), this_scale);
		this_min = sel(pos_min, zero, this_min);
		__m256 cur_error = zero;
		for (int i = 0; i < 32; i++) {
			const __m256 diff = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(this_scale, laux[i]), this_min), x[i]);
			cur_error = _mm256_add_ps(cur_error, _mm256_mul_ps(w[i], _mm256_mul_ps(diff, diff)));
		}
		/* a flat sub-block returned before the search in the reference */
		const __m256 take = _mm256_andnot_ps(flat, _mm256_and_ps(positive, _mm256_cmp_ps(cur_error, best_error, _CMP_LT_OQ)));
		if (!_mm256_movemask_ps(take))
			continue;
		for (int i = 0; i < 32; i++)
			best_L[i] = sel(take, laux[i], best_L[i]);
		best_error = sel(take, cur_error, best_error);
		scale = sel(take, this_scale, scale);
		min = sel(take, this_min, min);
	}
	/* a flat sub-block: levels 0, scale 0, min as clamped */
	scale = sel(flat, zero, scale);
	_mm256_storeu_ps(scale_out, scale);
	_mm256_storeu_ps(min_out, _mm256_xor_ps(min, _mm256_set1_ps(-0.0f))); /* -min, signed zero kept */
	for (int i = 0; i < 32; i++) {
		int32_t l[8];
		_mm256_storeu_si256((__m256i *)l, _mm256_andnot_si256(_mm256_castps_si256(flat), _mm256_cvttps_epi32(best_L[i])));
		for (int j = 0; j < 8; j++)
			L[32 * j + i] = (uint8_t)l[j];
	}
}

/* the reference's weights, av_x + |x| with av_x = sqrt(mean x^2) of the
 * sub-block, and x and w transposed to one sub-block per lane */
static void fits_x8(const float *x, int nmax, float rmin, float rdelta, int nstep, float scales[8], float mins[8],
                    uint8_t L[QP_QK_K])
{
	float wt[QP_QK_K];
	for (int j = 0; j < 8; j++) {
		const float *xb = x + 32 * j;
		float sum_x2 = 0;
		for (int l = 0; l < 32; l++)
			sum_x2 += xb[l] * xb[l];
		const float av_x = sqrtf(sum_x2 / 32);
		for (int l = 0; l < 32; l++)
			wt[32 * j + l] = av_x + fabsf(xb[l]);
	}
	const __m256i idx = _mm256_setr_epi32(0, 32, 64, 96, 128, 160, 192, 224);
	__m256 xv[32], wv[32];
	for (int i = 0; i < 32; i++) {
		xv[i] = _mm256_i32gather_ps(x + i, idx, 4);
		wv[i] = _mm256_i32gather_ps(wt + i, idx, 4);
	}
	qkx2_x8(xv, wv, nmax, rmin, rdelta, nstep, scales, mins, L);
}

void qp_q4_k_quantize_row_avx2(const float *x, void *vy, int64_t n)
{
	struct qp_block_q4_K *y = vy;
	for (int64_t i = 0; i < n / QP_QK_K; i++, x += QP_QK_K) {
		uint8_t L[QP_QK_K];
		float scales[8], mins[8];
		fits_x8(x, 15, -1.f, 0.1f, 20, scales, mins, L);
		qp_kq_q4_k_from_fits(x, &y[i], scales, mins, L);
	}
}

void qp_q5_k_quantize_row_avx2(const float *x, void *vy, int64_t n)
{
	struct qp_block_q5_K *y = vy;
	for (int64_t i = 0; i < n / QP_QK_K; i++, x += QP_QK_K) {
		uint8_t L[QP_QK_K];
		float scales[8], mins[8];
		fits_x8(x, 31, -0.5f, 0.1f, 15, scales, mins, L);
		qp_kq_q5_k_from_fits(x, &y[i], scales, mins, L);
	}
}
