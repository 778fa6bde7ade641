/* bench/w8a8: time of qp_w8a8_matmul (int8 weights, per-token int8
 * activations quantized inside the call) beside qp_ops_matmul with f32
 * weights, on the same shapes and activations.
 *
 * usage: bench_w8a8 THREADS MIN_SECONDS ROWSxK:TOKENS ...
 * Each case is timed as the best of repeated calls, repeated until
 * MIN_SECONDS of calls have run (at least 3). Weights and activations
 * are gaussian from a fixed seed; time does not depend on the values.
 * Prints one JSON object per case: {"rows", "k", "tokens", "threads",
 * "level", "w8a8_s", "f32_s"}, seconds per call. bench/w8a8.py runs this
 * beside numpy's float32 matmul and prints the table. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/kernels.h"
#include "kernels/ops.h"
#include "kernels/w8a8.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t rng_state = 0x243f6a8885a308d3ULL;

static float gauss(void)
{
	double u[2];
	for (int i = 0; i < 2; i++) {
		uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
		u[i] = (double)((z ^ (z >> 31)) >> 11) * 0x1p-53;
	}
	return (float)(sqrt(-2.0 * log(1.0 - u[0])) * cos(6.283185307179586 * u[1]));
}

struct bcase {
	int64_t rows, k, tok;
	int threads;
	const float *w, *x;
	const int8_t *wq;
	const float *ws;
	float *y;
};

/* Seconds per call of which (0 W8A8, 1 f32), best of the repeats. */
static double time_one(const struct bcase *c, int which, double min_seconds)
{
	struct qp_err err = {0};
	double best = 1e30, spent = 0.0;
	for (int rep = 0; rep < 3 || spent < min_seconds; rep++) {
		const double t0 = now();
		const int rc = which == 0 ? qp_w8a8_matmul(c->y, c->rows, c->wq, c->ws, c->rows, c->k, c->x, c->tok,
		                                            c->threads, &err)
		                          : qp_ops_matmul(c->y, c->rows, QP_TYPE_F32, c->w, c->rows, c->k, c->x, c->tok,
		                                          c->threads, &err);
		const double dt = now() - t0;
		if (rc) {
			fprintf(stderr, "bench_w8a8: %s\n", err.msg);
			exit(1);
		}
		best = dt < best ? dt : best;
		spent += dt;
	}
	return best;
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: %s THREADS MIN_SECONDS ROWSxK:TOKENS ...\n", argv[0]);
		return 2;
	}
	const int threads = atoi(argv[1]);
	const double min_seconds = atof(argv[2]);
	struct qp_err err = {0};
	if (qp_kernels_init(NULL, &err)) {
		fprintf(stderr, "bench_w8a8: %s\n", err.msg);
		return 1;
	}
	for (int a = 3; a < argc; a++) {
		long long rows, k, tok;
		if (sscanf(argv[a], "%lldx%lld:%lld", &rows, &k, &tok) != 3 || rows < 1 || k < 1 || tok < 1) {
			fprintf(stderr, "bench_w8a8: bad case '%s', want ROWSxK:TOKENS\n", argv[a]);
			return 2;
		}
		float *w = malloc((size_t)(rows * k) * sizeof(float));
		float *x = malloc((size_t)(tok * k) * sizeof(float));
		int8_t *wq = malloc((size_t)(rows * k));
		float *ws = malloc((size_t)rows * sizeof(float));
		float *y = malloc((size_t)(tok * rows) * sizeof(float));
		if (!w || !x || !wq || !ws || !y) {
			fprintf(stderr, "bench_w8a8: out of memory\n");
			return 1;
		}
		for (long long i = 0; i < rows * k; i++)
			w[i] = 0.02f * gauss();
		for (long long i = 0; i < tok * k; i++)
			x[i] = gauss();
		if (qp_w8a8_quantize_weights(wq, ws, w, rows, k, &err)) {
			fprintf(stderr, "bench_w8a8: %s\n", err.msg);
			return 1;
		}
		const struct bcase c = {rows, k, tok, threads, w, x, wq, ws, y};
		const double t_w8a8 = time_one(&c, 0, min_seconds);
		const double t_f32 = time_one(&c, 1, min_seconds);
		printf("{\"rows\": %lld, \"k\": %lld, \"tokens\": %lld, \"threads\": %d, \"level\": \"%s\", "
		       "\"w8a8_s\": %.9g, \"f32_s\": %.9g}\n",
		       rows, k, tok, threads, qp_kernel_level_name(qp_kernels_level()), t_w8a8, t_f32);
		fflush(stdout);
		free(w);
		free(x);
		free(wq);
		free(ws);
		free(y);
	}
	return 0;
}
