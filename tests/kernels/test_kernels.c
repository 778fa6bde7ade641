/* Kernel library tests: every type in the table at every level this machine
 * can run, against the scalar reference.
 *
 *   test_kernels            run every test
 *   test_kernels NAME       run one (meson registers each by name)
 *
 * Quantize and dequantize must match the reference bit for bit; dot
 * products must match it, and a double-precision dot of the dequantized
 * values, by NMSE. Rows come from a fixed-seed generator, at lengths with
 * SIMD tails, in several kinds: random, and adversarial ones (zeros of both
 * signs, huge finite values, subnormals, one outlier, exact ties after
 * scaling). A failure names the type, level, length, row kind and first
 * differing block. */
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/blocks.h"
#include "kernels/kernels.h"
#include "kernels/vec.h"
#include "levels.h"

/* Failures of one test; a test keeps going after a failure so one run
 * shows every broken (type, level), but prints only the first few. */
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

/* splitmix64: fixed seeds make every failure reproducible */
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

/* uniform in [0, 1) */
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

static int rng_below(struct rng *r, int n)
{
	return (int)(rng_next(r) % (uint64_t)n);
}

enum row_kind {
	ROW_RANDOM,
	ROW_ZEROS,
	ROW_HUGE,      /* +-3e38 and FLT_MAX: scales near overflow */
	ROW_HUGE_F16,  /* +-65504 and neighbours: the edge of fp16 */
	ROW_SUBNORMAL, /* scales whose inverse overflows to inf */
	ROW_OUTLIER,   /* one large value among small ones */
	ROW_TIES,      /* x/d lands exactly on a rounding boundary */
	ROW_NEAR_TIES, /* x/d lands within ulps of it, d not a power of 2 */
	ROW_PATCHY,    /* groups of 16 zero, constant, one spike or random */
	ROW_NONFINITE, /* NaN and Inf among finite values */
	ROW_KINDS
};

static const char *const row_names[ROW_KINDS] = {
	[ROW_RANDOM] = "random",
	[ROW_ZEROS] = "zeros",
	[ROW_HUGE] = "huge",
	[ROW_HUGE_F16] = "huge-f16",
	[ROW_SUBNORMAL] = "subnormal",
	[ROW_OUTLIER] = "outlier",
	[ROW_TIES] = "ties",
	[ROW_NEAR_TIES] = "near-ties",
	[ROW_PATCHY] = "patchy",
	[ROW_NONFINITE] = "nonfinite",
};

/* Blocks of 32 whose scale comes out exactly 1 (or 1/2) for one family
 * each, with every other element on a half-integer, so that x/d + c lands
 * exactly on the point where rounding or truncation decides. */
static void fill_ties_block(struct rng *r, float *xb, int pattern, float scale, bool nudge)
{
	for (int j = 0; j < 32; j++) {
		switch (pattern) {
		case 0: /* q4_0: max -8 -> d = 1; q5_0: d = 1/2 */
			xb[j] = (float)(rng_below(r, 16) - 8) + 0.5f;
			break;
		case 1: /* q8_0, q8_1: amax 127 -> d = 1; roundf ties */
			xb[j] = (float)(rng_below(r, 254) - 127) + 0.5f;
			break;
		case 2: /* q4_1: min 0, max 15 -> d = 1 */
			xb[j] = (float)rng_below(r, 15) + 0.5f;
			break;
		case 3: /* q5_1: min 0, max 31 -> d = 1 */
			xb[j] = (float)rng_below(r, 31) + 0.5f;
			break;
		default: /* q5_0: max -16 -> d = 1 */
			xb[j] = (float)(rng_below(r, 32) - 16) + 0.5f;
			break;
		}
	}
	static const float anchors[5][2] = {{-8, -8}, {127, 127}, {0, 15}, {0, 31}, {-16, -16}};
	xb[0] = anchors[pattern][0];
	xb[1 + rng_below(r, 31)] = anchors[pattern][1];
	for (int j = 0; j < 32; j++) {
		xb[j] *= scale;
		/* a few ulps either way, so x * (1/d) rounds to either side of
		 * the boundary: where a fused multiply-add would round once
		 * instead of twice, the two results part */
		for (int k = nudge ? rng_below(r, 5) - 2 : 0; k != 0; k += k < 0 ? 1 : -1)
			xb[j] = nextafterf(xb[j], k < 0 ? -INFINITY : INFINITY);
	}
}

static void fill_row(enum row_kind kind, float *x, int64_t n, uint64_t seed)
{
	struct rng r = {seed * 0x100000001b3ULL + (uint64_t)kind};
	switch (kind) {
	case ROW_RANDOM:
		/* blocks differ in scale and offset, as weight rows do */
		for (int64_t b = 0; b < n; b += 32) {
			const double scale = exp(1.5 * rng_gauss(&r));
			const double shift = rng_gauss(&r) * 0.5;
			for (int64_t i = b; i < b + 32 && i < n; i++)
				x[i] = (float)(scale * (rng_gauss(&r) + shift));
		}
		break;
	case ROW_ZEROS:
		for (int64_t i = 0; i < n; i++)
			x[i] = rng_below(&r, 3) == 0 ? -0.0f : 0.0f;
		break;
	case ROW_HUGE:
		for (int64_t i = 0; i < n; i++) {
			static const float big[] = {3e38f, FLT_MAX, 1e38f, 2.9e38f};
			const float v = big[rng_below(&r, 4)];
			/* some blocks one-signed, so their range stays finite */
			const bool mixed = ((i / 32) % 2) == 0;
			x[i] = mixed && rng_below(&r, 2) ? -v : v;
		}
		break;
	case ROW_HUGE_F16:
		for (int64_t i = 0; i < n; i++) {
			static const float edge[] = {65504.0f, 65519.0f, 65520.0f, 65503.9f, 32768.0f};
			const float v = edge[rng_below(&r, 5)];
			x[i] = rng_below(&r, 2) ? -v : v;
		}
		break;
	case ROW_SUBNORMAL:
		for (int64_t i = 0; i < n; i++) {
			uint32_t bits = (uint32_t)rng_next(&r) & 0x807fffffu;
			if ((bits & 0x7fffffu) == 0)
				bits |= 1u;
			x[i] = qp_f32_from_bits(bits);
		}
		break;
	case ROW_OUTLIER:
		for (int64_t i = 0; i < n; i++)
			x[i] = (float)(rng_gauss(&r) * 1e-3);
		x[rng_below(&r, (int)n)] = rng_below(&r, 2) ? 50.0f : -50.0f;
		break;
	case ROW_TIES:
		if (n % 32 != 0) {
			/* unblocked types: plain half-integers */
			for (int64_t i = 0; i < n; i++)
				x[i] = (float)(rng_below(&r, 512) - 256) + 0.5f;
			break;
		}
		for (int64_t b = 0; b < n / 32; b++)
			fill_ties_block(&r, x + 32 * b, (int)(b % 5), 1.0f, false);
		break;
	case ROW_NEAR_TIES:
		for (int64_t b = 0; b < n / 32; b++)
			fill_ties_block(&r, x + 32 * b, (int)(b % 5), (float)(1.0 + rng_unit(&r)), true);
		for (int64_t i = n / 32 * 32; i < n; i++)
			x[i] = (float)(rng_below(&r, 512) - 256) + 0.5f;
		break;
	case ROW_PATCHY:
		/* the k-quant quantizers fit eight sub-blocks of 16 or 32 at
		 * once, and must treat a flat one (all zero, or max == min) as
		 * the scalar search does while its neighbours are fitted */
		for (int64_t b = 0; b < n; b += 16) {
			const int pattern = rng_below(&r, 5);
			const float c = (float)rng_gauss(&r);
			for (int64_t i = b; i < b + 16 && i < n; i++) {
				switch (pattern) {
				case 0:
					x[i] = rng_below(&r, 2) ? -0.0f : 0.0f;
					break;
				case 1:
					x[i] = c;
					break;
				case 2:
					x[i] = i == b + 5 ? c : 0.0f;
					break;
				default:
					x[i] = (float)rng_gauss(&r) * c;
					break;
				}
			}
		}
		break;
	case ROW_NONFINITE:
		/* no meaning, but deterministic: every level must give the
		 * reference's bytes */
		for (int64_t i = 0; i < n; i++) {
			const int k = rng_below(&r, 64);
			x[i] = k == 0 ? NAN : k == 1 ? INFINITY : k == 2 ? -INFINITY : (float)rng_gauss(&r);
		}
		break;
	case ROW_KINDS:
		break;
	}
}

/* the types qpipe has kernels for, in table order */
static int kernel_types(enum qp_type out[QP_TYPE_COUNT])
{
	int count = 0;
	for (int t = 0; t < QP_TYPE_COUNT; t++)
		if (qp_kernels_get_level(t, QP_LEVEL_SCALAR))
			out[count++] = t;
	return count;
}

static const char *type_name(enum qp_type t)
{
	return qp_type_traits(t)->name;
}

/* Row lengths in elements: 1, 31, 33, 255 and 257 blocks of 32; 1, 3 and
 * 17 super-blocks of 256 (the k-quants' SIMD variants work on 128 or 256
 * at a time, so a tail is a whole super-block); an unblocked type also
 * gets short lengths that end inside a SIMD register. */
static int lengths_for(enum qp_type t, int64_t out[16])
{
	static const int64_t blocks[] = {1, 31, 33, 255, 257};
	static const int64_t super_blocks[] = {1, 3, 17};
	const int64_t blck = qp_type_traits(t)->blck;
	int count = 0;
	if (blck == QP_QK_K) {
		for (size_t i = 0; i < sizeof(super_blocks) / sizeof(super_blocks[0]); i++)
			out[count++] = super_blocks[i] * blck;
		return count;
	}
	for (size_t i = 0; i < sizeof(blocks) / sizeof(blocks[0]); i++)
		out[count++] = blocks[i] * (blck > 1 ? blck : 32);
	if (blck == 1) {
		static const int64_t odd[] = {1, 7, 9, 31, 33, 255, 257};
		for (size_t i = 0; i < sizeof(odd) / sizeof(odd[0]); i++)
			out[count++] = odd[i];
	}
	return count;
}

static size_t row_bytes(enum qp_type t, int64_t n)
{
	size_t size;
	if (qp_type_row_size(t, n, &size) != 0)
		abort();
	return size;
}

static bool level_runs(enum qp_kernel_level level)
{
	return qp_kernel_level_supported(level);
}

/* Bytes past the end of an output row that a kernel must leave alone. */
#define GUARD 64
#define GUARD_BYTE 0xa5

static void *guarded(size_t n)
{
	unsigned char *p = xmalloc(n + GUARD);
	memset(p, GUARD_BYTE, n + GUARD);
	return p;
}

static bool guard_intact(const void *p, size_t n)
{
	const unsigned char *g = (const unsigned char *)p + n;
	for (size_t i = 0; i < GUARD; i++)
		if (g[i] != GUARD_BYTE)
			return false;
	return true;
}

/* Whether the SIMD quantizers of t promise the reference's bytes on
 * non-finite input too: every one does now. The super-block types
 * (k-quants, ternary) follow the reference's branches lane by lane; the
 * 32-element types send a block holding NaN or Inf to the reference,
 * whose scalar min/max folds treat NaN as no vector min or max does. */
static bool nonfinite_is_exact(enum qp_type t)
{
	(void)t;
	return true;
}

static void test_quantize_is_bit_exact_with_reference_at_every_level(struct t *t)
{
	enum qp_type types[QP_TYPE_COUNT];
	const int ntypes = kernel_types(types);
	for (int ti = 0; ti < ntypes; ti++) {
		const enum qp_type ty = types[ti];
		const struct qp_kernel_ops *ref = qp_kernels_get_level(ty, QP_LEVEL_SCALAR);
		const size_t tsize = qp_type_traits(ty)->type_size;
		int64_t lengths[16];
		const int nlen = lengths_for(ty, lengths);
		for (int level = 0; level < QP_LEVEL_COUNT; level++) {
			const struct qp_kernel_ops *ops = qp_kernels_get_level(ty, level);
			if (!ops || !ops->quantize_row)
				continue;
			for (int li = 0; li < nlen; li++) {
				const int64_t n = lengths[li];
				const size_t nbytes = row_bytes(ty, n);
				float *x = xmalloc((size_t)n * sizeof(float));
				unsigned char *want = guarded(nbytes);
				unsigned char *got = guarded(nbytes);
				for (int kind = 0; kind < ROW_KINDS; kind++) {
					if (kind == ROW_NONFINITE && level != QP_LEVEL_SCALAR && !nonfinite_is_exact(ty))
						continue;
					fill_row(kind, x, n, (uint64_t)n);
					memset(want, GUARD_BYTE, nbytes + GUARD);
					memset(got, GUARD_BYTE, nbytes + GUARD);
					ref->quantize_row(x, want, n);
					ops->quantize_row(x, got, n);
					if (!guard_intact(got, nbytes))
						fail(t, "%s at %s, n=%lld, row '%s': wrote past the end of the row",
						     type_name(ty), qp_kernel_level_name(level), (long long)n, row_names[kind]);
					if (memcmp(want, got, nbytes) != 0) {
						size_t at = 0;
						while (want[at] == got[at])
							at++;
						fail(t, "%s at %s, n=%lld, row '%s': block %zu differs first (byte %zu: got 0x%02x, want 0x%02x)",
						     type_name(ty), qp_kernel_level_name(level), (long long)n, row_names[kind],
						     at / tsize, at % tsize, got[at], want[at]);
					}
				}
				free(x);
				free(want);
				free(got);
			}
		}
	}
}

/* quantize_row quantizes each block on its own (kernels.h), which
 * qp_convert_rows relies on when it hands it several rows at once: three
 * rows of two blocks (two super-blocks: AVX-512's q4_K takes four at a
 * time, so its groups straddle the rows) in one call give the bytes of
 * three calls, at every level. */
static void test_quantize_rows_at_once_equal_row_by_row(struct t *t)
{
	enum qp_type types[QP_TYPE_COUNT];
	const int ntypes = kernel_types(types);
	int cases = 0;
	for (int ti = 0; ti < ntypes; ti++) {
		const enum qp_type ty = types[ti];
		const int64_t blck = qp_type_traits(ty)->blck;
		const int64_t row = 2 * (blck > 1 ? blck : 32), n = 3 * row;
		const size_t rbytes = row_bytes(ty, row);
		float *x = xmalloc((size_t)n * sizeof(float));
		unsigned char *all = guarded(3 * rbytes), *each = guarded(3 * rbytes);
		fill_row(ROW_RANDOM, x, n, 4242);
		for (int level = 0; level < QP_LEVEL_COUNT; level++) {
			const struct qp_kernel_ops *ops = qp_kernels_get_level(ty, level);
			if (!ops || !ops->quantize_row)
				continue;
			memset(all, GUARD_BYTE, 3 * rbytes + GUARD);
			memset(each, GUARD_BYTE, 3 * rbytes + GUARD);
			ops->quantize_row(x, all, n);
			for (int r = 0; r < 3; r++)
				ops->quantize_row(x + r * row, each + r * rbytes, row);
			if (!guard_intact(all, 3 * rbytes) || memcmp(all, each, 3 * rbytes) != 0)
				fail(t, "%s at %s: three rows in one call differ from one call per row", type_name(ty),
				     qp_kernel_level_name(level));
			cases++;
		}
		free(x);
		free(all);
		free(each);
	}
	printf("  %d (type, level) cases\n", cases);
}

/* Bit for bit, except that any NaN equals any NaN: with a NaN scale and a
 * NaN minimum, q * d + m has two NaN operands, and which payload survives
 * depends on operand order, which IEEE 754 leaves open and compilers (clang
 * commutes the add) do not keep. */
static bool same_float(float a, float b)
{
	return qp_f32_bits(a) == qp_f32_bits(b) || (isnan(a) && isnan(b));
}

/* The fused quantizers from f16 and bf16 rows (quantize_row_f16/_bf16)
 * against the reference's two steps: the source's dequantize to f32, then
 * quantize_row. Rows: every kind above rounded to the source format, and
 * raw random halves, which hold every NaN payload, Inf, subnormals and
 * numbers past what any kind above gives. */
static void test_fused_quantize_from_f16_and_bf16_is_bit_exact(struct t *t)
{
	enum qp_type types[QP_TYPE_COUNT];
	const int ntypes = kernel_types(types);
	int ran = 0;
	for (int ti = 0; ti < ntypes; ti++) {
		const enum qp_type ty = types[ti];
		const struct qp_kernel_ops *ref = qp_kernels_get_level(ty, QP_LEVEL_SCALAR);
		const size_t tsize = qp_type_traits(ty)->type_size;
		int64_t lengths[16];
		const int nlen = lengths_for(ty, lengths);
		for (int level = 0; level < QP_LEVEL_COUNT; level++) {
			const struct qp_kernel_ops *ops = qp_kernels_get_level(ty, level);
			for (int bf = 0; ops && bf < 2; bf++) {
				void (*fused)(const void *, void *, int64_t) = bf ? ops->quantize_row_bf16 : ops->quantize_row_f16;
				const enum qp_type st = bf ? QP_TYPE_BF16 : QP_TYPE_F16;
				if (!fused)
					continue;
				ran++;
				for (int li = 0; li < nlen; li++) {
					const int64_t n = lengths[li];
					const size_t nbytes = row_bytes(ty, n);
					float *x = xmalloc((size_t)n * sizeof(float));
					uint16_t *h = xmalloc((size_t)n * sizeof(uint16_t));
					unsigned char *want = guarded(nbytes);
					unsigned char *got = guarded(nbytes);
					for (int kind = 0; kind <= ROW_KINDS; kind++) {
						if (kind < ROW_KINDS) {
							fill_row(kind, x, n, (uint64_t)n);
							for (int64_t i = 0; i < n; i++)
								h[i] = bf ? qp_fp32_to_bf16(x[i]) : qp_fp32_to_fp16(x[i]);
						} else {
							struct rng r = {(uint64_t)n * 7919 + (uint64_t)bf};
							for (int64_t i = 0; i < n; i++)
								h[i] = (uint16_t)rng_next(&r);
						}
						qp_kernels_get_level(st, QP_LEVEL_SCALAR)->dequantize_row(h, x, n);
						memset(want, GUARD_BYTE, nbytes + GUARD);
						memset(got, GUARD_BYTE, nbytes + GUARD);
						ref->quantize_row(x, want, n);
						fused(h, got, n);
						const char *kname = kind < ROW_KINDS ? row_names[kind] : "raw-bits";
						if (!guard_intact(got, nbytes))
							fail(t, "%s from %s at %s, n=%lld, row '%s': wrote past the end of the row",
							     type_name(ty), type_name(st), qp_kernel_level_name(level), (long long)n, kname);
						if (memcmp(want, got, nbytes) != 0) {
							size_t at = 0;
							while (want[at] == got[at])
								at++;
							fail(t, "%s from %s at %s, n=%lld, row '%s': block %zu differs first (byte %zu: got 0x%02x, want 0x%02x)",
							     type_name(ty), type_name(st), qp_kernel_level_name(level), (long long)n, kname,
							     at / tsize, at % tsize, got[at], want[at]);
						}
					}
					free(x);
					free(h);
					free(want);
					free(got);
				}
			}
		}
	}
	/* a machine with no SIMD level has nothing to compare, but a build
	 * with AVX2 on a machine that runs it must have the fused q8_0 */
	if (!ran && qp_kernels_get_level(QP_TYPE_Q8_0, QP_LEVEL_AVX2))
		fail(t, "the avx2 level has no fused quantizer to test");
}

static void test_dequantize_is_bit_exact_with_reference_at_every_level(struct t *t)
{
	enum qp_type types[QP_TYPE_COUNT];
	const int ntypes = kernel_types(types);
	for (int ti = 0; ti < ntypes; ti++) {
		const enum qp_type ty = types[ti];
		const struct qp_kernel_ops *ref = qp_kernels_get_level(ty, QP_LEVEL_SCALAR);
		const int64_t blck = qp_type_traits(ty)->blck;
		int64_t lengths[16];
		const int nlen = lengths_for(ty, lengths);
		for (int level = 0; level < QP_LEVEL_COUNT; level++) {
			const struct qp_kernel_ops *ops = qp_kernels_get_level(ty, level);
			if (!ops || !ops->dequantize_row)
				continue;
			for (int li = 0; li < nlen; li++) {
				const int64_t n = lengths[li];
				const size_t nbytes = row_bytes(ty, n);
				float *x = xmalloc((size_t)n * sizeof(float));
				unsigned char *q = xmalloc(nbytes);
				float *want = guarded((size_t)n * sizeof(float));
				float *got = guarded((size_t)n * sizeof(float));
				/* every row kind through the reference quantizer, then
				 * raw random bytes: NaN and Inf scales, any nibble */
				for (int kind = 0; kind <= ROW_KINDS; kind++) {
					const char *kind_name = kind < ROW_KINDS ? row_names[kind] : "random-bytes";
					if (kind < ROW_KINDS) {
						fill_row(kind, x, n, (uint64_t)n + 1);
						ref->quantize_row(x, q, n);
					} else {
						struct rng r = {(uint64_t)n};
						for (size_t i = 0; i < nbytes; i++)
							q[i] = (unsigned char)rng_next(&r);
					}
					ref->dequantize_row(q, want, n);
					ops->dequantize_row(q, got, n);
					if (!guard_intact(got, (size_t)n * sizeof(float)))
						fail(t, "%s at %s, n=%lld, row '%s': wrote past the end of the row",
						     type_name(ty), qp_kernel_level_name(level), (long long)n, kind_name);
					int64_t at = 0;
					while (at < n && same_float(want[at], got[at]))
						at++;
					if (at < n) {
						fail(t, "%s at %s, n=%lld, row '%s': block %lld differs first (element %lld: got %a, want %a)",
						     type_name(ty), qp_kernel_level_name(level), (long long)n, kind_name,
						     (long long)(at / blck), (long long)(at % blck), (double)got[at], (double)want[at]);
					}
				}
				free(x);
				free(q);
				free(want);
				free(got);
			}
		}
	}
}

/* NMSE bounds of the dots: against the reference and against the exact
 * dot of the dequantized values, only the float rounding of the sums
 * differs. */
#define DOT_NMSE_VS_REF 1e-9
#define DOT_NMSE_VS_EXACT 1e-9
#define DOT_ROWS 8

/* The k-quant dots against q8_K sum d*sc*q*q8 and dmin*m*bsum per
 * super-block and subtract, where the dequantized values round
 * d*sc*q - dmin*m per element: on rows that cancel ('outlier') the two
 * differ by more than the float rounding of one sum. Their own bound
 * against the exact dot; against the reference they are held to the
 * common one. */
#define DOT_NMSE_VS_EXACT_Q8_K 1e-6

/* The q4_1/q5_1 dots use q8_1's stored s, d * sum(q) rounded to fp16, where
 * the dequantized values imply d * sum(q) itself; over a row the format's
 * dot differs from the exact one by sum(m * (s - d * sum(q))), which can
 * dwarf a dot that cancels. This returns that difference, so the exact dot
 * can be the format's. */
static double stored_sum_rounding(enum qp_type ty, const void *qx, const void *qy, int64_t n)
{
	const struct qp_block_q8_1 *y = qy;
	double diff = 0.0;
	for (int64_t b = 0; b < n / QP_QK8_1; b++) {
		int sum = 0;
		for (int j = 0; j < QP_QK8_1; j++)
			sum += y[b].qs[j];
		const uint16_t m = ty == QP_TYPE_Q4_1 ? ((const struct qp_block_q4_1 *)qx)[b].m
		                                      : ((const struct qp_block_q5_1 *)qx)[b].m;
		const double implied = (double)qp_fp16_to_fp32(y[b].d) * sum;
		diff += (double)qp_fp16_to_fp32(m) * ((double)qp_fp16_to_fp32(y[b].s) - implied);
	}
	return diff;
}

static void test_vec_dot_matches_reference_and_exact_dot_by_nmse(struct t *t)
{
	/* finite, non-overflowing kinds: a dot of huge rows is Inf at every level */
	static const enum row_kind kinds[] = {ROW_RANDOM, ROW_ZEROS, ROW_OUTLIER, ROW_TIES, ROW_NEAR_TIES};
	enum qp_type types[QP_TYPE_COUNT];
	const int ntypes = kernel_types(types);
	for (int ti = 0; ti < ntypes; ti++) {
		const enum qp_type ty = types[ti];
		const struct qp_kernel_ops *ref = qp_kernels_get_level(ty, QP_LEVEL_SCALAR);
		if (!ref->vec_dot)
			continue;
		const enum qp_type vt = ref->vec_dot_type;
		const struct qp_kernel_ops *vref = qp_kernels_get_level(vt, QP_LEVEL_SCALAR);
		double worst_ref = 0, worst_exact = 0;
		int64_t lengths[16];
		const int nlen = lengths_for(ty, lengths);
		for (int level = 0; level < QP_LEVEL_COUNT; level++) {
			const struct qp_kernel_ops *ops = qp_kernels_get_level(ty, level);
			if (!ops || !ops->vec_dot)
				continue;
			for (int li = 0; li < nlen; li++) {
				const int64_t n = lengths[li];
				if (n % qp_type_traits(vt)->blck != 0)
					continue;
				float *x = xmalloc((size_t)n * sizeof(float));
				float *y = xmalloc((size_t)n * sizeof(float));
				float *xd = xmalloc((size_t)n * sizeof(float));
				float *yd = xmalloc((size_t)n * sizeof(float));
				void *qx = xmalloc(row_bytes(ty, n));
				void *qy = xmalloc(row_bytes(vt, n));
				for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
					double err_ref = 0, sq_ref = 0, err_exact = 0, sq_exact = 0;
					for (int row = 0; row < DOT_ROWS; row++) {
						fill_row(kinds[k], x, n, (uint64_t)(n * 131 + row));
						fill_row(kinds[k], y, n, (uint64_t)(n * 137 + row + 1000));
						ref->quantize_row(x, qx, n);
						vref->quantize_row(y, qy, n);
						ref->dequantize_row(qx, xd, n);
						vref->dequantize_row(qy, yd, n);
						double exact = 0;
						for (int64_t i = 0; i < n; i++)
							exact += (double)xd[i] * (double)yd[i];
						if (vt == QP_TYPE_Q8_1)
							exact += stored_sum_rounding(ty, qx, qy, n);
						float want, got;
						ref->vec_dot(n, &want, qx, qy);
						ops->vec_dot(n, &got, qx, qy);
						err_ref += ((double)got - want) * ((double)got - want);
						sq_ref += (double)want * want;
						err_exact += ((double)got - exact) * ((double)got - exact);
						sq_exact += exact * exact;
					}
					const double nmse_ref = sq_ref > 0 ? err_ref / sq_ref : err_ref;
					const double nmse_exact = sq_exact > 0 ? err_exact / sq_exact : err_exact;
					if (!(nmse_ref <= DOT_NMSE_VS_REF))
						fail(t, "%s.%s dot at %s, n=%lld, rows '%s': nmse %.3g against the reference (bound %.0e)",
						     type_name(ty), type_name(vt), qp_kernel_level_name(level), (long long)n,
						     row_names[kinds[k]], nmse_ref, DOT_NMSE_VS_REF);
					worst_ref = nmse_ref > worst_ref ? nmse_ref : worst_ref;
					worst_exact = nmse_exact > worst_exact ? nmse_exact : worst_exact;
					const double bound_exact = vt == QP_TYPE_Q8_K ? DOT_NMSE_VS_EXACT_Q8_K : DOT_NMSE_VS_EXACT;
					if (!(nmse_exact <= bound_exact))
						fail(t, "%s.%s dot at %s, n=%lld, rows '%s': nmse %.3g against the exact dot (bound %.0e)",
						     type_name(ty), type_name(vt), qp_kernel_level_name(level), (long long)n,
						     row_names[kinds[k]], nmse_exact, bound_exact);
				}
				free(x);
				free(y);
				free(xd);
				free(yd);
				free(qx);
				free(qy);
			}
		}
		printf("  %s.%s: worst nmse %.2g against the reference, %.2g against the exact dot\n", type_name(ty),
		       type_name(vt), worst_ref, worst_exact);
	}
}

/* Round trip of random rows, per bit-width family. Per element, what one
 * quantization step allows plus the fp16 rounding of the stored scale and
 * minimum (2^-11 relative each, taken as 2^-10 for slack); per row, an NMSE
 * a little above the uniform-error theory (step^2 / 12) for these rows. */
struct family {
	enum qp_type type;
	double steps;  /* levels per max |x| (symmetric) or per range (offset) */
	bool offset;   /* has a minimum: error per range, else per max |x| */
	bool clamps;   /* symmetric with 2^(b-1) levels one side: one whole
	                * step at the clamped end instead of half a step */
	double nmse;
};

static const struct family families[] = {
	{QP_TYPE_F16, 0, false, false, 1e-7},
	{QP_TYPE_BF16, 0, false, false, 5e-6},
	{QP_TYPE_Q8_0, 127, false, false, 5e-5},
	{QP_TYPE_Q8_1, 127, false, false, 5e-5},
	{QP_TYPE_Q5_0, 16, false, true, 3e-3},
	{QP_TYPE_Q5_1, 31, true, false, 3e-3},
	{QP_TYPE_Q4_0, 8, false, true, 1e-2},
	{QP_TYPE_Q4_1, 15, true, false, 1e-2},
	/* per 256: one scale, fp32 */
	{QP_TYPE_Q8_K, 127, false, false, 3e-4},
	/* the k-quants' sub-block scales are themselves quantized, so no
	 * per-element bound follows from the bit width alone: NMSE only,
	 * a little above what 6..2 bits give on these rows */
	{QP_TYPE_Q6_K, 0, false, false, 5e-4},
	{QP_TYPE_Q5_K, 0, false, false, 1.5e-3},
	{QP_TYPE_Q4_K, 0, false, false, 5e-3},
	{QP_TYPE_Q3_K, 0, false, false, 2.5e-2},
	{QP_TYPE_Q2_K, 0, false, false, 8e-2},
	/* ternary on Gaussian rows: most weights round to zero */
	{QP_TYPE_TQ2_0, 0, false, false, 0.6},
	{QP_TYPE_TQ1_0, 0, false, false, 0.6},
};

static void test_round_trip_error_is_within_bit_width_bound(struct t *t)
{
	const int64_t n = 257 * 32 * 8; /* whole blocks of 32 and of 256 */
	float *x = xmalloc((size_t)n * sizeof(float));
	float *back = xmalloc((size_t)n * sizeof(float));
	void *q = xmalloc(row_bytes(QP_TYPE_F32, n));
	for (size_t fi = 0; fi < sizeof(families) / sizeof(families[0]); fi++) {
		const struct family *f = &families[fi];
		for (int level = 0; level < QP_LEVEL_COUNT; level++) {
			if (!level_runs(level))
				continue;
			const struct qp_kernel_ops *ref = qp_kernels_get_level(f->type, QP_LEVEL_SCALAR);
			const struct qp_kernel_ops *ops = qp_kernels_get_level(f->type, level);
			if (!ops)
				continue;
			void (*quantize)(const float *, void *, int64_t) = ops->quantize_row ? ops->quantize_row : ref->quantize_row;
			void (*dequantize)(const void *, float *, int64_t) = ops->dequantize_row ? ops->dequantize_row : ref->dequantize_row;
			struct qp_err_stats st = {0};
			for (int row = 0; row < 4; row++) {
				fill_row(ROW_RANDOM, x, n, (uint64_t)(7000 + row));
				quantize(x, q, n);
				dequantize(q, back, n);
				qp_vec_err_accum(&st, x, back, n);
				const int64_t g = qp_type_traits(f->type)->blck > 32 ? qp_type_traits(f->type)->blck : 32;
				for (int64_t b = 0; b < n / g && f->steps > 0; b++) {
					const float *xb = x + g * b;
					float lo = xb[0], hi = xb[0], amax = 0;
					for (int j = 0; j < g; j++) {
						lo = xb[j] < lo ? xb[j] : lo;
						hi = xb[j] > hi ? xb[j] : hi;
						amax = fabsf(xb[j]) > amax ? fabsf(xb[j]) : amax;
					}
					const double span = f->offset ? (double)hi - lo : amax;
					const double step = span / f->steps;
					const double bound = (f->clamps ? step : step / 2) +
					                     (span + (f->offset ? fabs(lo) : 0)) * 0x1p-10;
					for (int j = 0; j < g; j++) {
						const double e = fabs((double)back[g * b + j] - xb[j]);
						if (e > bound) {
							fail(t, "%s at %s, n=%lld, row 'random' %d: block %lld element %d off by %.3g (bound %.3g)",
							     type_name(f->type), qp_kernel_level_name(level), (long long)n, row,
							     (long long)b, j, e, bound);
							b = n;
							break;
						}
					}
				}
			}
			const double nmse = qp_err_stats_nmse(&st);
			if (level == QP_LEVEL_SCALAR)
				printf("  %s: round-trip nmse %.2g (bound %.1e)\n", type_name(f->type), nmse, f->nmse);
			if (!(nmse <= f->nmse))
				fail(t, "%s at %s, n=%lld, rows 'random': round-trip nmse %.3g (bound %.1e)",
				     type_name(f->type), qp_kernel_level_name(level), (long long)n, nmse, f->nmse);
		}
	}
	free(x);
	free(back);
	free(q);
}

/* Importance weights for a row: a few columns matter far more than the
 * rest, as an imatrix from real activations has it. */
static void fill_imatrix(float *w, int64_t n, uint64_t seed)
{
	struct rng r = {seed};
	for (int64_t i = 0; i < n; i++) {
		const double u = rng_unit(&r);
		w[i] = (float)(u * u * 4.0 + (rng_below(&r, 16) == 0 ? 100.0 : 0.0));
	}
	w[rng_below(&r, (int)n)] = 0.0f;
}

static double weighted_sq_err(const float *x, const float *back, const float *w, int64_t n)
{
	double e = 0;
	for (int64_t i = 0; i < n; i++)
		e += (double)w[i] * ((double)back[i] - x[i]) * ((double)back[i] - x[i]);
	return e;
}

/* The imatrix quantizers at every level against the scalar one, bit for
 * bit, on every row kind; and on random rows they must lose less of the
 * weighted columns than the unweighted reference does: the point of
 * llama-quantize --imatrix. */
static void test_quantize_imat_is_bit_exact_and_lowers_weighted_error(struct t *t)
{
	enum qp_type types[QP_TYPE_COUNT];
	const int ntypes = kernel_types(types);
	int covered = 0;
	for (int ti = 0; ti < ntypes; ti++) {
		const enum qp_type ty = types[ti];
		const struct qp_kernel_ops *ref = qp_kernels_get_level(ty, QP_LEVEL_SCALAR);
		if (!ref->quantize_row_imat)
			continue;
		covered++;
		const size_t tsize = qp_type_traits(ty)->type_size;
		int64_t lengths[16];
		const int nlen = lengths_for(ty, lengths);
		for (int li = 0; li < nlen; li++) {
			const int64_t n = lengths[li];
			const size_t nbytes = row_bytes(ty, n);
			float *x = xmalloc((size_t)n * sizeof(float));
			float *w = xmalloc((size_t)n * sizeof(float));
			float *back = xmalloc((size_t)n * sizeof(float));
			unsigned char *want = guarded(nbytes);
			unsigned char *got = guarded(nbytes);
			fill_imatrix(w, n, (uint64_t)n);
			for (int level = 0; level < QP_LEVEL_COUNT; level++) {
				const struct qp_kernel_ops *ops = qp_kernels_get_level(ty, level);
				if (!ops || !ops->quantize_row_imat)
					continue;
				for (int kind = 0; kind < ROW_KINDS; kind++) {
					fill_row(kind, x, n, (uint64_t)n + 7);
					memset(want, GUARD_BYTE, nbytes + GUARD);
					memset(got, GUARD_BYTE, nbytes + GUARD);
					ref->quantize_row_imat(x, want, n, w);
					ops->quantize_row_imat(x, got, n, w);
					if (!guard_intact(got, nbytes))
						fail(t, "%s imat at %s, n=%lld, row '%s': wrote past the end of the row",
						     type_name(ty), qp_kernel_level_name(level), (long long)n, row_names[kind]);
					if (memcmp(want, got, nbytes) != 0) {
						size_t at = 0;
						while (want[at] == got[at])
							at++;
						fail(t, "%s imat at %s, n=%lld, row '%s': block %zu differs first (byte %zu: got 0x%02x, want 0x%02x)",
						     type_name(ty), qp_kernel_level_name(level), (long long)n, row_names[kind],
						     at / tsize, at % tsize, got[at], want[at]);
					}
				}
			}
			/* weighted error over 4 random rows, imatrix path vs plain */
			double e_imat = 0, e_plain = 0;
			for (int row = 0; row < 4; row++) {
				fill_row(ROW_RANDOM, x, n, (uint64_t)(9000 + row + n));
				ref->quantize_row_imat(x, want, n, w);
				ref->dequantize_row(want, back, n);
				e_imat += weighted_sq_err(x, back, w, n);
				ref->quantize_row(x, want, n);
				ref->dequantize_row(want, back, n);
				e_plain += weighted_sq_err(x, back, w, n);
			}
			if (li == nlen - 1)
				printf("  %s: weighted error with imatrix %.3g of plain\n", type_name(ty), e_imat / e_plain);
			if (!(e_imat < e_plain))
				fail(t, "%s, n=%lld: weighted error %.4g with the imatrix, %.4g without", type_name(ty),
				     (long long)n, e_imat, e_plain);
			free(x);
			free(w);
			free(back);
			free(want);
			free(got);
		}
	}
	if (covered < 5)
		fail(t, "only %d types have an imatrix quantizer, want the five k-quants", covered);
}

/* Rows made only of -a, 0 and +a per super-block, a an fp16 value, come
 * back exactly through the ternary types, at every level. */
static void test_ternary_rows_round_trip_exactly(struct t *t)
{
	static const enum qp_type ternary[] = {QP_TYPE_TQ1_0, QP_TYPE_TQ2_0};
	const int64_t n = 17 * QP_QK_K;
	float *x = xmalloc((size_t)n * sizeof(float));
	float *back = xmalloc((size_t)n * sizeof(float));
	void *q = xmalloc(row_bytes(QP_TYPE_F32, n));
	struct rng r = {77};
	for (int64_t b = 0; b < n / QP_QK_K; b++) {
		const float a = qp_fp16_to_fp32(qp_fp32_to_fp16((float)exp(2.0 * rng_gauss(&r))));
		for (int j = 0; j < QP_QK_K; j++)
			x[b * QP_QK_K + j] = (float)(rng_below(&r, 3) - 1) * a;
		x[b * QP_QK_K + rng_below(&r, QP_QK_K)] = -a;
	}
	for (size_t k = 0; k < sizeof(ternary) / sizeof(ternary[0]); k++) {
		for (int level = 0; level < QP_LEVEL_COUNT; level++) {
			const struct qp_kernel_ops *ref = qp_kernels_get_level(ternary[k], QP_LEVEL_SCALAR);
			const struct qp_kernel_ops *ops = qp_kernels_get_level(ternary[k], level);
			if (!ops)
				continue;
			(ops->quantize_row ? ops->quantize_row : ref->quantize_row)(x, q, n);
			(ops->dequantize_row ? ops->dequantize_row : ref->dequantize_row)(q, back, n);
			for (int64_t i = 0; i < n; i++)
				if (back[i] != x[i]) {
					fail(t, "%s at %s: element %lld comes back as %g, want %g", type_name(ternary[k]),
					     qp_kernel_level_name(level), (long long)i, (double)back[i], (double)x[i]);
					break;
				}
		}
	}
	free(x);
	free(back);
	free(q);
}

/* The conversions every format is built on: all 65536 halves, a known
 * answer for each rounding edge (values from numpy's astype(float16) and
 * ggml_compute_fp32_to_bf16), and every level's F16/BF16 rows against the
 * scalar ones on a million fp32 bit patterns, NaNs included. */
static void test_fp16_and_bf16_conversions_match_ggml(struct t *t)
{
	for (uint32_t h = 0; h < 65536; h++) {
		const uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;
		const uint32_t got = qp_f32_bits(qp_fp16_to_fp32((uint16_t)h));
		uint32_t want;
		if (exp == 0x1f)
			want = (h & 0x8000u) << 16 | 0x7f800000u | (man ? 0x400000u : 0) | man << 13;
		else {
			const double mag = exp ? ldexp(1024 + man, (int)exp - 25) : ldexp(man, -24);
			want = qp_f32_bits((float)((h & 0x8000u) ? -mag : mag));
		}
		if (got != want)
			fail(t, "fp16 0x%04x: converts to 0x%08x, want 0x%08x", h, got, want);
		if (exp != 0x1f || man == 0) {
			const uint16_t back = qp_fp32_to_fp16(qp_fp16_to_fp32((uint16_t)h));
			if (back != h)
				fail(t, "fp16 0x%04x: round trip gives 0x%04x", h, back);
		}
	}

	static const struct {
		uint32_t f32;
		uint16_t f16, bf16;
	} known[] = {
		{0x33000000u, 0x0000u, 0x3300u}, /* 2^-25: half tie to even zero */
		{0x33000001u, 0x0001u, 0x3300u}, /* just above: smallest subnormal */
		{0x387ba882u, 0x03efu, 0x387cu}, /* 6e-5: subnormal half */
		{0x477fe000u, 0x7bffu, 0x4780u}, /* 65504, the largest half */
		{0x477fefffu, 0x7bffu, 0x4780u}, /* just below the overflow tie */
		{0x477ff000u, 0x7c00u, 0x4780u}, /* 65520 rounds to infinity */
		{0x45001000u, 0x6800u, 0x4500u}, /* 2049: tie to even, down */
		{0x45003000u, 0x6802u, 0x4500u}, /* 2051: tie to even, up */
		{0x3dcccccdu, 0x2e66u, 0x3dcdu}, /* 0.1 */
		{0x80000000u, 0x8000u, 0x8000u}, /* -0 */
		{0xf149f2cau, 0xfc00u, 0xf14au}, /* -1e30 overflows the half */
		{0x3f808000u, 0x3c04u, 0x3f80u}, /* bf16 tie, even below */
		{0x3f818000u, 0x3c0cu, 0x3f82u}, /* bf16 tie, even above */
		{0x7f7fffffu, 0x7c00u, 0x7f80u}, /* FLT_MAX: bf16 rounds to inf */
		{0x7f800000u, 0x7c00u, 0x7f80u}, /* inf */
		{0x7f800001u, 0x7e00u, 0x7fc0u}, /* signalling NaN */
		{0xffc00001u, 0xfe00u, 0xffc0u}, /* negative quiet NaN */
	};
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
		const float f = qp_f32_from_bits(known[i].f32);
		const uint16_t h = qp_fp32_to_fp16(f), b = qp_fp32_to_bf16(f);
		if (h != known[i].f16)
			fail(t, "fp32 0x%08x: fp16 0x%04x, want 0x%04x", known[i].f32, h, known[i].f16);
		if (b != known[i].bf16)
			fail(t, "fp32 0x%08x: bf16 0x%04x, want 0x%04x", known[i].f32, b, known[i].bf16);
	}

	const int64_t n = 1 << 20;
	float *x = xmalloc((size_t)n * sizeof(float));
	uint16_t *want = xmalloc((size_t)n * sizeof(uint16_t));
	uint16_t *got = xmalloc((size_t)n * sizeof(uint16_t));
	float *fwant = xmalloc(65536 * sizeof(float));
	float *fgot = xmalloc(65536 * sizeof(float));
	uint16_t *halves = xmalloc(65536 * sizeof(uint16_t));
	for (int64_t i = 0; i < n; i++)
		x[i] = qp_f32_from_bits((uint32_t)i * 4093u + 17u);
	for (uint32_t h = 0; h < 65536; h++)
		halves[h] = (uint16_t)h;
	static const enum qp_type half_types[] = {QP_TYPE_F16, QP_TYPE_BF16};
	for (size_t k = 0; k < 2; k++) {
		const enum qp_type ty = half_types[k];
		const struct qp_kernel_ops *ref = qp_kernels_get_level(ty, QP_LEVEL_SCALAR);
		ref->quantize_row(x, want, n);
		ref->dequantize_row(halves, fwant, 65536);
		for (int level = 1; level < QP_LEVEL_COUNT; level++) {
			const struct qp_kernel_ops *ops = qp_kernels_get_level(ty, level);
			if (ops && ops->quantize_row) {
				ops->quantize_row(x, got, n);
				for (int64_t i = 0; i < n; i++)
					if (got[i] != want[i]) {
						fail(t, "%s at %s: fp32 0x%08x gives 0x%04x, want 0x%04x", type_name(ty),
						     qp_kernel_level_name(level), qp_f32_bits(x[i]), got[i], want[i]);
						break;
					}
			}
			if (ops && ops->dequantize_row) {
				ops->dequantize_row(halves, fgot, 65536);
				for (uint32_t h = 0; h < 65536; h++)
					if (qp_f32_bits(fgot[h]) != qp_f32_bits(fwant[h])) {
						fail(t, "%s at %s: 0x%04x gives 0x%08x, want 0x%08x", type_name(ty),
						     qp_kernel_level_name(level), h, qp_f32_bits(fgot[h]), qp_f32_bits(fwant[h]));
						break;
					}
			}
		}
	}
	free(x);
	free(want);
	free(got);
	free(fwant);
	free(fgot);
	free(halves);
}

static void expect_init_fails(struct t *t, const char *force, const char *want)
{
	struct qp_err err = {0};
	const enum qp_kernel_level before = qp_kernels_level();
	const int rc = qp_kernels_init(force, &err);
	if (rc != QP_EINVAL)
		fail(t, "init(%s%s%s): returned %d, want %d", force ? "'" : "", force ? force : "NULL", force ? "'" : "",
		     rc, QP_EINVAL);
	else if (strcmp(err.msg, want) != 0)
		fail(t, "init(%s): message \"%s\", want \"%s\"", force ? force : "NULL", err.msg, want);
	if (qp_kernels_level() != before)
		fail(t, "init(%s): a failed init changed the level", force ? force : "NULL");
}

static void expect_level(struct t *t, const char *what, enum qp_kernel_level level, const char *reason)
{
	if (qp_kernels_level() != level)
		fail(t, "%s: level %s, want %s", what, qp_kernel_level_name(qp_kernels_level()), qp_kernel_level_name(level));
	if (strcmp(qp_kernels_reason(), reason) != 0)
		fail(t, "%s: reason \"%s\", want \"%s\"", what, qp_kernels_reason(), reason);
}

static void test_dispatch_forcing_scalar_selects_the_reference(struct t *t)
{
	struct qp_err err = {0};
	unsetenv("QPIPE_KERNELS");
	if (qp_kernels_init("scalar", &err) != 0) {
		fail(t, "init('scalar'): %s", err.msg);
		return;
	}
	expect_level(t, "init('scalar')", QP_LEVEL_SCALAR, "scalar: forced by --kernels");
	enum qp_type types[QP_TYPE_COUNT];
	const int ntypes = kernel_types(types);
	for (int i = 0; i < ntypes; i++) {
		const struct qp_kernel_ops *got = qp_kernels_get(types[i]);
		const struct qp_kernel_ops *want = qp_kernels_get_level(types[i], QP_LEVEL_SCALAR);
		if (!got || got->quantize_row != want->quantize_row || got->dequantize_row != want->dequantize_row ||
		    got->vec_dot != want->vec_dot || got->vec_dot_type != want->vec_dot_type)
			fail(t, "%s: selected ops are not the scalar reference's", type_name(types[i]));
	}
}

static void test_dispatch_unknown_or_unavailable_level_fails_with_message(struct t *t)
{
	struct qp_err err = {0};
	unsetenv("QPIPE_KERNELS");
	if (qp_kernels_init("scalar", &err) != 0)
		fail(t, "init('scalar'): %s", err.msg);
	expect_init_fails(t, "avx9", "--kernels: unknown kernel level 'avx9' (expected scalar, avx2, avx512 or auto)");
	expect_init_fails(t, "Scalar", "--kernels: unknown kernel level 'Scalar' (expected scalar, avx2, avx512 or auto)");
	if (!level_runs(QP_LEVEL_AVX512)) {
		/* why depends on the build and the cpu: what comes before it does not */
		const char *want = "--kernels: kernel level 'avx512' cannot run here: ";
		if (qp_kernels_init("avx512", &err) == 0 || strncmp(err.msg, want, strlen(want)) != 0)
			fail(t, "init('avx512') where it cannot run: \"%s\", want \"%s...\"", err.msg, want);
		else
			printf("  %s\n", err.msg);
	}
	expect_init_fails(t, "neon", "--kernels: kernel level 'neon' cannot run here: this build has no neon kernels");
	if (qp_kernel_level_from_name("avx9") != -1 || qp_kernel_level_from_name(NULL) != -1)
		fail(t, "level_from_name: an unknown name must give -1");
	if (qp_kernel_level_from_name("avx2") != QP_LEVEL_AVX2 || strcmp(qp_kernel_level_name(QP_LEVEL_AVX2), "avx2") != 0)
		fail(t, "level names: 'avx2' does not round-trip");
	if (!!qp_kernels_get_level(QP_TYPE_Q4_K, QP_LEVEL_AVX512) != level_runs(QP_LEVEL_AVX512) ||
	    !!qp_kernels_get_level(QP_TYPE_Q5_K, QP_LEVEL_AVX512) != level_runs(QP_LEVEL_AVX512) ||
	    !!qp_kernels_get_level(QP_TYPE_Q6_K, QP_LEVEL_AVX512) != level_runs(QP_LEVEL_AVX512) ||
	    qp_kernels_get_level(QP_TYPE_Q4_0, QP_LEVEL_AVX512))
		fail(t, "avx512: the q4_K, q5_K and q6_K quantizers only, and only where the level runs");
	if (qp_kernel_level_below(QP_LEVEL_AVX512) != QP_LEVEL_AVX2 || qp_kernel_level_below(QP_LEVEL_AVX2) != QP_LEVEL_SCALAR ||
	    qp_kernel_level_below(QP_LEVEL_SCALAR) != -1 || qp_kernel_level_below(QP_LEVEL_COUNT) != -1)
		fail(t, "level_below: avx512 > avx2 > scalar, -1 below scalar and out of range");
}

static void test_dispatch_QPIPE_KERNELS_env_is_honoured_below_force(struct t *t)
{
	struct qp_err err = {0};
	setenv("QPIPE_KERNELS", "scalar", 1);
	if (qp_kernels_init(NULL, &err) != 0)
		fail(t, "QPIPE_KERNELS=scalar: %s", err.msg);
	expect_level(t, "QPIPE_KERNELS=scalar", QP_LEVEL_SCALAR, "scalar: forced by QPIPE_KERNELS");

	setenv("QPIPE_KERNELS", "bogus", 1);
	expect_init_fails(t, NULL, "QPIPE_KERNELS: unknown kernel level 'bogus' (expected scalar, avx2, avx512 or auto)");

	/* a forced name wins over the environment, "auto" included */
	setenv("QPIPE_KERNELS", "bogus", 1);
	if (qp_kernels_init("scalar", &err) != 0)
		fail(t, "force 'scalar' with QPIPE_KERNELS=bogus: %s", err.msg);
	expect_level(t, "force 'scalar' with QPIPE_KERNELS=bogus", QP_LEVEL_SCALAR, "scalar: forced by --kernels");

	setenv("QPIPE_KERNELS", "scalar", 1);
	if (qp_kernels_init("auto", &err) != 0)
		fail(t, "force 'auto' with QPIPE_KERNELS=scalar: %s", err.msg);
	const enum qp_kernel_level best = level_runs(QP_LEVEL_AVX512) ? QP_LEVEL_AVX512
	                                  : level_runs(QP_LEVEL_AVX2)  ? QP_LEVEL_AVX2
	                                                               : QP_LEVEL_SCALAR;
	if (qp_kernels_level() != best)
		fail(t, "force 'auto' with QPIPE_KERNELS=scalar: level %s, want %s",
		     qp_kernel_level_name(qp_kernels_level()), qp_kernel_level_name(best));

	if (level_runs(QP_LEVEL_AVX2)) {
		setenv("QPIPE_KERNELS", "avx2", 1);
		if (qp_kernels_init(NULL, &err) != 0)
			fail(t, "QPIPE_KERNELS=avx2: %s", err.msg);
		expect_level(t, "QPIPE_KERNELS=avx2", QP_LEVEL_AVX2, "avx2: forced by QPIPE_KERNELS");
	}
	if (level_runs(QP_LEVEL_AVX512)) {
		setenv("QPIPE_KERNELS", "avx512", 1);
		if (qp_kernels_init(NULL, &err) != 0)
			fail(t, "QPIPE_KERNELS=avx512: %s", err.msg);
		expect_level(t, "QPIPE_KERNELS=avx512", QP_LEVEL_AVX512, "avx512: forced by QPIPE_KERNELS");
	}
	unsetenv("QPIPE_KERNELS");
}

static void test_dispatch_auto_picks_best_level_and_says_why(struct t *t)
{
	struct qp_err err = {0};
	unsetenv("QPIPE_KERNELS");
	if (qp_kernels_init(NULL, &err) != 0) {
		fail(t, "init(NULL): %s", err.msg);
		return;
	}
	if (level_runs(QP_LEVEL_AVX512))
		expect_level(t, "init(NULL)", QP_LEVEL_AVX512, "avx512: cpu has avx512 f+bw+dq+vl+vnni and os saves zmm");
	else if (level_runs(QP_LEVEL_AVX2))
		expect_level(t, "init(NULL)", QP_LEVEL_AVX2, "avx2: cpu has avx2+fma+f16c and os saves ymm");
	else if (qp_kernels_level() != QP_LEVEL_SCALAR || strncmp(qp_kernels_reason(), "scalar: ", 8) != 0)
		fail(t, "init(NULL) without avx2: level %s, reason \"%s\"", qp_kernel_level_name(qp_kernels_level()),
		     qp_kernels_reason());
	printf("  selected: %s\n", qp_kernels_reason());
}

static void test_dispatch_missing_ops_fall_back_to_the_level_below(struct t *t)
{
	struct qp_err err = {0};
	enum qp_type types[QP_TYPE_COUNT];
	const int ntypes = kernel_types(types);
	int borrowed = 0;
	for (int level = 0; level < QP_LEVEL_COUNT; level++) {
		if (!level_runs(level))
			continue;
		if (qp_kernels_init(qp_kernel_level_name(level), &err) != 0) {
			fail(t, "init('%s'): %s", qp_kernel_level_name(level), err.msg);
			continue;
		}
		for (int i = 0; i < ntypes; i++) {
			const enum qp_type ty = types[i];
			const struct qp_kernel_ops *ref = qp_kernels_get_level(ty, QP_LEVEL_SCALAR);
			const struct qp_kernel_ops *own = qp_kernels_get_level(ty, level);
			const struct qp_kernel_ops *sel = qp_kernels_get(ty);
			if (!sel) {
				fail(t, "%s at %s: no ops selected", type_name(ty), qp_kernel_level_name(level));
				continue;
			}
			__typeof__(((struct qp_kernel_ops *)0)->quantize_row) q;
			__typeof__(((struct qp_kernel_ops *)0)->dequantize_row) dq;
			__typeof__(((struct qp_kernel_ops *)0)->vec_dot) dot;
			__typeof__(((struct qp_kernel_ops *)0)->quantize_row_imat) qi;
			__typeof__(((struct qp_kernel_ops *)0)->quantize_row_f16) q16;
			int at, dot_at;
			FIRST_BELOW(ty, level, quantize_row, q, at);
			borrowed += at != level && at != QP_LEVEL_SCALAR;
			FIRST_BELOW(ty, level, dequantize_row, dq, at);
			FIRST_BELOW(ty, level, vec_dot, dot, dot_at);
			FIRST_BELOW(ty, level, quantize_row_imat, qi, at);
			FIRST_BELOW(ty, level, quantize_row_f16, q16, at);
			/* a tile only beside its own level's vec_dot */
			const struct qp_kernel_ops *dot_level = dot_at >= 0 ? qp_kernels_get_level(ty, dot_at) : NULL;
			if (sel->quantize_row != q || sel->dequantize_row != dq || sel->vec_dot != dot ||
			    sel->quantize_row_imat != qi || sel->quantize_row_f16 != q16 ||
			    sel->vec_dot_tile != (dot_level ? dot_level->vec_dot_tile : NULL) ||
			    sel->vec_dot_type != ref->vec_dot_type)
				fail(t, "%s at %s: an operation is not the first one at or below the level",
				     type_name(ty), qp_kernel_level_name(level));
			if (own && own->vec_dot_type != ref->vec_dot_type)
				fail(t, "%s at %s: pairs with %s, the reference with %s", type_name(ty),
				     qp_kernel_level_name(level), type_name(own->vec_dot_type), type_name(ref->vec_dot_type));
		}
	}
	/* avx512 takes most of its operations from avx2: q4_0's quantizer
	 * at least, where it runs */
	if (level_runs(QP_LEVEL_AVX512) && borrowed == 0)
		fail(t, "avx512 runs, and no type's quantizer came from the level below");
	if (qp_kernels_get(QP_TYPE_IQ2_XXS) || qp_kernels_get((enum qp_type)QP_TYPE_COUNT) || qp_kernels_get_cuda(QP_TYPE_Q4_0))
		fail(t, "a type without kernels (iq2_xxs, out of range, cuda) has ops");
}

static void test_to_f32_dequantizes_through_the_table(struct t *t)
{
	struct qp_err err = {0};
	if (qp_kernels_init(NULL, &err) != 0)
		fail(t, "init: %s", err.msg);
	const int64_t n = 64;
	float x[64], back[64];
	struct qp_block_q8_0 q[2];
	for (int i = 0; i < n; i++)
		x[i] = (float)(i - 32) * 0.25f;
	const struct qp_kernel_ops *ops = qp_kernels_get(QP_TYPE_Q8_0);
	float want[64];
	ops->quantize_row(x, q, n);
	ops->dequantize_row(q, want, n);
	if (qp_kernels_to_f32(QP_TYPE_Q8_0, q, back, n) != 0)
		fail(t, "q8_0: to_f32 failed");
	else if (memcmp(back, want, sizeof(want)) != 0)
		fail(t, "q8_0: to_f32 differs from the selected dequantize_row");
	/* half a step of 8/127, plus the fp16 rounding of the scale */
	for (int i = 0; i < n; i++)
		if (fabsf(back[i] - x[i]) > 8.0f / 127 / 2 + 8.0f / 1024) {
			fail(t, "q8_0: element %d comes back as %g, want %g", i, (double)back[i], (double)x[i]);
			break;
		}
	if (qp_kernels_to_f32(QP_TYPE_Q8_0, q, back, 33) != -1)
		fail(t, "q8_0: to_f32 of 33 elements (not whole blocks) must fail");
	if (qp_kernels_to_f32(QP_TYPE_IQ2_XXS, q, back, 256) != -1)
		fail(t, "iq2_xxs: to_f32 must fail, qpipe has no kernels for it");
}

static void test_vec_err_accum_totals_in_double_and_keeps_nan(struct t *t)
{
	const float ref[4] = {1.0f, -2.0f, 3.0f, 0.0f};
	const float x[4] = {1.5f, -2.0f, 2.0f, 0.25f};
	struct qp_err_stats st = {0};
	qp_vec_err_accum(&st, ref, x, 4);
	qp_vec_err_accum(&st, ref, x, 2);
	/* errors 0.5, 0, -1, 0.25 then 0.5, 0 */
	if (st.n != 6 || st.sum_sq_err != 1.5625 || st.sum_sq_ref != 19.0 || st.max_abs != 1.0)
		fail(t, "totals: n=%lld sq_err=%g sq_ref=%g max=%g, want 6 1.5625 19 1", (long long)st.n, st.sum_sq_err,
		     st.sum_sq_ref, st.max_abs);
	if (qp_err_stats_nmse(&st) != 1.5625 / 19.0)
		fail(t, "nmse %g, want %g", qp_err_stats_nmse(&st), 1.5625 / 19.0);

	/* 1 + 2^-30 is not a float: the squares must be summed in double */
	struct qp_err_stats fine = {0};
	const float one[2] = {1.0f, 1.0f};
	const float off[2] = {1.0f + 0x1p-15f, 1.0f};
	qp_vec_err_accum(&fine, one, off, 2);
	if (fine.sum_sq_err != 0x1p-30)
		fail(t, "squared error %a, want 0x1p-30", fine.sum_sq_err);

	const float nan_x[3] = {NAN, 1.0f, 5.0f};
	const float r3[3] = {0.0f, 0.0f, 0.0f};
	struct qp_err_stats bad = {0};
	qp_vec_err_accum(&bad, r3, nan_x, 3);
	if (!isnan(bad.max_abs) || !isnan(bad.sum_sq_err))
		fail(t, "a NaN difference was dropped: max_abs=%g sum_sq_err=%g", bad.max_abs, bad.sum_sq_err);
	struct qp_err_stats zero = {0};
	if (qp_err_stats_nmse(&zero) != 0.0)
		fail(t, "nmse of nothing must be 0");
}

/* vec_dot_tile must give each (row, token) pair its level's vec_dot bit
 * for bit (and so the reference's within the NMSE the test above holds
 * vec_dot to): a product must not depend on how its rows are grouped into
 * tiles, which is what splitting them over threads changes. Every tile
 * shape up to 9 rows x 7 tokens (the edges of 4 x 3 and 3 x 3 tiles),
 * and 1 and 9 rows against 150 tokens (tiles that keep the accumulators
 * of 64 tokens at a time: two full passes and a ragged one), every length
 * of the type, rows and tokens at strides with padding. */
static void test_vec_dot_tile_is_bit_exact_with_vec_dot(struct t *t)
{
	static const enum row_kind kinds[] = {ROW_RANDOM, ROW_ZEROS, ROW_OUTLIER};
	enum { MAX_R = 9, MAX_C = 7, LDS = 11, WIDE_C = 150 };
	enum qp_type types[QP_TYPE_COUNT];
	const int ntypes = kernel_types(types);
	int tiles = 0;
	for (int ti = 0; ti < ntypes; ti++) {
		const enum qp_type ty = types[ti];
		for (int level = 0; level < QP_LEVEL_COUNT; level++) {
			const struct qp_kernel_ops *ops = qp_kernels_get_level(ty, level);
			if (!ops || !ops->vec_dot_tile)
				continue;
			if (!ops->vec_dot) {
				fail(t, "%s at %s: a tile without the level's own vec_dot", type_name(ty),
				     qp_kernel_level_name(level));
				continue;
			}
			/* quantize is bit-exact at every level; a level may leave it to the reference */
			const struct qp_kernel_ops *qref = qp_kernels_get_level(ty, QP_LEVEL_SCALAR);
			const struct qp_kernel_ops *vops = qp_kernels_get_level(ops->vec_dot_type, QP_LEVEL_SCALAR);
			tiles++;
			int64_t lengths[16];
			const int nlen = lengths_for(ty, lengths);
			for (int li = 0; li < nlen; li++) {
				const int64_t n = lengths[li];
				if (n % qp_type_traits(ops->vec_dot_type)->blck != 0)
					continue;
				/* padding between rows, as a view into a wider matrix has (whole floats: every
				 * type's rows keep the alignment of their elements) */
				const size_t bx = row_bytes(ty, n) + 8, by = row_bytes(ops->vec_dot_type, n) + 12;
				uint8_t *qx = xmalloc(bx * MAX_R), *qy = xmalloc(by * WIDE_C);
				float *f = xmalloc((size_t)n * sizeof(float));
				float s[MAX_C * LDS];
				float *wide = xmalloc((size_t)WIDE_C * LDS * sizeof(float));
				for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
					for (int r = 0; r < MAX_R; r++) {
						fill_row(kinds[k], f, n, (uint64_t)(n * 31 + r));
						qref->quantize_row(f, qx + r * bx, n);
					}
					for (int c = 0; c < WIDE_C; c++) {
						fill_row(kinds[k], f, n, (uint64_t)(n * 37 + c + 500));
						vops->quantize_row(f, qy + c * by, n);
					}
					for (int nr = 1; nr <= MAX_R; nr++)
						for (int nc = 1; nc <= MAX_C; nc++) {
							for (int i = 0; i < MAX_C * LDS; i++)
								s[i] = -12345.0f;
							ops->vec_dot_tile(n, s, LDS, qx, bx, nr, qy, by, nc);
							for (int c = 0; c < MAX_C; c++)
								for (int r = 0; r < LDS; r++) {
									float want = -12345.0f;
									if (r < nr && c < nc)
										ops->vec_dot(n, &want, qx + r * bx, qy + c * by);
									if (memcmp(&want, &s[c * LDS + r], sizeof(float)) != 0)
										fail(t, "%s tile at %s, n=%lld, rows '%s', %d x %d: "
										     "s[%d][%d] = %.9g, vec_dot %.9g", type_name(ty),
										     qp_kernel_level_name(level), (long long)n, row_names[kinds[k]],
										     nr, nc, c, r, s[c * LDS + r], want);
								}
						}
					for (int nr = 1; nr <= MAX_R; nr += MAX_R - 1) {
						for (int i = 0; i < WIDE_C * LDS; i++)
							wide[i] = -12345.0f;
						ops->vec_dot_tile(n, wide, LDS, qx, bx, nr, qy, by, WIDE_C);
						for (int c = 0; c < WIDE_C; c++)
							for (int r = 0; r < LDS; r++) {
								float want = -12345.0f;
								if (r < nr)
									ops->vec_dot(n, &want, qx + r * bx, qy + c * by);
								if (memcmp(&want, &wide[c * LDS + r], sizeof(float)) != 0)
									fail(t, "%s tile at %s, n=%lld, rows '%s', %d x %d: s[%d][%d] = %.9g, "
									     "vec_dot %.9g", type_name(ty), qp_kernel_level_name(level), (long long)n,
									     row_names[kinds[k]], nr, (int)WIDE_C, c, r, wide[c * LDS + r], want);
							}
					}
				}
				free(qx);
				free(qy);
				free(f);
				free(wide);
			}
		}
	}
	printf("  %d tile kernels checked\n", tiles);
	if (qp_kernel_level_supported(QP_LEVEL_AVX2) && tiles < 9)
		fail(t, "avx2 runs here but only %d tile kernels were found (f32, f16, q8_0, q4_0, q2_K ... q6_K have one)",
		     tiles);
}

/* An integer dot product has one value however its lanes are formed:
 * where a level's q8_0 vec_dot is its own (AVX-512's, VNNI), it gives the
 * level below's bits on every row our quantizer writes, so a forward pass
 * reads the same at either level. A -128 (never written by a quantizer,
 * possible in a file) against a negative value is where AVX2's sign
 * trick wraps (an activation's in vec_dot, a weight's in the tile) and
 * VNNI's offset does not: there the vec_dot and the tile must give the
 * exact product, as the reference does. */
static void test_q8_0_dots_agree_across_levels(struct t *t)
{
	static const enum row_kind kinds[] = {ROW_RANDOM, ROW_ZEROS, ROW_OUTLIER};
	int compared = 0;
	for (int level = 0; level < QP_LEVEL_COUNT; level++) {
		const struct qp_kernel_ops *ops = qp_kernels_get_level(QP_TYPE_Q8_0, level);
		if (!ops || !ops->vec_dot)
			continue;
		/* the vec_dot the level below runs, unless it is the reference's */
		__typeof__(((struct qp_kernel_ops *)0)->vec_dot) low_dot;
		int l;
		FIRST_BELOW(QP_TYPE_Q8_0, qp_kernel_level_below(level), vec_dot, low_dot, l);
		if (!low_dot || l <= QP_LEVEL_SCALAR)
			continue;
		const struct qp_kernel_ops *ref = qp_kernels_get_level(QP_TYPE_Q8_0, QP_LEVEL_SCALAR);
		enum { N = 1536 };
		static float f[N];
		static struct qp_block_q8_0 x[N / 32], y[N / 32];
		for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++)
			for (int seed = 0; seed < 20; seed++) {
				fill_row(kinds[k], f, N, (uint64_t)seed);
				ref->quantize_row(f, x, N);
				fill_row(ROW_RANDOM, f, N, (uint64_t)seed + 1000);
				ref->quantize_row(f, y, N);
				float a, b;
				ops->vec_dot(N, &a, x, y);
				low_dot(N, &b, x, y);
				compared++;
				if (memcmp(&a, &b, sizeof(a)) != 0)
					fail(t, "q8_0 vec_dot at %s %.9g, at %s %.9g (rows '%s', seed %d)",
					     qp_kernel_level_name(level), a, qp_kernel_level_name(l), b, row_names[kinds[k]], seed);
			}
		/* one block, -128 against -1 .. -32 either way: exactly 128 * 528 */
		for (int side = 0; side < 2; side++) {
			memset(x, 0, sizeof(x[0]));
			memset(y, 0, sizeof(y[0]));
			x[0].d = y[0].d = 0x3c00; /* 1.0 in f16 */
			for (int j = 0; j < 32; j++) {
				x[0].qs[j] = side ? -128 : (int8_t)(-1 - j);
				y[0].qs[j] = side ? (int8_t)(-1 - j) : -128;
			}
			float a, want, tile = 0.0f;
			ops->vec_dot(32, &a, x, y);
			ref->vec_dot(32, &want, x, y);
			if (ops->vec_dot_tile)
				ops->vec_dot_tile(32, &tile, 1, x, sizeof(x[0]), 1, y, sizeof(y[0]), 1);
			if (a != 67584.0f || want != 67584.0f || (ops->vec_dot_tile && tile != 67584.0f))
				fail(t, "q8_0 at %s, -128 as the %s: vec_dot %.9g, tile %.9g, reference %.9g, exact 67584",
				     qp_kernel_level_name(level), side ? "weight" : "activation", a, tile, want);
		}
	}
	printf("  %d rows compared\n", compared);
	if (qp_kernel_level_supported(QP_LEVEL_AVX512) && compared == 0)
		fail(t, "avx512 runs here but no level has a q8_0 vec_dot of its own above avx2");
}

static const struct {
	const char *name;
	void (*fn)(struct t *);
} tests[] = {
	{"kernels__quantize_is_bit_exact_with_reference_at_every_level",
	 test_quantize_is_bit_exact_with_reference_at_every_level},
	{"kernels__quantize_rows_at_once_equal_row_by_row", test_quantize_rows_at_once_equal_row_by_row},
	{"kernels__fused_quantize_from_f16_and_bf16_is_bit_exact", test_fused_quantize_from_f16_and_bf16_is_bit_exact},
	{"kernels__dequantize_is_bit_exact_with_reference_at_every_level",
	 test_dequantize_is_bit_exact_with_reference_at_every_level},
	{"kernels__vec_dot_matches_reference_and_exact_dot_by_nmse",
	 test_vec_dot_matches_reference_and_exact_dot_by_nmse},
	{"kernels__vec_dot_tile_is_bit_exact_with_vec_dot", test_vec_dot_tile_is_bit_exact_with_vec_dot},
	{"kernels__q8_0_dots_agree_across_levels", test_q8_0_dots_agree_across_levels},
	{"kernels__round_trip_error_is_within_bit_width_bound", test_round_trip_error_is_within_bit_width_bound},
	{"kernels__quantize_imat_is_bit_exact_and_lowers_weighted_error",
	 test_quantize_imat_is_bit_exact_and_lowers_weighted_error},
	{"kernels__ternary_rows_round_trip_exactly", test_ternary_rows_round_trip_exactly},
	{"kernels__fp16_and_bf16_conversions_match_ggml", test_fp16_and_bf16_conversions_match_ggml},
	{"kernels__to_f32_dequantizes_through_the_table", test_to_f32_dequantizes_through_the_table},
	{"dispatch__forcing_scalar_selects_the_reference", test_dispatch_forcing_scalar_selects_the_reference},
	{"dispatch__unknown_or_unavailable_level_fails_with_message",
	 test_dispatch_unknown_or_unavailable_level_fails_with_message},
	{"dispatch__QPIPE_KERNELS_env_is_honoured_below_force", test_dispatch_QPIPE_KERNELS_env_is_honoured_below_force},
	{"dispatch__auto_picks_best_level_and_says_why", test_dispatch_auto_picks_best_level_and_says_why},
	{"dispatch__missing_ops_fall_back_to_the_level_below", test_dispatch_missing_ops_fall_back_to_the_level_below},
	{"vec__err_accum_totals_in_double_and_keeps_nan", test_vec_err_accum_totals_in_double_and_keeps_nan},
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
		fprintf(stderr, "test_kernels: no test named '%s' (see --list)\n", argv[1]);
		return 2;
	}
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
