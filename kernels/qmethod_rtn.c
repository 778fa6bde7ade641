/* RTN: round-to-nearest integers with a scale and zero point per unit,
 * GPTQ's quantizer (qmethod.h has the formulas). GPTQ and AWQ quantize
 * through qp_rtn_scale_zero and qp_rtn_code too, so the three methods
 * agree on every code a unit's scale allows. */
#include <float.h>
#include <math.h>
#include <stdlib.h>

#include "kernels/qmethod_int.h"

/* A scale that rounded to 0 (tiny units) would divide by zero and one
 * that overflowed would make every value inf * 0: keep it positive and
 * finite, in f16 when the scale is stored as f16. */
static float guard_scale(float s, bool scale_f16)
{
	if (scale_f16) {
		s = qm_round_f16(s);
		return s > 0.0f ? s : 0x1p-24f; /* f16's least subnormal */
	}
	if (isinf(s))
		return FLT_MAX;
	return s > 0.0f ? s : FLT_TRUE_MIN;
}

void qp_rtn_scale_zero(const float *w, int64_t n, int bits, bool sym, bool scale_f16, float *s,
                       uint8_t *z)
{
	const int maxq = (1 << bits) - 1;
	float lo = 0.0f, hi = 0.0f;
	for (int64_t i = 0; i < n; i++) {
		lo = fminf(lo, w[i]);
		hi = fmaxf(hi, w[i]);
	}
	if (sym) {
		float a = fmaxf(-lo, hi);
		if (a == 0.0f)
			a = 1.0f;
		/* GPTQ's (xmax - xmin) / maxq with xmin = -xmax */
		*s = guard_scale((a + a) / (float)maxq, scale_f16);
		*z = (uint8_t)((maxq + 1) / 2);
		return;
	}
	if (lo == 0.0f && hi == 0.0f) {
		lo = -1.0f;
		hi = 1.0f;
	}
	*s = guard_scale((hi - lo) / (float)maxq, scale_f16);
	/* the rounded scale may put -lo / s past maxq: clamp, as the header says */
	float zf = rintf(-lo / *s);
	zf = zf < 0.0f ? 0.0f : zf > (float)maxq ? (float)maxq : zf;
	*z = (uint8_t)zf;
}

uint8_t qp_rtn_code(float w, float s, uint8_t z, int bits)
{
	const float maxq = (float)((1 << bits) - 1);
	const float q = rintf(w / s) + (float)z;
	/* written so a NaN lands on 0 rather than in an undefined cast */
	if (!(q > 0.0f))
		return 0;
	return q > maxq ? (uint8_t)maxq : (uint8_t)q;
}

struct rtn_ctx {
	const struct qp_qspec *s;
	const float *w;
	struct qp_qtensor *q;
	int64_t unit_len;
};

static int rtn_units(void *arg, int64_t lo, int64_t hi)
{
	struct rtn_ctx *c = arg;
	for (int64_t u = lo; u < hi; u++)
		qp_rtn_scale_zero(c->w + u * c->unit_len, c->unit_len, c->s->bits, c->s->sym, c->s->scale_f16,
		                  &c->q->scales[u], &c->q->zeros[u]);
	return 0;
}

static int rtn_rows(void *arg, int64_t lo, int64_t hi)
{
	struct rtn_ctx *c = arg;
	const int64_t cols = c->q->cols;
	const int bits = c->s->bits;
	for (int64_t r = lo; r < hi; r++) {
		const float *w = c->w + r * cols;
		uint8_t *row = c->q->codes + (size_t)r * c->q->row_bytes;
		for (int64_t j = 0; j < cols; j++) {
			const int64_t u = (r * cols + j) / c->unit_len;
			qm_put(row, j, bits, qp_rtn_code(w[j], c->q->scales[u], c->q->zeros[u], bits));
		}
	}
	return 0;
}

int qm_rtn_quantize(const struct qp_qspec *s, const float *w, struct qp_qtensor *out, int threads,
                    struct qp_err *err)
{
	const int64_t n_units = out->scale_rows * out->scale_cols;
	out->zeros = malloc((size_t)n_units);
	if (!out->zeros)
		return qp_err_nomem(err);
	struct rtn_ctx c = {s, w, out, out->rows * out->cols / n_units};
	qm_parallel(threads, n_units, 64, rtn_units, &c);
	qm_parallel(threads, out->rows, 16, rtn_rows, &c);
	return 0;
}

int qm_rtn_dequantize(const struct qp_qspec *s, const struct qp_qtensor *q, float *out, struct qp_err *err)
{
	(void)err;
	const int64_t cols = q->cols;
	const int64_t unit_len = q->rows * cols / (q->scale_rows * q->scale_cols);
	for (int64_t r = 0; r < q->rows; r++) {
		const uint8_t *row = q->codes + (size_t)r * q->row_bytes;
		for (int64_t j = 0; j < cols; j++) {
			const int64_t u = q->g_idx ? r * q->scale_cols + q->g_idx[j] : (r * cols + j) / unit_len;
			const int code = (int)qm_get(row, j, s->bits);
			out[r * cols + j] = q->scales[u] * (float)(code - (int)q->zeros[u]);
		}
	}
	return 0;
}
