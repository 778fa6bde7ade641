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
#include "kernels/cpu/avx2/simd.h"

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

/* The quantizers work on eight groups (sub-blocks) at once, one group per
 * lane: "lane layout" v[i] holds element i of each group, so every lane
 * does its own group's operations in the scalar order. */

/* qp_kq_nearest_int of 8 lanes: through the float adder, exact for
 * |v| <= 2^22 and the same garbage as the scalar one elsewhere */
static inline __m256i qp_avx2_nearest_int(__m256 v)
{
	const __m256 s = _mm256_add_ps(v, _mm256_set1_ps(12582912.0f));
	return _mm256_sub_epi32(_mm256_and_si256(_mm256_castps_si256(s), _mm256_set1_epi32(0x007fffff)),
	                        _mm256_set1_epi32(0x00400000));
}

/* r[i] <- lane i of each of r[0..7]: an 8x8 transpose */
static inline void qp_avx2_transpose8(__m256 r[8])
{
	const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
	const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
	const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
	const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
	const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xee);
	const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xee);
	const __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xee);
	const __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xee);
	r[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
	r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
	r[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
	r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
	r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
	r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
	r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
	r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

/* v[i] lane j = src[n * j + i]: eight consecutive groups of n (a multiple
 * of 8) elements into lane layout */
static inline void qp_avx2_to_lanes(const float *src, int n, __m256 *v)
{
	for (int b = 0; b < n; b += 8) {
		for (int j = 0; j < 8; j++)
			v[b + j] = _mm256_loadu_ps(src + n * j + b);
		qp_avx2_transpose8(v + b);
	}
}

/* dst[n * j + i] = low byte of L[i] lane j: levels in lane layout back to
 * element order, eight groups of n (a multiple of 16) */
static inline void qp_avx2_levels_from_lanes(const __m256i *L, int n, uint8_t *dst)
{
	__m256 r[32][8]; /* r[b][j]: elements 8b..8b+7 of group j */
	for (int b = 0; b < n / 8; b++) {
		for (int i = 0; i < 8; i++)
			r[b][i] = _mm256_castsi256_ps(L[8 * b + i]);
		qp_avx2_transpose8(r[b]);
	}
	/* in memory order the int32 vectors are r[0][0], r[1][0], ... r[0][1] ... */
	const int per_row = n / 8;
	for (int k = 0; k < n; k += 4) {
		__m256i v[4];
		for (int u = 0; u < 4; u++) {
			const int idx = k + u; /* vector index in memory order */
			v[u] = _mm256_castps_si256(r[idx % per_row][idx / per_row]);
		}
		_mm256_storeu_si256((__m256i *)(dst + 8 * k), qp_avx2_low_bytes(v[0], v[1], v[2], v[3]));
	}
}

/* bytes of 0..3, four to a byte as q2_K and q3_K pack them: per 128, byte l
 * holds elements l, l+32, l+64, l+96 from bit 0 up */
static inline void qp_avx2_pack_crumbs(const uint8_t L[QP_QK_K], uint8_t qs[QP_QK_K / 4])
{
	for (int h = 0; h < 2; h++) {
		const uint8_t *l = L + 128 * h;
		const __m256i a = _mm256_loadu_si256((const __m256i *)l);
		const __m256i b = _mm256_loadu_si256((const __m256i *)(l + 32));
		const __m256i c = _mm256_loadu_si256((const __m256i *)(l + 64));
		const __m256i d = _mm256_loadu_si256((const __m256i *)(l + 96));
		/* each value < 4: the 16-bit shifts carry nothing across bytes */
		const __m256i v = _mm256_or_si256(_mm256_or_si256(a, _mm256_slli_epi16(b, 2)),
		                                  _mm256_or_si256(_mm256_slli_epi16(c, 4), _mm256_slli_epi16(d, 6)));
		_mm256_storeu_si256((__m256i *)(qs + 32 * h), v);
	}
}

#endif
