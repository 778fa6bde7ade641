/* Helpers shared by the AVX2 kernels; include only from files built with
 * -mavx2 -mfma -mf16c.
 *
 * Bit-exactness with the scalar reference rests on three rules: do the
 * same float operations in the same order (a multiply then a separate add,
 * never _mm256_fmadd_ps, where the reference has x*id + c; -ffp-contract=off
 * keeps the compiler from fusing them behind our back); reduce max/min only
 * where the result does not depend on order; and convert floats to 8 bits
 * with cvttps2dq plus "keep the low byte", which is what the reference's
 * qp_ref_to_i8 defines. */
#ifndef QP_KERNELS_AVX2_SIMD_H
#define QP_KERNELS_AVX2_SIMD_H

#include <immintrin.h>
#include <stdint.h>

static inline float qp_avx2_hsum_ps(__m256 v)
{
	__m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
	s = _mm_add_ps(s, _mm_movehl_ps(s, s));
	s = _mm_add_ss(s, _mm_movehdup_ps(s));
	return _mm_cvtss_f32(s);
}

/* qp_avx2_hsum_ps of a, b, c and d in lanes 0..3, each added in the same
 * order, in half the steps of four of them */
static inline __m128 qp_avx2_hsum4_ps(__m256 a, __m256 b, __m256 c, __m256 d)
{
	/* lane k + 4 onto lane k: [a0+a4 .. a3+a7 | b0+b4 .. b3+b7], and c, d */
	const __m256 ab = _mm256_add_ps(_mm256_permute2f128_ps(a, b, 0x20), _mm256_permute2f128_ps(a, b, 0x31));
	const __m256 cd = _mm256_add_ps(_mm256_permute2f128_ps(c, d, 0x20), _mm256_permute2f128_ps(c, d, 0x31));
	/* lane 2 onto lane 0, 3 onto 1: [a02, a13, c02, c13 | b02, b13, d02, d13] */
	const __m256 h = _mm256_add_ps(_mm256_shuffle_ps(ab, cd, _MM_SHUFFLE(1, 0, 1, 0)),
	                               _mm256_shuffle_ps(ab, cd, _MM_SHUFFLE(3, 2, 3, 2)));
	/* lane 1 onto lane 0: [a, c, a, c | b, d, b, d] */
	const __m256 t = _mm256_add_ps(_mm256_shuffle_ps(h, h, _MM_SHUFFLE(2, 0, 2, 0)),
	                               _mm256_shuffle_ps(h, h, _MM_SHUFFLE(3, 1, 3, 1)));
	return _mm_unpacklo_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
}

/* for finite lanes the maximum does not depend on the order of reduction */
static inline float qp_avx2_hmax_ps(__m256 v)
{
	__m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
	m = _mm_max_ps(m, _mm_movehl_ps(m, m));
	m = _mm_max_ss(m, _mm_movehdup_ps(m));
	return _mm_cvtss_f32(m);
}

static inline float qp_avx2_hmin_ps(__m256 v)
{
	__m128 m = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
	m = _mm_min_ps(m, _mm_movehl_ps(m, m));
	m = _mm_min_ss(m, _mm_movehdup_ps(m));
	return _mm_cvtss_f32(m);
}

static inline int qp_avx2_hsum_epi32(__m256i v)
{
	__m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
	s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
	s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
	return _mm_cvtsi128_si32(s);
}

/* bit k of a 32-lane mask for the 32 floats of a block: set where a lane
 * of v[k/8] satisfies the comparison that produced it */
static inline uint32_t qp_avx2_mask32(__m256 c0, __m256 c1, __m256 c2, __m256 c3)
{
	return (uint32_t)_mm256_movemask_ps(c0) | (uint32_t)_mm256_movemask_ps(c1) << 8 |
	       (uint32_t)_mm256_movemask_ps(c2) << 16 | (uint32_t)_mm256_movemask_ps(c3) << 24;
}

/* The low byte of each of 32 int32 lanes (elements 0..31 across a..d), in
 * element order. Masking first keeps the two saturating packs exact. */
static inline __m256i qp_avx2_low_bytes(__m256i a, __m256i b, __m256i c, __m256i d)
{
	const __m256i ff = _mm256_set1_epi32(0xff);
	const __m256i ab = _mm256_packus_epi32(_mm256_and_si256(a, ff), _mm256_and_si256(b, ff));
	const __m256i cd = _mm256_packus_epi32(_mm256_and_si256(c, ff), _mm256_and_si256(d, ff));
	/* the packs work per 128-bit lane: dwords now hold elements
	 * 0-3, 8-11, 16-19, 24-27, 4-7, 12-15, 20-23, 28-31 */
	const __m256i abcd = _mm256_packus_epi16(ab, cd);
	return _mm256_permutevar8x32_epi32(abcd, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* roundf(): half away from zero. _mm256_round_ps has no such mode (its
 * nearest is ties-to-even), so truncate and step away from zero when the
 * dropped fraction, which the subtraction gets exactly, is at least 1/2. */
static inline __m256 qp_avx2_roundf_ps(__m256 v)
{
	const __m256 sign = _mm256_set1_ps(-0.0f);
	const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
	const __m256 frac = _mm256_andnot_ps(sign, _mm256_sub_ps(v, t));
	const __m256 step = _mm256_or_ps(_mm256_and_ps(v, sign), _mm256_set1_ps(1.0f));
	const __m256 up = _mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ);
	return _mm256_add_ps(t, _mm256_and_ps(up, step));
}

/* 32 bytes of nibbles: bytes 0..15 the low nibbles of qs[0..15], bytes
 * 16..31 the high ones, which is element order for q4/q5 blocks */
static inline __m256i qp_avx2_nibbles(const uint8_t *qs)
{
	const __m128i t = _mm_loadu_si128((const __m128i *)qs);
	const __m256i both = _mm256_set_m128i(_mm_srli_epi16(t, 4), t);
	return _mm256_and_si256(both, _mm256_set1_epi8(0x0f));
}

/* byte j is 0xff where bit j of bits is set */
static inline __m256i qp_avx2_bits_to_bytes(uint32_t bits)
{
	const __m256i spread = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
	                                        2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
	const __m256i select = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
	const __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)bits), spread);
	return _mm256_cmpeq_epi8(_mm256_and_si256(v, select), select);
}

/* bit j of the result is bit 4 of byte j */
static inline uint32_t qp_avx2_bit4_of_bytes(__m256i b)
{
	/* the 16-bit shift carries bits across bytes, but only into the low
	 * bits of the next byte, never into bit 7, which movemask reads */
	return (uint32_t)_mm256_movemask_epi8(_mm256_slli_epi16(b, 3));
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

/* 8 int32 sums of 4 products of signed bytes each; |x| <= 127 keeps the
 * 16-bit pair sums of maddubs from saturating */
static inline __m256i qp_avx2_dot_i8(__m256i x, __m256i y)
{
	const __m256i ax = _mm256_sign_epi8(x, x);
	const __m256i sy = _mm256_sign_epi8(y, x);
	const __m256i p16 = _mm256_maddubs_epi16(ax, sy);
	return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
}

/* as qp_avx2_dot_i8 with x unsigned (0..31) */
static inline __m256i qp_avx2_dot_u8_i8(__m256i x, __m256i y)
{
	const __m256i p16 = _mm256_maddubs_epi16(x, y);
	return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
}

/* bytes 0..31 (signed) to floats in four vectors, element order kept */
static inline void qp_avx2_i8_to_ps(__m256i b, __m256 out[4])
{
	const __m128i lo = _mm256_castsi256_si128(b);
	const __m128i hi = _mm256_extracti128_si256(b, 1);
	out[0] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo));
	out[1] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8)));
	out[2] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi));
	out[3] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8)));
}

/* The bits of the largest |x| of a block of 32 (v holds its elements), by
 * integer maximum of the bits of |x|: their order is the floats' for every
 * non-NaN value, and a NaN's bits exceed Inf's (0x7f800000), so the result
 * is at least 0x7f800000 exactly when the block holds a NaN or an Inf, at
 * no more cost than the float maximum, which drops NaN by operand order. */
static inline uint32_t qp_avx2_absmax_bits(const __m256 v[4])
{
	const __m256i m = _mm256_set1_epi32(0x7fffffff);
	__m256i a[4];
	for (int k = 0; k < 4; k++)
		a[k] = _mm256_and_si256(_mm256_castps_si256(v[k]), m);
	const __m256i r = _mm256_max_epi32(_mm256_max_epi32(a[0], a[1]), _mm256_max_epi32(a[2], a[3]));
	__m128i h = _mm_max_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
	h = _mm_max_epi32(h, _mm_shuffle_epi32(h, _MM_SHUFFLE(1, 0, 3, 2)));
	h = _mm_max_epi32(h, _mm_shuffle_epi32(h, _MM_SHUFFLE(2, 3, 0, 1)));
	return (uint32_t)_mm_cvtsi128_si32(h);
}

/* Whether any of the 32 int32 codes of a block is negative. The q4_0,
 * q4_1, q5_0 and q5_1 quantizers truncate x * id + c (c >= 1/2) or
 * (x - min) * id + 1/2, which is >= 0 for every finite block with a normal
 * scale; a NaN element, and an Inf (whose block gets a scale of Inf or NaN,
 * so that some product is Inf * 0), make a NaN whose cvtt is INT32_MIN. So
 * every block holding NaN or Inf answers true, at four operations, and
 * the few others that do (degenerate scales) are only looked at again. */
static inline int qp_avx2_any_negative(__m256i a, __m256i b, __m256i c, __m256i d)
{
	return _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_or_si256(_mm256_or_si256(a, b), _mm256_or_si256(c, d))));
}

/* The second pass of a 32-element quantizer whose first may have met a
 * block holding NaN or Inf (and wrote what its vector code made of it):
 * every such block of x again, by the reference ref, which alone defines
 * what they give (its scalar min/max folds treat NaN as no vector min or
 * max does), into y's blocks of block_size bytes. A pass of its own keeps the call, which clobbers every
 * vector register, out of the first pass's loop. */
static inline void qp_avx2_redo_nonfinite(const float *x, void *y, int64_t nb, size_t block_size,
                                          void (*ref)(const float *, void *, int64_t))
{
	for (int64_t i = 0; i < nb; i++) {
		__m256 v[4];
		for (int k = 0; k < 4; k++)
			v[k] = _mm256_loadu_ps(x + 32 * i + 8 * k);
		if (qp_avx2_absmax_bits(v) >= 0x7f800000u)
			ref(x + 32 * i, (uint8_t *)y + block_size * (size_t)i, 32);
	}
}

/* The reference's min and max of a block of 32 (v holds xb[0..31]): by
 * value, except that a zero result takes the sign of the first zero in the
 * block. The reference keeps the first element of a given value it meets,
 * and only zero has two encodings; the sign of m is stored, and max - min
 * of an all-zero block must come out +0, not -0. */
static inline void qp_avx2_block_minmax(const float *xb, const __m256 v[4], float *min, float *max)
{
	const __m256 zero = _mm256_setzero_ps();
	float lo = qp_avx2_hmin_ps(_mm256_min_ps(_mm256_min_ps(v[0], v[1]), _mm256_min_ps(v[2], v[3])));
	float hi = qp_avx2_hmax_ps(_mm256_max_ps(_mm256_max_ps(v[0], v[1]), _mm256_max_ps(v[2], v[3])));
	if (lo == 0.0f || hi == 0.0f) {
		const uint32_t zeros = qp_avx2_mask32(_mm256_cmp_ps(v[0], zero, _CMP_EQ_OQ), _mm256_cmp_ps(v[1], zero, _CMP_EQ_OQ),
		                                      _mm256_cmp_ps(v[2], zero, _CMP_EQ_OQ), _mm256_cmp_ps(v[3], zero, _CMP_EQ_OQ));
		if (zeros) {
			const float first = xb[__builtin_ctz(zeros)];
			if (lo == 0.0f)
				lo = first;
			if (hi == 0.0f)
				hi = first;
		}
	}
	*min = lo;
	*max = hi;
}

#endif
