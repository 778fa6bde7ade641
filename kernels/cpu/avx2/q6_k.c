/* Q6_K: nibbles of ql and crumbs of qh unpacked 32 at a time, biased by
 * -32; see kquants.h. Quantize fits the 16 sub-blocks eight at a time
 * (kquants_search.h), stores the scales as the reference does, then
 * requantizes (in element order, or in lane layout where a sub-block
 * keeps its fitted levels) and packs. */
#include <string.h>

#include "kernels/blocks.h"
#include "kernels/cpu/avx2/avx2.h"
#include "kernels/cpu/avx2/kquants.h"
#include "kernels/cpu/avx2/kquants_search.h"
#include "kernels/cpu/ref/kquants.h"

/* L[256] in 0..63, element order, into ql and qh (see
 * kernels/cpu/ref/q6_k.c for the layout) */
static void pack_q6(const uint8_t L[QP_QK_K], struct qp_block_q6_K *y)
{
	const __m256i m4 = _mm256_set1_epi8(0x0f);
	const __m256i m2 = _mm256_set1_epi8(0x03);
	for (int h = 0; h < 2; h++) {
		const uint8_t *l = L + 128 * h;
		__m256i q[4], top[4];
		for (int k = 0; k < 4; k++) {
			q[k] = _mm256_loadu_si256((const __m256i *)(l + 32 * k));
			/* q < 64: the 16-bit shift's carry from the high byte is masked off */
			top[k] = _mm256_and_si256(_mm256_srli_epi16(q[k], 4), m2);
			q[k] = _mm256_and_si256(q[k], m4);
		}
		/* values < 16 (< 4): shifting left within 16 bits never reaches
		 * the next byte */
		_mm256_storeu_si256((__m256i *)(y->ql + 64 * h), _mm256_or_si256(q[0], _mm256_slli_epi16(q[2], 4)));
		_mm256_storeu_si256((__m256i *)(y->ql + 64 * h + 32), _mm256_or_si256(q[1], _mm256_slli_epi16(q[3], 4)));
		const __m256i qh = _mm256_or_si256(_mm256_or_si256(top[0], _mm256_slli_epi16(top[1], 2)),
		                                   _mm256_or_si256(_mm256_slli_epi16(top[2], 4), _mm256_slli_epi16(top[3], 6)));
		_mm256_storeu_si256((__m256i *)(y->qh + 32 * h), qh);
	}
}

/* qp_kq_q6_k_pack_scales of scales sc[0] (sub-blocks 0..7) and sc[1]
 * (8..15): the largest |scale| is the first of the largest (the scalar
 * `>` from 0, which no NaN passes: NaN counts as 0 here), and every
 * scale is rounded as the scalar one rounds it. */
static bool pack_scales_q6(struct qp_block_q6_K *y, const __m256 sc[2])
{
	const __m256 sign = _mm256_set1_ps(-0.0f);
	__m256 a[2];
	for (int g = 0; g < 2; g++)
		a[g] = _mm256_and_ps(_mm256_andnot_ps(sign, sc[g]), _mm256_cmp_ps(sc[g], sc[g], _CMP_ORD_Q));
	__m256 m = _mm256_max_ps(a[0], a[1]);
	m = _mm256_max_ps(m, _mm256_permute2f128_ps(m, m, 1));
	m = _mm256_max_ps(m, _mm256_permute_ps(m, _MM_SHUFFLE(1, 0, 3, 2)));
	m = _mm256_max_ps(m, _mm256_permute_ps(m, _MM_SHUFFLE(2, 3, 0, 1)));
	const float max_abs_scale = _mm256_cvtss_f32(m);
	if (max_abs_scale < QP_KQ_GROUP_MAX_EPS) {
		memset(y, 0, sizeof(*y));
		y->d = qp_fp32_to_fp16(0.f);
		return false;
	}
	const unsigned first = (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(a[0], m, _CMP_EQ_OQ)) |
	                       (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(a[1], m, _CMP_EQ_OQ)) << 8;
	float scales[16];
	_mm256_storeu_ps(scales, sc[0]);
	_mm256_storeu_ps(scales + 8, sc[1]);
	const float iscale = -128.f / scales[__builtin_ctz(first)];
	y->d = qp_fp32_to_fp16(1 / iscale);
	int32_t l[16];
	for (int g = 0; g < 2; g++) {
		const __m256i lg = qp_avx2_nearest_int(_mm256_mul_ps(_mm256_set1_ps(iscale), sc[g]));
		_mm256_storeu_si256((__m256i *)(l + 8 * g), _mm256_min_epi32(lg, _mm256_set1_epi32(127)));
	}
	for (int ib = 0; ib < 16; ib++)
		y->scales[ib] = (int8_t)l[ib];
	return true;
}

/* dv[g] = d * scale of sub-blocks 8g..8g+7, the bytes widened to float
 * exactly; the mask of the sub-blocks whose product is zero */
static int q6_dv(const struct qp_block_q6_K *y, __m256 dv[2])
{
	const float dall = qp_fp16_to_fp32(y->d);
	int zero = 0;
	for (int g = 0; g < 2; g++) {
		const __m256i s8 = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(y->scales + 8 * g)));
		dv[g] = _mm256_mul_ps(_mm256_set1_ps(dall), _mm256_cvtepi32_ps(s8));
		zero |= _mm256_movemask_ps(_mm256_cmp_ps(dv[g], _mm256_setzero_ps(), _CMP_EQ_OQ)) << 8 * g;
	}
	return zero;
}

bool qp_avx2_q6_k_from_scales(const float *x, const __m256 sc[2], struct qp_block_q6_K *y)
{
	if (!pack_scales_q6(y, sc))
		return true;
	__m256 dv[2];
	if (q6_dv(y, dv))
		return false;
	/* in element order, no transposes: each vector of x lies in one
	 * sub-block, and is divided by its d */
	const __m256i lo = _mm256_set1_epi32(-32), hi = _mm256_set1_epi32(31), bias = _mm256_set1_epi32(32);
	uint8_t L[QP_QK_K];
	float d[16];
	_mm256_storeu_ps(d, dv[0]);
	_mm256_storeu_ps(d + 8, dv[1]);
	for (int k = 0; k < 8; k++) {
		__m256i l[4];
		for (int u = 0; u < 4; u++) {
			const __m256 v = _mm256_loadu_ps(x + 32 * k + 8 * u);
			l[u] = qp_avx2_nearest_int(_mm256_div_ps(v, _mm256_set1_ps(d[2 * k + u / 2])));
			l[u] = _mm256_add_epi32(_mm256_max_epi32(lo, _mm256_min_epi32(hi, l[u])), bias);
		}
		_mm256_storeu_si256((__m256i *)(L + 32 * k), qp_avx2_low_bytes(l[0], l[1], l[2], l[3]));
	}
	pack_q6(L, y);
	return true;
}

void qp_avx2_q6_k_quantize_block(const float *x, struct qp_block_q6_K *y, const float *qw)
{
	__m256 xv[2][16], wv[2][16], sc[2];
	__m256i lv[2][16];
	for (int g = 0; g < 2; g++) {
		qp_avx2_to_lanes(x + 128 * g, 16, xv[g]);
		if (qw) {
			qp_avx2_to_lanes(qw + 128 * g, 16, wv[g]);
		} else {
			for (int i = 0; i < 16; i++)
				wv[g][i] = _mm256_mul_ps(xv[g][i], xv[g][i]);
		}
	}
	/* the levels are wanted only where a stored scale is zero (below):
	 * search for the scales alone */
	qp_avx2_make_qx_quants_x8(2, 16, 32, &xv[0][0], &wv[0][0], NULL, sc);
	if (qp_avx2_q6_k_from_scales(x, sc, y))
		return;
	/* rare: the search again, for the levels this time (the same
	 * search, so the same levels), and the requantizing in lane
	 * layout, where they are */
	qp_avx2_make_qx_quants_x8(2, 16, 32, &xv[0][0], &wv[0][0], &lv[0][0], sc);
	__m256 dv[2];
	q6_dv(y, dv);
	const __m256i lo = _mm256_set1_epi32(-32), hi = _mm256_set1_epi32(31), bias = _mm256_set1_epi32(32);
	uint8_t L[QP_QK_K];
	for (int g = 0; g < 2; g++) {
		const __m256i keep = _mm256_castps_si256(_mm256_cmp_ps(dv[g], _mm256_setzero_ps(), _CMP_EQ_OQ));
		for (int i = 0; i < 16; i++) {
			__m256i l = qp_avx2_nearest_int(_mm256_div_ps(xv[g][i], dv[g]));
			l = _mm256_add_epi32(_mm256_max_epi32(lo, _mm256_min_epi32(hi, l)), bias);
			lv[g][i] = _mm256_blendv_epi8(l, lv[g][i], keep);
		}
		qp_avx2_levels_from_lanes(lv[g], 16, L + 128 * g);
	}
	pack_q6(L, y);
}

void qp_q6_k_quantize_row_avx2(const float *x, void *vy, int64_t n)
{
	struct qp_block_q6_K *y = vy;
	for (int64_t i = 0; i < n / QP_QK_K; i++)
		qp_avx2_q6_k_quantize_block(x + i * QP_QK_K, &y[i], NULL);
}

void qp_q6_k_quantize_row_imat_avx2(const float *x, void *vy, int64_t n, const float *imatrix)
{
	struct qp_block_q6_K *y = vy;
	for (int64_t i = 0; i < n / QP_QK_K; i++)
		qp_avx2_q6_k_quantize_block(x + i * QP_QK_K, &y[i], imatrix + i * QP_QK_K);
}

/* q[256] in -32..31, element order */
static inline void unpack_q6(const struct qp_block_q6_K *x, int8_t q[QP_QK_K])
{
	const __m256i m4 = _mm256_set1_epi8(0x0f);
	const __m256i bias = _mm256_set1_epi8(32);
	for (int h = 0; h < 2; h++) {
		const __m256i l0 = _mm256_loadu_si256((const __m256i *)(x->ql + 64 * h));
		const __m256i l1 = _mm256_loadu_si256((const __m256i *)(x->ql + 64 * h + 32));
		const __m256i hv = _mm256_loadu_si256((const __m256i *)(x->qh + 32 * h));
		const __m256i lows[4] = {
			_mm256_and_si256(l0, m4),
			_mm256_and_si256(l1, m4),
			_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
			_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
		};
		for (int s = 0; s < 4; s++) {
			const __m256i v = _mm256_or_si256(lows[s], _mm256_slli_epi16(qp_avx2_crumbs(hv, s), 4));
			_mm256_storeu_si256((__m256i *)(q + 128 * h + 32 * s), _mm256_sub_epi8(v, bias));
		}
	}
}

void qp_q6_k_dequantize_row_avx2(const void *vx, float *y, int64_t n)
{
	const struct qp_block_q6_K *x = vx;
	static const float zero[16] = {0};
	for (int64_t i = 0; i < n / QP_QK_K; i++) {
		int8_t q[QP_QK_K];
		float a[16];
		unpack_q6(&x[i], q);
		const float d = qp_fp16_to_fp32(x[i].d);
		for (int j = 0; j < 16; j++)
			a[j] = d * x[i].scales[j];
		qp_avx2_dequant_256(q, a, zero, y + i * QP_QK_K);
	}
}

/* fused: unpacked in registers, one float accumulator for the row (see
 * kquants.h) */
void qp_q6_k_vec_dot_avx2(int64_t n, float *s, const void *vx, const void *vy)
{
	const struct qp_block_q6_K *x = vx;
	const struct qp_block_q8_K *y = vy;
	__m256 acc = _mm256_setzero_ps();
	for (int64_t i = 0; i < n / QP_QK_K; i++)
		acc = qp_avx2_q6_k_block(&x[i], &y[i], acc);
	*s = qp_avx2_hsum_ps(acc);
}
