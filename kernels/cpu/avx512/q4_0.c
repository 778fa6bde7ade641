/* q4_0 x q8_0 over AVX2's panel (kernels/cpu/avx2/tile_q4_0.c says what
 * the panel and the chain of each pair are) with VNNI. For each token the
 * block's bytes go in once, flipped to y + 128 (unsigned), into a small
 * table; each 4-byte group is then broadcast from it against the same
 * group of eight rows' q - 8 (signed) by one vpdpbusd into an int32
 * accumulator per token, where AVX2 flips the group at every use and adds
 * a maddubs into int16 sums. c removes the 128 * (q - 8) terms as there.
 * The idots are the same integers, and the float steps after them are
 * AVX2's, so a result is the q4_0 vec_dot's bit for bit. */
#include "kernels/cpu/avx512/avx512.h"

#include <immintrin.h>

#include "kernels/blocks.h"
#include "kernels/cpu/avx2/tile.h"

/* tokens a call of panel_tokens holds at once */
#define T_MAX 8

static inline __attribute__((always_inline)) void panel_tokens(const int T, int64_t nb, float *s, int64_t lds,
                                                                const struct qp_q4_0_panel *p, const uint8_t *y,
                                                                size_t by)
{
	const __m256i flip = _mm256_set1_epi8((char)0x80);
	__m256 acc[T_MAX];
	_Pragma("GCC unroll 8")
	for (int t = 0; t < T; t++)
		acc[t] = _mm256_setzero_ps();
	for (int64_t i = 0; i < nb; i++) {
		const struct qp_block_q8_0 *yb[T_MAX];
		_Alignas(32) int32_t u[T_MAX][8];
		__m256i a32[T_MAX];
		_Pragma("GCC unroll 8")
		for (int t = 0; t < T; t++) {
			yb[t] = (const struct qp_block_q8_0 *)(y + (size_t)t * by) + i;
			_mm256_store_si256((__m256i *)u[t],
			                   _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)yb[t]->qs), flip));
			a32[t] = _mm256_setzero_si256();
		}
		/* the groups are read back from memory, broadcast by a load:
		 * kept in registers, GCC spread them with shuffles, which ran
		 * slower than AVX2 */
		__asm__ volatile("" ::: "memory");
		_Pragma("GCC unroll 8")
		for (int j = 0; j < 8; j++) {
			const __m256i w = _mm256_load_si256((const __m256i *)p[i].w[j]);
			_Pragma("GCC unroll 8")
			for (int t = 0; t < T; t++)
				a32[t] = _mm256_dpbusd_epi32(a32[t], _mm256_set1_epi32(u[t][j]), w);
		}
		const __m256i c = _mm256_load_si256((const __m256i *)p[i].c);
		const __m256 dx = _mm256_load_ps(p[i].d);
		_Pragma("GCC unroll 8")
		for (int t = 0; t < T; t++) {
			const __m256i idot = _mm256_sub_epi32(a32[t], c);
			const __m256 sc = _mm256_mul_ps(dx, _mm256_set1_ps(_cvtsh_ss(yb[t]->d)));
			acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(idot), sc, acc[t]);
		}
	}
	_Pragma("GCC unroll 8")
	for (int t = 0; t < T; t++)
		_mm256_storeu_ps(s + t * lds, acc[t]);
}

void qp_q4_0_panel_tile_avx512(int64_t n, float *s, int64_t lds, const void *panel, int64_t nr, const void *y,
                               size_t by, int64_t nc)
{
	const struct qp_q4_0_panel *p = panel;
	const uint8_t *yb = y;
	const int64_t nb = n / QP_QK8_0;
	_Alignas(32) float out[T_MAX * 8];
	for (int64_t c = 0; c < nc; c += T_MAX) {
		const int64_t cc = nc - c < T_MAX ? nc - c : T_MAX;
		const uint8_t *yt = yb + (size_t)c * by;
		switch (cc) {
		case 8: panel_tokens(8, nb, out, 8, p, yt, by); break;
		case 7: panel_tokens(7, nb, out, 8, p, yt, by); break;
		case 6: panel_tokens(6, nb, out, 8, p, yt, by); break;
		case 5: panel_tokens(5, nb, out, 8, p, yt, by); break;
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
