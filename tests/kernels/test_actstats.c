/* kernels/actstats: the per-column sums and the Gram matrix against plain
 * double-precision loops written from their definitions, over widths and
 * token counts with tails (tile edges at 32), at 1, 2 and 3 threads (the
 * results must be bit-identical). meson runs this binary at the best
 * kernel level and again with QPIPE_KERNELS=scalar, so the Gram matrix is
 * checked through every f32 dot product variant. */
#include <math.h>

#include "kernels/actstats.h"
#include "kernels/kernels.h"
#include "../formats/tf.h"

static struct qp_err err;

static uint64_t rng_state = 0x243f6a8885a308d3ull;

static float rnd(void)
{
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	z ^= z >> 31;
	return (float)((double)(z >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

/* Activations as a layer's input has them: most channels small, a few
 * large outliers. */
static void fill_acts(float *x, int64_t n, int64_t k)
{
	for (int64_t t = 0; t < n; t++)
		for (int64_t j = 0; j < k; j++)
			x[t * k + j] = rnd() * (j % 13 == 5 ? 40.0f : 1.0f);
}

static void actstats__cols_match_double_loops_and_add_up(void)
{
	const int64_t n = 37, k = 65;
	float *x = malloc((size_t)(n * k) * sizeof(float));
	double s[65] = {0}, s2[65] = {0}, sa[65] = {0};
	float mx[65] = {0};
	CHECK(x);
	fill_acts(x, n, k);
	/* two batches of rows add up to the whole */
	qp_actstats_cols(s, s2, sa, mx, x, 20, k);
	qp_actstats_cols(s, s2, sa, mx, x + 20 * k, n - 20, k);
	for (int64_t j = 0; j < k; j++) {
		double rs = 0, rs2 = 0, rsa = 0;
		float rmx = 0;
		for (int64_t t = 0; t < n; t++) {
			double v = x[t * k + j];
			rs += v;
			rs2 += v * v;
			rsa += fabs(v);
			rmx = fabsf(x[t * k + j]) > rmx ? fabsf(x[t * k + j]) : rmx;
		}
		CHECK(fabs(s[j] - rs) <= 1e-12 * (1 + fabs(rsa)));
		CHECK(fabs(s2[j] - rs2) <= 1e-12 * rs2);
		CHECK(fabs(sa[j] - rsa) <= 1e-12 * rsa);
		CHECK(mx[j] == rmx);
	}
	free(x);
}

static void actstats__max_abs_keeps_nan(void)
{
	float x[4] = {1.0f, NAN, -3.0f, 2.0f};
	double s = 0, s2 = 0, sa = 0;
	float mx = 0;
	qp_actstats_cols(&s, &s2, &sa, &mx, x, 4, 1);
	CHECK(isnan(mx));
	CHECK(isnan(s2));
}

static void actstats__gram_matches_double_reference_at_every_thread_count(void)
{
	static const int64_t ks[] = {1, 7, 31, 32, 33, 100, 257};
	static const int64_t ns[] = {1, 5, 33, 128};
	for (size_t a = 0; a < sizeof(ks) / sizeof(ks[0]); a++)
		for (size_t b = 0; b < sizeof(ns) / sizeof(ns[0]); b++) {
			int64_t k = ks[a], n = ns[b];
			float *x = malloc((size_t)(n * k) * sizeof(float));
			double *ref = calloc((size_t)(k * k), sizeof(double));
			double *h[3];
			CHECK(x && ref);
			fill_acts(x, n, k);
			qp_actstats_gram_ref(ref, x, n, k);
			for (int th = 0; th < 3; th++) {
				h[th] = calloc((size_t)(k * k), sizeof(double));
				CHECK(h[th]);
				/* entries above the diagonal are not the kernel's: they
				 * must stay as they were */
				for (int64_t i = 0; i < k; i++)
					for (int64_t j = i + 1; j < k; j++)
						h[th][i * k + j] = 42.0;
				/* twice: the second call adds onto the first */
				CHECK_OK(qp_actstats_gram(h[th], x, n, k, th + 1, &err));
				CHECK_OK(qp_actstats_gram(h[th], x, n, k, th + 1, &err));
			}
			for (int64_t i = 0; i < k; i++) {
				for (int64_t j = 0; j <= i; j++) {
					/* f32 sums of n products: relative to the products' scale */
					double scale = sqrt(ref[i * k + i] * ref[j * k + j]) + 1e-30;
					if (!(fabs(h[0][i * k + j] - 2.0 * ref[i * k + j]) <= 1e-5 * 2.0 * scale)) {
						tf_fail(__FILE__, __LINE__, "k %lld n %lld: h[%lld][%lld] = %.9g, expected %.9g",
						        (long long)k, (long long)n, (long long)i, (long long)j,
						        h[0][i * k + j], 2.0 * ref[i * k + j]);
						return;
					}
					CHECK(h[1][i * k + j] == h[0][i * k + j]);
					CHECK(h[2][i * k + j] == h[0][i * k + j]);
				}
				for (int64_t j = i + 1; j < k; j++)
					CHECK(h[0][i * k + j] == 42.0 && h[2][i * k + j] == 42.0);
			}
			for (int th = 0; th < 3; th++)
				free(h[th]);
			free(ref);
			free(x);
		}
}

int main(int argc, char **argv)
{
	struct qp_err e = {0};
	if (qp_kernels_init(NULL, &e) != 0) {
		fprintf(stderr, "%s\n", e.msg);
		return 1;
	}
	fprintf(stderr, "kernel level: %s\n", qp_kernel_level_name(qp_kernels_level()));
	static const struct tf_test tests[] = {
		TF_TEST(actstats__cols_match_double_loops_and_add_up),
		TF_TEST(actstats__max_abs_keeps_nan),
		TF_TEST(actstats__gram_matches_double_reference_at_every_thread_count),
	};
	return tf_main(argc, argv, tests, sizeof(tests) / sizeof(tests[0]));
}
