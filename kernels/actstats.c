#include "kernels/actstats.h"

#include <math.h>
#include <stdlib.h>

#include "kernels/kernels.h"
#include "kernels/ops.h"

void qp_actstats_cols(double *sum, double *sum_sq, double *sum_abs, float *max_abs, const float *x,
                      int64_t n, int64_t k)
{
	for (int64_t t = 0; t < n; t++) {
		const float *row = x + t * k;
		for (int64_t j = 0; j < k; j++) {
			const double v = row[j];
			const float a = fabsf(row[j]);
			sum[j] += v;
			sum_sq[j] += v * v;
			sum_abs[j] += a;
			/* a NaN must stick, as it does in the sums */
			if (!isnan(max_abs[j]) && (a > max_abs[j] || isnan(a)))
				max_abs[j] = a;
		}
	}
}

void qp_actstats_gram_ref(double *h, const float *x, int64_t n, int64_t k)
{
	for (int64_t i = 0; i < k; i++)
		for (int64_t j = 0; j <= i; j++) {
			double s = 0.0;
			for (int64_t t = 0; t < n; t++)
				s += (double)x[t * k + i] * (double)x[t * k + j];
			h[i * k + j] += s;
		}
}

/* Tiles of TILE x TILE entries: the TILE columns of each side, TILE * n
 * floats apiece, stay in cache while their dot products are taken. */
#define TILE 32

struct gram_job {
	double *h;
	const float *xt;    /* x transposed: k rows of n floats, one per column of x */
	int64_t n, k, nb;   /* nb: tiles per side */
	void (*dot)(int64_t, float *, const void *, const void *);
};

/* Tile number -> (row tile bi, column tile bj <= bi), row by row through
 * the triangle: tile bi starts at bi (bi + 1) / 2. */
static void tile_at(int64_t t, int64_t *bi, int64_t *bj)
{
	int64_t i = (int64_t)((sqrt(8.0 * (double)t + 1.0) - 1.0) / 2.0);
	while (i * (i + 1) / 2 > t)
		i--;
	while ((i + 1) * (i + 2) / 2 <= t)
		i++;
	*bi = i;
	*bj = t - i * (i + 1) / 2;
}

static void gram_tiles(void *arg, int64_t t0, int64_t t1)
{
	const struct gram_job *g = arg;
	for (int64_t t = t0; t < t1; t++) {
		int64_t bi, bj;
		tile_at(t, &bi, &bj);
		int64_t i_end = (bi + 1) * TILE < g->k ? (bi + 1) * TILE : g->k;
		int64_t j_end = (bj + 1) * TILE < g->k ? (bj + 1) * TILE : g->k;
		for (int64_t i = bi * TILE; i < i_end; i++)
			for (int64_t j = bj * TILE; j < j_end && j <= i; j++) {
				float s;
				g->dot(g->n, &s, g->xt + i * g->n, g->xt + j * g->n);
				g->h[i * g->k + j] += (double)s;
			}
	}
}

int qp_actstats_gram(double *h, const float *x, int64_t n, int64_t k, int threads,
                     struct qp_err *err)
{
	if (n <= 0 || k <= 0)
		return 0;
	if ((uint64_t)n > SIZE_MAX / sizeof(float) / (uint64_t)k)
		return qp_err_nomem(err);
	float *xt = malloc((size_t)n * (size_t)k * sizeof(float));
	if (!xt)
		return qp_err_nomem(err);
	for (int64_t t = 0; t < n; t++)
		for (int64_t j = 0; j < k; j++)
			xt[j * n + t] = x[t * k + j];
	int64_t nb = (k + TILE - 1) / TILE;
	struct gram_job g = {h, xt, n, k, nb, qp_kernels_get(QP_TYPE_F32)->vec_dot};
	/* each tile is written by exactly one thread, so the split changes
	 * nothing in the result */
	qp_ops_parallel(threads, nb * (nb + 1) / 2, gram_tiles, &g);
	free(xt);
	return 0;
}
