/* The forward pass's elementwise operations with an 8-wide exponential.
 * They match the scalar reference (kernels/ops.c) by relative error, not
 * bit for bit: expf here is a polynomial (Cephes' expf, about 2 ulp), and
 * softmax's double-precision sum adds in four lanes. Each depends only on
 * its input, never on how work is split over threads. */
#include "kernels/cpu/avx2/avx2.h"
#include "kernels/cpu/avx2/simd.h"

#include <math.h>

/* e^x for x in [-87, 88] (clamped there: below, e^x underflows towards
 * 1.6e-38 instead of 0, far under any sum it is added to; above, the
 * callers never go). A NaN stays NaN: min/max return their second operand
 * when either is NaN, so x is given second. */
static inline __m256 expf_ps(__m256 x)
{
	x = _mm256_min_ps(_mm256_set1_ps(88.0f), x);
	x = _mm256_max_ps(_mm256_set1_ps(-87.0f), x);
	/* x = n ln2 + r, |r| <= ln2 / 2, ln2 split in two for an exact n ln2 */
	__m256 fx = _mm256_floor_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f)));
	__m256 r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
	r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), r);
	__m256 y = _mm256_set1_ps(1.9875691500e-4f);
	y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.3981999507e-3f));
	y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073e-3f));
	y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.1665795894e-2f));
	y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.6666665459e-1f));
	y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.0000001201e-1f));
	y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
	const __m256i n = _mm256_cvttps_epi32(fx);
	const __m256 pow2n = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n, _mm256_set1_epi32(127)), 23));
	return _mm256_mul_ps(y, pow2n);
}

void qp_silu_mul_avx2(float *g, const float *u, int64_t n)
{
	const __m256 one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
	int64_t i = 0;
	for (; i + 8 <= n; i += 8) {
		const __m256 x = _mm256_loadu_ps(g + i);
		const __m256 e = expf_ps(_mm256_xor_ps(x, sign));
		_mm256_storeu_ps(g + i, _mm256_mul_ps(_mm256_div_ps(x, _mm256_add_ps(one, e)), _mm256_loadu_ps(u + i)));
	}
	for (; i < n; i++)
		g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

void qp_softmax_avx2(float *x, int64_t n)
{
	__m256 vmax = _mm256_set1_ps(-INFINITY);
	int64_t i = 0;
	for (; i + 8 <= n; i += 8)
		vmax = _mm256_max_ps(_mm256_loadu_ps(x + i), vmax);
	float max = qp_avx2_hmax_ps(vmax);
	for (; i < n; i++)
		max = x[i] > max ? x[i] : max;
	const __m256 vm = _mm256_set1_ps(max);
	__m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
	for (i = 0; i + 8 <= n; i += 8) {
		const __m256 e = expf_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
		_mm256_storeu_ps(x + i, e);
		s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
		s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
	}
	double lanes[4];
	_mm256_storeu_pd(lanes, _mm256_add_pd(s0, s1));
	double sum = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
	for (; i < n; i++) {
		x[i] = expf(x[i] - max);
		sum += (double)x[i];
	}
	const __m256 inv = _mm256_set1_ps((float)(1.0 / sum));
	for (i = 0; i + 8 <= n; i += 8)
		_mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), inv));
	for (; i < n; i++)
		x[i] *= (float)(1.0 / sum);
}
