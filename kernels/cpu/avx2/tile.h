/* The walk of a matrix product's rows and tokens in tiles, shared by the
 * tile kernels of every x86 level: a tile body written for compile-time
 * R x C is expanded, shape by shape, into a function that walks the whole
 * nr x nc range in tiles of at most tr x tc (kernels.h, vec_dot_tile). A
 * body's loops over R and C unroll fully at each shape, which is what
 * keeps its accumulators in registers. */
#ifndef QP_KERNELS_AVX2_TILE_H
#define QP_KERNELS_AVX2_TILE_H

#include <stddef.h>
#include <stdint.h>

#define QP_TILE_CASE(body, R, C) \
	case R * 8 + C: body(R, C); break;

/* every shape up to 4 x 4 but 1 x 1 (the default case) */
#define QP_TILE_SHAPES_4(body)                                                                          \
	QP_TILE_CASE(body, 4, 4) QP_TILE_CASE(body, 4, 3) QP_TILE_CASE(body, 4, 2) QP_TILE_CASE(body, 4, 1) \
	QP_TILE_CASE(body, 3, 4) QP_TILE_CASE(body, 3, 3) QP_TILE_CASE(body, 3, 2) QP_TILE_CASE(body, 3, 1) \
	QP_TILE_CASE(body, 2, 4) QP_TILE_CASE(body, 2, 3) QP_TILE_CASE(body, 2, 2) QP_TILE_CASE(body, 2, 1) \
	QP_TILE_CASE(body, 1, 4) QP_TILE_CASE(body, 1, 3) QP_TILE_CASE(body, 1, 2)

/* name(n, s, lds, x, bx, nr, y, by, nc), the vec_dot_tile signature, over
 * shapes (a list of QP_TILE_CASE covering every rr x cc below tr x tc but
 * 1 x 1) */
#define QP_TILE_DRIVER(name, body, tr, tc, shapes)                                                      \
	void name(int64_t n, float *s, int64_t lds, const void *x, size_t bx, int64_t nr, const void *y,    \
	          size_t by, int64_t nc)                                                                    \
	{                                                                                                   \
		const uint8_t *xb = x, *yb = y;                                                                 \
		for (int64_t r = 0; r < nr; r += tr) {                                                          \
			const int64_t rr = nr - r < tr ? nr - r : tr;                                               \
			for (int64_t c = 0; c < nc; c += tc) {                                                      \
				const int64_t cc = nc - c < tc ? nc - c : tc;                                           \
				const uint8_t *xt = xb + (size_t)r * bx, *yt = yb + (size_t)c * by;                     \
				float *st = s + c * lds + r;                                                            \
				switch (rr * 8 + cc) {                                                                  \
				shapes(body)                                                                            \
				default: body(1, 1); break;                                                             \
				}                                                                                       \
			}                                                                                           \
		}                                                                                               \
	}

/* q4_0's panel (qp_q4_0_panel_avx2), block i of eight rows: w[j] holds
 * the four values q - 8 of elements 4j .. 4j + 3 of row r at bytes 4r ..
 * 4r + 3; c[r] = 128 * (sum of row r's q - 8) and d[r] is its scale. Rows
 * past the last are zero. */
struct qp_q4_0_panel {
	int8_t w[8][32];
	int32_t c[8];
	float d[8];
};

#endif
