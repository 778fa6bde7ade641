/* TQ1_0 and TQ2_0: trits unpacked to -1..1 bytes, then as the k-quants
 * (kquants.h) with one scale per super-block. Quantize rounds 256 x / d at
 * a time and packs the trits in bytes. */
#include "kernels/blocks.h"
#include "kernels/cpu/avx2/avx2.h"
#include "kernels/cpu/avx2/kquants.h"
#include "kernels/cpu/avx2/simd.h"

#include <math.h>
#include <string.h>

/* trit k (0..2) of 16 bytes: the top of (b * 3^k mod 256) * 3 over 256,
 * done in 16-bit lanes */
static inline __m128i trits16(__m128i b, int k)
{
	static const int16_t pow3[5] = {1, 3, 9, 27, 81};
	const __m256i w = _mm256_cvtepu8_epi16(b);
	const __m256i q = _mm256_and_si256(_mm256_mullo_epi16(w, _mm256_set1_epi16(pow3[k])), _mm256_set1_epi16(0xff));
	const __m256i t = _mm256_srli_epi16(_mm256_mullo_epi16(q, _mm256_set1_epi16(3)), 8);
	return _mm_packus_epi16(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
}

/* q[256] in -1..1, element order (see kernels/cpu/ref/tq1_0.c) */
static inline void unpack_tq1(const struct qp_block_tq1_0 *x, int8_t q[QP_QK_K])
{
	const __m128i one = _mm_set1_epi8(1);
	const __m128i b0 = _mm_loadu_si128((const __m128i *)x->qs);
	const __m128i b1 = _mm_loadu_si128((const __m128i *)(x->qs + 16));
	const __m128i b2 = _mm_loadu_si128((const __m128i *)(x->qs + 32));
	for (int k = 0; k < 5; k++) {
		_mm_storeu_si128((__m128i *)(q + 32 * k), _mm_sub_epi8(trits16(b0, k), one));
		_mm_storeu_si128((__m128i *)(q + 32 * k + 16), _mm_sub_epi8(trits16(b1, k), one));
		_mm_storeu_si128((__m128i *)(q + 160 + 16 * k), _mm_sub_epi8(trits16(b2, k), one));
	}
	/* the last 16 from qh's four bytes: trit k of byte j is 240 + 4k + j */
	uint32_t h;
	memcpy(&h, x->qh, 4);
	const __m128i hb = _mm_set1_epi32((int)h);
	/* bytes 4k + j of the result: byte j of qh, shifted per k below */
	__m128i t = _mm_setzero_si128();
	for (int k = 0; k < 4; k++) {
		const __m128i tk = _mm_sub_epi8(trits16(hb, k), one);
		const __m128i keep = _mm_set_epi32(k == 3 ? -1 : 0, k == 2 ? -1 : 0, k == 1 ? -1 : 0, k == 0 ? -1 : 0);
		t = _mm_or_si128(t, _mm_and_si128(tk, keep));
	}
	_mm_storeu_si128((__m128i *)(q + 240), t);
}

/* q[256] in -1..1: crumb s of byte m of group g is element 128g + 32s + m */
static inline void unpack_tq2(const struct qp_block_tq2_0 *x, int8_t q[QP_QK_K])
{
	const __m256i one = _mm256_set1_epi8(1);
	for (int g = 0; g < 2; g++) {
		const __m256i v = _mm256_loadu_si256((const __m256i *)(x->qs + 32 * g));
		for (int s = 0; s < 4; s++)
			_mm256_storeu_si256((__m256i *)(q + 128 * g + 32 * s), _mm256_sub_epi8(qp_avx2_crumbs(v, s), one));
	}
}

static const float zero16[16];
static const int16_t ones16[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};

void qp_tq1_0_dequantize_row_avx2(const void *vx, float *y, int64_t n)
{
	const struct qp_block_tq1_0 *x = vx;
	for (int64_t i = 0; i < n / QP_QK_K; i++) {
		int8_t q[QP_QK_K];
		float a[16];
		unpack_tq1(&x[i], q);
		const float d = qp_fp16_to_fp32(x[i].d);
		for (int j = 0; j < 16; j++)
			a[j] = d;
		qp_avx2_dequant_256(q, a, zero16, y + i * QP_QK_K);
	}
}

void qp_tq1_0_vec_dot_avx2(int64_t n, float *s, const void *vx, const void *vy)
{
	const struct qp_block_tq1_0 *x = vx;
	const struct qp_block_q8_K *y = vy;
	float sumf = 0;
	for (int64_t i = 0; i < n / QP_QK_K; i++) {
		int8_t q[QP_QK_K];
		unpack_tq1(&x[i], q);
		const int sum = qp_avx2_scaled_dot_256(q, y[i].qs, ones16);
		sumf += (float)sum * (qp_fp16_to_fp32(x[i].d) * y[i].d);
	}
	*s = sumf;
}

void qp_tq2_0_dequantize_row_avx2(const void *vx, float *y, int64_t n)
{
	const struct qp_block_tq2_0 *x = vx;
	for (int64_t i = 0; i < n / QP_QK_K; i++) {
		int8_t q[QP_QK_K];
		float a[16];
		unpack_tq2(&x[i], q);
		const float d = qp_fp16_to_fp32(x[i].d);
		for (int j = 0; j < 16; j++)
			a[j] = d;
		qp_avx2_dequant_256(q, a, zero16, y + i * QP_QK_K);
	}
}

void qp_tq2_0_vec_dot_avx2(int64_t n, float *s, const void *vx, const void *vy)
{
	const struct qp_block_tq2_0 *x = vx;
	const struct qp_block_q8_K *y = vy;
	float sumf = 0;
	for (int64_t i = 0; i < n / QP_QK_K; i++) {
		int8_t q[QP_QK_K];
		unpack_tq2(&x[i], q);
		const int sumi = qp_avx2_scaled_dot_256(q, y[i].qs, ones16);
		sumf += (float)sumi * (y[i].d * qp_fp16_to_fp32(x[i].d));
	}
	*s = sumf;
}

/* The reference's amax, the fold `amax > a ? amax : a` over |x|. Without
 * NaN that is the maximum, whatever the order; a NaN resets the fold to
 * the next element, so a block holding one takes the scalar loop. */
static float block_amax(const float *x)
{
	const __m256 sign = _mm256_set1_ps(-0.0f);
	__m256 m = _mm256_setzero_ps(), nan = _mm256_setzero_ps();
	for (int k = 0; k < QP_QK_K / 8; k++) {
		const __m256 a = _mm256_andnot_ps(sign, _mm256_loadu_ps(x + 8 * k));
		m = _mm256_max_ps(m, a);
		nan = _mm256_or_ps(nan, _mm256_cmp_ps(a, a, _CMP_UNORD_Q));
	}
	if (!_mm256_movemask_ps(nan))
		return qp_avx2_hmax_ps(m);
	float amax = 0.0f;
	for (int j = 0; j < QP_QK_K; j++) {
		const float a = fabsf(x[j]);
		amax = amax > a ? amax : a;
	}
	return amax;
}

/* t[e] = low byte of lroundf(x[e] * id) + 1 for the 256 elements: the
 * trit plus 1 in 0..2 for the ternary rows. The reference's
 * qp_ref_lroundf_low gives 0 for NaN, Inf and anything at or past 2^31 in
 * magnitude, and so does cvttps2dq's 0x80000000, in its low byte; below
 * that both are plain integers. */
static void trits_plus_one(const float *x, float id, uint8_t t[QP_QK_K])
{
	const __m256 vid = _mm256_set1_ps(id);
	const __m256i one = _mm256_set1_epi8(1);
	for (int e = 0; e < QP_QK_K; e += 32) {
		__m256i v[4];
		for (int k = 0; k < 4; k++)
			v[k] = _mm256_cvttps_epi32(qp_avx2_roundf_ps(_mm256_mul_ps(_mm256_loadu_ps(x + e + 8 * k), vid)));
		const __m256i b = _mm256_add_epi8(qp_avx2_low_bytes(v[0], v[1], v[2], v[3]), one);
		_mm256_storeu_si256((__m256i *)(t + e), b);
	}
}

/* ceil(v * 256 / 243) of 16 bytes, as the reference's trits_to_byte
 * computes it and narrows it: v + floor((13 v + 242) / 243), the division
 * a multiply-high that is exact for every byte v (13 v + 242 <= 3557).
 * Five trits give v <= 242; garbage trits of non-finite input give more,
 * and a result past 255 keeps its low byte, as the reference's cast does. */
static inline __m128i trits_to_bytes16(__m128i b)
{
	const __m256i v = _mm256_cvtepu8_epi16(b);
	const __m256i n = _mm256_add_epi16(_mm256_mullo_epi16(v, _mm256_set1_epi16(13)), _mm256_set1_epi16(242));
	const __m256i q = _mm256_srli_epi16(_mm256_mulhi_epu16(n, _mm256_set1_epi16(1079)), 2);
	const __m256i r = _mm256_and_si256(_mm256_add_epi16(v, q), _mm256_set1_epi16(0xff));
	return _mm_packus_epi16(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
}

/* q * 3 + t in bytes, wrapping as the reference's `& 0xff` */
static inline __m256i times3_plus(__m256i q, __m256i t)
{
	return _mm256_add_epi8(_mm256_add_epi8(_mm256_add_epi8(q, q), q), t);
}

void qp_tq1_0_quantize_row_avx2(const float *x, void *vy, int64_t n)
{
	struct qp_block_tq1_0 *y = vy;
	for (int64_t i = 0; i < n / QP_QK_K; i++, x += QP_QK_K) {
		const float d = block_amax(x);
		const float id = d ? 1.0f / d : 0.0f;
		y[i].d = qp_fp32_to_fp16(d);
		uint8_t t[QP_QK_K];
		trits_plus_one(x, id, t);

		/* the base-3 values of qs[0..47] and qh[0..3], five (four) trits
		 * each, most significant first; see kernels/cpu/ref/tq1_0.c */
		uint8_t v[64] = {0};
		__m256i q = _mm256_setzero_si256();
		for (int k = 0; k < 5; k++)
			q = times3_plus(q, _mm256_loadu_si256((const __m256i *)(t + 32 * k)));
		_mm256_storeu_si256((__m256i *)v, q);
		__m128i q16 = _mm_setzero_si128();
		for (int k = 0; k < 5; k++) {
			const __m128i tk = _mm_loadu_si128((const __m128i *)(t + 160 + 16 * k));
			q16 = _mm_add_epi8(_mm_add_epi8(_mm_add_epi8(q16, q16), q16), tk);
		}
		_mm_storeu_si128((__m128i *)(v + 32), q16);
		for (int j = 0; j < 4; j++) {
			unsigned h = 0;
			for (int k = 0; k < 4; k++)
				h = (h * 3 + t[240 + 4 * k + j]) & 0xffu;
			/* a zero trit last, so the first is the most significant */
			v[48 + j] = (uint8_t)(h * 3);
		}
		uint8_t b[64];
		for (int k = 0; k < 4; k++)
			_mm_storeu_si128((__m128i *)(b + 16 * k), trits_to_bytes16(_mm_loadu_si128((const __m128i *)(v + 16 * k))));
		memcpy(y[i].qs, b, sizeof(y[i].qs));
		memcpy(y[i].qh, b + sizeof(y[i].qs), sizeof(y[i].qh));
	}
}

void qp_tq2_0_quantize_row_avx2(const float *x, void *vy, int64_t n)
{
	struct qp_block_tq2_0 *y = vy;
	const __m256i three = _mm256_set1_epi8(3);
	for (int64_t i = 0; i < n / QP_QK_K; i++, x += QP_QK_K) {
		const float d = block_amax(x);
		const float id = d ? 1.0f / d : 0.0f;
		y[i].d = qp_fp32_to_fp16(d);
		uint8_t t[QP_QK_K];
		trits_plus_one(x, id, t);
		/* crumb k of byte m of group g is element 128 g + 32 k + m; values
		 * < 4, so the 16-bit shifts carry nothing across bytes */
		for (int g = 0; g < 2; g++) {
			__m256i b = _mm256_setzero_si256();
			for (int k = 0; k < 4; k++) {
				const __m256i tk = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(t + 128 * g + 32 * k)), three);
				b = _mm256_or_si256(b, _mm256_sll_epi16(tk, _mm_cvtsi32_si128(2 * k)));
			}
			_mm256_storeu_si256((__m256i *)(y[i].qs + 32 * g), b);
		}
	}
}
