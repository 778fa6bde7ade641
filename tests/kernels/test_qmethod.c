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


/* quantize + dequantize, failing the test (and returning false) on error */
static bool run(struct t *t, const struct qp_qspec *s, const float *w, int64_t rows, int64_t cols,
                struct qp_qtensor *q, float *v)
{
	struct qp_err err = {0};
	if (qp_qmethod_quantize(s, w, rows, cols, q, 2, &err) != 0) {
		fail(t, "%s quantize %lldx%lld: %s", qp_qmethod_name(s->method), (long long)rows, (long long)cols,
		     err.msg);
		return false;
	}
	if (qp_qmethod_dequantize(s, q, v, &err) != 0) {
		fail(t, "%s dequantize: %s", qp_qmethod_name(s->method), err.msg);
		qp_qtensor_free(q);
		return false;
	}
	return true;
}

static float f16_if(bool on, float x)
{
	return on ? qp_fp16_to_fp32(qp_fp32_to_fp16(x)) : x;
}

/* Binary and ternary against the header's rules, evaluated here unit by
 * unit in the plainest way. */
static void test_binary_and_ternary_follow_their_rules(struct t *t)
{
	const enum qp_qgran grans[] = {QP_QG_TENSOR, QP_QG_CHANNEL, QP_QG_GROUP};
	for (size_t sh = 0; sh < N_SHAPES; sh++) {
		const int64_t rows = shapes[sh][0], cols = shapes[sh][1];
		for (int k = 0; k < K_COUNT; k++) {
			float *w = make((enum kind)k, rows, cols, 300 + (uint64_t)k);
			float *v = xmalloc((size_t)(rows * cols) * sizeof(float));
			for (int variant = 0; variant < 3; variant++)
				for (int g = 0; g < 3; g++)
					for (int f16 = 0; f16 < 2; f16++) {
						struct qp_qspec s;
						qp_qspec_default(&s, variant == 0 ? QP_QM_BINARY : QP_QM_TERNARY);
						s.rule = variant == 2 ? QP_TERN_ABSMEAN : QP_TERN_THRESHOLD;
						s.gran = grans[g];
						s.group = group_for(cols);
						s.scale_f16 = f16;
						struct qp_qtensor q;
						if (!run(t, &s, w, rows, cols, &q, v))
							continue;
						const int64_t n_units = q.scale_rows * q.scale_cols, len = rows * cols / n_units;
						for (int64_t u = 0; u < n_units; u++) {
							const float *x = w + u * len;
							double sum = 0.0;
							for (int64_t i = 0; i < len; i++)
								sum += fabs((double)x[i]);
							const float mean = (float)(sum / (double)len);
							const float d = s.threshold * mean;
							double kept_sum = 0.0;
							int64_t kept = 0;
							for (int64_t i = 0; i < len; i++)
								if (fabsf(x[i]) > d) {
									kept_sum += fabs((double)x[i]);
									kept++;
								}
							const float want_s = f16_if(f16, variant == 1 ? (kept ? (float)(kept_sum / kept) : 0.0f)
							                                              : mean);
							if (q.scales[u] != want_s)
								fail(t, "%s rule %d %s gran %d f16 %d unit %lld: scale %g, want %g",
								     qp_qmethod_name(s.method), variant, kind_names[k], g, f16, (long long)u,
								     (double)q.scales[u], (double)want_s);
							for (int64_t i = 0; i < len; i++) {
								const int64_t e = u * len + i;
								int tern;
								if (variant == 0)
									tern = x[i] >= 0.0f ? 1 : -1;
								else if (variant == 1)
									tern = fabsf(x[i]) > d ? (x[i] > 0.0f ? 1 : -1) : 0;
								else {
									const float r = rintf(x[i] / (mean + 1e-5f));
									tern = r > 1.0f ? 1 : r < -1.0f ? -1 : (int)r;
								}
								const unsigned code = code_at(&q, e / cols, e % cols, s.bits);
								const unsigned want_code = variant == 0 ? (tern > 0) : (unsigned)(tern + 1);
								const float want_v = variant == 0 ? (tern > 0 ? want_s : -want_s)
								                                  : want_s * (float)tern;
								if (code != want_code || v[e] != want_v) {
									fail(t, "%s rule %d %s: element %lld w %g: code %u value %g, want %u %g",
									     qp_qmethod_name(s.method), variant, kind_names[k], (long long)e,
									     (double)x[i], code, (double)v[e], want_code, (double)want_v);
									i = len;
									u = n_units;
								}
							}
						}
						qp_qtensor_free(&q);
					}
			free(w);
			free(v);
		}
	}
	/* constant rows are exact in every rule; all-zero rows give zeros */
	const float c4[4] = {0.375f, 0.375f, 0.375f, 0.375f}, z4[4] = {0.0f, -0.0f, 0.0f, 0.0f};
	for (int variant = 0; variant < 3; variant++) {
		struct qp_qspec s;
		qp_qspec_default(&s, variant == 0 ? QP_QM_BINARY : QP_QM_TERNARY);
		s.rule = variant == 2 ? QP_TERN_ABSMEAN : QP_TERN_THRESHOLD;
		struct qp_qtensor q;
		float v[4];
		if (run(t, &s, c4, 1, 4, &q, v)) {
			for (int i = 0; i < 4; i++)
				if (v[i] != 0.375f)
					fail(t, "%s rule %d: constant row comes back %g", qp_qmethod_name(s.method), variant,
					     (double)v[i]);
			qp_qtensor_free(&q);
		}
		if (run(t, &s, z4, 1, 4, &q, v)) {
			for (int i = 0; i < 4; i++)
				if (v[i] != 0.0f)
					fail(t, "%s rule %d: zero row comes back %g", qp_qmethod_name(s.method), variant,
					     (double)v[i]);
			qp_qtensor_free(&q);
		}
	}
}

static void test_nf4_codes_are_nearest_and_double_quant_codes_absmax(struct t *t)
{
	for (int i = 0; i < 15; i++)
		if (!(qp_nf4_values[i] < qp_nf4_values[i + 1]))
			fail(t, "nf4 table is not ascending at %d", i);
	if (qp_nf4_values[0] != -1.0f || qp_nf4_values[7] != 0.0f || qp_nf4_values[15] != 1.0f)
		fail(t, "nf4 table must hold -1, 0 and 1 at 0, 7 and 15");
	float map[256];
	qp_qmethod_dynamic_map(map);
	for (int i = 0; i < 255; i++)
		if (!(map[i] < map[i + 1]))
			fail(t, "dynamic map is not strictly ascending at %d", i);
	/* i = 0: one mean of (0.1, 1) at 1e-6; i = 6: the last mean of 65
	 * points at 1, (1 - 0.9 / 128) */
	if (map[127] != 0.0f || map[255] != 1.0f || map[128] != (float)(0.55e-6) ||
	    map[126] != -(float)(0.55e-6) || map[254] != (float)(1.0 - 0.9 / 128.0) || map[0] != -map[254])
		fail(t, "dynamic map: [0] %g [126] %g [127] %g [128] %g [254] %g [255] %g", (double)map[0],
		     (double)map[126], (double)map[127], (double)map[128], (double)map[254], (double)map[255]);

	const int64_t rows = 40, cols = 192; /* 120 blocks of 64: one partial second-level block */
	for (int k = 0; k < K_COUNT; k++) {
		float *w = make((enum kind)k, rows, cols, 500 + (uint64_t)k);
		float *v = xmalloc((size_t)(rows * cols) * sizeof(float));
		for (int dq = 0; dq < 2; dq++) {
			struct qp_qspec s;
			qp_qspec_default(&s, QP_QM_NF4);
			s.double_quant = dq;
			struct qp_qtensor q;
			if (!run(t, &s, w, rows, cols, &q, v))
				continue;
			if (q.n_blocks != rows * cols / 64 || (dq && q.n_absmax_scales != 1) || (!dq && q.scale_rows != 120))
				fail(t, "nf4 dq %d: %lld blocks, %lld absmax scales", dq, (long long)q.n_blocks,
				     (long long)q.n_absmax_scales);
			float mean = 0.0f;
			if (dq) {
				double sum = 0.0;
				for (int64_t b = 0; b < q.n_blocks; b++) {
					float a = 0.0f;
					for (int64_t i = 0; i < 64; i++)
						a = fmaxf(a, fabsf(w[b * 64 + i]));
					sum += a;
				}
				mean = (float)(sum / (double)q.n_blocks);
				if (q.absmax_offset != mean)
					fail(t, "nf4 %s: offset %g, want the mean absmax %g", kind_names[k],
					     (double)q.absmax_offset, (double)mean);
			}
			for (int64_t b = 0; b < q.n_blocks; b++) {
				float a = 0.0f;
				for (int64_t i = 0; i < 64; i++)
					a = fmaxf(a, fabsf(w[b * 64 + i]));
				float a2 = a;
				if (dq) {
					/* the code of (a - c) / m is the nearest map entry */
					const float m = q.absmax_scales[b / 256];
					const float x = m == 0.0f ? 0.0f : (a - mean) / m;
					const int code = q.absmax_codes[b];
					for (int j = 0; j < 256; j++) {
						const double dj = fabs((double)x - map[j]), dc = fabs((double)x - map[code]);
						if (dj < dc || (dj == dc && j < code)) {
							fail(t, "nf4 %s block %lld: absmax code %d, map[%d] is nearer to %g", kind_names[k],
							     (long long)b, code, j, (double)x);
							break;
						}
					}
					a2 = map[code] * m + mean;
				} else if (q.scales[b] != a) {
					fail(t, "nf4 %s block %lld: scale %g, want absmax %g", kind_names[k], (long long)b,
					     (double)q.scales[b], (double)a);
				}
				for (int64_t i = 0; i < 64; i++) {
					const int64_t e = b * 64 + i;
					const unsigned code = code_at(&q, e / cols, e % cols, 4);
					const double x = a == 0.0f ? 0.0 : (double)(w[e] / a);
					if (a == 0.0f && code != 7)
						fail(t, "nf4 %s: zero block %lld element code %u, want 7", kind_names[k], (long long)b,
						     code);
					for (unsigned j = 0; j < 16 && a != 0.0f; j++) {
						const double dj = fabs(x - qp_nf4_values[j]), dc = fabs(x - qp_nf4_values[code]);
						if (dj < dc || (dj == dc && j < code)) {
							fail(t, "nf4 %s element %lld: code %u, value %u is nearer to %g", kind_names[k],
							     (long long)e, code, j, x);
							break;
						}
					}
					if (v[e] != a2 * qp_nf4_values[code])
						fail(t, "nf4 %s element %lld: value %g, want %g", kind_names[k], (long long)e,
						     (double)v[e], (double)(a2 * qp_nf4_values[code]));
				}
			}
			qp_qtensor_free(&q);
		}
		free(w);
		free(v);
	}
	/* a tie between two code values goes to the lower index */
	const float mid = (float)(((double)qp_nf4_values[9] + qp_nf4_values[10]) / 2);
	if ((double)mid == ((double)qp_nf4_values[9] + qp_nf4_values[10]) / 2) {
		const float w[64] = {1.0f, mid};
		struct qp_qspec s;
		qp_qspec_default(&s, QP_QM_NF4);
		struct qp_qtensor q;
		float v[64];
		if (run(t, &s, w, 1, 64, &q, v)) {
			if (code_at(&q, 0, 1, 4) != 9 || code_at(&q, 0, 0, 4) != 15 || code_at(&q, 0, 2, 4) != 7)
				fail(t, "nf4 tie: codes %u %u %u, want 15 9 7", code_at(&q, 0, 0, 4), code_at(&q, 0, 1, 4),
				     code_at(&q, 0, 2, 4));
			qp_qtensor_free(&q);
		}
	} else {
		fail(t, "nf4 tie: the midpoint of values 9 and 10 is not a float; pick another pair");
	}
}

static const struct {
	enum qp_fp8_format f;
	const char *name;
	uint8_t max_code, nan_code;
	float max, least;
} fp8s[] = {
	{QP_FP8_E4M3, "e4m3", 0x7e, 0x7f, 448.0f, 0x1p-9f},
	{QP_FP8_E5M2, "e5m2", 0x7b, 0x7e, 57344.0f, 0x1p-16f},
};

static void test_fp8_every_code_decodes_and_encodes_back(struct t *t)
{
	for (size_t i = 0; i < 2; i++) {
		const enum qp_fp8_format f = fp8s[i].f;
		int nans = 0;
		for (int v = 0; v < 256; v++) {
			const float x = qp_fp8_to_f32((uint8_t)v, f);
			const uint8_t back = qp_fp8_from_f32(x, f);
			if (isnan(x)) {
				nans++;
				if (!isnan(qp_fp8_to_f32(back, f)) || (back & 0x80) != (v & 0x80))
					fail(t, "%s: NaN code 0x%02x encodes back to 0x%02x", fp8s[i].name, v, back);
			} else if (back != v) {
				fail(t, "%s: 0x%02x = %g encodes back to 0x%02x", fp8s[i].name, v, (double)x, back);
			}
		}
		if (nans != (f == QP_FP8_E4M3 ? 2 : 6))
			fail(t, "%s: %d NaN codes", fp8s[i].name, nans);
		if (qp_fp8_to_f32(fp8s[i].max_code, f) != fp8s[i].max || qp_fp8_to_f32(0x01, f) != fp8s[i].least ||
		    qp_fp8_to_f32(0x80, f) != 0.0f || !signbit(qp_fp8_to_f32(0x80, f)))
			fail(t, "%s: max, least subnormal or -0 decode wrong", fp8s[i].name);
	}
	if (qp_fp8_to_f32(0x08, QP_FP8_E4M3) != 0x1p-6f || qp_fp8_to_f32(0x07, QP_FP8_E4M3) != 7 * 0x1p-9f ||
	    qp_fp8_to_f32(0x38, QP_FP8_E4M3) != 1.0f || qp_fp8_to_f32(0x3c, QP_FP8_E5M2) != 1.0f ||
	    qp_fp8_to_f32(0x7c, QP_FP8_E5M2) != INFINITY || qp_fp8_to_f32(0xfc, QP_FP8_E5M2) != -INFINITY ||
	    qp_fp8_to_f32(0x04, QP_FP8_E5M2) != 0x1p-14f)
		fail(t, "fp8: known codes decode wrong");
}

static void test_fp8_rounds_ties_to_even_and_saturates(struct t *t)
{
	for (size_t i = 0; i < 2; i++) {
		const enum qp_fp8_format f = fp8s[i].f;
		const char *name = fp8s[i].name;
		/* between every pair of neighbouring finite codes, subnormals and
		 * the subnormal/normal border included: the exact midpoint goes
		 * to the even code, a float either side of it to the nearer */
		for (int v = 0; v < fp8s[i].max_code; v++) {
			const float lo = qp_fp8_to_f32((uint8_t)v, f), hi = qp_fp8_to_f32((uint8_t)(v + 1), f);
			const float mid = (float)(((double)lo + hi) / 2);
			const uint8_t even = (v & 1) ? (uint8_t)(v + 1) : (uint8_t)v;
			for (int neg = 0; neg < 2; neg++) {
				const float sg = neg ? -1.0f : 1.0f;
				const uint8_t sb = neg ? 0x80 : 0;
				if (qp_fp8_from_f32(sg * mid, f) != (sb | even) ||
				    qp_fp8_from_f32(sg * nextafterf(mid, 0.0f), f) != (sb | v) ||
				    qp_fp8_from_f32(sg * nextafterf(mid, INFINITY), f) != (sb | (v + 1)))
					fail(t, "%s: around %g (between 0x%02x and 0x%02x): 0x%02x 0x%02x 0x%02x", name,
					     (double)(sg * mid), v, v + 1, qp_fp8_from_f32(sg * nextafterf(mid, 0.0f), f),
					     qp_fp8_from_f32(sg * mid, f), qp_fp8_from_f32(sg * nextafterf(mid, INFINITY), f));
			}
		}
		const uint8_t m = fp8s[i].max_code;
		const float past = fp8s[i].max * (f == QP_FP8_E4M3 ? 1.0625f : 1.125f); /* the tie above max */
		if (qp_fp8_from_f32(nextafterf(fp8s[i].max, INFINITY), f) != m || qp_fp8_from_f32(past, f) != m ||
		    qp_fp8_from_f32(2.0f * fp8s[i].max, f) != m || qp_fp8_from_f32(FLT_MAX, f) != m ||
		    qp_fp8_from_f32(-FLT_MAX, f) != (0x80 | m))
			fail(t, "%s: finite overflow must saturate to 0x%02x", name, m);
		const uint8_t inf = f == QP_FP8_E5M2 ? 0x7c : m;
		if (qp_fp8_from_f32(INFINITY, f) != inf || qp_fp8_from_f32(-INFINITY, f) != (0x80 | inf))
			fail(t, "%s: infinity encodes to 0x%02x", name, qp_fp8_from_f32(INFINITY, f));
		if (qp_fp8_from_f32(NAN, f) != fp8s[i].nan_code || qp_fp8_from_f32(-NAN, f) != (0x80 | fp8s[i].nan_code))
			fail(t, "%s: NaN encodes to 0x%02x", name, qp_fp8_from_f32(NAN, f));
		if (qp_fp8_from_f32(-0.0f, f) != 0x80 || qp_fp8_from_f32(0.0f, f) != 0x00 ||
		    qp_fp8_from_f32(FLT_TRUE_MIN, f) != 0x00 || qp_fp8_from_f32(-fp8s[i].least * 0.5f, f) != 0x80 ||
		    qp_fp8_from_f32(fp8s[i].least * 0.75f, f) != 0x01)
			fail(t, "%s: zeros and the least subnormal round wrong", name);
	}
}

static void test_fp8_quantize_maps_each_units_max_to_the_format_max(struct t *t)
{
	const int64_t rows = 6, cols = 172;
	for (size_t i = 0; i < 2; i++)
		for (int g = 0; g < 2; g++)
			for (int k = 0; k < K_COUNT; k++) {
				float *w = make((enum kind)k, rows, cols, 700 + (uint64_t)k);
				w[3 * cols + 5] = NAN;
				w[4 * cols] = -0.0f;
				float *v = xmalloc((size_t)(rows * cols) * sizeof(float));
				struct qp_qspec s;
				qp_qspec_default(&s, QP_QM_FP8);
				s.fp8 = fp8s[i].f;
				s.gran = g ? QP_QG_CHANNEL : QP_QG_TENSOR;
				struct qp_qtensor q;
				if (!run(t, &s, w, rows, cols, &q, v)) {
					free(w);
					free(v);
					continue;
				}
				const int man = fp8s[i].f == QP_FP8_E4M3 ? 3 : 2;
				const int64_t len = rows * cols / q.scale_rows;
				for (int64_t u = 0; u < q.scale_rows; u++) {
					float amax = 0.0f;
					for (int64_t e = u * len; e < (u + 1) * len; e++)
						if (!isnan(w[e]))
							amax = fmaxf(amax, fabsf(w[e]));
					const float sc = q.scales[u];
					if (sc != (amax == 0.0f ? 1.0f : amax / fp8s[i].max))
						fail(t, "%s %s unit %lld: scale %g for amax %g", fp8s[i].name, kind_names[k],
						     (long long)u, (double)sc, (double)amax);
					for (int64_t e = u * len; e < (u + 1) * len; e++) {
						if (isnan(w[e])) {
							if (!isnan(v[e]))
								fail(t, "%s: NaN weight came back %g", fp8s[i].name, (double)v[e]);
							continue;
						}
						/* half an ulp of the format, relative for normals; half
						 * the least subnormal step below */
						const float bound = fmaxf(fabsf(w[e]) * ldexpf(1.0f, -man - 1),
						                          sc * fp8s[i].least * 0.5f) * (1.0f + 1e-6f);
						if (!(fabsf(v[e] - w[e]) <= bound) || signbit(v[e]) != signbit(w[e])) {
							fail(t, "%s %s gran %d element %lld: %g -> %g (scale %g)", fp8s[i].name,
							     kind_names[k], g, (long long)e, (double)w[e], (double)v[e], (double)sc);
							break;
						}
						if (fabsf(w[e]) == amax && amax > 0.0f && (q.codes[e] & 0x7f) != fp8s[i].max_code)
							fail(t, "%s %s: the unit max codes to 0x%02x", fp8s[i].name, kind_names[k],
							     q.codes[e]);
					}
				}
				qp_qtensor_free(&q);
				free(w);
				free(v);
			}
}

static void test_kmeans_lut_is_sorted_and_points_go_to_the_nearest(struct t *t)
{
	const int64_t rows = 32, cols = 96;
	for (int k = 0; k < K_COUNT; k++) {
		float *w = make((enum kind)k, rows, cols, 900 + (uint64_t)k);
		float *v = xmalloc((size_t)(rows * cols) * sizeof(float));
		for (int bits = 2; bits <= 8; bits += 3)
			for (int grouped = 0; grouped < 2; grouped++)
				for (int cs = 0; cs < 2; cs++) {
					struct qp_qspec s;
					qp_qspec_default(&s, QP_QM_KMEANS);
					s.bits = bits;
					s.gran = grouped ? QP_QG_GROUP : QP_QG_TENSOR;
					s.group = 8;
					s.channel_scale = cs;
					s.iters = 1000; /* enough to converge: centroids are then cluster means */
					struct qp_qtensor q;
					if (!run(t, &s, w, rows, cols, &q, v))
						continue;
					const int nk = 1 << bits;
					const int64_t group_rows = rows / q.lut_rows;
					for (int64_t r = 0; r < rows; r++) {
						const float *lut = q.lut + (r / group_rows) * nk;
						float rs = 1.0f;
						if (cs) {
							float a = 0.0f;
							for (int64_t c = 0; c < cols; c++)
								a = fmaxf(a, fabsf(w[r * cols + c]));
							rs = a > 0.0f ? a : 1.0f;
							if (q.scales[r] != rs)
								fail(t, "kmeans %s: row %lld scale %g, want %g", kind_names[k], (long long)r,
								     (double)q.scales[r], (double)rs);
						}
						for (int64_t c = 0; c < cols; c++) {
							const float x = cs ? w[r * cols + c] / rs : w[r * cols + c];
							const unsigned code = code_at(&q, r, c, bits);
							const double dc = fabs((double)x - lut[code]);
							for (int j = 0; j < nk; j++) {
								const double dj = fabs((double)x - lut[j]);
								if (dj < dc || (dj == dc && j < (int)code && lut[j] != lut[code])) {
									fail(t, "kmeans %s bits %d: (%lld, %lld) %g has code %u (%g), lut[%d] %g is nearer",
									     kind_names[k], bits, (long long)r, (long long)c, (double)x, code,
									     (double)lut[code], j, (double)lut[j]);
									j = nk;
									c = cols;
									r = rows;
								}
							}
						}
					}
					for (int64_t g = 0; g < q.lut_rows; g++) {
						const float *lut = q.lut + g * nk;
						for (int j = 0; j + 1 < nk; j++)
							if (!(lut[j] <= lut[j + 1]))
								fail(t, "kmeans %s: lut %lld is not ascending at %d", kind_names[k], (long long)g, j);
						/* converged: each non-empty centroid is its cluster's mean */
						for (int j = 0; j < nk; j++) {
							double sum = 0.0;
							int64_t n = 0;
							for (int64_t r = g * group_rows; r < (g + 1) * group_rows; r++)
								for (int64_t c = 0; c < cols; c++)
									if (code_at(&q, r, c, bits) == (unsigned)j) {
										sum += cs ? w[r * cols + c] / q.scales[r] : w[r * cols + c];
										n++;
									}
							if (n && fabs(sum / (double)n - lut[j]) > 1e-6 * fabs(lut[j]) + 1e-30)
								fail(t, "kmeans %s bits %d lut %lld: centroid %d is %g, its cluster's mean %g",
								     kind_names[k], bits, (long long)g, j, (double)lut[j], sum / (double)n);
						}
					}
					/* constant and all-zero data have fewer values than centroids: exact */
					if (k == K_ZEROS || k == K_CONST)
						for (int64_t e = 0; e < rows * cols; e++)
							if (v[e] != w[e]) {
								fail(t, "kmeans %s: element %lld %g comes back %g", kind_names[k], (long long)e,
								     (double)w[e], (double)v[e]);
								break;
							}
					qp_qtensor_free(&q);
				}
		free(w);
		free(v);
	}
	/* three distinct values and sixteen centroids: the values themselves */
	float w3[12] = {-1.0f, 2.0f, 0.5f, 2.0f, -1.0f, 0.5f, 0.5f, 2.0f, -1.0f, -1.0f, 2.0f, 0.5f}, v3[12];
	struct qp_qspec s;
	qp_qspec_default(&s, QP_QM_KMEANS);
	struct qp_qtensor q;
	if (run(t, &s, w3, 3, 4, &q, v3)) {
		if (memcmp(w3, v3, sizeof(w3)) != 0 || q.lut[0] != -1.0f || q.lut[1] != 0.5f || q.lut[15] != 2.0f)
			fail(t, "kmeans: three values do not come back exactly (lut %g %g .. %g)", (double)q.lut[0],
			     (double)q.lut[1], (double)q.lut[15]);
		qp_qtensor_free(&q);
	}
	/* the seed picks the start: same seed, same table; a different one, on
	 * data with many local optima, another table */
	float *w = make(K_GAUSS, 64, 64, 11);
	float *v = xmalloc(64 * 64 * sizeof(float));
	qp_qspec_default(&s, QP_QM_KMEANS);
	s.bits = 5;
	s.iters = 3;
	struct qp_qtensor a, b, c;
	if (run(t, &s, w, 64, 64, &a, v)) {
		run(t, &s, w, 64, 64, &b, v);
		s.seed = 12345;
		run(t, &s, w, 64, 64, &c, v);
		if (memcmp(a.lut, b.lut, 32 * sizeof(float)) != 0)
			fail(t, "kmeans: the same seed gave two tables");
		if (memcmp(a.lut, c.lut, 32 * sizeof(float)) == 0)
			fail(t, "kmeans: seeds 0 and 12345 gave the same table");
		qp_qtensor_free(&a);
		qp_qtensor_free(&b);
		qp_qtensor_free(&c);
	}
	free(w);
	free(v);
}

static void expect_bpw(struct t *t, const struct qp_qspec *s, int64_t rows, int64_t cols, double want,
                       const char *what)
{
	float *w = make(K_GAUSS, rows, cols, 1);
	struct qp_qtensor q;
	struct qp_err err = {0};
	if (qp_qmethod_quantize(s, w, rows, cols, &q, 2, &err) != 0) {
		fail(t, "%s: %s", what, err.msg);
	} else {
		const double got = qp_qtensor_bits_per_weight(s, &q);
		if (fabs(got - want) > 1e-12)
			fail(t, "%s: %.12g bits per weight, want %.12g", what, got, want);
		qp_qtensor_free(&q);
	}
	free(w);
}

static void test_bits_per_weight_counts_every_array(struct t *t)
{
	struct qp_qspec s;
	const double n = 256.0 * 512.0;
	qp_qspec_default(&s, QP_QM_RTN);
	expect_bpw(t, &s, 256, 512, 4.0 + 16.0 / 128 + 4.0 / 128, "rtn 4-bit g128 f16");
	s.sym = true;
	expect_bpw(t, &s, 256, 512, 4.0 + 16.0 / 128 + 4.0 / 128, "rtn 4-bit sym g128 f16 (zeros counted)");
	s.scale_f16 = false;
	s.bits = 3;
	s.gran = QP_QG_CHANNEL;
	expect_bpw(t, &s, 256, 512, 3.0 + 32.0 / 512 + 3.0 / 512, "rtn 3-bit channel f32");
	s.gran = QP_QG_TENSOR;
	expect_bpw(t, &s, 3, 7, (3.0 * 3 * 8 + 32 + 3) / 21.0, "rtn 3-bit tensor on 3x7 (padded rows)");
	qp_qspec_default(&s, QP_QM_BINARY);
	expect_bpw(t, &s, 256, 512, 1.0 + 32.0 / 512, "binary channel");
	qp_qspec_default(&s, QP_QM_TERNARY);
	s.scale_f16 = true;
	expect_bpw(t, &s, 256, 512, 2.0 + 16.0 / 512, "ternary channel f16");
	qp_qspec_default(&s, QP_QM_NF4);
	expect_bpw(t, &s, 256, 512, 4.0 + 8.0 / 64 + 8 * 32.0 / n + 32.0 / n, "nf4 block 64 double quant");
	s.double_quant = false;
	expect_bpw(t, &s, 256, 512, 4.5, "nf4 block 64");
	qp_qspec_default(&s, QP_QM_FP8);
	expect_bpw(t, &s, 256, 512, 8.0 + 32.0 / 512, "fp8 channel");
	qp_qspec_default(&s, QP_QM_KMEANS);
	expect_bpw(t, &s, 256, 512, 4.0 + 16 * 32.0 / n, "kmeans 4-bit tensor");
	s.bits = 2;
	s.gran = QP_QG_GROUP;
	s.group = 16;
	s.channel_scale = true;
	expect_bpw(t, &s, 256, 512, 2.0 + 16 * 4 * 32.0 / n + 256 * 32.0 / n, "kmeans 2-bit 16-row luts, row scales");

	/* GPTQ's g_idx is stored data too: one int32 a column */
	qp_qspec_default(&s, QP_QM_RTN);
	float *w = make(K_GAUSS, 256, 512, 1);
	struct qp_qtensor q;
	struct qp_err err = {0};
	if (qp_qmethod_quantize(&s, w, 256, 512, &q, 1, &err) == 0) {
		q.g_idx = calloc(512, sizeof(int32_t));
		const double got = qp_qtensor_bits_per_weight(&s, &q);
		if (fabs(got - (4.0 + 20.0 / 128 + 32.0 / 256)) > 1e-12)
			fail(t, "rtn with g_idx: %.12g bits per weight", got);
		qp_qtensor_free(&q);
	}
	free(w);
}

static void expect_dequant_error(struct t *t, const struct qp_qspec *s, const struct qp_qtensor *q,
                                 const char *want)
{
	float out[64 * 4];
	struct qp_err err = {0};
	const int rc = qp_qmethod_dequantize(s, q, out, &err);
	if (rc != QP_EINVAL || strcmp(err.msg, want) != 0)
		fail(t, "dequantize: rc %d '%s', want '%s'", rc, err.msg, want);
}

static void test_dequantize_refuses_inconsistent_layout(struct t *t)
{
	float *w = make(K_GAUSS, 4, 64, 3);
	struct qp_qspec s;
	struct qp_qtensor q;
	struct qp_err err = {0};
	qp_qspec_default(&s, QP_QM_RTN);
	s.group = 32;
	if (qp_qmethod_quantize(&s, w, 4, 64, &q, 1, &err) == 0) {
		uint8_t *zeros = q.zeros;
		q.zeros = NULL;
		expect_dequant_error(t, &s, &q, "rtn: zeros are missing");
		q.zeros = zeros;
		zeros[3] = 16;
		expect_dequant_error(t, &s, &q, "rtn: zero 16 at 3 is past 4 bits");
		zeros[3] = 0;
		s.group = 16;
		expect_dequant_error(t, &s, &q, "rtn: scales are 4 x 2, want 4 x 4");
		s.group = 32;
		s.bits = 3;
		expect_dequant_error(t, &s, &q, "rtn: codes of 128 bytes (32 a row) do not fit 4 x 64 at 3 bits");
		qp_qtensor_free(&q);
	}
	qp_qspec_default(&s, QP_QM_TERNARY);
	if (qp_qmethod_quantize(&s, w, 4, 64, &q, 1, &err) == 0) {
		q.codes[q.row_bytes + 2] |= 0x30; /* row 1, col 10 */
		expect_dequant_error(t, &s, &q, "ternary: code 3 at row 1, col 10 (codes are 0, 1, 2)");
		qp_qtensor_free(&q);
	}
	qp_qspec_default(&s, QP_QM_NF4);
	if (qp_qmethod_quantize(&s, w, 4, 64, &q, 1, &err) == 0) {
		s.double_quant = false;
		expect_dequant_error(t, &s, &q, "nf4: scales must be 4 x 1 (one absmax a block)");
		s.double_quant = true;
		q.n_absmax_scales = 2;
		expect_dequant_error(t, &s, &q, "nf4: double quantization needs absmax codes and 1 absmax scales");
		qp_qtensor_free(&q);
	}
	qp_qspec_default(&s, QP_QM_KMEANS);
	if (qp_qmethod_quantize(&s, w, 4, 64, &q, 1, &err) == 0) {
		s.gran = QP_QG_GROUP;
		s.group = 2;
		expect_dequant_error(t, &s, &q, "kmeans: 1 look-up tables, want 2");
		s.gran = QP_QG_TENSOR;
		s.channel_scale = true;
		expect_dequant_error(t, &s, &q, "kmeans: channel scales must be 4 x 1");
		qp_qtensor_free(&q);
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
	{"qmethod__binary_and_ternary_follow_their_rules", test_binary_and_ternary_follow_their_rules},
	{"qmethod__nf4_codes_are_nearest_and_double_quant_codes_absmax",
	 test_nf4_codes_are_nearest_and_double_quant_codes_absmax},
	{"qmethod__fp8_every_code_decodes_and_encodes_back", test_fp8_every_code_decodes_and_encodes_back},
	{"qmethod__fp8_rounds_ties_to_even_and_saturates", test_fp8_rounds_ties_to_even_and_saturates},
	{"qmethod__fp8_quantize_maps_each_units_max_to_the_format_max",
	 test_fp8_quantize_maps_each_units_max_to_the_format_max},
	{"qmethod__kmeans_lut_is_sorted_and_points_go_to_the_nearest",
	 test_kmeans_lut_is_sorted_and_points_go_to_the_nearest},
	{"qmethod__bits_per_weight_counts_every_array", test_bits_per_weight_counts_every_array},
	{"qmethod__dequantize_refuses_inconsistent_layout", test_dequantize_refuses_inconsistent_layout},
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
