/* q8_0 x q8_0 at AVX-512 (VNNI on 256-bit vectors). A block's integer dot
 * is one vpdpbusd, unsigned bytes against signed: x + 128 (the sign bit
 * flipped) against y, into an accumulator that starts at -128 * (the sum
 * of y's four bytes in each lane), made once per token block. AVX2 needs
 * three steps for it (the signs moved onto y, maddubs, madd). The int32
 * lanes are the exact sums of the same four products, so the float work
 * after them (AVX2's: the lanes converted, an FMA by dx * dy per block
 * in order, the lanes added as qp_avx2_hsum_ps does) gives AVX2's results
 * bit for bit wherever AVX2's are exact: everywhere but at a -128 against
 * a negative value, which AVX2's sign trick wraps (an activation's in its
 * vec_dot, a weight's in its tile; llama.cpp's AVX2 code does the same)
 * and this does not. Neither our quantizer nor llama.cpp's writes -128.
 *
 * The tile gives this vec_dot's bits by the same steps per (row, token)
 * pair. AVX-512's 32 vector registers hold 6 x 4 pairs' accumulators
 * beside the tokens' blocks and corrections (llama-docs-27m's q8_0
 * prefill, bench/eval on one thread: 4 x 4 tiles 1852 tok/s, 5 x 4 1857,
 * 6 x 4 1900 to 1916; AVX2's 4 x 3 tile 1328 to 1378). */
#include "kernels/cpu/avx512/avx512.h"

#include <immintrin.h>

#include "kernels/blocks.h"
#include "kernels/cpu/avx2/simd.h"
#include "kernels/cpu/avx2/tile.h"

#define INLINE static inline __attribute__((always_inline))

/* see kernels/cpu/avx2/tile.c */
#define PF_BYTES 4096

/* -128 * (sum of y's bytes 4j .. 4j + 3) in lane j */
INLINE __m256i minus_128_sum(__m256i y)
{
	return _mm256_sub_epi32(_mm256_setzero_si256(),
	                        _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8((char)0x80), y));
}

/* the lanes of x . y, from x's bytes with the sign bit flipped (xf) and
 * minus_128_sum(y) */
INLINE __m256i dot_i8(__m256i xf, __m256i y, __m256i m)
{
	return _mm256_dpbusd_epi32(m, xf, y);
}

INLINE __m256i flip(__m256i x)
{
	return _mm256_xor_si256(x, _mm256_set1_epi8((char)0x80));
}

void qp_q8_0_vec_dot_avx512(int64_t n, float *s, const void *vx, const void *vy)
{
	const struct qp_block_q8_0 *x = vx;
	const struct qp_block_q8_0 *y = vy;
	const int64_t nb = n / QP_QK8_0;
	__m256 acc = _mm256_setzero_ps();
	for (int64_t i = 0; i < nb; i++) {
		const __m256i qx = _mm256_loadu_si256((const __m256i *)x[i].qs);
		const __m256i qy = _mm256_loadu_si256((const __m256i *)y[i].qs);
		const __m256 d = _mm256_set1_ps(qp_fp16_to_fp32(x[i].d) * qp_fp16_to_fp32(y[i].d));
		acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_i8(flip(qx), qy, minus_128_sum(qy))), acc);
	}
	*s = qp_avx2_hsum_ps(acc);
}

#define TR 6
#define TC 4

INLINE void q8_0_tile(int64_t nb, float *s, int64_t lds, const uint8_t *x, size_t bx, const uint8_t *y,
                      size_t by, const int nr, const int nc)
{
	__m256 acc[TR][TC];
	_Pragma("GCC unroll 8")
	for (int r = 0; r < nr; r++)
		_Pragma("GCC unroll 8")
		for (int c = 0; c < nc; c++)
			acc[r][c] = _mm256_setzero_ps();
	for (int64_t i = 0; i < nb; i++) {
		__m256i qy[TC], m[TC];
		/* four scales, as AVX2's: with room for eight, zeroed by one
		 * 16-byte store that the 8-byte load below overlaps with the
		 * 2-byte stores, store forwarding failed and a decode step (4 x
		 * 1 tiles) took twice as long */
		uint16_t dyh[4] = {0, 0, 0, 0};
		_Alignas(16) float d[TR][4];
		_Pragma("GCC unroll 8")
		for (int c = 0; c < nc; c++) {
			const struct qp_block_q8_0 *b = (const struct qp_block_q8_0 *)(y + (size_t)c * by) + i;
			qy[c] = _mm256_loadu_si256((const __m256i *)b->qs);
			m[c] = minus_128_sum(qy[c]);
			dyh[c] = b->d;
		}
		/* the scale products dx * dy four at a time into a table that
		 * broadcasts read (kernels/cpu/avx2/tile.c says why) */
		const __m128 dyv = _mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)dyh));
		_Pragma("GCC unroll 8")
		for (int r = 0; r < nr; r++) {
			const struct qp_block_q8_0 *b = (const struct qp_block_q8_0 *)(x + (size_t)r * bx) + i;
			_mm_store_ps(d[r], _mm_mul_ps(_mm_set1_ps(_cvtsh_ss(b->d)), dyv));
		}
		_Pragma("GCC unroll 8")
		for (int r = 0; r < nr; r++) {
			const struct qp_block_q8_0 *b = (const struct qp_block_q8_0 *)(x + (size_t)r * bx) + i;
			_mm_prefetch((const char *)b + PF_BYTES, _MM_HINT_T0);
			const __m256i xf = flip(_mm256_loadu_si256((const __m256i *)b->qs));
			_Pragma("GCC unroll 8")
			for (int c = 0; c < nc; c++)
				acc[r][c] = _mm256_fmadd_ps(_mm256_broadcast_ss(&d[r][c]),
				                            _mm256_cvtepi32_ps(dot_i8(xf, qy[c], m[c])), acc[r][c]);
		}
	}
	_Pragma("GCC unroll 8")
	for (int r = 0; r < nr; r++)
		_Pragma("GCC unroll 8")
		for (int c = 0; c < nc; c++)
			s[c * lds + r] = qp_avx2_hsum_ps(acc[r][c]);
}

#define Q8_0_BODY(R, C) q8_0_tile(n / QP_QK8_0, st, lds, xt, bx, yt, by, R, C)
/* every shape up to 6 x 4 */
#define SHAPES_6(body) \
	QP_TILE_CASE(body, 6, 4) QP_TILE_CASE(body, 6, 3) QP_TILE_CASE(body, 6, 2) QP_TILE_CASE(body, 6, 1) \
	QP_TILE_CASE(body, 5, 4) QP_TILE_CASE(body, 5, 3) QP_TILE_CASE(body, 5, 2) QP_TILE_CASE(body, 5, 1) \
	QP_TILE_SHAPES_4(body)
QP_TILE_DRIVER(qp_q8_0_vec_dot_tile_avx512, Q8_0_BODY, TR, TC, SHAPES_6)
