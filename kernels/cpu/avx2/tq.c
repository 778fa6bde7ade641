/* TQ1_0 and TQ2_0: trits unpacked to -1..1 bytes, then as the k-quants
 * (kquants.h) with one scale per super-block. */
#include "kernels/blocks.h"
#include "kernels/cpu/avx2/avx2.h"
#include "kernels/cpu/avx2/kquants.h"

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
