/* model/logits_file: what is stored is what the float logits say (exact
 * argmax and next-token log p, every kept id within a half step, the tail
 * mass exact), kld from the file agrees with the exact float path within
 * the header's bounds for both set encodings (bitmap, u16 and u32 id
 * lists), and a truncated, damaged or malformed file is refused naming
 * the file and the offset. (tests/e2e/test_kld.py checks real models.) */
#include <math.h>

#include <xxhash.h>

#include "kernels/kernels.h"
#include "model/kld.h"
#include "model/logits_file.h"
#include "../formats/tf.h"

static struct qp_err err;

#define N_CTX 16
#define FIRST (N_CTX / 2)
#define STEP (1.0 / 4096.0)

/* deterministic uniform in [0, 1) */
static double rnd(uint64_t *s)
{
	*s = *s * 6364136223846793005ull + 1442695040888963407ull;
	return (double)(*s >> 11) / 9007199254740992.0;
}

/* base logits: spread * (a heavy-tailed deviate), so some ids fall more
 * than 16 nats below the argmax; quant: base plus noise of size eps */
static void make_logits(float *base, float *quant, int64_t n, int64_t nv, double spread, double eps, uint64_t seed)
{
	uint64_t s = seed;
	for (int64_t i = 0; i < n * nv; i++) {
		double u = rnd(&s);
		base[i] = (float)(spread * log(u + 1e-9));
		quant[i] = (float)(base[i] + eps * (rnd(&s) - 0.5));
	}
}

static void make_tokens(int32_t *t, int64_t n, int64_t nv, uint64_t seed)
{
	uint64_t s = seed;
	for (int64_t i = 0; i < n; i++)
		t[i] = (int32_t)(rnd(&s) * (double)nv);
	for (int64_t i = 0; i < n; i += N_CTX)
		t[i] = 1;
}

static const char *write_file(char *path, size_t cap, const char *name, const float *base, const int32_t *tokens,
                              int64_t chunks, int64_t nv)
{
	tf_path(path, cap, name);
	struct qp_logits_info info = {.n_vocab = nv, .n_ctx = N_CTX, .n_chunks = chunks, .first = FIRST, .bos = 1,
	                              .n_text = chunks * N_CTX + 3, .model = "base (key 00)",
	                              .tokenizer = "test tokenizer", .text = "test text", .tokens = tokens};
	struct qp_logits_writer *w;
	if (qp_logits_writer_open(&w, path, &info, &err))
		return NULL;
	for (int64_t c = 0; c < chunks; c++)
		if (qp_logits_writer_chunk(w, base + c * N_CTX * nv, &err))
			return NULL;
	int rc = qp_logits_writer_finish(w, &err);
	qp_logits_writer_free(w);
	return rc ? NULL : path;
}

/* one vocabulary size and spread: the stored record against the row */
static void check_roundtrip(int64_t nv, double spread, int want_kind)
{
	int64_t chunks = 2, n = chunks * N_CTX;
	float *base = malloc((size_t)(n * nv) * sizeof(float)), *quant = malloc((size_t)(n * nv) * sizeof(float));
	double *lp = malloc((size_t)nv * sizeof(double));
	int32_t tokens[2 * N_CTX];
	make_logits(base, quant, n, nv, spread, 0.0, 7);
	make_tokens(tokens, n, nv, 9);
	char path[4096];
	CHECK(write_file(path, sizeof(path), "rt.qpl", base, tokens, chunks, nv));
	struct qp_logits_file *f;
	CHECK_OK(qp_logits_open(&f, path, &err));
	const struct qp_logits_info *in = qp_logits_info(f);
	CHECK(in->n_vocab == nv && in->n_ctx == N_CTX && in->n_chunks == chunks && in->first == FIRST && in->bos == 1);
	CHECK(in->n_text == n + 3);
	CHECK_EQ_STR(in->model, "base (key 00)");
	CHECK_EQ_STR(in->tokenizer, "test tokenizer");
	CHECK_EQ_STR(in->text, "test text");
	CHECK(memcmp(in->tokens, tokens, sizeof(tokens)) == 0);
	int64_t coarse = 0;
	for (int64_t c = 0; c < chunks; c++)
		for (int64_t j = FIRST; j < N_CTX - 1; j++) {
			const float *x = base + (c * N_CTX + j) * nv;
			int64_t top = 0;
			for (int64_t i = 1; i < nv; i++)
				top = x[i] > x[top] ? i : top;
			double s = 0, tail = 0;
			for (int64_t i = 0; i < nv; i++)
				s += exp((double)x[i] - x[top]);
			double lse = (double)x[top] + log(s);
			struct qp_logits_rec r;
			qp_logits_rec(&r, f, c, j);
			CHECK_EQ_INT(r.set_kind, want_kind);
			CHECK_EQ_INT(r.top, top);
			CHECK(r.lp_max == (float)(x[top] - lse));
			CHECK(fabs(r.lp_next - (x[tokens[c * N_CTX + j + 1]] - lse)) < 1e-9);
			qp_logits_expand(&r, nv, lp);
			int64_t kept = 0;
			for (int64_t i = 0; i < nv; i++) {
				double d = (double)x[top] - x[i], want = x[i] - lse;
				/* half a step (fine under 8 nats, coarse 1/16 from 8 to 16)
				 * plus lp_max's own f32 rounding */
				if (d < 8.0 - STEP)
					CHECK(fabs(lp[i] - want) <= STEP / 2 + 1e-6);
				else if (d < 15.9)
					CHECK(fabs(lp[i] - want) <= 1.0 / 32 + 1e-6);
				else if (d > 16.0)
					CHECK(lp[i] == -INFINITY);
				if (lp[i] == -INFINITY)
					tail += exp(want);
				else
					kept++;
			}
			CHECK_EQ_INT(r.n_keep, kept);
			coarse += r.n_keep - r.n_fine;
			CHECK(fabs(r.tail - tail) <= 1e-12 + 1e-9 * tail);
		}
	/* the peaky rows have ids 8 to 16 nats down: both code widths seen */
	CHECK(spread < 1000 || coarse > 0);
	qp_logits_close(f);
	free(base);
	free(quant);
	free(lp);
}

static void logits_file__stores_exact_top_and_next_and_each_kept_id_within_half_a_step(void)
{
	check_roundtrip(300, 1.0, QP_LOGITS_SET_BITMAP);    /* flat: most ids kept */
	if (tf_failed)
		return;
	check_roundtrip(8192, 1000.0, QP_LOGITS_SET_LIST);  /* peaky: u16 ids */
	if (tf_failed)
		return;
	check_roundtrip(70000, 1000.0, QP_LOGITS_SET_LIST); /* u32 ids */
}

/* kld from the file against kld from the float logits */
static void compare_kld(int64_t nv, double spread, double eps, double tol)
{
	int64_t chunks = 3, n = chunks * N_CTX;
	float *base = malloc((size_t)(n * nv) * sizeof(float)), *quant = malloc((size_t)(n * nv) * sizeof(float));
	int32_t tokens[3 * N_CTX];
	make_logits(base, quant, n, nv, spread, eps, 11);
	make_tokens(tokens, n, nv, 13);
	char path[4096];
	CHECK(write_file(path, sizeof(path), "kld.qpl", base, tokens, chunks, nv));
	struct qp_logits_file *f;
	CHECK_OK(qp_logits_open(&f, path, &err));
	struct qp_kld_acc exact = {0}, stored = {0};
	for (int64_t c = 0; c < chunks; c++) {
		CHECK_OK(qp_kld_add(&exact, base + c * N_CTX * nv, quant + c * N_CTX * nv, nv, tokens + c * N_CTX, N_CTX,
		                    FIRST, &err));
		CHECK_OK(qp_kld_add_stored(&stored, f, c, quant + c * N_CTX * nv, &err));
	}
	struct qp_kld_result a, b;
	qp_kld_finish(&a, &exact);
	qp_kld_finish(&b, &stored);
	CHECK(a.n == b.n && a.n == chunks * (N_CTX - 1 - FIRST));
	CHECK(a.kld > 0);
	CHECK(fabs(b.kld / a.kld - 1) < tol);
	CHECK(fabs(b.kld_p99 / a.kld_p99 - 1) < 10 * tol);
	CHECK(fabs(b.rms_dp / a.rms_dp - 1) < 1e-9);
	CHECK(a.top1_pct == b.top1_pct);
	qp_kld_acc_free(&exact);
	qp_kld_acc_free(&stored);
	qp_logits_close(f);
	free(base);
	free(quant);
}

static void logits_file__kld_from_the_file_agrees_with_the_float_path(void)
{
	/* small noise (a q8_0-like kld) and large, flat and peaky rows */
	compare_kld(2000, 1.0, 0.05, 1e-3);
	if (tf_failed)
		return;
	compare_kld(2000, 1.0, 1.0, 1e-3);
	if (tf_failed)
		return;
	compare_kld(8192, 1000.0, 0.1, 1e-3);
}

static void logits_file__refuses_truncated_damaged_and_malformed_files(void)
{
	int64_t nv = 64, chunks = 1, n = N_CTX;
	float base[N_CTX * 64], quant[N_CTX * 64];
	int32_t tokens[N_CTX];
	make_logits(base, quant, n, nv, 1.0, 0.0, 3);
	make_tokens(tokens, n, nv, 5);
	char path[4096], bad[4096], msg[8192];
	CHECK(write_file(path, sizeof(path), "good.qpl", base, tokens, chunks, nv));
	size_t len;
	unsigned char *buf = tf_slurp(path, &len);
	struct qp_logits_file *f = NULL;
	tf_path(bad, sizeof(bad), "bad.qpl");

	tf_spit(bad, buf, len - 1);
	snprintf(msg, sizeof(msg), "%s: offset %zu: no trailer: the file is truncated", bad, len - 1);
	CHECK_ERR(qp_logits_open(&f, bad, &err), QP_ECORRUPT, msg);

	buf[100] ^= 1;
	tf_spit(bad, buf, len);
	snprintf(msg, sizeof(msg), "%s: offset %zu: checksum mismatch: the file is damaged", bad, len - 16);
	CHECK_ERR(qp_logits_open(&f, bad, &err), QP_ECORRUPT, msg);
	buf[100] ^= 1;

	/* a well-formed checksum over a bad record: the first record's top id */
	size_t rec = 44 + (2 + strlen("base (key 00)")) + (2 + strlen("test tokenizer")) + (2 + strlen("test text")) +
	             4 * N_CTX;
	unsigned char *copy = malloc(len);
	memcpy(copy, buf, len);
	copy[rec] = 64;
	copy[rec + 1] = copy[rec + 2] = copy[rec + 3] = 0;
	uint32_t keep = copy[rec + 4] | copy[rec + 5] << 8;
	uint64_t h = XXH3_64bits(copy, len - 16);
	for (int i = 0; i < 8; i++)
		copy[len - 16 + i] = (unsigned char)(h >> (8 * i));
	tf_spit(bad, copy, len);
	uint32_t fine = copy[rec + 8] | copy[rec + 9] << 8;
	snprintf(msg, sizeof(msg),
	         "%s: offset %zu: chunk 0 position %d: top id 64, kept count %u or fine count %u out of the vocabulary of 64",
	         bad, rec, FIRST, keep, fine);
	CHECK_ERR(qp_logits_open(&f, bad, &err), QP_ECORRUPT, msg);
	/* codes that do not add up to the counts */
	memcpy(copy, buf, len);
	copy[rec + 8] = (unsigned char)(fine - 1);
	h = XXH3_64bits(copy, len - 16);
	for (int i = 0; i < 8; i++)
		copy[len - 16 + i] = (unsigned char)(h >> (8 * i));
	tf_spit(bad, copy, len);
	snprintf(msg, sizeof(msg), "%s: offset %zu: chunk 0 position %d: codes do not add up to %u kept ids, %u of them fine",
	         bad, rec, FIRST, keep, fine - 1);
	CHECK_ERR(qp_logits_open(&f, bad, &err), QP_ECORRUPT, msg);

	memcpy(copy, "QPLOGITX", 8);
	tf_spit(bad, copy, len);
	snprintf(msg, sizeof(msg), "%s: offset 0: not a qpipe base-logits file (no QPLOGITS magic)", bad);
	CHECK_ERR(qp_logits_open(&f, bad, &err), QP_ECORRUPT, msg);
	free(copy);
	free(buf);

	/* a writer that stops early leaves nothing behind */
	struct qp_logits_info info = {.n_vocab = nv, .n_ctx = N_CTX, .n_chunks = 2, .first = FIRST, .bos = 1,
	                              .tokens = tokens};
	int32_t two[2 * N_CTX];
	memcpy(two, tokens, sizeof(tokens));
	memcpy(two + N_CTX, tokens, sizeof(tokens));
	info.tokens = two;
	char part[4096];
	struct qp_logits_writer *w;
	CHECK_OK(qp_logits_writer_open(&w, tf_path(part, sizeof(part), "part.qpl"), &info, &err));
	CHECK_OK(qp_logits_writer_chunk(w, base, &err));
	snprintf(msg, sizeof(msg), "%s: 1 of 2 chunks written", part);
	CHECK_ERR(qp_logits_writer_finish(w, &err), QP_EINVAL, msg);
	qp_logits_writer_free(w);
	CHECK(access(part, F_OK) != 0);
}

int main(int argc, char **argv)
{
	struct qp_err e = {0};
	if (qp_kernels_init(NULL, &e) != 0) {
		fprintf(stderr, "%s\n", e.msg);
		return 1;
	}
	static const struct tf_test tests[] = {
		TF_TEST(logits_file__stores_exact_top_and_next_and_each_kept_id_within_half_a_step),
		TF_TEST(logits_file__kld_from_the_file_agrees_with_the_float_path),
		TF_TEST(logits_file__refuses_truncated_damaged_and_malformed_files),
	};
	return tf_main(argc, argv, tests, sizeof(tests) / sizeof(tests[0]));
}
