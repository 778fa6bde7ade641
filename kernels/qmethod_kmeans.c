/* KMEANS: 1-D k-means look-up tables (coremltools' palettization), one
 * per tensor or per group of rows (qmethod.h has the definition).
 *
 * In one dimension clusters are runs of the sorted values, so after one
 * sort (a radix sort on the floats' bits) every step is cheap:
 *   - k-means++: a new centroid can only lower D^2 for points between
 *     its chosen neighbours, a contiguous run of the sorted values; D^2
 *     is kept per point, its sum per block of QM_BLOCK points, and a draw
 *     walks the block sums, then one block.
 *   - Lloyd: the assignment is k - 1 boundaries, found by binary search
 *     of the midpoints; a cluster's sum is a difference of prefix sums.
 * So one tensor costs a sort plus O(n log k), not O(n k) per iteration:
 * llama-docs-27m's 27M weights take seconds at 8 bits.
 *
 * Sums of D^2 over blocks make a draw's running total differ from a
 * strictly sequential one in the last bits of a double: a draw within an
 * ulp of a boundary could pick the neighbouring point. Within one block
 * (a group of at most QM_BLOCK values) the running total is sequential,
 * exactly as numpy's cumsum. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/blocks.h"
#include "kernels/qmethod_int.h"

enum { QM_BLOCK = 4096 };

/* Seeds of successive groups: an odd constant other than splitmix64's own
 * increment, so that group g's stream is not group 0's shifted by g. */
#define GROUP_SEED_STEP 0xd1b54a32d192ed03ULL

static inline uint32_t sort_key(float f)
{
	const uint32_t u = qp_f32_bits(f);
	return (u & 0x80000000u) ? ~u : u | 0x80000000u;
}

static inline float key_float(uint32_t k)
{
	return qp_f32_from_bits((k & 0x80000000u) ? k & 0x7fffffffu : ~k);
}

/* LSD radix sort of n keys, 8 bits a pass; the result lands back in a. */
static void radix_sort(uint32_t *a, uint32_t *tmp, int64_t n)
{
	for (int shift = 0; shift < 32; shift += 8) {
		int64_t count[257] = {0};
		for (int64_t i = 0; i < n; i++)
			count[((a[i] >> shift) & 0xff) + 1]++;
		for (int b = 0; b < 256; b++)
			count[b + 1] += count[b];
		for (int64_t i = 0; i < n; i++)
			tmp[count[(a[i] >> shift) & 0xff]++] = a[i];
		uint32_t *t = a;
		a = tmp;
		tmp = t;
	}
	/* four passes: the sorted keys are in the original a again */
}

/* first index with x[i] > v, or n */
static int64_t upper_bound(const float *x, int64_t n, double v)
{
	int64_t lo = 0, hi = n;
	while (lo < hi) {
		const int64_t m = lo + (hi - lo) / 2;
		if ((double)x[m] > v)
			hi = m;
		else
			lo = m + 1;
	}
	return lo;
}

/* first index with x[i] >= v, or n */
static int64_t lower_bound(const float *x, int64_t n, double v)
{
	int64_t lo = 0, hi = n;
	while (lo < hi) {
		const int64_t m = lo + (hi - lo) / 2;
		if ((double)x[m] < v)
			lo = m + 1;
		else
			hi = m;
	}
	return lo;
}

static inline double sq(double d)
{
	return d * d;
}

static void block_sums(const double *d2, int64_t n, double *bsum, int64_t b0, int64_t b1)
{
	for (int64_t b = b0; b < b1; b++) {
		const int64_t hi = (b + 1) * QM_BLOCK < n ? (b + 1) * QM_BLOCK : n;
		double s = 0.0;
		for (int64_t i = b * QM_BLOCK; i < hi; i++)
			s += d2[i];
		bsum[b] = s;
	}
}

/* k-means++ over the sorted values x: k centroids into c, ascending. When
 * every point already sits on a centroid (fewer distinct values than k)
 * the rest repeat the largest one. */
static void seed(const float *x, int64_t n, int k, uint64_t *state, double *d2, double *bsum, float *c)
{
	const int64_t nb = (n + QM_BLOCK - 1) / QM_BLOCK;
	int64_t first = (int64_t)(qp_qmethod_rng_unit(state) * (double)n);
	if (first >= n)
		first = n - 1;
	c[0] = x[first];
	int nc = 1;
	for (int64_t i = 0; i < n; i++)
		d2[i] = sq((double)x[i] - (double)c[0]);
	block_sums(d2, n, bsum, 0, nb);
	while (nc < k) {
		double total = 0.0;
		for (int64_t b = 0; b < nb; b++)
			total += bsum[b];
		if (!(total > 0.0))
			break;
		const double target = qp_qmethod_rng_unit(state) * total;
		int64_t pick = -1;
		double cum = 0.0;
		for (int64_t b = 0; b < nb && pick < 0; b++) {
			if (cum + bsum[b] <= target) {
				cum += bsum[b];
				continue;
			}
			const int64_t hi = (b + 1) * QM_BLOCK < n ? (b + 1) * QM_BLOCK : n;
			for (int64_t i = b * QM_BLOCK; i < hi; i++) {
				cum += d2[i];
				if (cum > target) {
					pick = i;
					break;
				}
			}
		}
		if (pick < 0) /* target rounded up to the total */
			for (pick = n - 1; d2[pick] == 0.0; pick--)
				;
		const float cn = x[pick];
		/* d2[pick] > 0, so cn is no centroid yet; only points strictly
		 * between its neighbours among the centroids can move to it */
		int p = 0;
		while (p < nc && c[p] < cn)
			p++;
		const int64_t lo = p > 0 ? upper_bound(x, n, (double)c[p - 1]) : 0;
		const int64_t hi = p < nc ? lower_bound(x, n, (double)c[p]) : n;
		for (int64_t i = lo; i < hi; i++) {
			const double d = sq((double)x[i] - (double)cn);
			if (d < d2[i])
				d2[i] = d;
		}
		if (hi > lo)
			block_sums(d2, n, bsum, lo / QM_BLOCK, (hi - 1) / QM_BLOCK + 1);
		memmove(c + p + 1, c + p, (size_t)(nc - p) * sizeof(float));
		c[p] = cn;
		nc++;
	}
	for (int j = nc; j < k; j++)
		c[j] = c[nc - 1];
}

/* Lloyd on sorted x with prefix sums pre (n + 1): at most iters rounds,
 * stopping when the boundaries (the assignment) repeat. A mean is
 * clamped to its cluster's extremes, which a rounded difference of
 * prefix sums could pass by an ulp; so centroids stay ascending. */
static void lloyd(const float *x, int64_t n, const double *pre, int k, int iters, float *c, int64_t *bound,
                  int64_t *prev)
{
	for (int it = 0; it < iters; it++) {
		for (int j = 0; j + 1 < k; j++)
			bound[j] = upper_bound(x, n, ((double)c[j] + (double)c[j + 1]) * 0.5);
		if (it > 0 && memcmp(bound, prev, (size_t)(k - 1) * sizeof(int64_t)) == 0)
			break;
		for (int j = 0; j < k; j++) {
			const int64_t lo = j > 0 ? bound[j - 1] : 0, hi = j + 1 < k ? bound[j] : n;
			if (hi <= lo)
				continue; /* empty: keeps its centroid */
			double m = (pre[hi] - pre[lo]) / (double)(hi - lo);
			m = m < (double)x[lo] ? (double)x[lo] : m > (double)x[hi - 1] ? (double)x[hi - 1] : m;
			c[j] = (float)m;
		}
		memcpy(prev, bound, (size_t)(k - 1) * sizeof(int64_t));
	}
}

struct km_ctx {
	const struct qp_qspec *s;
	const float *w;
	struct qp_qtensor *q;
	int64_t group_rows;
	double *mids; /* lut_rows x (k - 1): each LUT's midpoints, for the codes */
};

static inline float scaled(const struct km_ctx *c, int64_t r, float w)
{
	return c->s->channel_scale ? w / c->q->scales[r] : w;
}

static int km_row_scales(void *arg, int64_t lo, int64_t hi)
{
	struct km_ctx *c = arg;
	for (int64_t r = lo; r < hi; r++) {
		const float *w = c->w + r * c->q->cols;
		float a = 0.0f;
		for (int64_t j = 0; j < c->q->cols; j++)
			a = fmaxf(a, fabsf(w[j]));
		c->q->scales[r] = a > 0.0f ? a : 1.0f;
	}
	return 0;
}

static int km_groups(void *arg, int64_t lo, int64_t hi)
{
	struct km_ctx *c = arg;
	const int k = 1 << c->s->bits;
	const int64_t cols = c->q->cols, n = c->group_rows * cols;
	const int64_t nb = (n + QM_BLOCK - 1) / QM_BLOCK;
	uint32_t *keys = malloc((size_t)n * sizeof(uint32_t));
	uint32_t *tmp = malloc((size_t)n * sizeof(uint32_t));
	double *d = malloc((size_t)(n + 1) * sizeof(double)); /* D^2, then prefix sums */
	double *bsum = malloc((size_t)nb * sizeof(double));
	int64_t *bounds = malloc((size_t)(2 * k) * sizeof(int64_t));
	int rc = 0;
	if (!keys || !tmp || !d || !bsum || !bounds) {
		rc = QP_ENOMEM;
		goto done;
	}
	for (int64_t g = lo; g < hi; g++) {
		const int64_t r0 = g * c->group_rows;
		for (int64_t i = 0; i < n; i++)
			keys[i] = sort_key(scaled(c, r0 + i / cols, c->w[r0 * cols + i]));
		radix_sort(keys, tmp, n);
		float *x = (float *)keys; /* same size: sorted values in place of their keys */
		for (int64_t i = 0; i < n; i++)
			x[i] = key_float(keys[i]);
		float *lut = c->q->lut + g * k;
		uint64_t state = c->s->seed + (uint64_t)g * GROUP_SEED_STEP;
		seed(x, n, k, &state, d, bsum, lut);
		d[0] = 0.0;
		for (int64_t i = 0; i < n; i++)
			d[i + 1] = d[i] + (double)x[i];
		lloyd(x, n, d, k, c->s->iters, lut, bounds, bounds + k);
		for (int j = 0; j + 1 < k; j++)
			c->mids[g * (k - 1) + j] = ((double)lut[j] + (double)lut[j + 1]) * 0.5;
	}
done:
	free(keys);
	free(tmp);
	free(d);
	free(bsum);
	free(bounds);
	return rc;
}

static int km_rows(void *arg, int64_t lo, int64_t hi)
{
	struct km_ctx *c = arg;
	const int k = 1 << c->s->bits;
	const int64_t cols = c->q->cols;
	for (int64_t r = lo; r < hi; r++) {
		const float *w = c->w + r * cols;
		const double *mids = c->mids + (r / c->group_rows) * (k - 1);
		uint8_t *row = c->q->codes + (size_t)r * c->q->row_bytes;
		for (int64_t j = 0; j < cols; j++)
			qm_put(row, j, c->s->bits, (unsigned)qm_count_below(mids, k - 1, (double)scaled(c, r, w[j])));
	}
	return 0;
}

int qm_kmeans_quantize(const struct qp_qspec *s, const float *w, struct qp_qtensor *out, int threads,
                       struct qp_err *err)
{
	const int k = 1 << s->bits;
	struct km_ctx c = {s, w, out, s->gran == QP_QG_TENSOR ? out->rows : s->group, NULL};
	out->lut_rows = out->rows / c.group_rows;
	out->lut = malloc((size_t)(out->lut_rows * k) * sizeof(float));
	c.mids = malloc((size_t)(out->lut_rows * (k - 1)) * sizeof(double));
	if (s->channel_scale) {
		out->scale_rows = out->rows;
		out->scale_cols = 1;
		out->scales = malloc((size_t)out->rows * sizeof(float));
	}
	if (!out->lut || !c.mids || (s->channel_scale && !out->scales)) {
		free(c.mids);
		return qp_err_nomem(err);
	}
	if (s->channel_scale)
		qm_parallel(threads, out->rows, 16, km_row_scales, &c);
	int rc = qm_parallel(threads, out->lut_rows, 1, km_groups, &c);
	if (!rc)
		qm_parallel(threads, out->rows, 16, km_rows, &c);
	free(c.mids);
	return rc ? qp_err_nomem(err) : 0;
}

int qm_kmeans_dequantize(const struct qp_qspec *s, const struct qp_qtensor *q, float *out,
                         struct qp_err *err)
{
	(void)err;
	const int k = 1 << s->bits;
	const int64_t cols = q->cols, group_rows = q->rows / q->lut_rows;
	for (int64_t r = 0; r < q->rows; r++) {
		const uint8_t *row = q->codes + (size_t)r * q->row_bytes;
		const float *lut = q->lut + (r / group_rows) * k;
		for (int64_t j = 0; j < cols; j++) {
			const float v = lut[qm_get(row, j, s->bits)];
			out[r * cols + j] = s->channel_scale ? v * q->scales[r] : v;
		}
	}
	return 0;
}
