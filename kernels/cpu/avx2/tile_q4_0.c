/* q4_0 x q8_0 products at the AVX2 level. Each block's dot is an exact
 * integer, idot = sum of (q - 8) * y over its 32 elements, and a pair's
 * result is the chain acc = fma((float)idot, dx * dy, acc) over the blocks
 * in order from acc = 0 (dx * dy rounded to float first). That is
 * llama.cpp's arithmetic for q4_0 on x86 (its repacked gemm and gemv in
 * ggml-cpu's repack.cpp), and it fixes every result whatever the lanes:
 * an integer sum has one value however it is added, and the chain has one
 * order. So a kernel may put eight weight rows in the eight lanes of a
 * vector, which a float accumulator per pair (the layout of q8_0's dot)
 * would not allow:
 * - the vec_dot adds a block's lanes and runs the chain in a scalar;
 * - the tile (up to seven tokens: decode) reduces eight rows' lanes at
 *   once, so a vector holds the eight rows' idots;
 * - the panel tile (prefill) reads rows repacked once per block of tokens
 *   (qp_q4_0_panel_avx2): each 4-byte group of a token is broadcast
 *   against the same group of eight rows, and one multiply-add of 16-bit
 *   pairs serves eight rows. */
#include "kernels/blocks.h"
#include "kernels/cpu/avx2/avx2.h"
#include "kernels/cpu/avx2/simd.h"
#include "kernels/cpu/avx2/tile.h"

/* the chain's step, in a scalar */
static inline float chain(float acc, int32_t idot, float dx, float dy)
{
	const __m128 p = _mm_cvtsi32_ss(_mm_setzero_ps(), idot);
	return _mm_cvtss_f32(_mm_fmadd_ss(p, _mm_set_ss(dx * dy), _mm_set_ss(acc)));
}

/* 8 * (sum of a q8_0 block's values) */
static inline int32_t sum8_y(__m256i qy)
{
	return qp_avx2_hsum_epi32(
		_mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(8), qy), _mm256_set1_epi16(1)));
}

void qp_q4_0_vec_dot_avx2(int64_t n, float *s, const void *vx, const void *vy)
{
	const struct qp_block_q4_0 *x = vx;
	const struct qp_block_q8_0 *y = vy;
	const int64_t nb = n / QP_QK8_0;
	float acc = 0.0f;
	for (int64_t i = 0; i < nb; i++) {
		const __m256i qy = _mm256_loadu_si256((const __m256i *)y[i].qs);
		const int32_t idot = qp_avx2_hsum_epi32(qp_avx2_dot_u8_i8(qp_avx2_nibbles(x[i].qs), qy)) - sum8_y(qy);
		acc = chain(acc, idot, qp_fp16_to_fp32(x[i].d), qp_fp16_to_fp32(y[i].d));
	}
	*s = acc;
}

/* idot of eight rows' blocks, row r's in lane r, from their nibbles'
 * products with a token's block (maddubs: 16 sums of two per row, each
 * at most 2 * 15 * 128 in magnitude) less 8 * the block's sum, sy: the
 * pairs and then the quads of each row added in 16 bits (at most 15360),
 * then the octets into 32 bits, eight rows' at once. Integers, so the
 * same idots as vec_dot's, in fewer steps than each row's products
 * widened to 32 bits and added. */
static inline __m256i idot8(const __m256i p[8], int32_t sy)
{
	const __m256i h01 = _mm256_hadd_epi16(p[0], p[1]), h23 = _mm256_hadd_epi16(p[2], p[3]);
	const __m256i h45 = _mm256_hadd_epi16(p[4], p[5]), h67 = _mm256_hadd_epi16(p[6], p[7]);
	const __m256i ones = _mm256_set1_epi16(1);
	/* per 128-bit half, the half's sum of rows 0..3 (m03) and 4..7 (m47) */
	const __m256i m03 = _mm256_madd_epi16(_mm256_hadd_epi16(h01, h23), ones);
	const __m256i m47 = _mm256_madd_epi16(_mm256_hadd_epi16(h45, h67), ones);
	const __m256i sum = _mm256_add_epi32(_mm256_permute2x128_si256(m03, m47, 0x20),
	                                     _mm256_permute2x128_si256(m03, m47, 0x31));
	return _mm256_sub_epi32(sum, _mm256_set1_epi32(sy));
}

/* the token blocks' terms every row shares, made once per call */
#define Q4_0_YMAX 2048

/* eight rows against nc tokens, one token at a time; sy and dy hold each
 * token's 8 * (sum of its block's values) and block scales, nb apart */
static void rows8(int64_t nb, float *s, int64_t lds, const uint8_t *x, size_t bx, const uint8_t *y, size_t by,
                  int64_t nc, const int32_t *sy, const float *dy)
{
	for (int64_t c = 0; c < nc; c++) {
		const struct qp_block_q8_0 *yb = (const struct qp_block_q8_0 *)(y + (size_t)c * by);
		__m256 acc = _mm256_setzero_ps();
		for (int64_t i = 0; i < nb; i++) {
			const __m256i qy = _mm256_loadu_si256((const __m256i *)yb[i].qs);
			__m256i p[8];
			/* the scales inserted one by one, not stored and reloaded:
			 * eight 2-byte stores read back as one 16-byte load stall
			 * store forwarding (it halved this tile's speed); spelled
			 * out, as the insert's lane must be a constant */
			__m128i dh = _mm_setzero_si128();
#define ROW8(r)                                                                                           \
	do {                                                                                              \
		const struct qp_block_q4_0 *b = (const struct qp_block_q4_0 *)(x + (size_t)(r) * bx) + i; \
		_mm_prefetch((const char *)b + 4096, _MM_HINT_T0);                                        \
		p[r] = _mm256_maddubs_epi16(qp_avx2_nibbles(b->qs), qy);                                 \
		dh = _mm_insert_epi16(dh, b->d, r);                                                       \
	} while (0)
			ROW8(0);
			ROW8(1);
			ROW8(2);
			ROW8(3);
			ROW8(4);
			ROW8(5);
			ROW8(6);
			ROW8(7);
#undef ROW8
			const __m256i idot = idot8(p, sy[c * nb + i]);
			const __m256 sc = _mm256_mul_ps(_mm256_cvtph_ps(dh), _mm256_set1_ps(dy[c * nb + i]));
			acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(idot), sc, acc);
		}
		_Alignas(32) float out[8];
		_mm256_store_ps(out, acc);
		for (int r = 0; r < 8; r++)
			s[c * lds + r] = out[r];
	}
}

void qp_q4_0_vec_dot_tile_avx2(int64_t n, float *s, int64_t lds, const void *x, size_t bx, int64_t nr,
                               const void *y, size_t by, int64_t nc)
{
	const uint8_t *xb = x, *yb = y;
	const int64_t nb = n / QP_QK8_0;
	int64_t r = 0;
	if (nr >= 8 && nc * nb <= Q4_0_YMAX) {
		/* the tokens' block sums and scales, made for every group of
		 * eight rows, were an eighth of a decode step's product */
		int32_t sy[Q4_0_YMAX];
		float dy[Q4_0_YMAX];
		for (int64_t c = 0; c < nc; c++) {
			const struct qp_block_q8_0 *b = (const struct qp_block_q8_0 *)(yb + (size_t)c * by);
			for (int64_t i = 0; i < nb; i++) {
				sy[c * nb + i] = sum8_y(_mm256_loadu_si256((const __m256i *)b[i].qs));
				dy[c * nb + i] = _cvtsh_ss(b[i].d);
			}
		}
		for (; r + 8 <= nr; r += 8)
			rows8(nb, s + r, lds, xb + (size_t)r * bx, bx, yb, by, nc, sy, dy);
	}
	for (; r < nr; r++)
		for (int64_t c = 0; c < nc; c++)
			qp_q4_0_vec_dot_avx2(n, &s[c * lds + r], xb + (size_t)r * bx, yb + (size_t)c * by);
}

size_t qp_q4_0_panel_bytes_avx2(int64_t n)
{
	return (size_t)(n / QP_QK4_0) * sizeof(struct qp_q4_0_panel);
}

void qp_q4_0_panel_avx2(const void *x, size_t bx, int64_t nr, void *panel, int64_t n)
{
	struct qp_q4_0_panel *p = panel;
	const uint8_t *xb = x;
	const int64_t nb = n / QP_QK4_0;
	for (int64_t i = 0; i < nb; i++) {
		__m256i v[8];
		for (int r = 0; r < 8; r++) {
			if (r >= nr) {
				v[r] = _mm256_setzero_si256();
				p[i].c[r] = 0;
				p[i].d[r] = 0.0f;
				continue;
			}
			const struct qp_block_q4_0 *b = (const struct qp_block_q4_0 *)(xb + (size_t)r * bx) + i;
			const __m256i q = qp_avx2_nibbles(b->qs);
			v[r] = _mm256_sub_epi8(q, _mm256_set1_epi8(8));
			const __m256i sum = _mm256_sad_epu8(q, _mm256_setzero_si256());
			p[i].c[r] = 128 * (qp_avx2_hsum_epi32(sum) - 8 * QP_QK4_0);
			p[i].d[r] = qp_fp16_to_fp32(b->d);
		}
		/* row r's 4-byte group j is lane j of v[r]: transposed, lane r
		 * of v[j] */
		__m256 f[8];
		for (int r = 0; r < 8; r++)
			f[r] = _mm256_castsi256_ps(v[r]);
		qp_avx2_transpose8(f);
		for (int j = 0; j < 8; j++)
			_mm256_storeu_ps((float *)p[i].w[j], f[j]);
	}
}

/* One panel of eight rows against T tokens at once. Tokens' bytes go in
 * as y + 128 (the sign bit flipped), unsigned, against the signed q - 8:
 * a 16-bit pair is at most 2 * 255 * 8 and eight of them stay inside
 * int16; c removes the 128 * (q - 8) terms. */
static inline __attribute__((always_inline)) void panel_tokens(const int T, int64_t nb, float *s, int64_t lds,
                                                                const struct qp_q4_0_panel *p, const uint8_t *y, size_t by)
{
	const __m256i flip = _mm256_set1_epi8((char)0x80), ones = _mm256_set1_epi16(1);
	__m256 acc[4];
	_Pragma("GCC unroll 4")
	for (int t = 0; t < T; t++)
		acc[t] = _mm256_setzero_ps();
	for (int64_t i = 0; i < nb; i++) {
		const struct qp_block_q8_0 *yb[4];
		__m256i a16[4];
		_Pragma("GCC unroll 4")
		for (int t = 0; t < T; t++) {
			yb[t] = (const struct qp_block_q8_0 *)(y + (size_t)t * by) + i;
			a16[t] = _mm256_setzero_si256();
		}
		_Pragma("GCC unroll 8")
		for (int j = 0; j < 8; j++) {
			const __m256i w = _mm256_loadu_si256((const __m256i *)p[i].w[j]);
			_Pragma("GCC unroll 4")
			for (int t = 0; t < T; t++) {
				int32_t g;
				__builtin_memcpy(&g, yb[t]->qs + 4 * j, 4);
				const __m256i u = _mm256_xor_si256(_mm256_set1_epi32(g), flip);
				a16[t] = _mm256_add_epi16(a16[t], _mm256_maddubs_epi16(u, w));
			}
		}
		const __m256i c = _mm256_loadu_si256((const __m256i *)p[i].c);
		const __m256 dx = _mm256_loadu_ps(p[i].d);
		_Pragma("GCC unroll 4")
		for (int t = 0; t < T; t++) {
			const __m256i idot = _mm256_sub_epi32(_mm256_madd_epi16(a16[t], ones), c);
			const __m256 sc = _mm256_mul_ps(dx, _mm256_set1_ps(_cvtsh_ss(yb[t]->d)));
			acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(idot), sc, acc[t]);
		}
	}
	_Pragma("GCC unroll 4")
	for (int t = 0; t < T; t++)
		_mm256_storeu_ps(s + t * lds, acc[t]);
}

void qp_q4_0_panel_tile_avx2(int64_t n, float *s, int64_t lds, const void *panel, int64_t nr, const void *y,
                             size_t by, int64_t nc)
{
	const struct qp_q4_0_panel *p = panel;
	const uint8_t *yb = y;
	const int64_t nb = n / QP_QK8_0;
	_Alignas(32) float out[4 * 8];
	for (int64_t c = 0; c < nc; c += 4) {
		const int64_t cc = nc - c < 4 ? nc - c : 4;
		const uint8_t *yt = yb + (size_t)c * by;
		switch (cc) {
		case 4: panel_tokens(4, nb, out, 8, p, yt, by); break;
		case 3: panel_tokens(3, nb, out, 8, p, yt, by); break;
		case 2: panel_tokens(2, nb, out, 8, p, yt, by); break;
		default: panel_tokens(1, nb, out, 8, p, yt, by); break;
		}
		for (int64_t t = 0; t < cc; t++)
			for (int64_t r = 0; r < nr; r++)
				s[(c + t) * lds + r] = out[t * 8 + r];
	}
}
