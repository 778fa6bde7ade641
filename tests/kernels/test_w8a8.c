/* kernels/w8a8: the int8 row quantizer and int8 dot at every level this
 * machine runs, against the scalar reference (bit for bit, and exact int32
 * against an int64 sum); the reference against its own definition; the
 * W8A8 product against a double-precision evaluation of the same formula
 * over the reference's codes; and the helper's errors.
 *
 *   test_w8a8            run every test
 *   test_w8a8 NAME       run one (meson registers each by name)
 *
 * Rows come from a fixed-seed generator at lengths with SIMD tails (the
 * quantizer works in 32s and 8s, the dot in 32s and 16s). A failure names
 * the level, length, row kind and first differing element. */
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/w8a8.h"

struct t {
	int failures;
};

#define MAX_PRINTED 20

__attribute__((format(printf, 2, 3)))
static void fail(struct t *t, const char *fmt, ...)
{
	if (t->failures++ >= MAX_PRINTED)
		return;
	va_list ap;
	va_start(ap, fmt);
	fputs("  ", stdout);
	vprintf(fmt, ap);
	fputc('\n', stdout);
	va_end(ap);
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p) {
		fprintf(stderr, "out of memory\n");
		exit(1);
	}
	return p;
}

/* splitmix64 */
struct rng {
	uint64_t s;
};

static uint64_t rng_next(struct rng *r)
{
	uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static double rng_unit(struct rng *r)
{
	return (double)(rng_next(r) >> 11) * 0x1p-53;
}

static double rng_gauss(struct rng *r)
{
	const double u = 1.0 - rng_unit(r);
	const double v = rng_unit(r);
	return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

static const int64_t lengths[] = {1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 255, 257, 4097};
#define N_LENGTHS (int)(sizeof(lengths) / sizeof(lengths[0]))

enum row_kind {
	ROW_GAUSS,
	ROW_OUTLIER,    /* one channel 60x the rest, as SmoothQuant's activations */
	ROW_ZEROS,      /* +0 and -0: scale 1, codes 0 */
	ROW_EDGES,      /* +-amax everywhere: codes +-127 */
	ROW_TIES,       /* amax 127 so s = 1, the rest on half-integers: half to even */
	ROW_HUGE,       /* +-FLT_MAX */
	ROW_TINY,       /* subnormals whose amax / 127 underflows to 0 */
	ROW_SUBNORMAL_S, /* amax 1e-37: a subnormal scale */
	ROW_NONFINITE,  /* NaN and Inf among finite values: only determinism asked */
	ROW_KINDS
};

static const char *const row_names[ROW_KINDS] = {
	"gauss", "outlier", "zeros", "edges", "ties", "huge", "tiny", "subnormal-scale", "nonfinite",
};

static void fill_row(enum row_kind kind, float *x, int64_t n, uint64_t seed)
{
	struct rng r = {seed * 1000003u + (uint64_t)kind};
	for (int64_t i = 0; i < n; i++) {
		const double g = rng_gauss(&r);
		switch (kind) {
		case ROW_GAUSS:
			x[i] = (float)g;
			break;
		case ROW_OUTLIER:
			x[i] = (float)(i % 37 == 3 ? 60.0 * g : g);
			break;
		case ROW_ZEROS:
			x[i] = (rng_next(&r) & 1) ? 0.0f : -0.0f;
			break;
		case ROW_EDGES:
			x[i] = (rng_next(&r) & 1) ? 3.25f : -3.25f;
			break;
		case ROW_TIES:
			x[i] = (float)((int)(rng_next(&r) % 254) - 127) + 0.5f;
			break;
		case ROW_HUGE:
			x[i] = (rng_next(&r) & 1) ? FLT_MAX : (float)(-FLT_MAX * rng_unit(&r));
			break;
		case ROW_TINY:
			x[i] = (float)(g * 0x1p-149 * 20.0);
			break;
		case ROW_SUBNORMAL_S:
			x[i] = (float)(g * 1e-37);
			break;
		case ROW_NONFINITE: {
			const uint64_t u = rng_next(&r) % 8;
			x[i] = u == 0 ? NAN : u == 1 ? INFINITY : u == 2 ? -INFINITY : (float)g;
			break;
		}
		case ROW_KINDS:
			break;
		}
	}
	if (kind == ROW_TIES)
		x[(int64_t)(seed % (uint64_t)n)] = (seed & 1) ? 127.0f : -127.0f;
}

static bool same_bits(float a, float b)
{
	return memcmp(&a, &b, sizeof(float)) == 0;
}

/* Bytes past the end of a code row that a kernel must leave alone. */
#define GUARD 64
#define GUARD_BYTE 0x5a

static void test_quantize_row_is_bit_exact_with_reference_at_every_level(struct t *t)
{
	const struct qp_w8a8_ops *ref = qp_w8a8_ops_level(QP_LEVEL_SCALAR);
	int levels_run = 0;
	for (int level = 0; level < QP_LEVEL_COUNT; level++) {
		const struct qp_w8a8_ops *ops = qp_w8a8_ops_level(level);
		if (!ops)
			continue;
		levels_run++;
		for (int li = 0; li < N_LENGTHS; li++) {
			const int64_t n = lengths[li];
			float *x = xmalloc((size_t)n * sizeof(float));
			int8_t *want = xmalloc((size_t)n + GUARD), *got = xmalloc((size_t)n + GUARD);
			for (int kind = 0; kind < ROW_KINDS; kind++) {
				fill_row(kind, x, n, (uint64_t)n);
				memset(want, GUARD_BYTE, (size_t)n + GUARD);
				memset(got, GUARD_BYTE, (size_t)n + GUARD);
				float s_want = -1.0f, s_got = -2.0f;
				ref->quantize_row(x, want, &s_want, n);
				ops->quantize_row(x, got, &s_got, n);
				for (int g = 0; g < GUARD; g++)
					if ((unsigned char)got[n + g] != GUARD_BYTE) {
						fail(t, "%s, n=%lld, row '%s': wrote past the end of the row",
						     qp_kernel_level_name(level), (long long)n, row_names[kind]);
						break;
					}
				if (!same_bits(s_want, s_got))
					fail(t, "%s, n=%lld, row '%s': scale %a, want %a", qp_kernel_level_name(level),
					     (long long)n, row_names[kind], (double)s_got, (double)s_want);
				for (int64_t i = 0; i < n; i++)
					if (want[i] != got[i]) {
						fail(t, "%s, n=%lld, row '%s': code %lld is %d, want %d (x = %a)",
						     qp_kernel_level_name(level), (long long)n, row_names[kind], (long long)i,
						     got[i], want[i], (double)x[i]);
						break;
					}
			}
			free(x);
			free(want);
			free(got);
		}
	}
	printf("  %d level(s) checked\n", levels_run);
}

/* The reference against the formula in kernels/w8a8.h, element by
 * element, with the ties worked out by hand. */
static void test_reference_codes_follow_the_definition(struct t *t)
{
	const struct qp_w8a8_ops *ref = qp_w8a8_ops_level(QP_LEVEL_SCALAR);
	/* amax 127 gives s = 1 exactly: x / s = x, so rint's ties show */
	const float x[] = {127.0f, 0.5f, 1.5f, 2.5f, -2.5f, -0.5f, 126.5f, -127.0f, 3.4999998f, -0.0f};
	const int8_t want[] = {127, 0, 2, 2, -2, 0, 126, -127, 3, 0};
	const int64_t n = (int64_t)(sizeof(x) / sizeof(x[0]));
	int8_t q[16];
	float s;
	ref->quantize_row(x, q, &s, n);
	if (s != 1.0f)
		fail(t, "known row: scale %g, want 1", (double)s);
	for (int64_t i = 0; i < n; i++)
		if (q[i] != want[i])
			fail(t, "known row: code of %g is %d, want %d", (double)x[i], q[i], want[i]);

	const float zeros[5] = {0.0f, -0.0f, 0.0f, 0.0f, -0.0f};
	ref->quantize_row(zeros, q, &s, 5);
	if (s != 1.0f || q[0] | q[1] | q[2] | q[3] | q[4])
		fail(t, "all-zero row: scale %g and codes not all 0, want scale 1", (double)s);

	for (int li = 0; li < N_LENGTHS; li++) {
		const int64_t n2 = lengths[li];
		float *r = xmalloc((size_t)n2 * sizeof(float));
		int8_t *c = xmalloc((size_t)n2);
		for (int kind = ROW_GAUSS; kind <= ROW_OUTLIER; kind++) {
			fill_row(kind, r, n2, (uint64_t)n2 + 7);
			ref->quantize_row(r, c, &s, n2);
			double amax = 0.0;
			int cmax = 0;
			for (int64_t i = 0; i < n2; i++) {
				amax = fmax(amax, fabs((double)r[i]));
				cmax = abs(c[i]) > cmax ? abs(c[i]) : cmax;
				/* x / s in float is within an ulp of the exact quotient, so
				 * the code is within 1/2 + 2^-16 steps of x */
				if (fabs((double)r[i] - (double)c[i] * (double)s) > (0.5 + 0x1p-16) * (double)s)
					fail(t, "n=%lld, row '%s': code %d of %g is more than half a step off (s = %g)",
					     (long long)n2, row_names[kind], c[i], (double)r[i], (double)s);
			}
			if (s != (float)amax / 127.0f || cmax != 127)
				fail(t, "n=%lld, row '%s': scale %g (want max|x| / 127 = %g), largest code %d (want 127)",
				     (long long)n2, row_names[kind], (double)s, (double)((float)amax / 127.0f), cmax);
		}
		free(r);
		free(c);
	}
}

static void fill_codes(int8_t *a, int64_t n, struct rng *r)
{
	for (int64_t i = 0; i < n; i++)
		a[i] = (int8_t)(int)(rng_next(r) % 256 - 128);
}

static void check_dot(struct t *t, int level, const struct qp_w8a8_ops *ops, const char *what, int64_t n,
                      const int8_t *a, const int8_t *b)
{
	int64_t exact = 0;
	for (int64_t i = 0; i < n; i++)
		exact += (int64_t)a[i] * b[i];
	const int32_t ref = qp_w8a8_ops_level(QP_LEVEL_SCALAR)->dot(n, a, b);
	const int32_t got = ops->dot(n, a, b);
	if (got != exact || ref != exact)
		fail(t, "%s, n=%lld, %s: dot %d, reference %d, exact %lld", qp_kernel_level_name(level), (long long)n,
		     what, got, ref, (long long)exact);
}

static void test_dot_is_exact_at_every_level(struct t *t)
{
	const int64_t big = QP_W8A8_MAX_K;
	int8_t *a = xmalloc((size_t)big), *b = xmalloc((size_t)big);
	for (int level = 0; level < QP_LEVEL_COUNT; level++) {
		const struct qp_w8a8_ops *ops = qp_w8a8_ops_level(level);
		if (!ops)
			continue;
		struct rng r = {42};
		for (int li = 0; li < N_LENGTHS; li++) {
			const int64_t n = lengths[li];
			for (int rep = 0; rep < 4; rep++) {
				fill_codes(a, n, &r);
				fill_codes(b, n, &r);
				check_dot(t, level, ops, "random int8 incl. -128", n, a, b);
			}
			/* the edges: every sign pairing of the extreme codes */
			const int8_t edges[][2] = {{127, 127}, {-127, 127}, {-127, -127}, {-128, -128}, {-128, 127}, {127, -128}};
			for (size_t e = 0; e < sizeof(edges) / sizeof(edges[0]); e++) {
				memset(a, edges[e][0], (size_t)n);
				memset(b, edges[e][1], (size_t)n);
				char what[64];
				snprintf(what, sizeof(what), "all %d times %d", edges[e][0], edges[e][1]);
				check_dot(t, level, ops, what, n, a, b);
			}
		}
		if (ops->dot(0, a, b) != 0)
			fail(t, "%s: empty dot is not 0", qp_kernel_level_name(level));
		/* the longest exact row at its largest sums, both signs */
		memset(a, -128, (size_t)big);
		memset(b, -128, (size_t)big);
		check_dot(t, level, ops, "longest row of (-128)^2", big, a, b);
		memset(b, 127, (size_t)big);
		check_dot(t, level, ops, "longest row of -128 * 127", big, a, b);
		fill_codes(a, big, &r);
		fill_codes(b, big, &r);
		check_dot(t, level, ops, "longest random row", big, a, b);
	}
	free(a);
	free(b);
}

/* The product's inner step: one x against blocks of 0 to 9 rows (the
 * AVX2 variant works in fours, with a remainder), rows at a stride wider
 * than n, each against an int64 sum. */
static void test_dot_rows_is_exact_at_every_level(struct t *t)
{
	const int64_t max_rows = 9, pad = 5;
	for (int level = 0; level < QP_LEVEL_COUNT; level++) {
		const struct qp_w8a8_ops *ops = qp_w8a8_ops_level(level);
		if (!ops)
			continue;
		struct rng r = {7};
		for (int li = 0; li < N_LENGTHS; li++) {
			const int64_t n = lengths[li], stride = n + pad;
			int8_t *x = xmalloc((size_t)n), *w = xmalloc((size_t)(max_rows * stride));
			int32_t out[16];
			for (int edge = 0; edge < 3; edge++) {
				if (edge == 0) {
					fill_codes(x, n, &r);
					fill_codes(w, max_rows * stride, &r);
				} else {
					/* -128 against -128 and against 127 in every row */
					memset(x, -128, (size_t)n);
					memset(w, edge == 1 ? -128 : 127, (size_t)(max_rows * stride));
				}
				for (int64_t rows = 0; rows <= max_rows; rows++) {
					for (int i = 0; i < 16; i++)
						out[i] = 0x7eadbeef;
					ops->dot_rows(n, x, w, stride, rows, out);
					for (int64_t o = 0; o < rows; o++) {
						int64_t exact = 0;
						for (int64_t i = 0; i < n; i++)
							exact += (int64_t)w[o * stride + i] * x[i];
						if (out[o] != exact)
							fail(t, "%s, n=%lld, %lld rows, %s: row %lld is %d, exact %lld",
							     qp_kernel_level_name(level), (long long)n, (long long)rows,
							     edge ? "edge codes" : "random codes", (long long)o, out[o], (long long)exact);
					}
					if (out[rows] != 0x7eadbeef)
						fail(t, "%s, n=%lld, %lld rows: wrote past the last row's result",
						     qp_kernel_level_name(level), (long long)n, (long long)rows);
				}
			}
			free(x);
			free(w);
		}
	}
}

/* Weights: gaussian rows of varied magnitude; activations: gaussian with
 * a few outlier channels, as SmoothQuant finds in LLM activations. */
static void fill_layer(float *w, int64_t rows, float *x, int64_t n_tok, int64_t k, uint64_t seed)
{
	struct rng r = {seed};
	for (int64_t o = 0; o < rows; o++) {
		const double mag = 0.01 + rng_unit(&r);
		for (int64_t i = 0; i < k; i++)
			w[o * k + i] = (float)(mag * rng_gauss(&r));
	}
	for (int64_t t = 0; t < n_tok; t++)
		for (int64_t i = 0; i < k; i++)
			x[t * k + i] = (float)(rng_gauss(&r) * (i % 41 == 5 ? 40.0 : 1.0));
}

struct shape {
	int64_t rows, k, n_tok;
};

static const struct shape shapes[] = {
	{1, 1, 1}, {13, 33, 5}, {9, 257, 3}, {17, 4097, 2}, {64, 512, 7}, {3, 31, 1},
};
#define N_SHAPES (int)(sizeof(shapes) / sizeof(shapes[0]))

static bool force_level(struct t *t, int level)
{
	struct qp_err err = {0};
	if (qp_kernels_init(qp_kernel_level_name(level), &err) != 0) {
		fail(t, "init(%s): %s", qp_kernel_level_name(level), err.msg);
		return false;
	}
	return true;
}

static void test_matmul_matches_double_reference_of_the_formula(struct t *t)
{
	const struct qp_w8a8_ops *ref = qp_w8a8_ops_level(QP_LEVEL_SCALAR);
	for (int level = 0; level < QP_LEVEL_COUNT; level++) {
		if (!qp_w8a8_ops_level(level) || !force_level(t, level))
			continue;
		for (int si = 0; si < N_SHAPES; si++) {
			const struct shape sh = shapes[si];
			const int64_t ldy = sh.rows + 3;  /* a stride wider than the rows */
			float *w = xmalloc((size_t)(sh.rows * sh.k) * sizeof(float));
			float *x = xmalloc((size_t)(sh.n_tok * sh.k) * sizeof(float));
			int8_t *wq = xmalloc((size_t)(sh.rows * sh.k)), *xq = xmalloc((size_t)sh.k);
			float *ws = xmalloc((size_t)sh.rows * sizeof(float));
			float *y = xmalloc((size_t)(sh.n_tok * ldy) * sizeof(float));
			fill_layer(w, sh.rows, x, sh.n_tok, sh.k, (uint64_t)si + 1);
			for (int64_t i = 0; i < sh.n_tok * ldy; i++)
				y[i] = 12345.0f;
			struct qp_err err = {0};
			if (qp_w8a8_quantize_weights(wq, ws, w, sh.rows, sh.k, &err) ||
			    qp_w8a8_matmul(y, ldy, wq, ws, sh.rows, sh.k, x, sh.n_tok, 2, &err)) {
				fail(t, "%s, %lldx%lld: %s", qp_kernel_level_name(level), (long long)sh.rows, (long long)sh.k,
				     err.msg);
				goto next;
			}
			/* quantization error of the whole product, against the float
			 * matmul: a sanity bound. It is loose because the outlier
			 * channels set each token's scale 40x coarser than its other
			 * channels need (~1e-3 here; SmoothQuant's migration exists to
			 * shrink this); a wrong scale or code order gives ~1 */
			double err2 = 0.0, ref2 = 0.0;
			for (int64_t tk = 0; tk < sh.n_tok; tk++) {
				float sx;
				ref->quantize_row(x + tk * sh.k, xq, &sx, sh.k);
				for (int64_t o = 0; o < sh.rows; o++) {
					double acc = 0.0, full = 0.0;
					for (int64_t i = 0; i < sh.k; i++) {
						acc += (double)xq[i] * (double)wq[o * sh.k + i];
						full += (double)x[tk * sh.k + i] * (double)w[o * sh.k + i];
					}
					const double want = (double)sx * (double)ws[o] * acc;
					const double got = (double)y[tk * ldy + o];
					/* three float roundings: acc to float, sx * sw, their product */
					if (!(fabs(got - want) <= 4.0 * 0x1p-24 * fabs(want) + 0x1p-140))
						fail(t, "%s, %lldx%lld, token %lld, row %lld: %.9g, double reference %.9g",
						     qp_kernel_level_name(level), (long long)sh.rows, (long long)sh.k, (long long)tk,
						     (long long)o, got, want);
					err2 += (got - full) * (got - full);
					ref2 += full * full;
				}
				for (int64_t o = sh.rows; o < ldy; o++)
					if (y[tk * ldy + o] != 12345.0f)
						fail(t, "%s, %lldx%lld: wrote y past the rows, into the stride",
						     qp_kernel_level_name(level), (long long)sh.rows, (long long)sh.k);
			}
			if (sh.k >= 32 && !(err2 <= 1e-2 * ref2))
				fail(t, "%s, %lldx%lld: nmse against the float product %g, want <= 1e-2",
				     qp_kernel_level_name(level), (long long)sh.rows, (long long)sh.k, err2 / ref2);
		next:
			free(w);
			free(x);
			free(wq);
			free(xq);
			free(ws);
			free(y);
		}
	}
	unsetenv("QPIPE_KERNELS");
	force_level(t, QP_LEVEL_SCALAR);
}

static void test_matmul_is_identical_across_levels_and_threads(struct t *t)
{
	const struct shape sh = {37, 1000, 6};
	float *w = xmalloc((size_t)(sh.rows * sh.k) * sizeof(float));
	float *x = xmalloc((size_t)(sh.n_tok * sh.k) * sizeof(float));
	int8_t *wq = xmalloc((size_t)(sh.rows * sh.k));
	float *ws = xmalloc((size_t)sh.rows * sizeof(float));
	const size_t ny = (size_t)(sh.n_tok * sh.rows);
	float *first = xmalloc(ny * sizeof(float)), *y = xmalloc(ny * sizeof(float));
	fill_layer(w, sh.rows, x, sh.n_tok, sh.k, 99);
	struct qp_err err = {0};
	bool have_first = false;
	for (int level = 0; level < QP_LEVEL_COUNT; level++) {
		if (!qp_w8a8_ops_level(level) || !force_level(t, level))
			continue;
		if (qp_w8a8_ops() != qp_w8a8_ops_level(level))
			fail(t, "%s forced, but qp_w8a8_ops() is not that level's", qp_kernel_level_name(level));
		for (int threads = 1; threads <= 3; threads++) {
			if (qp_w8a8_quantize_weights(wq, ws, w, sh.rows, sh.k, &err) ||
			    qp_w8a8_matmul(y, sh.rows, wq, ws, sh.rows, sh.k, x, sh.n_tok, threads, &err)) {
				fail(t, "%s, %d threads: %s", qp_kernel_level_name(level), threads, err.msg);
				continue;
			}
			if (!have_first) {
				memcpy(first, y, ny * sizeof(float));
				have_first = true;
			} else if (memcmp(first, y, ny * sizeof(float)) != 0) {
				fail(t, "%s, %d threads: result differs from scalar at 1 thread", qp_kernel_level_name(level),
				     threads);
			}
		}
	}
	force_level(t, QP_LEVEL_SCALAR);
	free(w);
	free(x);
	free(wq);
	free(ws);
	free(first);
	free(y);
}

static void expect_error(struct t *t, int rc, const struct qp_err *err, const char *want)
{
	if (rc != QP_EINVAL || strcmp(err->msg, want) != 0)
		fail(t, "got %d \"%s\", want %d \"%s\"", rc, err->msg, QP_EINVAL, want);
}

static void test_bad_input_is_refused_with_a_message(struct t *t)
{
	float w[2 * 3] = {1, 2, 3, 4, NAN, 6};
	int8_t q[6];
	float s[2], y[4];
	struct qp_err err = {0};
	expect_error(t, qp_w8a8_quantize_weights(q, s, w, 2, 3, &err), &err,
	             "w8a8: weight at row 1, column 1 is nan");
	w[4] = -INFINITY;
	expect_error(t, qp_w8a8_quantize_weights(q, s, w, 2, 3, &err), &err,
	             "w8a8: weight at row 1, column 1 is -inf");
	expect_error(t, qp_w8a8_quantize_weights(q, s, w, 2, 0, &err), &err,
	             "w8a8: rows of 0 weights, must be 1 to 131071 (int32 sums stay exact)");
	expect_error(t, qp_w8a8_matmul(y, 2, q, s, 2, QP_W8A8_MAX_K + 1, w, 1, 1, &err), &err,
	             "w8a8: rows of 131072 activations, must be 1 to 131071 (int32 sums stay exact)");
	expect_error(t, qp_w8a8_matmul(y, 1, q, s, 2, 3, w, 1, 1, &err), &err,
	             "w8a8: 2 rows, 1 tokens and output stride 1 do not fit");
}

static const struct {
	const char *name;
	void (*fn)(struct t *);
} tests[] = {
	{"w8a8__quantize_row_is_bit_exact_with_reference_at_every_level",
	 test_quantize_row_is_bit_exact_with_reference_at_every_level},
	{"w8a8__reference_codes_follow_the_definition", test_reference_codes_follow_the_definition},
	{"w8a8__dot_is_exact_at_every_level", test_dot_is_exact_at_every_level},
	{"w8a8__dot_rows_is_exact_at_every_level", test_dot_rows_is_exact_at_every_level},
	{"w8a8__matmul_matches_double_reference_of_the_formula", test_matmul_matches_double_reference_of_the_formula},
	{"w8a8__matmul_is_identical_across_levels_and_threads", test_matmul_is_identical_across_levels_and_threads},
	{"w8a8__bad_input_is_refused_with_a_message", test_bad_input_is_refused_with_a_message},
};

int main(int argc, char **argv)
{
	const size_t count = sizeof(tests) / sizeof(tests[0]);
	if (argc > 1 && strcmp(argv[1], "--list") == 0) {
		for (size_t i = 0; i < count; i++)
			puts(tests[i].name);
		return 0;
	}
	unsetenv("QPIPE_KERNELS");
	int passed = 0, failed = 0, ran = 0;
	for (size_t i = 0; i < count; i++) {
		if (argc > 1 && strcmp(argv[1], tests[i].name) != 0)
			continue;
		ran++;
		struct t t = {0};
		tests[i].fn(&t);
		if (t.failures) {
			if (t.failures > MAX_PRINTED)
				printf("  ... and %d more\n", t.failures - MAX_PRINTED);
			printf("not ok - %s\n", tests[i].name);
			failed++;
		} else {
			printf("ok - %s\n", tests[i].name);
			passed++;
		}
	}
	if (!ran) {
		fprintf(stderr, "test_w8a8: no test named '%s' (see --list)\n", argv[1]);
		return 2;
	}
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
