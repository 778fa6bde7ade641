/* Tiles of a matrix product: up to TR weight rows against up to TC
 * activation rows at a time, so each weight block is loaded and unpacked
 * once for TC tokens and each activation block once for TR rows (during a
 * prefill, the weights stay in L1 while the tokens stream past them).
 *
 * Each (row, token) pair keeps its own accumulator and adds its blocks in
 * the order the level's vec_dot does, with the same operations, then
 * reduces it the same way: every result is vec_dot's, bit for bit, so how
 * rows are grouped into tiles (and so how they are split over threads)
 * cannot change a product. */
#include "kernels/blocks.h"
#include "kernels/cpu/avx2/avx2.h"
#include "kernels/cpu/avx2/simd.h"
#include "kernels/cpu/avx2/tile.h"

/* the largest tile of any type; each type picks its own within it (the
 * accumulators, nr * nc of them, must fit the 16 ymm registers beside
 * the operands) */
#define TR 4
#define TC 4

/* Weight rows are read once per token during a decode step, from memory:
 * each row's stream is prefetched 4 KB ahead, which the hardware
 * prefetcher alone does not keep up with over four interleaved rows. Rows
 * are contiguous, so past a row's end that reaches the rows the next tiles
 * read. Measured on llama-docs-27m's decode (bench/eval, one thread): 256
 * bytes ahead gave f16 165, q8_0 360 and q4_0 700 tok/s of CPU time, 4 KB
 * 200 to 220, 350 to 460 and 785 to 800 (8 KB no better); a prefill's
 * tiles, which read each row for many tokens, did not change. */
#define PF_BYTES 4096

#define INLINE static inline __attribute__((always_inline))

/* q8_0 x q8_0: qp_avx2_dot_i8's products with the roles swapped, |y|
 * (once per token block) against x signed by y: each product is x*y as
 * before, so every int16 pair and int32 lane is the same. The swap lets
 * the weight rows run outermost with one register each, and the scale
 * products dx * dy (vec_dot's multiplier) are made four at a time into a
 * table that broadcasts read: with |x|, x and dx held for every row, GCC
 * kept twice as many of the twelve accumulators on the stack, a load and
 * a store around each FMA (a microbenchmark of 1536 rows x 64 tokens:
 * 31.4 -> 34.8 GMAC/s at k = 512, 32.5 -> 36.4 at k = 1536). */
INLINE void q8_0_tile(int64_t nb, float *s, int64_t lds, const uint8_t *x, size_t bx, const uint8_t *y,
                      size_t by, const int nr, const int nc)
{
	__m256 acc[TR][TC];
	_Pragma("GCC unroll 4")
	for (int r = 0; r < nr; r++)
		_Pragma("GCC unroll 4")
		for (int c = 0; c < nc; c++)
			acc[r][c] = _mm256_setzero_ps();
	const __m256i ones = _mm256_set1_epi16(1);
	for (int64_t i = 0; i < nb; i++) {
		__m256i ay[TC];
		const __m256i *qy[TC];
		uint16_t dyh[4] = {0, 0, 0, 0};
		_Alignas(16) float d[TR][4];
		_Pragma("GCC unroll 4")
		for (int c = 0; c < nc; c++) {
			const struct qp_block_q8_0 *b = (const struct qp_block_q8_0 *)(y + (size_t)c * by) + i;
			qy[c] = (const __m256i *)b->qs;
			const __m256i v = _mm256_loadu_si256(qy[c]);
			ay[c] = _mm256_sign_epi8(v, v);
			dyh[c] = b->d;
		}
		const __m128 dyv = _mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)dyh));
		_Pragma("GCC unroll 4")
		for (int r = 0; r < nr; r++) {
			const struct qp_block_q8_0 *b = (const struct qp_block_q8_0 *)(x + (size_t)r * bx) + i;
			_mm_store_ps(d[r], _mm_mul_ps(_mm_set1_ps(_cvtsh_ss(b->d)), dyv));
		}
		_Pragma("GCC unroll 4")
		for (int r = 0; r < nr; r++) {
			const struct qp_block_q8_0 *b = (const struct qp_block_q8_0 *)(x + (size_t)r * bx) + i;
			_mm_prefetch((const char *)b + PF_BYTES, _MM_HINT_T0);
			const __m256i qx = _mm256_loadu_si256((const __m256i *)b->qs);
			_Pragma("GCC unroll 4")
			for (int c = 0; c < nc; c++) {
				const __m256i sx = _mm256_sign_epi8(qx, _mm256_loadu_si256(qy[c]));
				const __m256i dot = _mm256_madd_epi16(_mm256_maddubs_epi16(ay[c], sx), ones);
				acc[r][c] = _mm256_fmadd_ps(_mm256_broadcast_ss(&d[r][c]), _mm256_cvtepi32_ps(dot), acc[r][c]);
			}
		}
	}
	_Pragma("GCC unroll 4")
	for (int r = 0; r < nr; r++)
		_Pragma("GCC unroll 4")
		for (int c = 0; c < nc; c++)
			s[c * lds + r] = qp_avx2_hsum_ps(acc[r][c]);
}

#define Q8_0_BODY(R, C) q8_0_tile(n / QP_QK8_0, st, lds, xt, bx, yt, by, R, C)
QP_TILE_DRIVER(qp_q8_0_vec_dot_tile_avx2, Q8_0_BODY, 4, 3, QP_TILE_SHAPES_4)

/* f16 x f16. vec_dot keeps one accumulator for the 8-element groups, as
 * llama.cpp's tinyBLAS tiles do, and adds the elements past the last 8
 * in double; a tile keeps one per (row, token) pair and walks the rows
 * once. A few tokens (decode) take this tile; a matrix product of many
 * takes the blocked one below. */
INLINE __m256 load_f16(const uint8_t *p, int64_t i)
{
	return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)p + i)));
}

/* s[c * lds + r] from the accumulators: vec_dot's sum of the lanes, then
 * the elements from done on in double */
INLINE void f16_finish(int64_t n, int64_t done, __m256 acc[TR][TC], float *s, int64_t lds, const uint8_t *x,
                       size_t bx, const uint8_t *y, size_t by, const int nr, const int nc)
{
	_Pragma("GCC unroll 4")
	for (int r = 0; r < nr; r++)
		_Pragma("GCC unroll 4")
		for (int c = 0; c < nc; c++) {
			double sum = qp_avx2_hsum_ps(acc[r][c]);
			const uint16_t *xr = (const uint16_t *)(x + (size_t)r * bx);
			const uint16_t *yc = (const uint16_t *)(y + (size_t)c * by);
			for (int64_t i = done; i < n; i++)
				sum += (double)(qp_fp16_to_fp32(xr[i]) * qp_fp16_to_fp32(yc[i]));
			s[c * lds + r] = (float)sum;
		}
}

INLINE void f16_tile(int64_t n, float *s, int64_t lds, const uint8_t *x, size_t bx, const uint8_t *y,
                     size_t by, const int nr, const int nc)
{
	__m256 acc[TR][TC];
	_Pragma("GCC unroll 4")
	for (int r = 0; r < nr; r++)
		_Pragma("GCC unroll 4")
		for (int c = 0; c < nc; c++)
			acc[r][c] = _mm256_setzero_ps();
	const int64_t n8 = n / 8 * 8;
	for (int64_t i = 0; i < n8; i += 8) {
		__m256 vx[TR];
		_Pragma("GCC unroll 4")
		for (int r = 0; r < nr; r++) {
			_mm_prefetch((const char *)(x + (size_t)r * bx + 2 * (size_t)i) + PF_BYTES, _MM_HINT_T0);
			vx[r] = load_f16(x + (size_t)r * bx, i);
		}
		_Pragma("GCC unroll 4")
		for (int c = 0; c < nc; c++) {
			const __m256 vy = load_f16(y + (size_t)c * by, i);
			_Pragma("GCC unroll 4")
			for (int r = 0; r < nr; r++)
				acc[r][c] = _mm256_fmadd_ps(vx[r], vy, acc[r][c]);
		}
	}
	f16_finish(n, n8, acc, s, lds, x, bx, y, by, nr, nc);
}

#define F16_BODY(R, C) f16_tile(n, st, lds, xt, bx, yt, by, R, C)
QP_TILE_DRIVER(qp_f16_vec_dot_tile_avx2, F16_BODY, 3, 3, QP_TILE_SHAPES_4)

/* The blocked tile: four rows against three tokens, converted at each
 * load as the small tile's are, the loop of llama.cpp's tinyBLAS: the
 * tokens' groups in registers and the weight groups converted one at a
 * time, 12 accumulators + 3 + 1 of the 16 registers.
 *
 * It walks k in chunks of F16B_KC, every tile of the tokens before the
 * next chunk, each tile's accumulators carried from chunk to chunk
 * through memory: each still adds its groups in vec_dot's order, so the
 * bits are the same; but a chunk of four rows stays in L1 while the
 * tokens' chunks pass. Walked whole, rows of k = 1536 (the FFN's down
 * projection) did not fit L1 beside three tokens, and every tile read
 * them again from L2. qp_ops_matmul of 512 rows against 512 tokens, k =
 * 4096, when vec_dot kept two accumulators (and a tile walked its rows
 * twice): 39 GMAC/s in chunks of 512, 41 in chunks of 1024. */
#define F16B_KC 1024
/* tokens whose accumulators are held at once: 16 tiles of three */
#define F16B_NC 48

/* The accumulators of one tile between chunks */
typedef float f16b_state[TR * TC * 8];

/* One chunk [c0, c1) of an nr x nc tile, onto the accumulators held in
 * st (or zero, at the first chunk), left in st; after the last (c1 ==
 * n / 8 * 8), the results instead (st unused: NULL where k is one
 * chunk). Its accumulators are this function's locals: passed between
 * inlined helpers as an array, GCC kept a third of them on the stack, a
 * load and a store around every FMA. */
INLINE void f16b_chunk(int64_t n, int64_t c0, int64_t c1, float *st, float *s, int64_t lds, const uint16_t *x,
                       size_t bx, const uint16_t *y, size_t by, const int nr, const int nc)
{
	__m256 acc[TR][TC];
	_Pragma("GCC unroll 4")
	for (int r = 0; r < nr; r++)
		_Pragma("GCC unroll 4")
		for (int c = 0; c < nc; c++)
			acc[r][c] = c0 == 0 ? _mm256_setzero_ps() : _mm256_load_ps(st + (r * TC + c) * 8);
	for (int64_t i = c0; i < c1; i += 8) {
		__m256 vy[TC];
		_Pragma("GCC unroll 4")
		for (int c = 0; c < nc; c++)
			vy[c] = load_f16((const uint8_t *)y + (size_t)c * by, i);
		_Pragma("GCC unroll 4")
		for (int r = 0; r < nr; r++) {
			const __m256 vx = load_f16((const uint8_t *)x + (size_t)r * bx, i);
			_Pragma("GCC unroll 4")
			for (int c = 0; c < nc; c++)
				acc[r][c] = _mm256_fmadd_ps(vx, vy[c], acc[r][c]);
		}
	}
	if (c1 == n && nr == 4) {
		/* no elements past the last 8: each token's four rows are one
		 * vector of sums, vec_dot's each */
		_Pragma("GCC unroll 4")
		for (int c = 0; c < nc; c++)
			_mm_storeu_ps(s + c * lds, qp_avx2_hsum4_ps(acc[0][c], acc[1][c], acc[2][c], acc[3][c]));
		return;
	}
	if (c1 == n / 8 * 8) {
		f16_finish(n, c1, acc, s, lds, (const uint8_t *)x, bx, (const uint8_t *)y, by, nr, nc);
		return;
	}
	_Pragma("GCC unroll 4")
	for (int r = 0; r < nr; r++)
		_Pragma("GCC unroll 4")
		for (int c = 0; c < nc; c++)
			_mm256_store_ps(st + (r * TC + c) * 8, acc[r][c]);
}

/* each shape a function of its own: with every shape inlined into one
 * switch, GCC kept an accumulator of the 4 x 3 loop on the stack, a load
 * and a store around its FMA, and the product ran at 20 GMAC/s */
#define F16B_SHAPE(R, C)                                                                                     \
	static __attribute__((noinline)) void f16b_chunk_##R##C(int64_t n, int64_t c0, int64_t c1, float *st,    \
	                                                       float *s, int64_t lds, const uint16_t *x,          \
	                                                       size_t bx, const uint16_t *y, size_t by)           \
	{                                                                                                    \
		f16b_chunk(n, c0, c1, st, s, lds, x, bx, y, by, R, C);                                       \
	}
F16B_SHAPE(4, 3) F16B_SHAPE(4, 2) F16B_SHAPE(4, 1)
F16B_SHAPE(3, 3) F16B_SHAPE(3, 2) F16B_SHAPE(3, 1)
F16B_SHAPE(2, 3) F16B_SHAPE(2, 2) F16B_SHAPE(2, 1)
F16B_SHAPE(1, 3) F16B_SHAPE(1, 2) F16B_SHAPE(1, 1)

#define F16B_CHUNK(R, C) f16b_chunk_##R##C(n, c0, c1, one ? NULL : st[t], s + 3 * t * lds, lds, x, bx, yt, by)
#define F16B_CASE(R, C) \
	case R * 8 + C: F16B_CHUNK(R, C); break;

/* nr <= TR rows against nc tokens, at most F16B_NC of them where k takes
 * more than one chunk */
static void f16b_block(int64_t n, float *s, int64_t lds, const uint16_t *x, size_t bx, int nr, const uint16_t *y,
                       size_t by, int64_t nc)
{
	_Alignas(32) f16b_state st[F16B_NC / 3];
	const int64_t ntile = (nc + 2) / 3;
	const int64_t n8 = n / 8 * 8;
	/* in one chunk nothing is carried between chunks: no state (and
	 * nc may be more than F16B_NC) */
	const int one = n8 <= F16B_KC;
	for (int64_t c0 = 0; c0 < n8 || c0 == 0; c0 += F16B_KC) {
		const int64_t c1 = n8 - c0 < F16B_KC ? n8 : c0 + F16B_KC;
		for (int64_t t = 0; t < ntile; t++) {
			const int cc = nc - 3 * t < 3 ? (int)(nc - 3 * t) : 3;
			const uint16_t *yt = (const uint16_t *)((const uint8_t *)y + (size_t)(3 * t) * by);
			switch (nr * 8 + cc) {
			F16B_CASE(4, 3) F16B_CASE(4, 2) F16B_CASE(4, 1)
			F16B_CASE(3, 3) F16B_CASE(3, 2) F16B_CASE(3, 1)
			F16B_CASE(2, 3) F16B_CASE(2, 2) F16B_CASE(2, 1)
			F16B_CASE(1, 3) F16B_CASE(1, 2)
			default: F16B_CHUNK(1, 1); break;
			}
		}
	}
}

void qp_f16_vec_dot_tile_block_avx2(int64_t n, float *s, int64_t lds, const void *x, size_t bx, int64_t nr,
                                   const void *y, size_t by, int64_t nc)
{
	for (int64_t r = 0; r < nr; r += TR) {
		const int rr = nr - r < TR ? (int)(nr - r) : TR;
		/* in one chunk nothing is carried: all tokens at once */
		const int64_t cb = n / 8 * 8 <= F16B_KC ? nc : F16B_NC;
		for (int64_t c = 0; c < nc; c += cb) {
			const int64_t cc = nc - c < cb ? nc - c : cb;
			f16b_block(n, s + c * lds + r, lds, (const uint16_t *)((const uint8_t *)x + (size_t)r * bx), bx, rr,
			           (const uint16_t *)((const uint8_t *)y + (size_t)c * by), by, cc);
		}
	}
}

/* f32 x f32. vec_dot keeps four accumulators for the four 8-element groups
 * of each 32, adds the 8-groups after the last 32 into the first, sums
 * (acc0 + acc1) + (acc2 + acc3) and adds the rest in double. The tile
 * walks the rows once per accumulator, as f16's does. Attention uses it:
 * the keys against one query, the transposed values against the weights. */
INLINE void f32_group(int64_t i, __m256 acc[TR][TC], const uint8_t *x, size_t bx, const uint8_t *y, size_t by,
                      const int nr, const int nc)
{
	__m256 vx[TR];
	_Pragma("GCC unroll 4")
	for (int r = 0; r < nr; r++)
		vx[r] = _mm256_loadu_ps((const float *)(x + (size_t)r * bx) + i);
	_Pragma("GCC unroll 4")
	for (int c = 0; c < nc; c++) {
		const __m256 vy = _mm256_loadu_ps((const float *)(y + (size_t)c * by) + i);
		_Pragma("GCC unroll 4")
		for (int r = 0; r < nr; r++)
			acc[r][c] = _mm256_fmadd_ps(vx[r], vy, acc[r][c]);
	}
}

/* Groups at i0, i0 + 32, ... below end, then those at from, from + 8, ...
 * below to, into fresh accumulators stored to out. */
INLINE void f32_pass(int64_t i0, int64_t end, int64_t from, int64_t to, __m256 out[TR][TC], const uint8_t *x,
                     size_t bx, const uint8_t *y, size_t by, const int nr, const int nc)
{
	__m256 acc[TR][TC];
	_Pragma("GCC unroll 4")
	for (int r = 0; r < nr; r++)
		_Pragma("GCC unroll 4")
		for (int c = 0; c < nc; c++)
			acc[r][c] = _mm256_setzero_ps();
	for (int64_t i = i0; i < end; i += 32)
		f32_group(i, acc, x, bx, y, by, nr, nc);
	for (int64_t i = from; i < to; i += 8)
		f32_group(i, acc, x, bx, y, by, nr, nc);
	_Pragma("GCC unroll 4")
	for (int r = 0; r < nr; r++)
		_Pragma("GCC unroll 4")
		for (int c = 0; c < nc; c++)
			out[r][c] = acc[r][c];
}

INLINE void f32_tile(int64_t n, float *s, int64_t lds, const uint8_t *x, size_t bx, const uint8_t *y,
                     size_t by, const int nr, const int nc)
{
	__m256 acc[4][TR][TC];
	const int64_t n32 = n / 32 * 32, done = n32 + (n - n32) / 8 * 8;
	f32_pass(0, n32, n32, done, acc[0], x, bx, y, by, nr, nc);
	f32_pass(8, n32, 0, 0, acc[1], x, bx, y, by, nr, nc);
	f32_pass(16, n32, 0, 0, acc[2], x, bx, y, by, nr, nc);
	f32_pass(24, n32, 0, 0, acc[3], x, bx, y, by, nr, nc);
	for (int r = 0; r < nr; r++)
		for (int c = 0; c < nc; c++) {
			const __m256 a = _mm256_add_ps(_mm256_add_ps(acc[0][r][c], acc[1][r][c]),
			                               _mm256_add_ps(acc[2][r][c], acc[3][r][c]));
			double sum = qp_avx2_hsum_ps(a);
			const float *xr = (const float *)(x + (size_t)r * bx);
			const float *yc = (const float *)(y + (size_t)c * by);
			for (int64_t i = done; i < n; i++)
				sum += (double)(xr[i] * yc[i]);
			s[c * lds + r] = (float)sum;
		}
}

#define F32_BODY(R, C) f32_tile(n, st, lds, xt, bx, yt, by, R, C)
QP_TILE_DRIVER(qp_f32_vec_dot_tile_avx2, F32_BODY, 4, 2, QP_TILE_SHAPES_4)
