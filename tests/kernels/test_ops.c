/* kernels/ops: each operation against a plain double-precision reference
 * written from its definition, and the matrix product against a double dot
 * of the dequantized weights for every type with a dot product, at 1, 2
 * and 3 threads (results must be bit-identical across thread counts). */
#include <math.h>
#include <string.h>

#include "kernels/blocks.h"
#include "kernels/cpu/ref/ref.h"
#include "kernels/kernels.h"
#include "kernels/ops.h"
#include "../formats/tf.h"
#include "levels.h"

static struct qp_err err;

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static float rnd(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	z ^= z >> 31;
	return (float)((double)(z >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static void fill(float *x, int64_t n, float scale)
{
	for (int64_t i = 0; i < n; i++)
		x[i] = rnd() * scale;
}

#define CHECK_NEAR(a, b, tol)                                                                 \
	do {                                                                                      \
		double tf_x_ = (a), tf_y_ = (b);                                                      \
		if (!(fabs(tf_x_ - tf_y_) <= (tol) * (1.0 + fabs(tf_y_)))) {                          \
			tf_fail(__FILE__, __LINE__, "%s = %.9g, expected %.9g", #a, tf_x_, tf_y_);        \
			return;                                                                           \
		}                                                                                     \
	} while (0)

static void ops__rmsnorm_matches_double_reference(void)
{
	for (int64_t n = 1; n <= 515; n += 57) {
		float x[600], w[600], y[600];
		fill(x, n, 3.0f);
		fill(w, n, 1.0f);
		double ss = 0;
		for (int64_t i = 0; i < n; i++)
			ss += (double)x[i] * x[i];
		double s = 1.0 / sqrt(ss / (double)n + 1e-5);
		qp_ops_rmsnorm(y, x, w, n, 1e-5f);
		for (int64_t i = 0; i < n; i++)
			CHECK_NEAR(y[i], x[i] * s * w[i], 1e-6);
		qp_ops_rmsnorm(x, x, w, n, 1e-5f); /* in place */
		CHECK(memcmp(x, y, (size_t)n * sizeof(float)) == 0);
	}
}

/* The normal layout's angles, applied to every head: pairs (2i, 2i + 1),
 * or (i, i + n_rot / 2) in the neox layout; dimensions past n_rot kept. */
static void ops__rope_rotates_pairs_by_position_angle_in_both_layouts(void)
{
	const int64_t heads = 3, hd = 16;
	for (int neox = 0; neox <= 1; neox++)
		for (int64_t n_rot = 8; n_rot <= hd; n_rot += 8)
			for (int64_t pos = 0; pos < 300; pos += 37) {
				float x[48], orig[48], c[8], s[8];
				fill(x, heads * hd, 1.0f);
				memcpy(orig, x, sizeof(x));
				qp_ops_rope_angles_norm(c, s, n_rot, pos, 10000.0f);
				qp_ops_rope_rotate(x, heads, hd, n_rot, neox, c, s);
				const int64_t half = n_rot / 2;
				for (int64_t h = 0; h < heads; h++) {
					for (int64_t i = 0; i < half; i++) {
						const int64_t i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;
						const float *o = orig + h * hd;
						double a = (double)pos * pow(10000.0, -(double)(2 * i) / (double)n_rot);
						CHECK_NEAR(x[h * hd + i0], o[i0] * cos(a) - o[i1] * sin(a), 2e-4);
						CHECK_NEAR(x[h * hd + i1], o[i0] * sin(a) + o[i1] * cos(a), 2e-4);
					}
					for (int64_t i = n_rot; i < hd; i++)
						CHECK(x[h * hd + i] == orig[h * hd + i]);
				}
			}
}

static void ops__softmax_sums_to_one_and_matches_double(void)
{
	float x[200];
	double e[200], sum = 0;
	fill(x, 200, 30.0f);
	float mx = -INFINITY;
	for (int i = 0; i < 200; i++)
		mx = fmaxf(mx, x[i]);
	for (int i = 0; i < 200; i++)
		sum += e[i] = exp((double)x[i] - mx);
	qp_ops_softmax(x, 200);
	double s = 0;
	for (int i = 0; i < 200; i++) {
		CHECK_NEAR(x[i], e[i] / sum, 1e-6);
		s += x[i];
	}
	CHECK_NEAR(s, 1.0, 1e-6);
	float one = -1e30f;
	qp_ops_softmax(&one, 1);
	CHECK(one == 1.0f);
}

static void ops__silu_mul_and_axpy_match_formula(void)
{
	float g[100], u[100], g0[100], y[100], y0[100];
	fill(g, 100, 8.0f);
	fill(u, 100, 2.0f);
	fill(y, 100, 1.0f);
	memcpy(g0, g, sizeof(g));
	memcpy(y0, y, sizeof(y));
	qp_ops_silu_mul(g, u, 100);
	qp_ops_axpy(y, 0.5f, u, 100);
	for (int i = 0; i < 100; i++) {
		CHECK_NEAR(g[i], g0[i] / (1.0 + exp(-(double)g0[i])) * u[i], 1e-6);
		CHECK_NEAR(y[i], y0[i] + 0.5 * u[i], 1e-7);
	}
}

/* Causal attention of a block of queries against a cache laid out as the
 * model keeps it (keys transposed in rows of 80 positions, values as rows
 * of a wider matrix), against softmax(q k^T * scale) v in double. */
static void ops__attn_matches_double_reference(void)
{
	enum { HD = 64, CTX = 80, KV_STRIDE = 3 * HD, NQ = 7, Q_STRIDE = 2 * HD };
	static float kt[HD * CTX], v[CTX * KV_STRIDE], q[NQ * Q_STRIDE], out[NQ * Q_STRIDE], sc[NQ * CTX];
	static float k[CTX * HD];
	const int64_t n_kv0 = 71; /* query i sees positions 0 .. 70 + i */
	fill(k, CTX * HD, 1.0f);
	fill(v, CTX * KV_STRIDE, 1.0f);
	fill(q, NQ * Q_STRIDE, 1.0f);
	qp_ops_transpose(kt, CTX, k, CTX, HD);
	const float scale = 1.0f / 8.0f;
	qp_ops_attn(out, Q_STRIDE, q, Q_STRIDE, NQ, kt, CTX, v, KV_STRIDE, n_kv0, HD, scale, sc);
	for (int64_t i = 0; i < NQ; i++) {
		const int64_t len = n_kv0 + i;
		double p[CTX], mx = -1e300, sum = 0;
		for (int64_t j = 0; j < len; j++) {
			double d = 0;
			for (int64_t e = 0; e < HD; e++)
				d += (double)q[i * Q_STRIDE + e] * k[j * HD + e];
			p[j] = d * scale;
			mx = fmax(mx, p[j]);
		}
		for (int64_t j = 0; j < len; j++)
			sum += p[j] = exp(p[j] - mx);
		for (int64_t e = 0; e < HD; e++) {
			double o = 0;
			for (int64_t j = 0; j < len; j++)
				o += p[j] / sum * v[j * KV_STRIDE + e];
			CHECK_NEAR(out[i * Q_STRIDE + e], o, 1e-5);
		}
	}
}

static void ops__nll_is_minus_log_softmax_in_double(void)
{
	float l[1000];
	fill(l, 1000, 20.0f);
	double mx = -1e300, s = 0;
	for (int i = 0; i < 1000; i++)
		mx = fmax(mx, l[i]);
	for (int i = 0; i < 1000; i++)
		s += exp(l[i] - mx);
	for (int t = 0; t < 1000; t += 111)
		CHECK_NEAR(qp_ops_nll(l, 1000, t), log(s) - (l[t] - mx), 1e-7);
}

/* ntok 5 goes through vec_dot_tile, 21 through the blocked products
 * (f16, q4_0) where the level has them; each pair must be the
 * type's vec_dot of the weight row and the quantized token, bit for bit,
 * at any thread count */
static void matmul_check(int64_t ntok)
{
	const int64_t rows = 37, k = 256;
	float *wf = malloc(rows * k * sizeof(float)), *x = malloc(ntok * k * sizeof(float));
	float *wd = malloc(rows * k * sizeof(float));
	float *y[3];
	fill(wf, rows * k, 1.0f);
	fill(x, ntok * k, 1.0f);
	int tested = 0;
	for (int ti = 0; ti < QP_TYPE_COUNT; ti++) {
		const struct qp_kernel_ops *ops = qp_kernels_get((enum qp_type)ti);
		if (!ops || !ops->vec_dot)
			continue;
		size_t rs;
		CHECK(qp_type_row_size(ti, k, &rs) == 0);
		void *w = malloc(rs * rows);
		for (int64_t r = 0; r < rows; r++)
			ops->quantize_row(wf + r * k, (char *)w + r * rs, k);
		CHECK(qp_kernels_to_f32((enum qp_type)ti, w, wd, rows * k) == 0);
		for (int th = 1; th <= 3; th++) {
			y[th - 1] = malloc(ntok * (rows + 3) * sizeof(float));
			CHECK_OK(qp_ops_matmul(y[th - 1], rows + 3, (enum qp_type)ti, w, rows, k, x, ntok, th, &err));
		}
		const struct qp_kernel_ops *vops = qp_kernels_get(ops->vec_dot_type);
		size_t xs;
		CHECK(vops && qp_type_row_size(ops->vec_dot_type, k, &xs) == 0);
		void *xq = malloc(xs);
		double se = 0, sr = 0;
		for (int64_t t = 0; t < ntok; t++) {
			vops->quantize_row(x + t * k, xq, k);
			for (int64_t r = 0; r < rows; r++) {
				float want;
				ops->vec_dot(k, &want, (const char *)w + r * rs, xq);
				if (memcmp(&want, &y[0][t * (rows + 3) + r], sizeof(float)) != 0) {
					tf_fail(__FILE__, __LINE__, "type %s, %lld tokens: token %lld row %lld is %.9g, vec_dot %.9g",
					        qp_type_traits(ti)->name, (long long)ntok, (long long)t, (long long)r,
					        y[0][t * (rows + 3) + r], want);
					return;
				}
				double d = 0;
				for (int64_t i = 0; i < k; i++)
					d += (double)wd[r * k + i] * x[t * k + i];
				double e = y[0][t * (rows + 3) + r] - d;
				se += e * e;
				sr += d * d;
				CHECK(y[1][t * (rows + 3) + r] == y[0][t * (rows + 3) + r]);
				CHECK(y[2][t * (rows + 3) + r] == y[0][t * (rows + 3) + r]);
			}
		}
		free(xq);
		/* activations quantized to q8: about 1e-4 NMSE; f16 far less */
		if (!(se / sr < 1e-3)) {
			tf_fail(__FILE__, __LINE__, "type %s: nmse %g", qp_type_traits(ti)->name, se / sr);
			return;
		}
		for (int th = 0; th < 3; th++)
			free(y[th]);
		free(w);
		tested++;
	}
	CHECK(tested >= 8);
	CHECK_ERR(qp_ops_matmul(NULL, 0, QP_TYPE_Q4_0, wf, 1, 33, x, 1, 1, &err), QP_EINVAL,
	          "rows of 33 elements do not divide into q4_0 blocks");
	CHECK_ERR(qp_ops_matmul(NULL, 0, QP_TYPE_IQ2_XXS, wf, 1, 256, x, 1, 1, &err), QP_EINVAL,
	          "type iq2_xxs has no dot product kernel");
	free(wf);
	free(wd);
	free(x);
}

static void ops__matmul_matches_dequantized_dot_for_every_type_and_thread_count(void)
{
	matmul_check(5);
	matmul_check(21);
}

/* Each level's silu_mul and softmax against the scalar reference (the
 * level's own exponential: a few ulp), on rows with SIMD tails, values up
 * to +-90 (past the exponential's range on both sides), exact zeros, and
 * a NaN, which must stay NaN. */
static void ops__vector_ops_match_the_reference_at_every_level(void)
{
	const struct qp_ops_vec *ref = qp_ops_vec_level(QP_LEVEL_SCALAR);
	CHECK(ref != NULL);
	static const int64_t lengths[] = {1, 7, 8, 9, 31, 64, 77, 1536};
	static float g0[1536], u[1536], g1[1536], g2[1536];
	int levels = 0;
	for (int level = 0; level < QP_LEVEL_COUNT; level++) {
		const struct qp_ops_vec *v = qp_ops_vec_level(level);
		if (!v)
			continue;
		levels++;
		for (size_t li = 0; li < sizeof(lengths) / sizeof(lengths[0]); li++) {
			const int64_t n = lengths[li];
			for (int scale = 1; scale <= 90; scale *= 9) {
				fill(g0, n, (float)scale);
				fill(u, n, 2.0f);
				g0[n / 2] = 0.0f;
				g0[0] = (float)(scale > 9 ? -90 : scale);
				memcpy(g1, g0, n * sizeof(float));
				memcpy(g2, g0, n * sizeof(float));
				ref->silu_mul(g1, u, n);
				v->silu_mul(g2, u, n);
				for (int64_t i = 0; i < n; i++)
					CHECK_NEAR(g2[i], g1[i], 1e-6);
				memcpy(g1, g0, n * sizeof(float));
				memcpy(g2, g0, n * sizeof(float));
				ref->softmax(g1, n);
				v->softmax(g2, n);
				for (int64_t i = 0; i < n; i++)
					CHECK_NEAR(g2[i], g1[i], 1e-6);
			}
			for (int64_t i = 0; i < n; i++)
				g2[i] = 1.0f;
			g2[n - 1] = NAN;
			v->silu_mul(g2, u, n);
			CHECK(isnan(g2[n - 1]));
		}
	}
	CHECK(levels >= 1 + qp_kernel_level_supported(QP_LEVEL_AVX2));
}

/* Attention's two products at every level give the scalar reference's
 * bits (each element is one FMA chain in a fixed order), for every block
 * of queries from 1 to 9, key counts around the vector width and head
 * sizes with and without a tail; and the products of one query do not
 * change when it shares a block with others. */
static void ops__attn_products_are_bit_exact_with_the_reference_at_every_level(void)
{
	enum { CTX = 150, MAXQ = 9, MAXHD = 72 };
	static float kt[MAXHD * CTX], v[CTX * 80], q[MAXQ * 80], p[MAXQ * CTX];
	static float s0[MAXQ * CTX], s1[MAXQ * CTX], o0[MAXQ * 80], o1[MAXQ * 80];
	const struct qp_ops_vec *ref = qp_ops_vec_level(QP_LEVEL_SCALAR);
	CHECK(ref && ref->attn_scores && ref->attn_values);
	fill(kt, MAXHD * CTX, 1.0f);
	fill(v, CTX * 80, 1.0f);
	fill(q, MAXQ * 80, 1.0f);
	fill(p, MAXQ * CTX, 0.1f);
	static const int64_t hds[] = {64, 8, 13, 72};
	static const int64_t lens[] = {1, 7, 8, 9, 16, 17, 63, 64, 65, 130};
	int levels = 0;
	for (int level = 0; level < QP_LEVEL_COUNT; level++) {
		const struct qp_ops_vec *vo = qp_ops_vec_level(level);
		if (!vo)
			continue;
		levels++;
		for (size_t hi = 0; hi < sizeof(hds) / sizeof(hds[0]); hi++)
			for (size_t li = 0; li < sizeof(lens) / sizeof(lens[0]); li++)
				for (int64_t nq = 1; nq <= MAXQ; nq++) {
					const int64_t hd = hds[hi], len0 = lens[li], n_keys = len0 + nq - 1;
					memset(s0, 0, sizeof(s0));
					memset(s1, 0, sizeof(s1));
					ref->attn_scores(s0, CTX, q, 80, nq, kt, CTX, n_keys, hd);
					vo->attn_scores(s1, CTX, q, 80, nq, kt, CTX, n_keys, hd);
					CHECK(memcmp(s0, s1, sizeof(s0)) == 0);
					ref->attn_values(o0, 80, p, CTX, nq, len0, v, 80, hd);
					vo->attn_values(o1, 80, p, CTX, nq, len0, v, 80, hd);
					for (int64_t i = 0; i < nq; i++)
						CHECK(memcmp(o0 + i * 80, o1 + i * 80, (size_t)hd * sizeof(float)) == 0);
					/* the last query alone, as a decode step computes it */
					const int64_t last = nq - 1;
					vo->attn_scores(s1, CTX, q + last * 80, 80, 1, kt, CTX, n_keys, hd);
					CHECK(memcmp(s1, s0 + last * CTX, (size_t)n_keys * sizeof(float)) == 0);
					vo->attn_values(o1, 80, p + last * CTX, CTX, 1, len0 + last, v, 80, hd);
					CHECK(memcmp(o1, o0 + last * 80, (size_t)hd * sizeof(float)) == 0);
				}
	}
	CHECK(levels >= 1 + qp_kernel_level_supported(QP_LEVEL_AVX2));
}

/* The quantize_row and vec_dot that level runs for t (levels.h) */
static struct qp_kernel_ops level_ops(enum qp_type t, int level)
{
	struct qp_kernel_ops o = {0};
	int at;
	FIRST_BELOW(t, level, quantize_row, o.quantize_row, at);
	FIRST_BELOW(t, level, vec_dot, o.vec_dot, at);
	(void)at;
	return o;
}

/* The q4_0 panel tile gives the level's q4_0 vec_dot bit for bit, for
 * panels of 1 to 8 rows against 1 to 9 tokens (every tail of its tiles of
 * four), on rows of 1 to 48 blocks, with blocks at the ends of the int16
 * range the tile sums in: every q 0 or 15 against every y -127 or 127 */
static void ops__q4_0_panel_tile_is_bit_exact_with_q4_0_vec_dot(void)
{
	enum { MAX_R = 8, MAX_C = 9, LDS = 11, MAXN = 48 * QP_QK4_0 };
	static struct qp_block_q4_0 x[MAX_R * MAXN / QP_QK4_0];
	static struct qp_block_q8_0 y[MAX_C * MAXN / QP_QK8_0];
	static float f[MAXN], s[MAX_C * LDS];
	static const int64_t lengths[] = {32, 64, 96, 512, 1536};
	int tested = 0;
	for (int level = 0; level < QP_LEVEL_COUNT; level++) {
		const struct qp_ops_vec *vo = qp_ops_vec_level(level);
		if (!vo || !vo->q4_0_panel_tile)
			continue;
		const struct qp_kernel_ops o4 = level_ops(QP_TYPE_Q4_0, level), o8 = level_ops(QP_TYPE_Q8_0, level);
		const struct qp_kernel_ops *ops = &o4, *q8 = &o8;
		CHECK(ops->vec_dot && ops->quantize_row && q8->quantize_row && vo->q4_0_panel && vo->q4_0_panel_bytes);
		tested++;
		for (size_t li = 0; li < sizeof(lengths) / sizeof(lengths[0]); li++) {
			const int64_t n = lengths[li], nb = n / QP_QK4_0;
			for (int r = 0; r < MAX_R; r++) {
				fill(f, n, 3.0f);
				ops->quantize_row(f, x + r * nb, n);
			}
			for (int c = 0; c < MAX_C; c++) {
				fill(f, n, 2.0f);
				q8->quantize_row(f, y + c * nb, n);
			}
			if (n == 1536) {
				/* the extremes: first block of each row and token */
				for (int r = 0; r < MAX_R; r++)
					memset(x[r * nb].qs, r % 2 ? 0xff : 0x00, sizeof(x[r * nb].qs));
				for (int c = 0; c < MAX_C; c++)
					memset(y[c * nb].qs, c % 2 ? 127 : -127, sizeof(y[c * nb].qs));
			}
			void *panel = aligned_alloc(64, (vo->q4_0_panel_bytes(n) + 63) / 64 * 64);
			CHECK(panel != NULL);
			for (int nr = 1; nr <= MAX_R; nr++) {
				vo->q4_0_panel(x, sizeof(x[0]) * (size_t)nb, nr, panel, n);
				for (int nc = 1; nc <= MAX_C; nc++) {
					vo->q4_0_panel_tile(n, s, LDS, panel, nr, y, sizeof(y[0]) * (size_t)nb, nc);
					for (int c = 0; c < nc; c++)
						for (int r = 0; r < nr; r++) {
							float want;
							ops->vec_dot(n, &want, x + r * nb, y + c * nb);
							CHECK(memcmp(&want, &s[c * LDS + r], sizeof(float)) == 0);
						}
				}
			}
			free(panel);
		}
	}
	CHECK(tested >= qp_kernel_level_supported(QP_LEVEL_AVX2));
}

/* One f16 block tile of nr x nc, rows lx (tokens ly) elements apart,
 * against the level's f16 vec_dot */
static void check_f16_block_tile(const struct qp_ops_vec *vo, const struct qp_kernel_ops *ops, int64_t n, int64_t lx,
                                 int64_t ly, int nr, int nc, const uint16_t *xh, const uint16_t *yh, float *s,
                                 int64_t lds)
{
	vo->f16_block_tile(n, s, lds, xh, (size_t)lx * sizeof(uint16_t), nr, yh, (size_t)ly * sizeof(uint16_t), nc);
	for (int c = 0; c < nc; c++)
		for (int r = 0; r < nr; r++) {
			float want;
			ops->vec_dot(n, &want, xh + r * lx, yh + c * ly);
			CHECK(memcmp(&want, &s[c * lds + r], sizeof(float)) == 0);
		}
}

/* The f16 block tile gives the level's f16 vec_dot bit for bit, for every
 * tile shape up to 9 x 7 and lengths with every kind of tail (the matrix
 * product depends on it); and for rows of one to three of the tile's
 * chunks of k, against more tokens than it holds accumulators for at
 * once. Rows lie LONG_N elements apart and tokens LY, whatever their
 * length. */
static void ops__f16_block_tile_is_bit_exact_with_f16_vec_dot(void)
{
	enum { MAX_R = 9, MAX_C = 7, LDS = 11, MAXN = 300, LONG_N = 2100, LY = LONG_N + 8, LONG_C = 100, LONG_R = 5 };
	static uint16_t xh[MAX_R * LONG_N], yh[LONG_C * LY];
	static float f[LONG_N], s[LONG_C * LDS];
	static const int64_t lengths[] = {1, 7, 8, 15, 16, 24, 33, 64, 200, 300, 512, 520, 1032, 1545, 2100};
	static const int long_cols[] = {1, 2, 3, 47, 48, 49, 100};
	int tested = 0;
	for (int level = 0; level < QP_LEVEL_COUNT; level++) {
		const struct qp_ops_vec *vo = qp_ops_vec_level(level);
		if (!vo || !vo->f16_block_tile)
			continue;
		const struct qp_kernel_ops o16 = level_ops(QP_TYPE_F16, level);
		const struct qp_kernel_ops *ops = &o16;
		CHECK(ops->vec_dot && ops->quantize_row);
		tested++;
		for (size_t li = 0; li < sizeof(lengths) / sizeof(lengths[0]); li++) {
			const int64_t n = lengths[li];
			for (int r = 0; r < MAX_R; r++) {
				fill(f, n, 4.0f);
				ops->quantize_row(f, xh + r * LONG_N, n);
			}
			for (int c = 0; c < LONG_C; c++) {
				fill(f, n, 2.0f);
				ops->quantize_row(f, yh + c * LY, n);
			}
			if (n <= MAXN) {
				for (int nr = 1; nr <= MAX_R; nr++)
					for (int nc = 1; nc <= MAX_C; nc++)
						check_f16_block_tile(vo, ops, n, LONG_N, LY, nr, nc, xh, yh, s, LDS);
				continue;
			}
			for (int nr = 1; nr <= LONG_R; nr++)
				for (size_t ci = 0; ci < sizeof(long_cols) / sizeof(long_cols[0]); ci++)
					check_f16_block_tile(vo, ops, n, LONG_N, LY, nr, long_cols[ci], xh, yh, s,
					                     LDS);
		}
	}
	CHECK(tested >= qp_kernel_level_supported(QP_LEVEL_AVX2));
}

struct cover {
	int hits[1000];
	int nested;     /* threads for a qp_ops_parallel inside each range, 0: none */
	struct cover *inner;
};

static void cover_range(void *arg, int64_t b, int64_t e)
{
	struct cover *c = arg;
	for (int64_t i = b; i < e; i++)
		__atomic_add_fetch(&c->hits[i], 1, __ATOMIC_RELAXED);
	if (c->nested)
		qp_ops_parallel(c->nested, 1000, cover_range, c->inner);
}

/* The pool of workers that outlives calls: every index exactly once, over
 * many calls with changing thread counts (workers idle, then needed again),
 * and with a call nested inside each range (the pool is taken then, so
 * those spawn their own threads). */
static void ops__parallel_runs_every_index_once_across_calls_and_nesting(void)
{
	static struct cover c, inner;
	for (int rep = 0; rep < 300; rep++) {
		const int threads = 1 + rep % 7, n = 1 + (rep * 37) % 1000;
		memset(&c, 0, sizeof(c));
		qp_ops_parallel(threads, n, cover_range, &c);
		for (int i = 0; i < 1000; i++)
			CHECK(c.hits[i] == (i < n));
	}
	memset(&c, 0, sizeof(c));
	memset(&inner, 0, sizeof(inner));
	c.nested = 3;
	c.inner = &inner;
	qp_ops_parallel(4, 10, cover_range, &c);
	for (int i = 0; i < 1000; i++) {
		CHECK(c.hits[i] == (i < 10));
		CHECK(inner.hits[i] == 4); /* one inner call per outer range */
	}
}

int main(int argc, char **argv)
{
	struct qp_err e = {0};
	if (qp_kernels_init(NULL, &e) != 0) {
		fprintf(stderr, "%s\n", e.msg);
		return 1;
	}
	static const struct tf_test tests[] = {
		TF_TEST(ops__rmsnorm_matches_double_reference),
		TF_TEST(ops__rope_rotates_pairs_by_position_angle_in_both_layouts),
		TF_TEST(ops__softmax_sums_to_one_and_matches_double),
		TF_TEST(ops__silu_mul_and_axpy_match_formula),
		TF_TEST(ops__attn_matches_double_reference),
		TF_TEST(ops__nll_is_minus_log_softmax_in_double),
		TF_TEST(ops__matmul_matches_dequantized_dot_for_every_type_and_thread_count),
		TF_TEST(ops__parallel_runs_every_index_once_across_calls_and_nesting),
		TF_TEST(ops__vector_ops_match_the_reference_at_every_level),
		TF_TEST(ops__attn_products_are_bit_exact_with_the_reference_at_every_level),
		TF_TEST(ops__f16_block_tile_is_bit_exact_with_f16_vec_dot),
		TF_TEST(ops__q4_0_panel_tile_is_bit_exact_with_q4_0_vec_dot),
	};
	return tf_main(argc, argv, tests, sizeof(tests) / sizeof(tests[0]));
}
