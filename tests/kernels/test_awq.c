/* kernels/awq on generated layers whose inputs have a few salient
 * channels (large mean |x|), the case AWQ is for: the scale search never
 * loses to RTN on the output error it measures, wins clearly here, and
 * folding s into the producer leaves the unquantized layer unchanged;
 * clipping lowers the output error again; its loss equals the output
 * error computed from the activations themselves. */
#include <math.h>

#include "kernels/awq.h"
#include "kernels/qmethod.h"
#include "../formats/tf.h"

static struct qp_err err;
static uint64_t state = 42;

static double rnd(void)
{
	return qp_qmethod_rng_unit(&state) * 2.0 - 1.0;
}

enum { ROWS = 48, COLS = 256, TOK = 512 };

/* activations: channel c scaled by 20 for every 16th channel */
static void make(float *w, float *x, float *h, float *m)
{
	for (int i = 0; i < ROWS * COLS; i++)
		w[i] = (float)(0.05 * rnd());
	for (int t = 0; t < TOK; t++)
		for (int c = 0; c < COLS; c++)
			x[t * COLS + c] = (float)(rnd() * (c % 16 == 0 ? 20.0 : 1.0));
	for (int a = 0; a < COLS; a++) {
		double s = 0;
		for (int t = 0; t < TOK; t++)
			s += fabs(x[t * COLS + a]);
		m[a] = (float)(s / TOK);
		for (int b = 0; b < COLS; b++) {
			double g = 0;
			for (int t = 0; t < TOK; t++)
				g += (double)x[t * COLS + a] * x[t * COLS + b];
			h[a * COLS + b] = (float)g;
		}
	}
}

/* || X W^T - X V^T ||^2 with V the model's effective weights. */
static double out_err(const float *x, const float *w, const float *v)
{
	double e = 0;
	for (int t = 0; t < TOK; t++)
		for (int r = 0; r < ROWS; r++) {
			double a = 0;
			for (int c = 0; c < COLS; c++)
				a += (double)x[t * COLS + c] * ((double)w[r * COLS + c] - v[r * COLS + c]);
			e += a * a;
		}
	return e;
}

/* The effective weights of a quantized, scaled layer: Q(W s) / s. */
static int effective(const struct qp_awq_params *p, const float *w, const float *h, const float *s, float *v)
{
	float *ws = malloc(sizeof(float) * ROWS * COLS);
	memcpy(ws, w, sizeof(float) * ROWS * COLS);
	if (s)
		qp_awq_scale_cols(ws, ROWS, COLS, s);
	struct qp_qtensor q;
	struct qp_qspec spec;
	qp_awq_spec(p, &spec);
	int rc = qp_awq_quantize(p, ws, ROWS, COLS, h, s, &q, 1, &err);
	if (!rc)
		rc = qp_qmethod_dequantize(&spec, &q, v, &err);
	qp_qtensor_free(&q);
	for (int r = 0; s && !rc && r < ROWS; r++)
		for (int c = 0; c < COLS; c++)
			v[r * COLS + c] /= s[c];
	free(ws);
	return rc;
}

static void awq__scales_beat_rtn_on_salient_channels_and_loss_is_output_error(void)
{
	float *w = malloc(sizeof(float) * ROWS * COLS), *x = malloc(sizeof(float) * TOK * COLS);
	float *h = malloc(sizeof(float) * COLS * COLS), *m = malloc(sizeof(float) * COLS), s[COLS], alpha = -1;
	float *v = malloc(sizeof(float) * ROWS * COLS);
	make(w, x, h, m);
	struct qp_awq_params p;
	qp_awq_params_default(&p);
	p.bits = 3;
	p.group = 64;
	p.clip = false;
	const float *ws[1] = {w};
	int64_t rows[1] = {ROWS};
	double l_rtn, l_best;
	CHECK_OK(qp_awq_search(&p, ws, rows, 1, COLS, h, m, s, &alpha, &l_rtn, &l_best, 1, &err));
	CHECK(alpha > 0);
	CHECK(l_best < 0.8 * l_rtn);
	/* the loss is the output error over the activations */
	CHECK_OK(effective(&p, w, h, s, v));
	double e_awq = out_err(x, w, v);
	CHECK(fabs(e_awq - l_best) <= 1e-3 * l_best);
	CHECK_OK(effective(&p, w, h, NULL, v));
	double e_rtn = out_err(x, w, v);
	CHECK(fabs(e_rtn - l_rtn) <= 1e-3 * l_rtn);
	/* clipping on top lowers it again */
	p.clip = true;
	CHECK_OK(effective(&p, w, h, s, v));
	CHECK(out_err(x, w, v) < e_awq);
	free(w), free(x), free(h), free(m), free(v);
}

static void awq__folding_keeps_the_unquantized_layer(void)
{
	/* W diag(s) applied to x / s is W x, up to rounding */
	float w[4 * 8], x[8], s[8];
	for (int i = 0; i < 32; i++)
		w[i] = (float)rnd();
	for (int c = 0; c < 8; c++)
		x[c] = (float)rnd(), s[c] = (float)(0.5 + c);
	float ws[32], xs[8];
	memcpy(ws, w, sizeof(ws));
	memcpy(xs, x, sizeof(xs));
	qp_awq_scale_cols(ws, 4, 8, s);
	qp_awq_unscale_rows(xs, 8, 1, s);
	for (int r = 0; r < 4; r++) {
		double a = 0, b = 0;
		for (int c = 0; c < 8; c++)
			a += (double)w[r * 8 + c] * x[c], b += (double)ws[r * 8 + c] * xs[c];
		CHECK(fabs(a - b) < 1e-5);
	}
}

static void awq__bad_params_are_refused(void)
{
	struct qp_awq_params p;
	qp_awq_params_default(&p);
	float w[2 * 100] = {0}, h[100 * 100] = {0}, m[100] = {0}, s[100], a;
	const float *ws[1] = {w};
	int64_t rows[1] = {2};
	double l1, l2;
	CHECK_ERR(qp_awq_search(&p, ws, rows, 1, 100, h, m, s, &a, &l1, &l2, 1, &err), QP_EINVAL,
	          "awq: group 128 does not divide the row length 100");
	p.group = 50;
	p.bits = 9;
	CHECK_ERR(qp_awq_search(&p, ws, rows, 1, 100, h, m, s, &a, &l1, &l2, 1, &err), QP_EINVAL,
	          "awq: bits 9 is outside 2..8");
}

int main(int argc, char **argv)
{
	static const struct tf_test tests[] = {
		TF_TEST(awq__scales_beat_rtn_on_salient_channels_and_loss_is_output_error),
		TF_TEST(awq__folding_keeps_the_unquantized_layer),
		TF_TEST(awq__bad_params_are_refused),
	};
	return tf_main(argc, argv, tests, sizeof(tests) / sizeof(tests[0]));
}
