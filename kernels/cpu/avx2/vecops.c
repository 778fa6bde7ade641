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
#include "kernels/cpu/ref/attn.h"

#include <math.h>

#define INLINE static inline __attribute__((always_inline))

/* e^x in double for x from float, nx vectors (at most EXP_MAX) side by
 * side: clamped to [-110, 89], beyond which the float result is 0 or +Inf
 * either way; a NaN stays NaN (min/max return their second operand when
 * either is NaN, so x is given second). Each evaluation is a chain of some
 * twenty dependent steps; one vector at a time, its chain filled the
 * scheduler before the next vector's could start, and softmax took six
 * cycles per element. Interleaved, the steps of one vector wait on
 * latency while the others' run; each lane's arithmetic is unchanged. */
#define EXP_MAX 4
INLINE void exp_pd(const int nx, __m256d *x)
{
	static const double inv_fact[] = {1.0 / 39916800, 1.0 / 3628800, 1.0 / 362880, 1.0 / 40320, 1.0 / 5040,
	                                  1.0 / 720, 1.0 / 120, 1.0 / 24, 1.0 / 6, 1.0 / 2, 1.0, 1.0};
	__m256d n[EXP_MAX], r[EXP_MAX], p[EXP_MAX];
	_Pragma("GCC unroll 4")
	for (int v = 0; v < nx; v++) {
		x[v] = _mm256_min_pd(_mm256_set1_pd(89.0), x[v]);
		x[v] = _mm256_max_pd(_mm256_set1_pd(-110.0), x[v]);
		n[v] = _mm256_round_pd(_mm256_mul_pd(x[v], _mm256_set1_pd(1.4426950408889634)),
		                       _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
	}
	/* r = x - n ln2, |r| <= ln2 / 2, ln2 in two parts so n ln2 is exact enough */
	_Pragma("GCC unroll 4")
	for (int v = 0; v < nx; v++) {
		r[v] = _mm256_fnmadd_pd(n[v], _mm256_set1_pd(6.93147180369123816490e-01), x[v]);
		r[v] = _mm256_fnmadd_pd(n[v], _mm256_set1_pd(1.90821492927058770002e-10), r[v]);
		p[v] = _mm256_set1_pd(inv_fact[0]);
	}
	_Pragma("GCC unroll 11")
	for (int k = 1; k < 12; k++)
		_Pragma("GCC unroll 4")
		for (int v = 0; v < nx; v++)
			p[v] = _mm256_fmadd_pd(p[v], r[v], _mm256_set1_pd(inv_fact[k]));
	/* 2^n, n in [-159, 129]: a normal double */
	_Pragma("GCC unroll 4")
	for (int v = 0; v < nx; v++) {
		const __m256i ni = _mm256_cvtepi32_epi64(_mm256_cvtpd_epi32(n[v]));
		const __m256d scale =
			_mm256_castsi256_pd(_mm256_slli_epi64(_mm256_add_epi64(ni, _mm256_set1_epi64x(1023)), 52));
		x[v] = _mm256_mul_pd(p[v], scale);
	}
}

/* e^x for nx (at most EXP_MAX / 2) vectors of 8 floats, each correctly
 * rounded (see above) */
INLINE void expf_ps(const int nx, __m256 *x)
{
	__m256d d[EXP_MAX];
	_Pragma("GCC unroll 2")
	for (int v = 0; v < nx; v++) {
		d[2 * v] = _mm256_cvtps_pd(_mm256_castps256_ps128(x[v]));
		d[2 * v + 1] = _mm256_cvtps_pd(_mm256_extractf128_ps(x[v], 1));
	}
	exp_pd(2 * nx, d);
	_Pragma("GCC unroll 2")
	for (int v = 0; v < nx; v++)
		x[v] = _mm256_set_m128(_mm256_cvtpd_ps(d[2 * v + 1]), _mm256_cvtpd_ps(d[2 * v]));
}

/* g[i .. i + 8 nx) = silu(g) * u */
INLINE void silu_mul_vecs(const int nx, float *g, const float *u)
{
	const __m256 one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
	__m256 x[2], e[2];
	_Pragma("GCC unroll 2")
	for (int v = 0; v < nx; v++) {
		x[v] = _mm256_loadu_ps(g + 8 * v);
		e[v] = _mm256_xor_ps(x[v], sign);
	}
	expf_ps(nx, e);
	_Pragma("GCC unroll 2")
	for (int v = 0; v < nx; v++)
		_mm256_storeu_ps(g + 8 * v,
		                 _mm256_mul_ps(_mm256_div_ps(x[v], _mm256_add_ps(one, e[v])), _mm256_loadu_ps(u + 8 * v)));
}

void qp_silu_mul_avx2(float *g, const float *u, int64_t n)
{
	int64_t i = 0;
	for (; i + 16 <= n; i += 16)
		silu_mul_vecs(2, g + i, u + i);
	for (; i + 8 <= n; i += 8)
		silu_mul_vecs(1, g + i, u + i);
	for (; i < n; i++)
		g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

/* x[i .. i + 8 nx) = e^(x - max), added to the double sums s0 (the
 * lower four of each 8) and s1 (the upper), vector after vector */
INLINE void softmax_exp_vecs(const int nx, float *x, __m256 vm, __m256d *s0, __m256d *s1)
{
	__m256 e[2];
	_Pragma("GCC unroll 2")
	for (int v = 0; v < nx; v++)
		e[v] = _mm256_sub_ps(_mm256_loadu_ps(x + 8 * v), vm);
	expf_ps(nx, e);
	_Pragma("GCC unroll 2")
	for (int v = 0; v < nx; v++) {
		_mm256_storeu_ps(x + 8 * v, e[v]);
		*s0 = _mm256_add_pd(*s0, _mm256_cvtps_pd(_mm256_castps256_ps128(e[v])));
		*s1 = _mm256_add_pd(*s1, _mm256_cvtps_pd(_mm256_extractf128_ps(e[v], 1)));
	}
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
	for (i = 0; i + 16 <= n; i += 16)
		softmax_exp_vecs(2, x + i, vm, &s0, &s1);
	for (; i + 8 <= n; i += 8)
		softmax_exp_vecs(1, x + i, vm, &s0, &s1);
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

/* Attention's products (kernels/ops.h, qp_ops_vec): every element is a
 * chain of FMAs in the reference's order, one chain per accumulator lane,
 * so tiles of any shape give its bits; the shapes only decide how many
 * chains run side by side (an FMA's latency needs eight in flight) and how
 * often each loaded vector is reused. */
/* Both products keep, for up to 4 rows (64 apart) of nv <= 8 vectors of 8
 * elements, double totals to which each block's float chain is added.
 * Zeroed with vector stores: as loops, GCC made them a rep stos per row,
 * a sixth of the scores' time and 7% of the values'. */
INLINE void totals_zero(double *tot, const int nq, const int nv)
{
	_Pragma("GCC unroll 4")
	for (int i = 0; i < nq; i++)
		_Pragma("GCC unroll 16")
		for (int e = 0; e < nv * 8; e += 4)
			_mm256_storeu_pd(tot + i * 64 + e, _mm256_setzero_pd());
}

/* t[0 .. 8) += the lanes of a block's chains, in double */
INLINE void totals_add(double *t, __m256 a)
{
	_mm256_storeu_pd(t, _mm256_add_pd(_mm256_loadu_pd(t), _mm256_cvtps_pd(_mm256_castps256_ps128(a))));
	_mm256_storeu_pd(t + 4, _mm256_add_pd(_mm256_loadu_pd(t + 4), _mm256_cvtps_pd(_mm256_extractf128_ps(a, 1))));
}

/* row i of the totals, rounded to float, to out + i * out_stride */
INLINE void totals_store(float *out, int64_t out_stride, const double *tot, const int nq, const int nv)
{
	for (int i = 0; i < nq; i++)
		for (int e = 0; e < nv * 8; e++)
			out[i * out_stride + e] = (float)tot[i * 64 + e];
}

/* scores of nq <= 4 queries against nk <= 8 vectors of 8 keys: float
 * chains over blocks of ATTN_SBLOCK dimensions added into doubles, as the
 * reference does */
#define ATTN_SBLOCK QP_ATTN_BLOCK
INLINE void scores_tile(float *s, int64_t lds, const float *q, int64_t q_stride, const float *kt, int64_t kt_stride,
                        int64_t hd, const int nq, const int nk)
{
	double tot[4 * 64];
	totals_zero(tot, nq, nk);
	for (int64_t d0 = 0; d0 < hd; d0 += ATTN_SBLOCK) {
		const int64_t de = d0 + ATTN_SBLOCK < hd ? d0 + ATTN_SBLOCK : hd;
		__m256 acc[4][8];
		_Pragma("GCC unroll 4")
		for (int i = 0; i < nq; i++)
			_Pragma("GCC unroll 8")
			for (int b = 0; b < nk; b++)
				acc[i][b] = _mm256_setzero_ps();
		for (int64_t d = d0; d < de; d++) {
			__m256 k[8];
			_Pragma("GCC unroll 8")
			for (int b = 0; b < nk; b++)
				k[b] = _mm256_loadu_ps(kt + d * kt_stride + 8 * b);
			_Pragma("GCC unroll 4")
			for (int i = 0; i < nq; i++) {
				const __m256 qd = _mm256_broadcast_ss(q + i * q_stride + d);
				_Pragma("GCC unroll 8")
				for (int b = 0; b < nk; b++)
					acc[i][b] = _mm256_fmadd_ps(qd, k[b], acc[i][b]);
			}
		}
		_Pragma("GCC unroll 4")
		for (int i = 0; i < nq; i++)
			_Pragma("GCC unroll 8")
			for (int b = 0; b < nk; b++)
				totals_add(tot + i * 64 + 8 * b, acc[i][b]);
	}
	totals_store(s, lds, tot, nq, nk);
}

void qp_attn_scores_avx2(float *s, int64_t lds, const float *q, int64_t q_stride, int64_t nq, const float *kt,
                         int64_t kt_stride, int64_t n_keys, int64_t hd)
{
	const int64_t n8 = n_keys / 8 * 8;
	for (int64_t i0 = 0; i0 < nq; i0 += 4) {
		const int qi = nq - i0 < 4 ? (int)(nq - i0) : 4;
		const float *qt = q + i0 * q_stride;
		float *st = s + i0 * lds;
		int64_t j = 0;
		if (qi == 1) {
			/* one query (a decode step): eight chains along the keys */
			for (; j + 64 <= n8; j += 64)
				scores_tile(st + j, lds, qt, q_stride, kt + j, kt_stride, hd, 1, 8);
			if (j + 32 <= n8) {
				scores_tile(st + j, lds, qt, q_stride, kt + j, kt_stride, hd, 1, 4);
				j += 32;
			}
			if (j + 16 <= n8) {
				scores_tile(st + j, lds, qt, q_stride, kt + j, kt_stride, hd, 1, 2);
				j += 16;
			}
			for (; j < n8; j += 8)
				scores_tile(st + j, lds, qt, q_stride, kt + j, kt_stride, hd, 1, 1);
		} else {
			for (; j + 16 <= n8; j += 16) {
				switch (qi) {
				case 4: scores_tile(st + j, lds, qt, q_stride, kt + j, kt_stride, hd, 4, 2); break;
				case 3: scores_tile(st + j, lds, qt, q_stride, kt + j, kt_stride, hd, 3, 2); break;
				default: scores_tile(st + j, lds, qt, q_stride, kt + j, kt_stride, hd, 2, 2); break;
				}
			}
			for (; j < n8; j += 8) {
				switch (qi) {
				case 4: scores_tile(st + j, lds, qt, q_stride, kt + j, kt_stride, hd, 4, 1); break;
				case 3: scores_tile(st + j, lds, qt, q_stride, kt + j, kt_stride, hd, 3, 1); break;
				default: scores_tile(st + j, lds, qt, q_stride, kt + j, kt_stride, hd, 2, 1); break;
				}
			}
		}
		/* the keys past the last 8, as the reference computes them */
		qp_attn_scores_ref(st + n8, lds, qt, q_stride, qi, kt + n8, kt_stride, n_keys - n8, hd);
	}
}

/* Adds to tot (nq <= 4 rows of nd * 8 doubles, 64 apart) the blocks of
 * positions j0 .. j1 - 1 (j0 a multiple of ATTN_VBLOCK) for nd <= 8
 * vectors of dimensions: each block a float FMA chain from zero, then
 * added to the double total, as the reference does. */
#define ATTN_VBLOCK QP_ATTN_BLOCK
INLINE void values_blocks(double *tot, const float *p, int64_t ldp, const float *v, int64_t v_stride, int64_t j0,
                          int64_t j1, const int nq, const int nd)
{
	for (int64_t b0 = j0; b0 < j1; b0 += ATTN_VBLOCK) {
		const int64_t be = b0 + ATTN_VBLOCK < j1 ? b0 + ATTN_VBLOCK : j1;
		__m256 acc[4][8];
		_Pragma("GCC unroll 4")
		for (int i = 0; i < nq; i++)
			_Pragma("GCC unroll 8")
			for (int b = 0; b < nd; b++)
				acc[i][b] = _mm256_setzero_ps();
		for (int64_t j = b0; j < be; j++) {
			if (nq == 1) {
				const __m256 pj = _mm256_broadcast_ss(p + j);
				_Pragma("GCC unroll 8")
				for (int b = 0; b < nd; b++)
					acc[0][b] = _mm256_fmadd_ps(pj, _mm256_loadu_ps(v + j * v_stride + 8 * b), acc[0][b]);
				continue;
			}
			__m256 vj[8];
			_Pragma("GCC unroll 8")
			for (int b = 0; b < nd; b++)
				vj[b] = _mm256_loadu_ps(v + j * v_stride + 8 * b);
			_Pragma("GCC unroll 4")
			for (int i = 0; i < nq; i++) {
				const __m256 pj = _mm256_broadcast_ss(p + i * ldp + j);
				_Pragma("GCC unroll 8")
				for (int b = 0; b < nd; b++)
					acc[i][b] = _mm256_fmadd_ps(pj, vj[b], acc[i][b]);
			}
		}
		_Pragma("GCC unroll 4")
		for (int i = 0; i < nq; i++)
			_Pragma("GCC unroll 8")
			for (int b = 0; b < nd; b++)
				totals_add(tot + i * 64 + 8 * b, acc[i][b]);
	}
}

/* out of nqt (1, 2 or 4) queries (lengths len, len + 1, ...) for nd
 * vectors of dimensions at v: the blocks all of them have whole run
 * together, each query's last part on its own */
INLINE void values_tile(float *out, int64_t out_stride, const float *p, int64_t ldp, const float *v, int64_t v_stride,
                        int64_t len, const int nqt, const int nd)
{
	double tot[4 * 64];
	totals_zero(tot, nqt, nd);
	const int64_t whole = nqt > 1 ? len / ATTN_VBLOCK * ATTN_VBLOCK : 0;
	if (nqt > 1)
		values_blocks(tot, p, ldp, v, v_stride, 0, whole, nqt, nd);
	_Pragma("GCC unroll 4")
	for (int i = 0; i < nqt; i++)
		values_blocks(tot + i * 64, p + i * ldp, ldp, v, v_stride, whole, len + i, 1, nd);
	totals_store(out, out_stride, tot, nqt, nd);
}

/* Queries four at a time against two vectors of dimensions (each value
 * loaded once for four queries: with two queries against four vectors,
 * ten loads fed eight FMAs), then in pairs and alone. */
void qp_attn_values_avx2(float *out, int64_t out_stride, const float *p, int64_t ldp, int64_t nq, int64_t len0,
                         const float *v, int64_t v_stride, int64_t hd)
{
	const int64_t hd8 = hd / 8 * 8;
	int64_t i0 = 0;
	for (; i0 + 4 <= nq; i0 += 4) {
		const int64_t len = len0 + i0; /* the shortest query's positions */
		float *ot = out + i0 * out_stride;
		const float *pt = p + i0 * ldp;
		int64_t d = 0;
		for (; d + 16 <= hd8; d += 16)
			values_tile(ot + d, out_stride, pt, ldp, v + d, v_stride, len, 4, 2);
		for (; d < hd8; d += 8)
			values_tile(ot + d, out_stride, pt, ldp, v + d, v_stride, len, 4, 1);
		/* the dimensions past the last 8, as the reference computes them */
		qp_attn_values_ref(ot + hd8, out_stride, pt, ldp, 4, len, v + hd8, v_stride, hd - hd8);
	}
	for (; i0 < nq; i0 += 2) {
		const int two = nq - i0 >= 2;
		const int64_t len = len0 + i0;
		float *ot = out + i0 * out_stride;
		const float *pt = p + i0 * ldp;
		int64_t d = 0;
		if (two) {
			for (; d + 32 <= hd8; d += 32)
				values_tile(ot + d, out_stride, pt, ldp, v + d, v_stride, len, 2, 4);
			for (; d < hd8; d += 8)
				values_tile(ot + d, out_stride, pt, ldp, v + d, v_stride, len, 2, 1);
		} else {
			for (; d + 64 <= hd8; d += 64)
				values_tile(ot + d, out_stride, pt, ldp, v + d, v_stride, len, 1, 8);
			for (; d < hd8; d += 8)
				values_tile(ot + d, out_stride, pt, ldp, v + d, v_stride, len, 1, 1);
		}
		qp_attn_values_ref(ot + hd8, out_stride, pt, ldp, 1 + two, len, v + hd8, v_stride, hd - hd8);
	}
}
