/* Q4_K's and Q5_K's quantizers at AVX-512: make_qkx2_quants' search
 * (make_qkx3_quants' with an imatrix; kernels/cpu/ref/kquants.c) for the
 * sub-blocks of four super-blocks at once, in two sets of sixteen lanes
 * (two super-blocks a set) where AVX2's runs two sets of eight. This follows AVX2's
 * qkx_sets in kernels/cpu/avx2/kquants_search.c step for step, whose
 * comments give the reasons; the blocks around the search (weights, scale
 * packing, requantizing) are AVX2's code. Each lane does the scalar
 * search's float operations in its order, so the blocks are the
 * reference's bit for bit. A row's last one to three super-blocks go
 * through AVX2's quantizer. */
#include "kernels/cpu/avx512/avx512.h"

#include <immintrin.h>
#include <stdbool.h>

#include "kernels/blocks.h"
#include "kernels/cpu/avx2/kquants.h"
#include "kernels/cpu/avx512/simd.h"

#define N 32

/* the scalar search's level of x, clamp(nearest_int(iscale * (x - min)),
 * 0, nmax), as a float, through the integers: right for every value,
 * garbage included */
static inline __m512 level_u(const int nmax, __m512 iscale, __m512 x, __m512 min)
{
	const __m512 s = _mm512_add_ps(_mm512_mul_ps(iscale, _mm512_sub_ps(x, min)), _mm512_set1_ps(12582912.0f));
	__m512i l = _mm512_sub_epi32(_mm512_and_si512(_mm512_castps_si512(s), _mm512_set1_epi32(0x007fffff)),
	                             _mm512_set1_epi32(0x00400000));
	l = _mm512_max_epi32(_mm512_setzero_si512(), _mm512_min_epi32(_mm512_set1_epi32(nmax), l));
	return _mm512_cvtepi32_ps(l);
}

/* one set: AVX2's struct qkx_set at twice the width */
struct set {
	const __m512 *x, *w;
	__m512 min, max, lo, sum_w, sum_x;
	__mmask16 flat;
	__m512 scale, best_error, best_is, best_base; /* the best trial so far */
	__m512 iscale;                                /* this trial's */
	__m512 sum_l, sum_l2, sum_xl;                 /* its sums */
	__mmask16 positive;                           /* its fit */
	__m512 this_scale, this_min;
	int mode; /* how its levels are made: see start */
	__m512 l[N];
};

/* the search up to its first trial: min, max and the weighted sums, and
 * the error of the levels of iscale = nmax / (max - min) */
static inline __attribute__((always_inline)) void init(const int nmax, const bool qkx3, const __m512 *x, const __m512 *w,
                                                       struct set *S, bool *finite)
{
	const __m512 zero = _mm512_setzero_ps();
	__mmask16 nan = _mm512_cmp_ps_mask(x[0], x[0], _CMP_UNORD_Q);
	__m512 min = x[0], max = x[0], sum_w = w[0], sum_x = _mm512_mul_ps(w[0], x[0]);
	for (int i = 1; i < N; i++) {
		min = _mm512_mask_mov_ps(min, _mm512_cmp_ps_mask(x[i], min, _CMP_LT_OQ), x[i]);
		max = _mm512_mask_mov_ps(max, _mm512_cmp_ps_mask(x[i], max, _CMP_GT_OQ), x[i]);
		sum_w = _mm512_add_ps(sum_w, w[i]);
		sum_x = _mm512_add_ps(sum_x, _mm512_mul_ps(w[i], x[i]));
		nan |= _mm512_cmp_ps_mask(x[i], x[i], _CMP_UNORD_Q);
	}
	*finite &= !nan;
	S->x = x;
	S->w = w;
	S->lo = min;
	min = _mm512_mask_mov_ps(min, _mm512_cmp_ps_mask(min, zero, _CMP_GT_OQ), zero);
	/* make_qkx2_quants returns early on max == min, make_qkx3_quants on
	 * max <= min */
	S->flat = qkx3 ? _mm512_cmp_ps_mask(max, min, _CMP_LE_OQ) : _mm512_cmp_ps_mask(max, min, _CMP_EQ_OQ);
	const __m512 iscale = _mm512_div_ps(_mm512_set1_ps((float)nmax), _mm512_sub_ps(max, min));
	S->scale = _mm512_div_ps(_mm512_set1_ps(1.0f), iscale);
	__m512 best = zero;
	for (int i = 0; i < N; i++) {
		const __m512 l = level_u(nmax, iscale, x[i], min);
		const __m512 diff = _mm512_sub_ps(_mm512_add_ps(_mm512_mul_ps(S->scale, l), min), x[i]);
		best = _mm512_add_ps(best, _mm512_mul_ps(w[i], _mm512_mul_ps(diff, diff)));
	}
	S->best_error = best;
	S->best_is = iscale;
	S->best_base = min;
	S->min = min;
	S->max = max;
	S->sum_w = sum_w;
	S->sum_x = sum_x;
}

/* How a trial makes its levels (S->mode), as AVX2's qkx_start says: INT
 * through the integers; otherwise rounded floats, clamped as integers on
 * their bits where a clamp can bind. */
enum { INT = -1, CLAMP_LO = 1, CLAMP_HI = 2 };

static inline __attribute__((always_inline)) void start(const int nmax, const float rmin, const float rdelta, int is, bool finite,
                                                        struct set *S)
{
	const float num = rmin + rdelta * is + nmax;
	const __m512 range = _mm512_sub_ps(S->max, S->min);
	S->iscale = _mm512_div_ps(_mm512_set1_ps(num), range);
	const __m512 va = _mm512_mul_ps(S->iscale, _mm512_sub_ps(S->lo, S->min));
	const __m512 vb = _mm512_mul_ps(S->iscale, range);
	const __m512 lim = _mm512_set1_ps(4194304.0f);
	const __mmask16 small = _mm512_cmp_ps_mask(_mm512_abs_ps(va), lim, _CMP_LT_OQ) &
	                        _mm512_cmp_ps_mask(_mm512_abs_ps(vb), lim, _CMP_LT_OQ);
	if (!finite || (__mmask16)(small | S->flat) != 0xffff) {
		S->mode = INT;
		return;
	}
	const __m512 ra = _mm512_roundscale_ps(va, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
	const __m512 rb = _mm512_roundscale_ps(vb, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
	const __mmask16 lo_binds = _mm512_cmp_ps_mask(_mm512_min_ps(ra, rb), _mm512_setzero_ps(), _CMP_LT_OQ);
	const __mmask16 hi_binds = _mm512_cmp_ps_mask(_mm512_max_ps(ra, rb), _mm512_set1_ps((float)nmax), _CMP_GT_OQ);
	S->mode = ((lo_binds & ~S->flat) ? CLAMP_LO : 0) | ((hi_binds & ~S->flat) ? CLAMP_HI : 0);
}

/* the scale and minimum fitted to the levels just summed */
static inline __attribute__((always_inline)) void fit(struct set *S)
{
	const __m512 zero = _mm512_setzero_ps();
	const __m512 D = _mm512_sub_ps(_mm512_mul_ps(S->sum_w, S->sum_l2), _mm512_mul_ps(S->sum_l, S->sum_l));
	S->positive = _mm512_cmp_ps_mask(D, zero, _CMP_GT_OQ) & ~S->flat;
	const __m512 scale =
		_mm512_div_ps(_mm512_sub_ps(_mm512_mul_ps(S->sum_w, S->sum_xl), _mm512_mul_ps(S->sum_x, S->sum_l)), D);
	const __m512 min =
		_mm512_div_ps(_mm512_sub_ps(_mm512_mul_ps(S->sum_l2, S->sum_x), _mm512_mul_ps(S->sum_l, S->sum_xl)), D);
	const __mmask16 pos_min = _mm512_cmp_ps_mask(min, zero, _CMP_GT_OQ);
	S->this_scale = _mm512_mask_mov_ps(scale, pos_min, _mm512_div_ps(S->sum_xl, S->sum_l2));
	S->this_min = _mm512_mask_mov_ps(min, pos_min, zero);
}

/* the trial's error against the best: later trials start from the
 * minimum of the one taken */
static inline __attribute__((always_inline)) void take(struct set *S, __m512 cur_error)
{
	const __mmask16 t = S->positive & _mm512_cmp_ps_mask(cur_error, S->best_error, _CMP_LT_OQ);
	S->best_is = _mm512_mask_mov_ps(S->best_is, t, S->iscale);
	S->best_base = _mm512_mask_mov_ps(S->best_base, t, S->min);
	S->best_error = _mm512_mask_mov_ps(S->best_error, t, cur_error);
	S->scale = _mm512_mask_mov_ps(S->scale, t, S->this_scale);
	S->min = _mm512_mask_mov_ps(S->min, t, S->this_min);
}

/* One pass over the elements: when LEV, the levels and sums of A's trial
 * (made as MODE says); when ERR, the error of B's fitted trial, returned */
static inline __attribute__((always_inline)) __m512 pass(const int nmax, const bool LEV, const int MODE, const bool ERR,
                                                         struct set *A, const struct set *B)
{
	const __m512 zero = _mm512_setzero_ps();
	const __m512 minus_one = _mm512_set1_ps(-1.0f);
	const __m512i bits_nmax = _mm512_castps_si512(_mm512_set1_ps((float)nmax));
	__m512 sum_l = zero, sum_l2 = zero, sum_xl = zero, err = zero;
	const __m512 min = LEV ? A->min : zero, iscale = LEV ? A->iscale : zero;
	const __m512 scale = ERR ? B->this_scale : zero, bmin = ERR ? B->this_min : zero;
	_Pragma("GCC unroll 4")
	for (int i = 0; i < N; i++) {
		if (LEV) {
			const __m512 x = A->x[i];
			__m512 l;
			if (MODE == INT) {
				l = level_u(nmax, iscale, x, min);
			} else {
				/* x - min, rounded once, on the multipliers' ports */
				const __m512 xm = _mm512_fmadd_ps(min, minus_one, x);
				__m512i b = _mm512_castps_si512(_mm512_roundscale_ps(
					_mm512_mul_ps(iscale, xm), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
				if (MODE & CLAMP_HI)
					b = _mm512_min_epi32(b, bits_nmax);
				if (MODE & CLAMP_LO)
					b = _mm512_max_epi32(b, _mm512_setzero_si512());
				l = _mm512_castsi512_ps(b);
			}
			A->l[i] = l;
			const __m512 wl = _mm512_mul_ps(A->w[i], l);
			sum_l = _mm512_add_ps(sum_l, wl);
			sum_l2 = _mm512_add_ps(sum_l2, _mm512_mul_ps(wl, l));
			sum_xl = _mm512_add_ps(sum_xl, _mm512_mul_ps(wl, x));
		}
		if (ERR) {
			const __m512 diff = _mm512_sub_ps(_mm512_add_ps(_mm512_mul_ps(scale, B->l[i]), bmin), B->x[i]);
			err = _mm512_add_ps(err, _mm512_mul_ps(B->w[i], _mm512_mul_ps(diff, diff)));
		}
	}
	if (LEV) {
		A->sum_l = sum_l;
		A->sum_l2 = sum_l2;
		A->sum_xl = sum_xl;
	}
	return err;
}

/* pass at A's mode, then B's outcome */
static inline __attribute__((always_inline)) void step(const int nmax, const bool LEV, const bool ERR, struct set *A, struct set *B)
{
	__m512 err;
	switch (LEV ? A->mode : 0) {
	case 0:
		err = pass(nmax, LEV, 0, ERR, A, B);
		break;
	case CLAMP_HI:
		err = pass(nmax, LEV, CLAMP_HI, ERR, A, B);
		break;
	case CLAMP_LO: /* rare alone: it shares the instance with both */
	case CLAMP_LO | CLAMP_HI:
		err = pass(nmax, LEV, CLAMP_LO | CLAMP_HI, ERR, A, B);
		break;
	default:
		err = pass(nmax, LEV, INT, ERR, A, B);
		break;
	}
	if (ERR)
		take(B, err);
}

/* sets 0 and 1 of x, w (x[s * N + i]), their levels L, scales and -mins;
 * set 1 half a trial behind set 0 */
static inline __attribute__((always_inline)) void search(const int nmax, const float rmin, const float rdelta, const int nstep,
                                                         const bool qkx3, const __m512 *x, const __m512 *w,
                                                         __m512i *L, __m512 *scale_out, __m512 *the_min)
{
	struct set S[2];
	bool finite = true;
	init(nmax, qkx3, x, w, &S[0], &finite);
	init(nmax, qkx3, x + N, w + N, &S[1], &finite);
	struct set *A = &S[0], *B = &S[1];
	start(nmax, rmin, rdelta, 0, finite, A);
	step(nmax, true, false, A, B);
	for (int is = 0; is <= nstep; is++) {
		fit(A);
		start(nmax, rmin, rdelta, is, finite, B);
		step(nmax, true, true, B, A);
		fit(B);
		if (is < nstep) {
			start(nmax, rmin, rdelta, is + 1, finite, A);
			step(nmax, true, true, A, B);
		} else {
			step(nmax, false, true, A, B);
		}
	}
	for (int s = 0; s < 2; s++) {
		the_min[s] = _mm512_xor_ps(S[s].min, _mm512_set1_ps(-0.0f)); /* -min, signed zero kept */
		for (int i = 0; i < N; i++) {
			const __m512 l = level_u(nmax, S[s].best_is, x[s * N + i], S[s].best_base);
			L[s * N + i] = _mm512_maskz_mov_epi32(~S[s].flat, _mm512_cvttps_epi32(l));
		}
		scale_out[s] = _mm512_mask_mov_ps(S[s].scale, S[s].flat, _mm512_setzero_ps());
	}
}

/* the searches of q4_K and q5_K (nmax 15, 31), plain (make_qkx2_quants)
 * and with an imatrix (make_qkx3_quants), with the reference's
 * parameters: each a function of its own so that its constants fold */
typedef void search_fn(const __m512 *x, const __m512 *w, __m512i *L, __m512 *scale, __m512 *the_min);
#define SEARCH(name, nmax, rmin, rdelta, nstep, qkx3)                                                         \
	static __attribute__((noinline)) void name(const __m512 *x, const __m512 *w, __m512i *L, __m512 *scale, \
	                                           __m512 *the_min)                                             \
	{                                                                                                      \
		search(nmax, rmin, rdelta, nstep, qkx3, x, w, L, scale, the_min);                               \
	}
SEARCH(search_q4, 15, -1.0f, 0.1f, 20, false)
SEARCH(search_q4_imat, 15, -0.9f, 0.05f, 36, true)
SEARCH(search_q5, 31, -0.5f, 0.1f, 15, false)
SEARCH(search_q5_imat, 31, -0.9f, 0.05f, 36, true)

/* four consecutive q4_K (q5 false) or q5_K (q5 true) super-blocks: set s
 * holds blocks 2s (lanes 0..7) and 2s + 1 (lanes 8..15) */
static void quantize_4(bool q5, const float *x, const float *qw, void *vy)
{
	const size_t size = q5 ? sizeof(struct qp_block_q5_K) : sizeof(struct qp_block_q4_K);
	__m256 xv[4][N], wv[4][N];
	float sw[4][8];
	__m512 x2[2 * N], w2[2 * N], sc[2], mn[2];
	__m512i L2[2 * N];
	for (int b = 0; b < 4; b++)
		qp_avx2_q45_lanes(x + QP_QK_K * b, qw ? qw + QP_QK_K * b : NULL, xv[b], wv[b], sw[b]);
	for (int s = 0; s < 2; s++)
		for (int i = 0; i < N; i++) {
			x2[s * N + i] = qp_avx512_join_ps(xv[2 * s][i], xv[2 * s + 1][i]);
			w2[s * N + i] = qp_avx512_join_ps(wv[2 * s][i], wv[2 * s + 1][i]);
		}
	search_fn *search = q5 ? (qw ? search_q5_imat : search_q5) : (qw ? search_q4_imat : search_q4);
	search(x2, w2, L2, sc, mn);
	for (int b = 0; b < 4; b++) {
		const int s = b / 2, h = b % 2;
		__m256i lv[N];
		for (int i = 0; i < N; i++)
			lv[i] = qp_avx512_half_si(L2[s * N + i], h);
		qp_avx2_q45_finish(q5, qw != NULL, xv[b], lv, qp_avx512_half_ps(sc[s], h), qp_avx512_half_ps(mn[s], h),
		                   sw[b], (uint8_t *)vy + size * (size_t)b);
	}
}

static void quantize_row(bool q5, const float *x, void *vy, int64_t n, const float *qw)
{
	const size_t size = q5 ? sizeof(struct qp_block_q5_K) : sizeof(struct qp_block_q4_K);
	const int64_t nb = n / QP_QK_K;
	int64_t i = 0;
	for (; i + 4 <= nb; i += 4)
		quantize_4(q5, x + QP_QK_K * i, qw ? qw + QP_QK_K * i : NULL, (uint8_t *)vy + size * (size_t)i);
	/* the last one to three blocks: AVX2's */
	if (i < nb)
		qp_avx2_q45_quantize_row(x + QP_QK_K * i, (uint8_t *)vy + size * (size_t)i, QP_QK_K * (nb - i),
		                         qw ? qw + QP_QK_K * i : NULL, q5);
}

void qp_q4_k_quantize_row_avx512(const float *x, void *vy, int64_t n)
{
	quantize_row(false, x, vy, n, NULL);
}

void qp_q4_k_quantize_row_imat_avx512(const float *x, void *vy, int64_t n, const float *imatrix)
{
	quantize_row(false, x, vy, n, imatrix);
}

void qp_q5_k_quantize_row_avx512(const float *x, void *vy, int64_t n)
{
	quantize_row(true, x, vy, n, NULL);
}

void qp_q5_k_quantize_row_imat_avx512(const float *x, void *vy, int64_t n, const float *imatrix)
{
	quantize_row(true, x, vy, n, imatrix);
}
