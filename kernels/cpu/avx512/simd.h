/* Helpers shared by the AVX-512 kernels; include only from files built
 * with the AVX-512 flags (kernels/meson.build). They hand AVX2's
 * lane-layout code (eight groups to a ymm register) sixteen groups at
 * once and back: groups 0..7 in the low half of a zmm, 8..15 in the high
 * one. */
#ifndef QP_KERNELS_AVX512_SIMD_H
#define QP_KERNELS_AVX512_SIMD_H

#include <immintrin.h>

static inline __m512 qp_avx512_join_ps(__m256 lo, __m256 hi)
{
	return _mm512_insertf32x8(_mm512_castps256_ps512(lo), hi, 1);
}

/* half h (0 low, 1 high) of v; h a constant where the caller unrolls */
static inline __m256 qp_avx512_half_ps(__m512 v, int h)
{
	return h ? _mm512_extractf32x8_ps(v, 1) : _mm512_castps512_ps256(v);
}

static inline __m256i qp_avx512_half_si(__m512i v, int h)
{
	return h ? _mm512_extracti32x8_epi32(v, 1) : _mm512_castsi512_si256(v);
}

#endif
