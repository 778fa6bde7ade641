/* Tiles of k-quant matrix products: q2_K ... q6_K weight rows against q8_K
 * activation rows (the ops-table's vec_dot_tile, kernels.h).
 *
 * A prefill multiplies each weight row by hundreds of tokens. Here each
 * super-block of TR rows is unpacked once, to unsigned bytes and per-chunk
 * scale vectors in L1 (struct prep), and then multiplied by the same block
 * of up to TOK tokens, TR x TC pairs at a time with their int32 sums in
 * registers; the tokens' float accumulators wait in memory between blocks.
 * A decode step (one token) has nothing to share the unpacking with: it
 * goes row by row through kquants.h's in-register block dot, each row's
 * stream prefetched ahead.
 *
 * Every pair gets exactly vec_dot's result: the integer lanes of a block
 * are the same sums whatever order they are added in, and the float
 * operations on them (kquants.h: one fma of y.d * d, one fnmadd of
 * y.d * dmin where the type has minimums, block after block, one
 * qp_avx2_hsum_ps at the end) are the same ones in the same order. So how
 * rows and tokens are grouped into tiles, and so split over threads,
 * cannot change a product. */
#include <stdalign.h>

#include "kernels/blocks.h"
#include "kernels/cpu/avx2/avx2.h"
#include "kernels/cpu/avx2/kquants.h"
#include "kernels/cpu/avx2/simd.h"

/* TR x TC int32 sums plus a weight chunk and a product fit the 16 ymm
 * registers (4 x 3 measured best of 4x2 ... 4x4 on k = 1536, 512 tokens) */
#define TR 4
#define TC 3
/* tokens per pass over the rows' blocks: their accumulators, TR x TOK
 * vectors (8 KiB), stay in L1 */
#define TOK 64
/* a decode step's rows are read once, from memory: each row's stream is
 * prefetched this far ahead (as tile.c does for q4_0 and q8_0) */
#define PF_BYTES 256

#define INLINE static inline __attribute__((always_inline))

/* one super-block of one weight row, unpacked for every token */
struct prep {
	alignas(32) uint8_t u[QP_QK_K]; /* unsigned quants, element order */
	__m256i sc[8];                  /* the scales of each 32-element chunk, int16 */
	__m256i m;                      /* against bsums: the bias's scales, or the minimums */
	__m256 d, dmin;                 /* broadcast: y.d * d is then one multiply per pair */
};

static inline void put(struct prep *p, int k, __m256i u, __m256i sc)
{
	_mm256_store_si256((__m256i *)(p->u + 32 * k), u);
	p->sc[k] = sc;
}

/* Each prep_* unpacks as its type's qp_avx2_*_block in kquants.h does. */

INLINE void prep_q2_k(const uint8_t *b, struct prep *p)
{
	const struct qp_block_q2_K *x = (const struct qp_block_q2_K *)b;
	const __m128i raw = _mm_loadu_si128((const __m128i *)x->scales);
	const __m256i s16 = _mm256_cvtepu8_epi16(_mm_and_si128(raw, _mm_set1_epi8(0x0f)));
	const __m256i three = _mm256_set1_epi8(3);
	_Pragma("GCC unroll 8")
	for (int h = 0; h < 2; h++) {
		const __m256i v = _mm256_loadu_si256((const __m256i *)(x->qs + 32 * h));
		_Pragma("GCC unroll 8")
		for (int s = 0; s < 4; s++)
			put(p, 4 * h + s, _mm256_and_si256(_mm256_srli_epi16(v, 2 * s), three),
			    qp_avx2_sc16_chunk(s16, 4 * h + s));
	}
	p->m = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(raw, 4), _mm_set1_epi8(0x0f)));
	p->d = _mm256_set1_ps(_cvtsh_ss(x->d));
	p->dmin = _mm256_set1_ps(_cvtsh_ss(x->dmin));
}

INLINE void prep_q3_k(const uint8_t *b, struct prep *p)
{
	const struct qp_block_q3_K *x = (const struct qp_block_q3_K *)b;
	const __m256i s16 = _mm256_cvtepi8_epi16(qp_avx2_q3_k_scales(x->scales));
	const __m256i hm = _mm256_loadu_si256((const __m256i *)x->hmask);
	const __m256i three = _mm256_set1_epi8(3);
	_Pragma("GCC unroll 8")
	for (int h = 0; h < 2; h++) {
		const __m256i v = _mm256_loadu_si256((const __m256i *)(x->qs + 32 * h));
		_Pragma("GCC unroll 8")
		for (int s = 0; s < 4; s++) {
			const int k = 4 * h + s;
			put(p, k,
			    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(v, 2 * s), three), qp_avx2_bit_to(hm, k, 2)),
			    qp_avx2_sc16_chunk(s16, k));
		}
	}
	p->m = _mm256_slli_epi16(s16, 2);
	p->d = _mm256_set1_ps(_cvtsh_ss(x->d));
	p->dmin = _mm256_setzero_ps();
}

INLINE void prep_q45_k(uint16_t d, uint16_t dmin, const uint8_t scales[12], const uint8_t *qs, const uint8_t *qh,
                       struct prep *p)
{
	const __m128i sm = qp_avx2_q4_k_scales(scales);
	const __m256i s8 = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(sm));
	const __m256i m4 = _mm256_set1_epi8(0x0f);
	const __m256i hv = qh ? _mm256_loadu_si256((const __m256i *)qh) : _mm256_setzero_si256();
	_Pragma("GCC unroll 8")
	for (int g = 0; g < 4; g++) {
		const __m256i v = _mm256_loadu_si256((const __m256i *)(qs + 32 * g));
		__m256i lo = _mm256_and_si256(v, m4);
		__m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
		if (qh) {
			lo = _mm256_or_si256(lo, qp_avx2_bit_to(hv, 2 * g, 4));
			hi = _mm256_or_si256(hi, qp_avx2_bit_to(hv, 2 * g + 1, 4));
		}
		put(p, 2 * g, lo, qp_avx2_sc8_chunk(s8, 2 * g));
		put(p, 2 * g + 1, hi, qp_avx2_sc8_chunk(s8, 2 * g + 1));
	}
	p->m = _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(sm, sm));
	p->d = _mm256_set1_ps(_cvtsh_ss(d));
	p->dmin = _mm256_set1_ps(_cvtsh_ss(dmin));
}

INLINE void prep_q4_k(const uint8_t *b, struct prep *p)
{
	const struct qp_block_q4_K *x = (const struct qp_block_q4_K *)b;
	prep_q45_k(x->d, x->dmin, x->scales, x->qs, NULL, p);
}

INLINE void prep_q5_k(const uint8_t *b, struct prep *p)
{
	const struct qp_block_q5_K *x = (const struct qp_block_q5_K *)b;
	prep_q45_k(x->d, x->dmin, x->scales, x->qs, x->qh, p);
}

INLINE void prep_q6_k(const uint8_t *b, struct prep *p)
{
	const struct qp_block_q6_K *x = (const struct qp_block_q6_K *)b;
	const __m256i s16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x->scales));
	const __m256i m4 = _mm256_set1_epi8(0x0f);
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
			const __m256i top = _mm256_and_si256(
				s < 2 ? _mm256_slli_epi16(hv, 4 - 2 * s) : _mm256_srli_epi16(hv, 2 * s - 4), _mm256_set1_epi8(0x30));
			put(p, 4 * h + s, _mm256_or_si256(lows[s], top), qp_avx2_sc16_chunk(s16, 4 * h + s));
		}
	}
	p->m = _mm256_slli_epi16(s16, 5);
	p->d = _mm256_set1_ps(_cvtsh_ss(x->d));
	p->dmin = _mm256_setzero_ps();
}

/* R prepared rows against block i of C tokens (yb), into their
 * accumulators acc[r * TOK + c]. mins: the type has minimums (q2_K, q4_K,
 * q5_K), else p->m holds its bias's scales (q3_K, q6_K). */
INLINE void pairs(const struct prep *p, const struct qp_block_q8_K *const *yb, __m256 *acc, const int mins,
                  const int R, const int C)
{
	__m256i sumi[TR][TC];
	_Pragma("GCC unroll 4")
	for (int r = 0; r < R; r++)
		_Pragma("GCC unroll 4")
		for (int c = 0; c < C; c++)
			sumi[r][c] = _mm256_setzero_si256();
	_Pragma("GCC unroll 8")
	for (int k = 0; k < 8; k++) {
		_Pragma("GCC unroll 4")
		for (int r = 0; r < R; r++) {
			const __m256i w = _mm256_load_si256((const __m256i *)(p[r].u + 32 * k));
			const __m256i sc = p[r].sc[k];
			_Pragma("GCC unroll 4")
			for (int c = 0; c < C; c++)
				sumi[r][c] = _mm256_add_epi32(sumi[r][c], qp_avx2_chunk_dot(w, yb[c]->qs + 32 * k, sc));
		}
	}
	_Pragma("GCC unroll 4")
	for (int c = 0; c < C; c++) {
		const __m256i bs = _mm256_loadu_si256((const __m256i *)yb[c]->bsums);
		/* lane by lane the same product as vec_dot's y.d * d */
		const __m256 yd = _mm256_set1_ps(yb[c]->d);
		_Pragma("GCC unroll 4")
		for (int r = 0; r < R; r++) {
			__m256 a = acc[r * TOK + c];
			const __m256i mb = _mm256_madd_epi16(p[r].m, bs);
			if (mins) {
				a = _mm256_fmadd_ps(_mm256_mul_ps(yd, p[r].d), _mm256_cvtepi32_ps(sumi[r][c]), a);
				a = _mm256_fnmadd_ps(_mm256_mul_ps(yd, p[r].dmin), _mm256_cvtepi32_ps(mb), a);
			} else {
				const __m256i si = _mm256_sub_epi32(sumi[r][c], mb);
				a = _mm256_fmadd_ps(_mm256_mul_ps(yd, p[r].d), _mm256_cvtepi32_ps(si), a);
			}
			acc[r * TOK + c] = a;
		}
	}
}

#define PAIRS_CASE(R, C) \
	case R * 8 + C: pairs(p, yb, acc + c0, mins, R, C); break;

/* Every nr x nc pair of a prefill: TR rows at a time, their blocks
 * unpacked once per TOK tokens. blk: bytes per block of the type. */
INLINE void tile_prefill(int64_t nb, float *s, int64_t lds, const uint8_t *x, size_t bx, int64_t nr,
                         const uint8_t *y, size_t by, int64_t nc, size_t blk,
                         void (*prep)(const uint8_t *, struct prep *), const int mins)
{
	struct prep p[TR];
	__m256 acc[TR * TOK];
	for (int64_t r0 = 0; r0 < nr; r0 += TR) {
		const int rr = nr - r0 < TR ? (int)(nr - r0) : TR;
		for (int64_t t0 = 0; t0 < nc; t0 += TOK) {
			const int tt = nc - t0 < TOK ? (int)(nc - t0) : TOK;
			for (int r = 0; r < rr; r++)
				for (int c = 0; c < tt; c++)
					acc[r * TOK + c] = _mm256_setzero_ps();
			for (int64_t i = 0; i < nb; i++) {
				for (int r = 0; r < rr; r++)
					prep(x + (size_t)(r0 + r) * bx + (size_t)i * blk, &p[r]);
				for (int c0 = 0; c0 < tt; c0 += TC) {
					const int cc = tt - c0 < TC ? tt - c0 : TC;
					const struct qp_block_q8_K *yb[TC];
					for (int c = 0; c < cc; c++)
						yb[c] = (const struct qp_block_q8_K *)(y + (size_t)(t0 + c0 + c) * by) + i;
					switch (rr * 8 + cc) {
					PAIRS_CASE(4, 3) PAIRS_CASE(4, 2) PAIRS_CASE(4, 1)
					PAIRS_CASE(3, 3) PAIRS_CASE(3, 2) PAIRS_CASE(3, 1)
					PAIRS_CASE(2, 3) PAIRS_CASE(2, 2) PAIRS_CASE(2, 1)
					PAIRS_CASE(1, 3) PAIRS_CASE(1, 2)
					default: pairs(p, yb, acc + c0, mins, 1, 1); break;
					}
				}
			}
			for (int c = 0; c < tt; c++)
				for (int r = 0; r < rr; r++)
					s[(t0 + c) * lds + r0 + r] = qp_avx2_hsum_ps(acc[r * TOK + c]);
		}
	}
}

/* A decode step: nr rows against one token, row by row. Interleaving
 * rows measured slower: the accumulators of a variable number of rows
 * went through memory. */
#define DECODE(name, btype, block_expr)                                                                    \
	static void name(int64_t nb, float *s, const uint8_t *x, size_t bx, int64_t nr,                     \
	                 const struct qp_block_q8_K *y)                                                    \
	{                                                                                                  \
		for (int64_t r = 0; r < nr; r++) {                                                             \
			__m256 acc = _mm256_setzero_ps();                                                          \
			const btype *row = (const btype *)(x + (size_t)r * bx);                                    \
			for (int64_t i = 0; i < nb; i++) {                                                         \
				const btype *xb = row + i;                                                             \
				for (size_t o = 0; o < sizeof(btype); o += 64)                                         \
					_mm_prefetch((const char *)xb + PF_BYTES + o, _MM_HINT_T0);                        \
				acc = block_expr;                                                                      \
			}                                                                                          \
			s[r] = qp_avx2_hsum_ps(acc);                                                               \
		}                                                                                              \
	}

DECODE(decode_q2_k, struct qp_block_q2_K, qp_avx2_q2_k_block(xb, y + i, acc))
DECODE(decode_q3_k, struct qp_block_q3_K, qp_avx2_q3_k_block(xb, y + i, acc))
DECODE(decode_q4_k, struct qp_block_q4_K,
       qp_avx2_q45_k_block(xb->d, xb->dmin, xb->scales, xb->qs, NULL, y + i, acc))
DECODE(decode_q5_k, struct qp_block_q5_K,
       qp_avx2_q45_k_block(xb->d, xb->dmin, xb->scales, xb->qs, xb->qh, y + i, acc))
DECODE(decode_q6_k, struct qp_block_q6_K, qp_avx2_q6_k_block(xb, y + i, acc))

#define TILE(name, btype, decode, prep, mins)                                                              \
	void name(int64_t n, float *s, int64_t lds, const void *x, size_t bx, int64_t nr, const void *y,    \
	          size_t by, int64_t nc)                                                                   \
	{                                                                                                  \
		const int64_t nb = n / QP_QK_K;                                                                \
		if (nc == 1) {                                                                                 \
			decode(nb, s, x, bx, nr, y);                                                               \
			return;                                                                                    \
		}                                                                                              \
		tile_prefill(nb, s, lds, x, bx, nr, y, by, nc, sizeof(btype), prep, mins);                    \
	}

TILE(qp_q2_k_vec_dot_tile_avx2, struct qp_block_q2_K, decode_q2_k, prep_q2_k, 1)
TILE(qp_q3_k_vec_dot_tile_avx2, struct qp_block_q3_K, decode_q3_k, prep_q3_k, 0)
TILE(qp_q4_k_vec_dot_tile_avx2, struct qp_block_q4_K, decode_q4_k, prep_q4_k, 1)
TILE(qp_q5_k_vec_dot_tile_avx2, struct qp_block_q5_K, decode_q5_k, prep_q5_k, 1)
TILE(qp_q6_k_vec_dot_tile_avx2, struct qp_block_q6_K, decode_q6_k, prep_q6_k, 0)
