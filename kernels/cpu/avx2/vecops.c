/* The forward pass's elementwise operations with an 8-wide exponential.
 * The exponential is evaluated in double (a degree-11 polynomial after
 * reduction by ln 2, relative error near 1e-13) and rounded to float once,
 * so it is the correctly rounded e^x: glibc's expf, which the scalar
 * reference calls, is too, but for rare halfway cases. The float
 * arithmetic around it is the reference's, so silu_mul gives the
 * reference's bits but for those cases; softmax's double sum adds in
 * four lanes, which moves only its last bits. (A float polynomial, 2 ulp,
 * moved q4_0's logits enough to show in tests/e2e/test_kld's statistics.)
 * Each depends only on its input, never on how work is split over
 * threads. */
#include "kernels/cpu/avx2/avx2.h"
#include "kernels/cpu/avx2/simd.h"

#include <math.h>

/* e^x in double for x from float: clamped to [-110, 89], beyond which
 * the float result is 0 or +Inf either way; a NaN stays NaN (min/max
 * return their second operand when either is NaN, so x is given second). */
static inline __m256d exp_pd(__m256d x)
{
	x = _mm256_min_pd(_mm256_set1_pd(89.0), x);
	x = _mm256_max_pd(_mm256_set1_pd(-110.0), x);
	const __m256d n = _mm256_round_pd(_mm256_mul_pd(x, _mm256_set1_pd(1.4426950408889634)),
	                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
	/* r = x - n ln2, |r| <= ln2 / 2, ln2 in two parts so n ln2 is exact enough */
	__m256d r = _mm256_fnmadd_pd(n, _mm256_set1_pd(6.93147180369123816490e-01), x);
	r = _mm256_fnmadd_pd(n, _mm256_set1_pd(1.90821492927058770002e-10), r);
	static const double inv_fact[] = {1.0 / 39916800, 1.0 / 3628800, 1.0 / 362880, 1.0 / 40320, 1.0 / 5040,
	                                  1.0 / 720, 1.0 / 120, 1.0 / 24, 1.0 / 6, 1.0 / 2, 1.0, 1.0};
	__m256d p = _mm256_set1_pd(inv_fact[0]);
	for (int k = 1; k < 12; k++)
		p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(inv_fact[k]));
	/* 2^n, n in [-159, 129]: a normal double */
	const __m256i ni = _mm256_cvtepi32_epi64(_mm256_cvtpd_epi32(n));
	const __m256d scale = _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_add_epi64(ni, _mm256_set1_epi64x(1023)), 52));
	return _mm256_mul_pd(p, scale);
}

/* e^x for 8 floats, each correctly rounded (see above) */
static inline __m256 expf_ps(__m256 x)
{
	const __m128 lo = _mm256_cvtpd_ps(exp_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(x))));
	const __m128 hi = _mm256_cvtpd_ps(exp_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(x, 1))));
	return _mm256_set_m128(hi, lo);
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
