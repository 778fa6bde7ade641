/* Quantization-method tests (kernels/qmethod.h): round trips on generated
 * data for every method and granularity, the error bound each method
 * promises, edge rows (zeros, constants, one outlier, tails of packed
 * bits), refusal of non-finite weights, FP8 bit patterns, and the
 * bits-per-weight arithmetic.
 *
 *   test_qmethod            run every test
 *   test_qmethod NAME       run one (meson registers each by name)
 *
 * The numpy reference (test_qmethod_numpy.py) checks the same methods
 * value for value on real tensors; these tests check properties that must
 * hold whatever the data. */
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/blocks.h"
#include "kernels/qmethod.h"

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

/* test data comes from the library's own splitmix64, fixed seeds */
static double unit(uint64_t *s)
{
	return qp_qmethod_rng_unit(s);
}

static float gauss(uint64_t *s)
{
	const double u = 1.0 - unit(s), v = unit(s);
	return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

/* Kinds of generated matrices; each a rows x cols f32 array. */
enum kind { K_GAUSS, K_ZEROS, K_CONST, K_OUTLIER, K_POSITIVE, K_MIXED, K_COUNT };
static const char *const kind_names[] = {"gauss", "zeros", "constant", "outlier", "positive", "mixed"};

static float *make(enum kind k, int64_t rows, int64_t cols, uint64_t seed)
{
	float *w = xmalloc((size_t)(rows * cols) * sizeof(float));
	uint64_t s = seed;
	for (int64_t i = 0; i < rows * cols; i++) {
		switch (k) {
		case K_GAUSS:
			w[i] = 0.02f * gauss(&s);
			break;
		case K_ZEROS:
			w[i] = (i & 1) ? -0.0f : 0.0f;
			break;
		case K_CONST:
			w[i] = 0.375f;
			break;
		case K_OUTLIER:
			w[i] = i % 97 == 5 ? 40.0f : 0.01f * gauss(&s);
			break;
		case K_POSITIVE:
			w[i] = (float)unit(&s) + 0.5f;
			break;
		case K_MIXED: {
			/* each row its own character: zeros, constant, negative, gaussian */
			const int64_t r = i / cols;
			w[i] = r % 4 == 0 ? 0.0f : r % 4 == 1 ? -1.25f : r % 4 == 2 ? -(float)unit(&s) : gauss(&s);
			break;
		}
		default:
			w[i] = 0.0f;
		}
	}
	return w;
}

/* the shapes every round trip runs over: 172 (stories260K's FFN rows) and
 * odd lengths make packed rows end inside a byte at most bit widths */
static const int64_t shapes[][2] = {{8, 64}, {6, 172}, {3, 7}, {1, 1}, {16, 256}};
#define N_SHAPES (sizeof(shapes) / sizeof(shapes[0]))

static int64_t group_for(int64_t cols)
{
	return cols % 64 == 0 ? 64 : cols % 4 == 0 ? 4 : cols;
}

/* index of the scale of element (r, c), as the header defines it */
static int64_t scale_index(const struct qp_qtensor *q, int64_t r, int64_t c)
{
	if (q->g_idx)
		return r * q->scale_cols + q->g_idx[c];
	return (r * q->scale_rows / q->rows) * q->scale_cols + c * q->scale_cols / q->cols;
}

static unsigned code_at(const struct qp_qtensor *q, int64_t r, int64_t c, int bits)
{
	const uint8_t *row = q->codes + (size_t)r * q->row_bytes;
	unsigned v = 0;
	for (int b = 0; b < bits; b++) {
		const int64_t bit = c * bits + b;
		v |= (unsigned)((row[bit / 8] >> (bit % 8)) & 1) << b;
	}
	return v;
}

static void test_spec_defaults_and_names_round_trip(struct t *t)
{
	for (int m = QP_QM_RTN; m <= QP_QM_KMEANS; m++) {
		const char *name = qp_qmethod_name((enum qp_qmethod)m);
		if (!name || qp_qmethod_from_name(name) != m)
			fail(t, "method %d: name '%s' does not map back", m, name ? name : "(null)");
		struct qp_qspec s;
		qp_qspec_default(&s, (enum qp_qmethod)m);
		struct qp_err err = {0};
		/* the defaults must be valid on a shape every default divides */
		if (qp_qspec_check(&s, 256, 512, &err) != 0)
			fail(t, "%s: default spec refused: %s", name, err.msg);
	}
	if (qp_qmethod_from_name("gptq") != -1 || qp_qmethod_from_name(NULL) != -1)
		fail(t, "unknown names must give -1");
	struct qp_qspec s;
	qp_qspec_default(&s, QP_QM_RTN);
	if (s.bits != 4 || s.gran != QP_QG_GROUP || s.group != 128 || s.sym || !s.scale_f16)
		fail(t, "rtn default is not 4-bit asym group 128 f16");
	qp_qspec_default(&s, QP_QM_NF4);
	if (s.bits != 4 || s.group != 64 || !s.double_quant)
		fail(t, "nf4 default is not block 64 with double quant");
	qp_qspec_default(&s, QP_QM_KMEANS);
	if (s.bits != 4 || s.gran != QP_QG_TENSOR || s.seed != 0 || s.iters != 50)
		fail(t, "kmeans default is not 4 bits per tensor, seed 0, 50 iterations");
}

static void expect_check(struct t *t, const struct qp_qspec *s, int64_t rows, int64_t cols, const char *want)
{
	struct qp_err err = {0};
	const int rc = qp_qspec_check(s, rows, cols, &err);
	if (rc != QP_EINVAL)
		fail(t, "check %lld x %lld: rc %d, want QP_EINVAL (%s)", (long long)rows, (long long)cols, rc, want);
	else if (strcmp(err.msg, want) != 0)
		fail(t, "check message '%s', want '%s'", err.msg, want);
	/* quantize refuses the same spec with the same message, allocating nothing */
	float w[4] = {0};
	struct qp_qtensor q;
	memset(&q, 0xaa, sizeof(q));
	if (rows * cols <= 4 && rows > 0 && cols > 0) {
		struct qp_err e2 = {0};
		if (qp_qmethod_quantize(s, w, rows, cols, &q, 1, &e2) != QP_EINVAL || strcmp(e2.msg, want) != 0 ||
		    q.codes || q.scales)
			fail(t, "quantize did not refuse as check did: '%s'", e2.msg);
	}
}

static void test_spec_check_names_the_parameter(struct t *t)
{
	struct qp_qspec s;
	qp_qspec_default(&s, QP_QM_RTN);
	expect_check(t, &s, 6, 172, "rtn: group 128 does not divide the row length 172");
	s.bits = 9;
	expect_check(t, &s, 6, 256, "rtn: bits 9 is out of range (2..8)");
	s.bits = 1;
	expect_check(t, &s, 6, 256, "rtn: bits 1 is out of range (2..8)");
	qp_qspec_default(&s, QP_QM_RTN);
	s.group = 0;
	expect_check(t, &s, 6, 256, "rtn: group 0 must be positive");
	expect_check(t, &s, 0, 256, "rtn: shape 0 x 256: rows and cols must be positive");
	s.gran = (enum qp_qgran)7;
	expect_check(t, &s, 2, 2, "rtn: granularity 7 is unknown");
	qp_qspec_default(&s, QP_QM_NF4);
	expect_check(t, &s, 3, 7, "nf4: block 64 does not divide the element count 21");
	s.bits = 3;
	expect_check(t, &s, 1, 64, "nf4: bits must be 4, not 3");
	qp_qspec_default(&s, QP_QM_NF4);
	s.gran = QP_QG_CHANNEL;
	expect_check(t, &s, 1, 64,
	             "nf4: granularity must be 'group' (blocks of the flattened tensor), not 'channel'");
	qp_qspec_default(&s, QP_QM_FP8);
	s.gran = QP_QG_GROUP;
	expect_check(t, &s, 1, 4, "fp8: granularity 'group' is not supported (tensor or channel)");
	qp_qspec_default(&s, QP_QM_KMEANS);
	s.gran = QP_QG_GROUP;
	s.group = 3;
	expect_check(t, &s, 64, 4, "kmeans: group 3 does not divide the row count 64");
	s.gran = QP_QG_CHANNEL;
	expect_check(t, &s, 1, 4, "kmeans: granularity 'channel' is not supported (tensor, or group of rows)");
	qp_qspec_default(&s, QP_QM_KMEANS);
	s.iters = -1;
	expect_check(t, &s, 1, 4, "kmeans: iters -1 must not be negative");
	qp_qspec_default(&s, QP_QM_TERNARY);
	s.threshold = -0.5f;
	expect_check(t, &s, 1, 4, "ternary: threshold -0.5 must be finite and not negative");
	qp_qspec_default(&s, QP_QM_BINARY);
	s.bits = 2;
	expect_check(t, &s, 1, 4, "binary: bits must be 1, not 2");
	s.method = (enum qp_qmethod)42;
	expect_check(t, &s, 1, 4, "method 42 is unknown");
}

static void test_refuses_non_finite_weights_naming_row_and_col(struct t *t)
{
	const float bad[3] = {NAN, INFINITY, -INFINITY};
	const char *what[3] = {"nan", "inf", "-inf"};
	for (int m = QP_QM_RTN; m <= QP_QM_KMEANS; m++) {
		struct qp_qspec s;
		qp_qspec_default(&s, (enum qp_qmethod)m);
		s.group = m == QP_QM_KMEANS ? 1 : 64;
		for (int b = 0; b < 3; b++) {
			float *w = make(K_GAUSS, 4, 128, 7);
			w[2 * 128 + 77] = bad[b];
			struct qp_qtensor q;
			struct qp_err err = {0};
			const int rc = qp_qmethod_quantize(&s, w, 4, 128, &q, 2, &err);
			if (m == QP_QM_FP8) {
				/* FP8 has a NaN code and saturates infinities instead */
				if (rc != 0)
					fail(t, "fp8 refused %s: %s", what[b], err.msg);
				qp_qtensor_free(&q);
			} else {
				char want[256];
				snprintf(want, sizeof(want), "%s: weight at row 2, col 77 is %s; %s needs finite weights",
				         qp_qmethod_name((enum qp_qmethod)m), what[b], qp_qmethod_name((enum qp_qmethod)m));
				if (rc != QP_EINVAL || strcmp(err.msg, want) != 0)
					fail(t, "rc %d message '%s', want '%s'", rc, err.msg, want);
				if (q.codes || q.scales || q.lut)
					fail(t, "%s: refused quantize left arrays behind", want);
			}
			free(w);
		}
	}
}

/* One RTN unit's values must come back within half a step wherever the
 * grid reaches them, and be clamped to the grid's end otherwise. */
static void test_rtn_round_trip_error_within_half_scale(struct t *t)
{
	const enum qp_qgran grans[] = {QP_QG_TENSOR, QP_QG_CHANNEL, QP_QG_GROUP};
	int cases = 0;
	for (size_t sh = 0; sh < N_SHAPES; sh++) {
		const int64_t rows = shapes[sh][0], cols = shapes[sh][1];
		for (int k = 0; k < K_COUNT; k++) {
			float *w = make((enum kind)k, rows, cols, 100 + (uint64_t)k);
			float *v = xmalloc((size_t)(rows * cols) * sizeof(float));
			for (int bits = 2; bits <= 8; bits++)
				for (int g = 0; g < 3; g++)
					for (int sym = 0; sym < 2; sym++)
						for (int f16 = 0; f16 < 2; f16++) {
							struct qp_qspec s;
							qp_qspec_default(&s, QP_QM_RTN);
							s.bits = bits;
							s.gran = grans[g];
							s.group = group_for(cols);
							s.sym = sym;
							s.scale_f16 = f16;
							struct qp_qtensor q;
							struct qp_err err = {0};
							if (qp_qmethod_quantize(&s, w, rows, cols, &q, 1, &err) != 0 ||
							    qp_qmethod_dequantize(&s, &q, v, &err) != 0) {
								fail(t, "rtn: %s", err.msg);
								continue;
							}
							cases++;
							const int maxq = (1 << bits) - 1;
							if (q.row_bytes != (size_t)((cols * bits + 7) / 8))
								fail(t, "row_bytes %zu for %lld cols at %d bits", q.row_bytes,
								     (long long)cols, bits);
							for (int64_t r = 0; r < rows; r++)
								for (int64_t c = 0; c < cols; c++) {
									const int64_t u = scale_index(&q, r, c);
									const float sc = q.scales[u];
									const int z = q.zeros[u];
									const unsigned code = code_at(&q, r, c, bits);
									const float x = w[r * cols + c], got = v[r * cols + c];
									const float lo = sc * (float)(0 - z), hi = sc * (float)(maxq - z);
									/* in range: half a step (plus the f32 rounding of w / s) */
									const float bound = x < lo ? lo - x + sc * 0.5f
									                  : x > hi ? x - hi + sc * 0.5f : sc * 0.5f;
									/* s itself is rounded: |q - z| steps of it drift by
									 * up to |v| * eps, and so may w / s near a tie */
									const float slack = 2.0f * FLT_EPSILON * (fabsf(x) + sc);
									if (!(fabsf(got - x) <= bound + slack) ||
									    got != sc * (float)((int)code - z) ||
									    (f16 && qp_fp16_to_fp32(qp_fp32_to_fp16(sc)) != sc) ||
									    (sym && z != (maxq + 1) / 2) || code > (unsigned)maxq) {
										fail(t,
										     "rtn %s %lldx%lld bits %d gran %d sym %d f16 %d: (%lld, %lld) "
										     "w %g -> %g (s %g z %d code %u)",
										     kind_names[k], (long long)rows, (long long)cols, bits, g, sym,
										     f16, (long long)r, (long long)c, (double)x, (double)got,
										     (double)sc, z, code);
										r = rows;
										break;
									}
								}
							qp_qtensor_free(&q);
						}
			free(w);
			free(v);
		}
	}
	if (cases != (int)N_SHAPES * K_COUNT * 7 * 3 * 2 * 2)
		fail(t, "ran %d cases", cases);
}

/* GPTQ's quantizer on rows whose answer is known by hand. */
static void test_rtn_scale_zero_follows_gptq_on_edge_rows(struct t *t)
{
	float s;
	uint8_t z;
	const float zeros[4] = {0.0f, -0.0f, 0.0f, 0.0f};
	qp_rtn_scale_zero(zeros, 4, 4, false, false, &s, &z);
	/* lo = -1, hi = 1; -lo / s is 7.4999995 in f32 (as in GPTQ's torch
	 * float32), not 7.5, so z is 7 */
	if (s != 2.0f / 15.0f || z != 7)
		fail(t, "all-zero asym: s %g z %d, want %g 7", (double)s, z, 2.0 / 15.0);
	qp_rtn_scale_zero(zeros, 4, 4, true, false, &s, &z);
	if (s != 2.0f / 15.0f || z != 8)
		fail(t, "all-zero sym: s %g z %d", (double)s, z);
	const float pos[3] = {0.5f, 1.5f, 3.0f};
	qp_rtn_scale_zero(pos, 3, 2, false, false, &s, &z);
	if (s != 1.0f || z != 0) /* lo clamps to 0 */
		fail(t, "positive asym: s %g z %d, want 1 0", (double)s, z);
	const float neg[2] = {-3.0f, -1.0f};
	qp_rtn_scale_zero(neg, 2, 2, false, false, &s, &z);
	if (s != 1.0f || z != 3)
		fail(t, "negative asym: s %g z %d, want 1 3", (double)s, z);
	qp_rtn_scale_zero(neg, 2, 3, true, false, &s, &z);
	if (s != 6.0f / 7.0f || z != 4)
		fail(t, "negative sym: s %g z %d, want 6/7 4", (double)s, z);
	if (qp_rtn_code(-3.0f, 6.0f / 7.0f, 4, 3) != 0 || qp_rtn_code(3.0f, 6.0f / 7.0f, 4, 3) != 7 ||
	    qp_rtn_code(0.5f, 1.0f, 0, 2) != 0 || qp_rtn_code(1.5f, 1.0f, 0, 2) != 2 ||
	    qp_rtn_code(2.5f, 1.0f, 0, 2) != 2 || qp_rtn_code(100.0f, 1.0f, 0, 2) != 3 ||
	    qp_rtn_code(NAN, 1.0f, 1, 2) != 0)
		fail(t, "rtn codes: ties must go to even, ends must clamp, NaN to 0");
	/* a single outlier takes the whole range of its unit */
	const float out[4] = {0.01f, -0.02f, 30.0f, 0.0f};
	qp_rtn_scale_zero(out, 4, 8, false, false, &s, &z);
	if (s != (30.0f + 0.02f) / 255.0f || z != 0)
		fail(t, "outlier: s %g z %d", (double)s, z);
	/* tiny units: the f16 scale would be 0, kept at f16's least subnormal */
	const float tiny[2] = {1e-12f, -1e-12f};
	qp_rtn_scale_zero(tiny, 2, 4, false, true, &s, &z);
	if (s != 0x1p-24f || z != 0)
		fail(t, "tiny f16: s %g z %d, want 2^-24 0", (double)s, z);
	qp_rtn_scale_zero(tiny, 2, 4, false, false, &s, &z);
	if (s != (1e-12f + 1e-12f) / 15.0f)
		fail(t, "tiny f32: s %g", (double)s);
	const float sub[1] = {FLT_TRUE_MIN};
	qp_rtn_scale_zero(sub, 1, 8, true, false, &s, &z);
	if (!(s > 0.0f))
		fail(t, "subnormal unit: scale %g must stay positive", (double)s);
	const float huge[2] = {FLT_MAX, -FLT_MAX};
	qp_rtn_scale_zero(huge, 2, 8, false, false, &s, &z);
	if (!isfinite(s))
		fail(t, "huge unit: scale %g must stay finite", (double)s);
	/* f16 rounding happens before the zero point: 0.1 rounds to 0.0999755859375 */
	const float r16[2] = {-0.75f, 0.75f};
	qp_rtn_scale_zero(r16, 2, 4, false, true, &s, &z);
	if (s != qp_fp16_to_fp32(qp_fp32_to_fp16(0.1f)) || z != (uint8_t)rintf(0.75f / s))
		fail(t, "f16 scale %g z %d", (double)s, z);
}

static void test_rtn_g_idx_picks_each_columns_group(struct t *t)
{
	const int64_t rows = 3, cols = 8;
	float *w = make(K_GAUSS, rows, cols, 5);
	struct qp_qspec s;
	qp_qspec_default(&s, QP_QM_RTN);
	s.group = 4;
	struct qp_qtensor q;
	struct qp_err err = {0};
	if (qp_qmethod_quantize(&s, w, rows, cols, &q, 1, &err) != 0) {
		fail(t, "%s", err.msg);
		free(w);
		return;
	}
	float plain[24], perm[24];
	qp_qmethod_dequantize(&s, &q, plain, &err);
	/* every column in group 1: each value is then its code under group 1's scale */
	q.g_idx = xmalloc((size_t)cols * sizeof(int32_t));
	for (int64_t c = 0; c < cols; c++)
		q.g_idx[c] = 1;
	if (qp_qmethod_dequantize(&s, &q, perm, &err) != 0)
		fail(t, "g_idx: %s", err.msg);
	for (int64_t r = 0; r < rows; r++)
		for (int64_t c = 0; c < cols; c++) {
			const int64_t u = r * 2 + 1;
			const float want = q.scales[u] * (float)((int)code_at(&q, r, c, 4) - (int)q.zeros[u]);
			if (perm[r * cols + c] != want || (c >= 4 && perm[r * cols + c] != plain[r * cols + c]))
				fail(t, "g_idx (%lld, %lld): %g, want %g", (long long)r, (long long)c,
				     (double)perm[r * cols + c], (double)want);
		}
	q.g_idx[3] = 2;
	if (qp_qmethod_dequantize(&s, &q, perm, &err) != QP_EINVAL ||
	    strcmp(err.msg, "rtn: g_idx[3] = 2 is outside the 2 groups") != 0)
		fail(t, "g_idx out of range: '%s'", err.msg);
	qp_qtensor_free(&q);
	free(w);
}

/* The codes' bit layout, read bit by bit against the header's words. */
static void test_codes_pack_lsb_first_with_tails(struct t *t)
{
	for (int bits = 2; bits <= 8; bits++) {
		const int64_t cols = 13; /* 13 * bits is a whole byte only at 8 */
		struct qp_qspec s;
		qp_qspec_default(&s, QP_QM_RTN);
		s.bits = bits;
		s.gran = QP_QG_CHANNEL;
		s.scale_f16 = false;
		const int maxq = (1 << bits) - 1;
		/* values 0..maxq exactly on the grid: s = 1, z = 0 */
		float w[2 * 13];
		for (int64_t i = 0; i < 2 * cols; i++)
			w[i] = (float)((i * 5 + 3) % (maxq + 1));
		w[0] = 0.0f;
		w[1] = (float)maxq;
		w[13] = 0.0f;
		w[14] = (float)maxq;
		struct qp_qtensor q;
		struct qp_err err = {0};
		if (qp_qmethod_quantize(&s, w, 2, cols, &q, 1, &err) != 0) {
			fail(t, "%s", err.msg);
			continue;
		}
		for (int64_t r = 0; r < 2; r++) {
			const uint8_t *row = q.codes + (size_t)r * q.row_bytes;
			for (int64_t c = 0; c < cols; c++) {
				unsigned v = 0;
				for (int b = 0; b < bits; b++) {
					const int64_t bit = c * bits + b;
					v |= (unsigned)((row[bit >> 3] >> (bit & 7)) & 1) << b;
				}
				if (v != (unsigned)w[r * cols + c])
					fail(t, "bits %d (%lld, %lld): code %u, want %g", bits, (long long)r, (long long)c, v,
					     (double)w[r * cols + c]);
			}
			/* padding past the last code stays zero */
			const int64_t used = cols * bits;
			for (int64_t bit = used; bit < (int64_t)q.row_bytes * 8; bit++)
				if ((row[bit >> 3] >> (bit & 7)) & 1)
					fail(t, "bits %d row %lld: padding bit %lld is set", bits, (long long)r, (long long)bit);
		}
		qp_qtensor_free(&q);
	}
}

static bool same_qtensor(const struct qp_qtensor *a, const struct qp_qtensor *b, int bits)
{
	const int64_t ns = a->scale_rows * a->scale_cols;
	return a->codes_bytes == b->codes_bytes && memcmp(a->codes, b->codes, a->codes_bytes) == 0 &&
	       (!a->scales) == (!b->scales) && a->scale_rows == b->scale_rows && a->scale_cols == b->scale_cols &&
	       (!a->scales || memcmp(a->scales, b->scales, (size_t)ns * sizeof(float)) == 0) &&
	       (!a->zeros) == (!b->zeros) && (!a->zeros || memcmp(a->zeros, b->zeros, (size_t)ns) == 0) &&
	       a->lut_rows == b->lut_rows &&
	       (!a->lut || memcmp(a->lut, b->lut, (size_t)a->lut_rows * (1u << bits) * sizeof(float)) == 0) &&
	       a->n_blocks == b->n_blocks && a->n_absmax_scales == b->n_absmax_scales &&
	       (!a->absmax_codes || memcmp(a->absmax_codes, b->absmax_codes, (size_t)a->n_blocks) == 0) &&
	       (!a->absmax_scales ||
	        memcmp(a->absmax_scales, b->absmax_scales, (size_t)a->n_absmax_scales * sizeof(float)) == 0) &&
	       memcmp(&a->absmax_offset, &b->absmax_offset, sizeof(float)) == 0;
}

static void test_threads_do_not_change_results(struct t *t)
{
	const int64_t rows = 256, cols = 128;
	float *w = make(K_OUTLIER, rows, cols, 77);
	for (int m = QP_QM_RTN; m <= QP_QM_KMEANS; m++) {
		for (int g = 0; g < 3; g++) {
			struct qp_qspec s;
			qp_qspec_default(&s, (enum qp_qmethod)m);
			if (m == QP_QM_NF4 || (m == QP_QM_FP8 && g == QP_QG_GROUP) ||
			    (m == QP_QM_KMEANS && g == QP_QG_CHANNEL))
				continue;
			if (m != QP_QM_NF4)
				s.gran = (enum qp_qgran)g;
			s.group = m == QP_QM_KMEANS ? 16 : 32;
			struct qp_qtensor one, many;
			struct qp_err err = {0};
			if (qp_qmethod_quantize(&s, w, rows, cols, &one, 1, &err) != 0 ||
			    qp_qmethod_quantize(&s, w, rows, cols, &many, 7, &err) != 0) {
				fail(t, "%s: %s", qp_qmethod_name((enum qp_qmethod)m), err.msg);
				continue;
			}
			if (!same_qtensor(&one, &many, s.bits))
				fail(t, "%s gran %d: 1 and 7 threads differ", qp_qmethod_name((enum qp_qmethod)m), g);
			qp_qtensor_free(&one);
			qp_qtensor_free(&many);
		}
	}
	free(w);
}

static const struct {
	const char *name;
	void (*fn)(struct t *);
} tests[] = {
	{"qmethod__spec_defaults_and_names_round_trip", test_spec_defaults_and_names_round_trip},
	{"qmethod__spec_check_names_the_parameter", test_spec_check_names_the_parameter},
	{"qmethod__refuses_non_finite_weights_naming_row_and_col",
	 test_refuses_non_finite_weights_naming_row_and_col},
	{"qmethod__rtn_round_trip_error_within_half_scale", test_rtn_round_trip_error_within_half_scale},
	{"qmethod__rtn_scale_zero_follows_gptq_on_edge_rows", test_rtn_scale_zero_follows_gptq_on_edge_rows},
	{"qmethod__rtn_g_idx_picks_each_columns_group", test_rtn_g_idx_picks_each_columns_group},
	{"qmethod__codes_pack_lsb_first_with_tails", test_codes_pack_lsb_first_with_tails},
	{"qmethod__threads_do_not_change_results", test_threads_do_not_change_results},
};

int main(int argc, char **argv)
{
	const size_t count = sizeof(tests) / sizeof(tests[0]);
	if (argc > 1 && strcmp(argv[1], "--list") == 0) {
		for (size_t i = 0; i < count; i++)
			puts(tests[i].name);
		return 0;
	}
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
		fprintf(stderr, "test_qmethod: no test named '%s' (see --list)\n", argv[1]);
		return 2;
	}
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
