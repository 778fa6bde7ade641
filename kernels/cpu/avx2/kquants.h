/* Helpers shared by the AVX2 k-quant and ternary kernels; include only from
 * files built with -mavx2 -mfma -mf16c.
 *
 * Each type unpacks a super-block into 256 small signed bytes in element
 * order (its q, bias included where the format has one), plus one float
 * factor and one float offset per 16 elements. Dequantize is then
 * y = a * q - b for every element, which is the reference's own operation
 * for every one of these types (where the reference has no offset, b is +0
 * and a * q - 0 gives a * q's bits, signed zeros and NaNs included). The
 * dot products multiply the bytes with q8_K's by maddubs, scale by sub-block
 * in integers, and convert to float once per super-block. */
#ifndef QP_KERNELS_AVX2_KQUANTS_H
#define QP_KERNELS_AVX2_KQUANTS_H

#include <immintrin.h>
#include <stdint.h>

#include "kernels/blocks.h"

/* bit k of each of 32 bytes, as 0 or 1 */
static inline __m256i qp_avx2_bit_k(__m256i v, int k)
{
	/* a 16-bit shift moves the high byte's bits into the top of the low
	 * byte, never into bit 0, which is all that is kept */
	return _mm256_and_si256(_mm256_srl_epi16(v, _mm_cvtsi32_si128(k)), _mm256_set1_epi8(1));
}

/* the 2-bit fields at shift 2s of 32 bytes */
static inline __m256i qp_avx2_crumbs(__m256i v, int s)
{
	return _mm256_and_si256(_mm256_srl_epi16(v, _mm_cvtsi32_si128(2 * s)), _mm256_set1_epi8(3));
}

/* y[0..255] = a[j] * q[e] - b[j], j = e / 16 */
static inline void qp_avx2_dequant_256(const int8_t q[QP_QK_K], const float a[16], const float b[16], float *y)
{
	for (int j = 0; j < 16; j++) {
		const __m128i qb = _mm_loadu_si128((const __m128i *)(q + 16 * j));
		const __m256 f0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(qb));
		const __m256 f1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(qb, 8)));
		const __m256 va = _mm256_set1_ps(a[j]);
		const __m256 vb = _mm256_set1_ps(b[j]);
		_mm256_storeu_ps(y + 16 * j, _mm256_sub_ps(_mm256_mul_ps(va, f0), vb));
		_mm256_storeu_ps(y + 16 * j + 8, _mm256_sub_ps(_mm256_mul_ps(va, f1), vb));
	}
}

/* sum over 16-element groups j of sc[j] * sum(q * q8), |q| <= 127; sc as
 * int16 and every partial sum within int32 for these formats */
static inline int32_t qp_avx2_scaled_dot_256(const int8_t q[QP_QK_K], const int8_t q8[QP_QK_K], const int16_t sc[16])
{
	__m256i acc = _mm256_setzero_si256();
	for (int k = 0; k < 8; k++) {
		const __m256i x = _mm256_loadu_si256((const __m256i *)(q + 32 * k));
		const __m256i y = _mm256_loadu_si256((const __m256i *)(q8 + 32 * k));
		const __m256i p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
		const __m256i s = _mm256_setr_m128i(_mm_set1_epi16(sc[2 * k]), _mm_set1_epi16(sc[2 * k + 1]));
		acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p16, s));
	}
	__m128i r = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
	r = _mm_add_epi32(r, _mm_shuffle_epi32(r, _MM_SHUFFLE(1, 0, 3, 2)));
	r = _mm_add_epi32(r, _mm_shuffle_epi32(r, _MM_SHUFFLE(2, 3, 0, 1)));
	return _mm_cvtsi128_si32(r);
}

#endif
