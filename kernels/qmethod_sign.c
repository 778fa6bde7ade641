/* BINARY and TERNARY: a sign (and, for ternary, zero) per weight and one
 * magnitude per unit (qmethod.h has the formulas). Means sum in double
 * and round once to f32, so they do not depend on the summation order
 * beyond double rounding. */
#include <math.h>
#include <stdlib.h>

#include "kernels/qmethod_int.h"

struct sign_ctx {
	const struct qp_qspec *s;
	const float *w;
	struct qp_qtensor *q;
	int64_t unit_len;
	float *cut; /* per unit: ternary's threshold d, or g + 1e-5 (absmean) */
};

static float stored_scale(const struct qp_qspec *s, float x)
{
	return s->scale_f16 ? qm_round_f16(x) : x;
}

static int sign_units(void *arg, int64_t lo, int64_t hi)
{
	struct sign_ctx *c = arg;
	const struct qp_qspec *s = c->s;
	for (int64_t u = lo; u < hi; u++) {
		const float *w = c->w + u * c->unit_len;
		const float mean = qm_mean_abs(w, c->unit_len);
		if (s->method == QP_QM_BINARY) {
			c->q->scales[u] = stored_scale(s, mean);
		} else if (s->rule == QP_TERN_ABSMEAN) {
			c->cut[u] = mean + 1e-5f;
			c->q->scales[u] = stored_scale(s, mean);
		} else {
			const float d = s->threshold * mean;
			double sum = 0.0;
			int64_t kept = 0;
			for (int64_t i = 0; i < c->unit_len; i++)
				if (fabsf(w[i]) > d) {
					sum += fabs((double)w[i]);
					kept++;
				}
			c->cut[u] = d;
			c->q->scales[u] = stored_scale(s, kept ? (float)(sum / (double)kept) : 0.0f);
		}
	}
	return 0;
}

/* q = t + 1 for ternary's t in {-1, 0, 1}; binary's q = (w >= 0) */
static unsigned sign_code(const struct qp_qspec *s, float w, float cut)
{
	if (s->method == QP_QM_BINARY)
		return w >= 0.0f;
	if (s->rule == QP_TERN_ABSMEAN) {
		const float t = rintf(w / cut);
		return t >= 1.0f ? 2u : t <= -1.0f ? 0u : 1u;
	}
	return fabsf(w) > cut ? (w > 0.0f ? 2u : 0u) : 1u;
}

static int sign_rows(void *arg, int64_t lo, int64_t hi)
{
	struct sign_ctx *c = arg;
	const int64_t cols = c->q->cols;
	for (int64_t r = lo; r < hi; r++) {
		const float *w = c->w + r * cols;
		uint8_t *row = c->q->codes + (size_t)r * c->q->row_bytes;
		for (int64_t j = 0; j < cols; j++) {
			const int64_t u = (r * cols + j) / c->unit_len;
			qm_put(row, j, c->s->bits, sign_code(c->s, w[j], c->cut ? c->cut[u] : 0.0f));
		}
	}
	return 0;
}

int qm_sign_quantize(const struct qp_qspec *s, const float *w, struct qp_qtensor *out, int threads,
                     struct qp_err *err)
{
	const int64_t n_units = out->scale_rows * out->scale_cols;
	struct sign_ctx c = {s, w, out, out->rows * out->cols / n_units, NULL};
	if (s->method == QP_QM_TERNARY) {
		c.cut = malloc((size_t)n_units * sizeof(float));
		if (!c.cut)
			return qp_err_nomem(err);
	}
	qm_parallel(threads, n_units, 64, sign_units, &c);
	qm_parallel(threads, out->rows, 16, sign_rows, &c);
	free(c.cut);
	return 0;
}

int qm_sign_dequantize(const struct qp_qspec *s, const struct qp_qtensor *q, float *out, struct qp_err *err)
{
	const int64_t cols = q->cols;
	const int64_t unit_len = q->rows * cols / (q->scale_rows * q->scale_cols);
	for (int64_t r = 0; r < q->rows; r++) {
		const uint8_t *row = q->codes + (size_t)r * q->row_bytes;
		for (int64_t j = 0; j < cols; j++) {
			const float sc = q->scales[(r * cols + j) / unit_len];
			const unsigned code = qm_get(row, j, s->bits);
			if (s->method == QP_QM_BINARY) {
				out[r * cols + j] = code ? sc : -sc;
				continue;
			}
			if (code > 2)
				return qp_err_set(err, QP_EINVAL, "ternary: code 3 at row %lld, col %lld (codes are 0, 1, 2)",
				                  (long long)r, (long long)j);
			out[r * cols + j] = sc * (float)((int)code - 1);
		}
	}
	return 0;
}
