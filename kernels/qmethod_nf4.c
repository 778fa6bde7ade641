/* NF4: QLoRA's 4-bit NormalFloat over blocks of the flattened tensor, with
 * its optional double quantization of the block absmax values
 * (qmethod.h has the formulas). Nearest code values are found through
 * midpoints computed in double, where the midpoint of two floats is
 * exact, so "nearest, the lower index on a tie" means the true tie. */
#include <math.h>
#include <stdlib.h>

#include "kernels/qmethod_int.h"

/* bitsandbytes' NF4 table (functional.py, get_4bit_type("nf4")) */
const float qp_nf4_values[16] = {
	-1.0f,
	-0.6961928009986877f,
	-0.5250730514526367f,
	-0.39491748809814453f,
	-0.28444138169288635f,
	-0.18477343022823334f,
	-0.09105003625154495f,
	0.0f,
	0.07958029955625534f,
	0.16093020141124725f,
	0.24611230194568634f,
	0.33791524171829224f,
	0.44070982933044434f,
	0.5626170039176941f,
	0.7229568362236023f,
	1.0f,
};

enum { NF4_ZERO = 7, DQ_BLOCK = 256 };

/* bitsandbytes' create_dynamic_map(signed=True, max_exponent_bits=7,
 * total_bits=8): for i in 0..6, the means of adjacent points of
 * linspace(0.1, 1, 2^i + 1) times 10^(i - 6), with both signs; then 0 and
 * 1. numpy's linspace (k * step + start, the last point exactly stop) in
 * double, each value rounded once to float. bitsandbytes computes the
 * linspace in torch float32, so its table may differ from this one in a
 * last bit. */
void qp_qmethod_dynamic_map(float map[256])
{
	double v[256];
	int n = 0;
	for (int i = 0; i < 7; i++) {
		const int pts = (1 << i) + 1;
		const double step = (1.0 - 0.1) / (double)(pts - 1);
		const double scale = pow(10.0, (double)(i - 6));
		for (int k = 0; k + 1 < pts; k++) {
			const double a = (double)k * step + 0.1;
			const double b = k + 2 == pts ? 1.0 : (double)(k + 1) * step + 0.1;
			const double mean = (a + b) / 2.0;
			v[n++] = scale * mean;
			v[n++] = -scale * mean;
		}
	}
	v[n++] = 0.0;
	v[n++] = 1.0;
	/* 256 values: an insertion sort is plenty */
	for (int i = 1; i < n; i++) {
		const double x = v[i];
		int j = i;
		for (; j > 0 && v[j - 1] > x; j--)
			v[j] = v[j - 1];
		v[j] = x;
	}
	for (int i = 0; i < 256; i++)
		map[i] = (float)v[i];
}

static void midpoints(const float *table, int n, double *mids)
{
	for (int i = 0; i + 1 < n; i++)
		mids[i] = ((double)table[i] + (double)table[i + 1]) * 0.5;
}

struct nf4_ctx {
	const struct qp_qspec *s;
	const float *w;
	struct qp_qtensor *q;
	float *absmax; /* per block: the true absmax, which the 4-bit codes use */
	double mids[15];
};

static int nf4_blocks(void *arg, int64_t lo, int64_t hi)
{
	struct nf4_ctx *c = arg;
	const int64_t g = c->s->group;
	for (int64_t b = lo; b < hi; b++) {
		const float *w = c->w + b * g;
		float a = 0.0f;
		for (int64_t i = 0; i < g; i++)
			a = fmaxf(a, fabsf(w[i]));
		c->absmax[b] = a;
	}
	return 0;
}

static int nf4_rows(void *arg, int64_t lo, int64_t hi)
{
	struct nf4_ctx *c = arg;
	const int64_t cols = c->q->cols, g = c->s->group;
	for (int64_t r = lo; r < hi; r++) {
		const float *w = c->w + r * cols;
		uint8_t *row = c->q->codes + (size_t)r * c->q->row_bytes;
		for (int64_t j = 0; j < cols; j++) {
			const float a = c->absmax[(r * cols + j) / g];
			const int q = a == 0.0f ? NF4_ZERO : qm_count_below(c->mids, 15, (double)(w[j] / a));
			qm_put(row, j, 4, (unsigned)q);
		}
	}
	return 0;
}

/* QLoRA's second level: the absmax values less their mean, in blocks of
 * 256, each block's values over its max |a - c| coded by the nearest
 * entry of the dynamic map. */
static int double_quantize(struct qp_qtensor *q, const float *absmax, struct qp_err *err)
{
	const int64_t nb = q->n_blocks;
	q->n_absmax_scales = (nb + DQ_BLOCK - 1) / DQ_BLOCK;
	q->absmax_codes = malloc((size_t)nb);
	q->absmax_scales = malloc((size_t)q->n_absmax_scales * sizeof(float));
	if (!q->absmax_codes || !q->absmax_scales)
		return qp_err_nomem(err);
	float map[256];
	double mids[255];
	qp_qmethod_dynamic_map(map);
	midpoints(map, 256, mids);
	double sum = 0.0;
	for (int64_t b = 0; b < nb; b++)
		sum += (double)absmax[b];
	const float mean = (float)(sum / (double)nb);
	q->absmax_offset = mean;
	for (int64_t j = 0; j < q->n_absmax_scales; j++) {
		const int64_t lo = j * DQ_BLOCK, hi = lo + DQ_BLOCK < nb ? lo + DQ_BLOCK : nb;
		float m = 0.0f;
		for (int64_t b = lo; b < hi; b++)
			m = fmaxf(m, fabsf(absmax[b] - mean));
		q->absmax_scales[j] = m;
		/* m == 0: every a equals the mean, coded by the map's 0 */
		for (int64_t b = lo; b < hi; b++)
			q->absmax_codes[b] =
			    (uint8_t)qm_count_below(mids, 255, m == 0.0f ? 0.0 : (double)((absmax[b] - mean) / m));
	}
	return 0;
}

int qm_nf4_quantize(const struct qp_qspec *s, const float *w, struct qp_qtensor *out, int threads,
                    struct qp_err *err)
{
	const int64_t nb = out->rows * out->cols / s->group;
	struct nf4_ctx c = {s, w, out, malloc((size_t)nb * sizeof(float)), {0}};
	if (!c.absmax)
		return qp_err_nomem(err);
	midpoints(qp_nf4_values, 16, c.mids);
	out->n_blocks = nb;
	qm_parallel(threads, nb, 256, nf4_blocks, &c);
	qm_parallel(threads, out->rows, 16, nf4_rows, &c);
	if (s->double_quant) {
		const int rc = double_quantize(out, c.absmax, err);
		free(c.absmax);
		return rc;
	}
	/* without the second level the absmax values are the scales */
	out->scales = c.absmax;
	out->scale_rows = nb;
	out->scale_cols = 1;
	return 0;
}

int qm_nf4_dequantize(const struct qp_qspec *s, const struct qp_qtensor *q, float *out, struct qp_err *err)
{
	(void)err;
	float map[256];
	if (s->double_quant)
		qp_qmethod_dynamic_map(map);
	const int64_t cols = q->cols, g = s->group;
	float a = 0.0f;
	int64_t block = -1;
	for (int64_t r = 0; r < q->rows; r++) {
		const uint8_t *row = q->codes + (size_t)r * q->row_bytes;
		for (int64_t j = 0; j < cols; j++) {
			const int64_t b = (r * cols + j) / g;
			if (b != block) {
				block = b;
				a = s->double_quant
				        ? map[q->absmax_codes[b]] * q->absmax_scales[b / DQ_BLOCK] + q->absmax_offset
				        : q->scales[b];
			}
			out[r * cols + j] = a * qp_nf4_values[qm_get(row, j, 4)];
		}
	}
	return 0;
}
