/* FP8: the two OCP 8-bit float formats, and FP8 quantization with one f32
 * scale per unit (qmethod.h has the formulas).
 *
 *   E4M3 ("fn"): 1 sign, 4 exponent (bias 7), 3 mantissa bits; no
 *     infinities, S.1111.111 is NaN, largest finite 448 (S.1111.110).
 *   E5M2: 1 sign, 5 exponent (bias 15), 2 mantissa bits; IEEE-like:
 *     S.11111.00 is infinity, S.11111.xx (xx != 0) NaN, largest finite
 *     57344 (S.11110.11).
 *   Both: exponent 0 is subnormal, m * 2^(1 - bias - mantissa bits).
 *
 * Encoding rounds to nearest, ties to even, subnormals included; a
 * finite value past the largest finite saturates to it (as torch's
 * clamp-then-cast in every FP8 quantizer does); NaN becomes the NaN code
 * with the input's sign (E4M3 S.1111.111, E5M2 S.11111.10); infinity
 * stays infinity in E5M2 and saturates to +-448 in E4M3, which has none.
 * -0 keeps its sign. */
#include <float.h>
#include <math.h>

#include "kernels/blocks.h"
#include "kernels/qmethod_int.h"

struct fp8_fmt {
	int man, bias;
	uint8_t max_code; /* largest finite magnitude */
	uint8_t nan_code;
	float max;
};

static const struct fp8_fmt fmts[] = {
	[QP_FP8_E4M3] = {3, 7, 0x7e, 0x7f, 448.0f},
	[QP_FP8_E5M2] = {2, 15, 0x7b, 0x7e, 57344.0f},
};

float qp_fp8_to_f32(uint8_t v, enum qp_fp8_format f)
{
	const struct fp8_fmt *t = &fmts[f];
	const int e = (v & 0x7f) >> t->man;
	const int m = v & ((1 << t->man) - 1);
	float r;
	if (f == QP_FP8_E4M3 && (v & 0x7f) == 0x7f)
		r = NAN;
	else if (f == QP_FP8_E5M2 && e == 31)
		r = m ? NAN : INFINITY;
	else if (e == 0)
		r = ldexpf((float)m, 1 - t->bias - t->man);
	else
		r = ldexpf((float)(m + (1 << t->man)), e - t->bias - t->man);
	return (v & 0x80) ? -r : r;
}

uint8_t qp_fp8_from_f32(float x, enum qp_fp8_format f)
{
	const struct fp8_fmt *t = &fmts[f];
	const uint32_t u = qp_f32_bits(x);
	const uint8_t sign = (uint8_t)((u >> 24) & 0x80u);
	const uint32_t a = u & 0x7fffffffu;
	if (a > 0x7f800000u)
		return sign | t->nan_code;
	if (a == 0x7f800000u)
		return sign | (f == QP_FP8_E5M2 ? 0x7c : t->max_code);
	if (a >= (uint32_t)(128 - t->bias) << 23) {
		/* normal in FP8: round f32's mantissa at bit 23 - man, ties to
		 * even; a carry runs into the exponent, and anything past the
		 * largest finite (NaN and infinity patterns included) saturates */
		const int shift = 23 - t->man;
		const uint32_t r = a + ((1u << (shift - 1)) - 1u) + ((a >> shift) & 1u);
		const uint32_t v = (r >> shift) - ((uint32_t)(127 - t->bias) << t->man);
		return sign | (uint8_t)(v > t->max_code ? t->max_code : v);
	}
	/* subnormal (or the least normal, by rounding up): a multiple of
	 * 2^(1 - bias - man); the scaling by a power of two is exact */
	const float q = rintf(fabsf(x) * ldexpf(1.0f, t->bias - 1 + t->man));
	return sign | (uint8_t)q;
}

struct fp8_ctx {
	const struct qp_qspec *s;
	const float *w;
	struct qp_qtensor *q;
	int64_t unit_len;
};

static int fp8_units(void *arg, int64_t lo, int64_t hi)
{
	struct fp8_ctx *c = arg;
	const float fmax = fmts[c->s->fp8].max;
	for (int64_t u = lo; u < hi; u++) {
		const float *w = c->w + u * c->unit_len;
		/* NaN and infinities have codes of their own: the scale
		 * serves the finite weights */
		float amax = 0.0f;
		for (int64_t i = 0; i < c->unit_len; i++)
			if (isfinite(w[i]))
				amax = fmaxf(amax, fabsf(w[i]));
		float s = amax == 0.0f ? 1.0f : amax / fmax;
		c->q->scales[u] = s > 0.0f ? s : FLT_TRUE_MIN; /* a subnormal amax / fmax may round to 0 */
	}
	return 0;
}

static int fp8_rows(void *arg, int64_t lo, int64_t hi)
{
	struct fp8_ctx *c = arg;
	const int64_t cols = c->q->cols;
	for (int64_t r = lo; r < hi; r++) {
		const float *w = c->w + r * cols;
		uint8_t *row = c->q->codes + (size_t)r * c->q->row_bytes;
		for (int64_t j = 0; j < cols; j++)
			row[j] = qp_fp8_from_f32(w[j] / c->q->scales[(r * cols + j) / c->unit_len], c->s->fp8);
	}
	return 0;
}

int qm_fp8_quantize(const struct qp_qspec *s, const float *w, struct qp_qtensor *out, int threads,
                    struct qp_err *err)
{
	(void)err;
	const int64_t n_units = out->scale_rows * out->scale_cols;
	struct fp8_ctx c = {s, w, out, out->rows * out->cols / n_units};
	qm_parallel(threads, n_units, 64, fp8_units, &c);
	qm_parallel(threads, out->rows, 16, fp8_rows, &c);
	return 0;
}

int qm_fp8_dequantize(const struct qp_qspec *s, const struct qp_qtensor *q, float *out, struct qp_err *err)
{
	(void)err;
	const int64_t cols = q->cols;
	const int64_t unit_len = q->rows * cols / (q->scale_rows * q->scale_cols);
	for (int64_t r = 0; r < q->rows; r++) {
		const uint8_t *row = q->codes + (size_t)r * q->row_bytes;
		for (int64_t j = 0; j < cols; j++)
			out[r * cols + j] = q->scales[(r * cols + j) / unit_len] * qp_fp8_to_f32(row[j], s->fp8);
	}
	return 0;
}
