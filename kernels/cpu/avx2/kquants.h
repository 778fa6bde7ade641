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
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

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

/* q6_k.c: one super-block of Q6_K, qw its 256 importances or NULL (the
 * reference's weights x^2). And its second half, for a wider search to
 * finish with: the block from the fitted scales sc (sub-blocks 0..7 and
 * 8..15). That returns false where a stored scale is zero, whose sub-block
 * keeps the search's levels, which it does not have: the caller then
 * makes the block with qp_avx2_q6_k_quantize_block (rare). */
void qp_avx2_q6_k_quantize_block(const float *x, struct qp_block_q6_K *y, const float *qw);
bool qp_avx2_q6_k_from_scales(const float *x, const __m256 sc[2], struct qp_block_q6_K *y);

/* q4_k.c, the pieces of Q4_K's and Q5_K's quantizer around the search,
 * for a wider search to use. lanes: one super-block xb in lane layout
 * (sub-block j in lane j), the search's weights wv (the reference's av_x +
 * |x| where qwb, the block's importances, is NULL; else qwb * sqrt(2
 * sigma^2 + x^2)) and, with qwb, their sums per sub-block in sw. finish:
 * the block y (q4_K, or q5_K where q5) from the search's levels lv, scales
 * sc and -mins mn, imat saying which of the reference's scale packings. */
void qp_avx2_q45_lanes(const float *xb, const float *qwb, __m256 xv[32], __m256 wv[32], float sw[8]);
void qp_avx2_q45_finish(bool q5, bool imat, const __m256 xv[32], __m256i lv[32], __m256 sc, __m256 mn,
                        const float sw[8], void *y);
/* and the whole of AVX2's q4_K (q5_K where q5) quantizer for a row, qw its
 * importances or NULL: what a wider one leaves of a row */
void qp_avx2_q45_quantize_row(const float *x, void *vy, int64_t n, const float *qw, bool q5);

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

/* ---- fused dots against q8_K ----
 *
 * One super-block of x against one of q8_K, unpacked in registers: every
 * type's quants become unsigned bytes u in 0..2^b - 1 (the format's q plus
 * its bias, where it has one), eight 32-byte chunks in element order, and
 * each chunk k contributes madd(maddubs(u_k, q8_k), sc_k) to one int32
 * vector, sc_k holding the int16 scale of each 16 bytes of the chunk. What
 * the bias or the minimums take away comes from q8_K's bsums: a bias b
 * (q3_K's 4, q6_K's 32) as an integer b * sc . bsums subtracted from that
 * vector, minimums m as dmin * (m . bsums) in float. Per block the float
 * accumulator then takes
 *
 *     acc = fma(y.d * d, float(sumi), acc)                 (every type)
 *     acc = -(y.d * dmin) * float(m . bsums) + acc          (with minimums)
 *
 * and is reduced once, qp_avx2_hsum_ps, at the end of the row: every
 * integer lane is exact whatever order it is added in, so the tiles of
 * tile_kq.c, which unpack a block once for many tokens, give these dots bit
 * for bit by doing the same float operations on the same lanes.
 *
 * Ranges: u <= 63 and |q8| <= 127, so a maddubs pair is at most 16002 and
 * never saturates; every lane stays far inside int32. */

/* the scale of chunk k (k < 8) of a block with 16 sub-blocks of 16: s16
 * holds the 16 scales as int16; sub-block 2k's scale in the low 128 bits,
 * 2k + 1's in the high */
static inline __m256i qp_avx2_sc16_chunk(__m256i s16, int k)
{
	const __m256i half = k < 4 ? _mm256_permute2x128_si256(s16, s16, 0x00) : _mm256_permute2x128_si256(s16, s16, 0x11);
	const int j = k % 4;
	const __m256i pick = _mm256_setr_m128i(_mm_set1_epi16((short)(((4 * j + 1) << 8) | (4 * j))),
	                                       _mm_set1_epi16((short)(((4 * j + 3) << 8) | (4 * j + 2))));
	return _mm256_shuffle_epi8(half, pick);
}

/* the scale of chunk k of a block with 8 sub-blocks of 32: s8 holds the
 * 8 scales as int16 in both 128-bit halves */
static inline __m256i qp_avx2_sc8_chunk(__m256i s8, int k)
{
	return _mm256_shuffle_epi8(s8, _mm256_set1_epi16((short)(((2 * k + 1) << 8) | (2 * k))));
}

/* the bits of byte position c (0..7) of 32 bytes, moved to bit t */
static inline __m256i qp_avx2_bit_to(__m256i v, int c, int t)
{
	const __m256i b = _mm256_and_si256(v, _mm256_set1_epi8((char)(1 << c)));
	/* one bit inside each byte: the 16-bit shifts move it within its byte */
	return c < t ? _mm256_slli_epi16(b, t - c) : c > t ? _mm256_srli_epi16(b, c - t) : b;
}

/* q4_K's and q5_K's 12 packed bytes as 8 scales (bytes 0-7) and 8
 * minimums (bytes 8-15), qp_kq_scale_min_k4's unpacking four at a time */
static inline __m128i qp_avx2_q4_k_scales(const uint8_t p[12])
{
	uint32_t u[3];
	memcpy(u, p, 12);
	const uint32_t k1 = 0x3f3f3f3f, k2 = 0x0f0f0f0f, k3 = 0x03030303;
	return _mm_setr_epi32((int)(u[0] & k1), (int)((u[2] & k2) | (((u[0] >> 6) & k3) << 4)), (int)(u[1] & k1),
	                      (int)(((u[2] >> 4) & k2) | (((u[1] >> 6) & k3) << 4)));
}

/* q3_K's 12 packed bytes as 16 signed scales, qp_kq_q3_scales four at a
 * time */
static inline __m128i qp_avx2_q3_k_scales(const uint8_t p[12])
{
	uint32_t u[3];
	memcpy(u, p, 12);
	const uint32_t k2 = 0x0f0f0f0f, k3 = 0x03030303;
	const __m128i s = _mm_setr_epi32((int)((u[0] & k2) | ((u[2] & k3) << 4)),
	                                 (int)((u[1] & k2) | (((u[2] >> 2) & k3) << 4)),
	                                 (int)(((u[0] >> 4) & k2) | (((u[2] >> 4) & k3) << 4)),
	                                 (int)(((u[1] >> 4) & k2) | (((u[2] >> 6) & k3) << 4)));
	return _mm_sub_epi8(s, _mm_set1_epi8(32));
}

static inline __m256i qp_avx2_chunk_dot(__m256i u, const int8_t *q8, __m256i sc)
{
	return _mm256_madd_epi16(_mm256_maddubs_epi16(u, _mm256_loadu_si256((const __m256i *)q8)), sc);
}

static inline __m256 qp_avx2_q2_k_block(const struct qp_block_q2_K *x, const struct qp_block_q8_K *y, __m256 acc)
{
	const __m128i raw = _mm_loadu_si128((const __m128i *)x->scales);
	const __m256i s16 = _mm256_cvtepu8_epi16(_mm_and_si128(raw, _mm_set1_epi8(0x0f)));
	const __m256i m16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(raw, 4), _mm_set1_epi8(0x0f)));
	const __m256i three = _mm256_set1_epi8(3);
	__m256i sumi = _mm256_setzero_si256();
	_Pragma("GCC unroll 8")
	for (int h = 0; h < 2; h++) {
		const __m256i v = _mm256_loadu_si256((const __m256i *)(x->qs + 32 * h));
		_Pragma("GCC unroll 8")
		for (int s = 0; s < 4; s++) {
			const __m256i u = _mm256_and_si256(_mm256_srli_epi16(v, 2 * s), three);
			const int k = 4 * h + s;
			sumi = _mm256_add_epi32(sumi, qp_avx2_chunk_dot(u, y->qs + 32 * k, qp_avx2_sc16_chunk(s16, k)));
		}
	}
	const __m256i mins = _mm256_madd_epi16(m16, _mm256_loadu_si256((const __m256i *)y->bsums));
	acc = _mm256_fmadd_ps(_mm256_set1_ps(y->d * _cvtsh_ss(x->d)), _mm256_cvtepi32_ps(sumi), acc);
	return _mm256_fnmadd_ps(_mm256_set1_ps(y->d * _cvtsh_ss(x->dmin)), _mm256_cvtepi32_ps(mins), acc);
}

static inline __m256 qp_avx2_q3_k_block(const struct qp_block_q3_K *x, const struct qp_block_q8_K *y, __m256 acc)
{
	const __m256i s16 = _mm256_cvtepi8_epi16(qp_avx2_q3_k_scales(x->scales));
	const __m256i hm = _mm256_loadu_si256((const __m256i *)x->hmask);
	const __m256i three = _mm256_set1_epi8(3);
	__m256i sumi = _mm256_setzero_si256();
	_Pragma("GCC unroll 8")
	for (int h = 0; h < 2; h++) {
		const __m256i v = _mm256_loadu_si256((const __m256i *)(x->qs + 32 * h));
		_Pragma("GCC unroll 8")
		for (int s = 0; s < 4; s++) {
			const int k = 4 * h + s;
			const __m256i u = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(v, 2 * s), three),
			                                  qp_avx2_bit_to(hm, k, 2));
			sumi = _mm256_add_epi32(sumi, qp_avx2_chunk_dot(u, y->qs + 32 * k, qp_avx2_sc16_chunk(s16, k)));
		}
	}
	/* q = u - 4 */
	const __m256i bias = _mm256_madd_epi16(_mm256_slli_epi16(s16, 2), _mm256_loadu_si256((const __m256i *)y->bsums));
	sumi = _mm256_sub_epi32(sumi, bias);
	return _mm256_fmadd_ps(_mm256_set1_ps(y->d * _cvtsh_ss(x->d)), _mm256_cvtepi32_ps(sumi), acc);
}

/* q4_K (qh NULL) and q5_K */
static inline __m256 qp_avx2_q45_k_block(uint16_t d, uint16_t dmin, const uint8_t scales[12], const uint8_t *qs,
                                         const uint8_t *qh, const struct qp_block_q8_K *y, __m256 acc)
{
	const __m128i sm = qp_avx2_q4_k_scales(scales);
	const __m256i s8 = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(sm));
	/* each minimum twice, against the two bsums of its 32 */
	const __m256i m16 = _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(sm, sm));
	const __m256i m4 = _mm256_set1_epi8(0x0f);
	const __m256i hv = qh ? _mm256_loadu_si256((const __m256i *)qh) : _mm256_setzero_si256();
	__m256i sumi = _mm256_setzero_si256();
	_Pragma("GCC unroll 8")
	for (int g = 0; g < 4; g++) {
		const __m256i v = _mm256_loadu_si256((const __m256i *)(qs + 32 * g));
		__m256i lo = _mm256_and_si256(v, m4);
		__m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
		if (qh) {
			lo = _mm256_or_si256(lo, qp_avx2_bit_to(hv, 2 * g, 4));
			hi = _mm256_or_si256(hi, qp_avx2_bit_to(hv, 2 * g + 1, 4));
		}
		sumi = _mm256_add_epi32(sumi, qp_avx2_chunk_dot(lo, y->qs + 64 * g, qp_avx2_sc8_chunk(s8, 2 * g)));
		sumi = _mm256_add_epi32(sumi, qp_avx2_chunk_dot(hi, y->qs + 64 * g + 32, qp_avx2_sc8_chunk(s8, 2 * g + 1)));
	}
	const __m256i mins = _mm256_madd_epi16(m16, _mm256_loadu_si256((const __m256i *)y->bsums));
	acc = _mm256_fmadd_ps(_mm256_set1_ps(y->d * _cvtsh_ss(d)), _mm256_cvtepi32_ps(sumi), acc);
	return _mm256_fnmadd_ps(_mm256_set1_ps(y->d * _cvtsh_ss(dmin)), _mm256_cvtepi32_ps(mins), acc);
}

static inline __m256 qp_avx2_q6_k_block(const struct qp_block_q6_K *x, const struct qp_block_q8_K *y, __m256 acc)
{
	const __m256i s16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x->scales));
	const __m256i m4 = _mm256_set1_epi8(0x0f);
	__m256i sumi = _mm256_setzero_si256();
	_Pragma("GCC unroll 8")
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
		_Pragma("GCC unroll 8")
		for (int s = 0; s < 4; s++) {
			const int k = 4 * h + s;
			/* the crumb at bits 2s..2s+1 to bits 4..5 */
			const __m256i top = _mm256_and_si256(s < 2 ? _mm256_slli_epi16(hv, 4 - 2 * s) : _mm256_srli_epi16(hv, 2 * s - 4),
			                                     _mm256_set1_epi8(0x30));
			const __m256i u = _mm256_or_si256(lows[s], top);
			sumi = _mm256_add_epi32(sumi, qp_avx2_chunk_dot(u, y->qs + 32 * k, qp_avx2_sc16_chunk(s16, k)));
		}
	}
	/* q = u - 32 */
	const __m256i bias = _mm256_madd_epi16(_mm256_slli_epi16(s16, 5), _mm256_loadu_si256((const __m256i *)y->bsums));
	sumi = _mm256_sub_epi32(sumi, bias);
	return _mm256_fmadd_ps(_mm256_set1_ps(y->d * _cvtsh_ss(x->d)), _mm256_cvtepi32_ps(sumi), acc);
}

#endif
