/* qpipe's KL-divergence statistics (model/kld.h) on logits from anywhere,
 * for tests that hold them against llama.cpp's on llama.cpp's own logits.
 *
 *   qp_kld_tool BASE QUANT TOKENS N_CTX OUT.qpl
 *
 * QUANT is raw f32 logits, [chunks][N_CTX][n_vocab]; TOKENS a text file of
 * chunks * N_CTX token ids, each chunk as it ran (BOS first). BASE is raw
 * f32 logits of the same shape, or a base-logits file covering the
 * same tokens (told apart by its magic). Prints one JSON object: "exact" (the float path, raw BASE
 * only) and "stored" (through a base-logits file: BASE written to OUT.qpl
 * and read back, or the .qpl given), each with kld, kld_median, kld_p99,
 * kld_max, rms_dp, top1_pct, n; and "file_bytes". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/os.h"
#include "model/kld.h"
#include "model/logits_file.h"

static int die(const struct qp_err *err)
{
	fprintf(stderr, "qp_kld_tool: %s\n", err->msg);
	return 1;
}

static void print_stats(const char *name, struct qp_kld_acc *acc)
{
	struct qp_kld_result r;
	qp_kld_finish(&r, acc);
	printf("\"%s\": {\"kld\": %.17g, \"kld_median\": %.17g, \"kld_p99\": %.17g, \"kld_max\": %.17g, "
	       "\"rms_dp\": %.17g, \"top1_pct\": %.17g, \"n\": %lld}",
	       name, r.kld, r.kld_median, r.kld_p99, r.kld_max, r.rms_dp, r.top1_pct, (long long)r.n);
}

/* A base-logits file starts with its magic; raw logits are floats. */
static bool is_logits_file(const char *path)
{
	char magic[8] = {0};
	FILE *f = fopen(path, "rb");
	bool yes = f && fread(magic, 1, 8, f) == 8 && memcmp(magic, "QPLOGITS", 8) == 0;
	if (f)
		fclose(f);
	return yes;
}

int main(int argc, char **argv)
{
	struct qp_err err = {0};
	if (argc != 6) {
		fprintf(stderr, "usage: qp_kld_tool BASE QUANT TOKENS N_CTX OUT.qpl\n");
		return 2;
	}
	const char *base_path = argv[1], *quant_path = argv[2], *tok_path = argv[3], *out = argv[5];
	int64_t n_ctx = atoll(argv[4]);
	char *text;
	size_t len;
	struct qp_map quant = {0}, base = {0};
	if (qp_os_read_file(&text, &len, tok_path, (size_t)1 << 30, &err) || qp_os_map(&quant, quant_path, &err))
		return die(&err);
	int64_t n = 0, cap = 1024;
	int32_t *tokens = malloc((size_t)cap * sizeof(int32_t));
	for (char *p = text, *e; tokens; p = e) {
		long v = strtol(p, &e, 10);
		if (e == p)
			break;
		if (n == cap)
			tokens = realloc(tokens, (size_t)(cap *= 2) * sizeof(int32_t));
		if (tokens)
			tokens[n++] = (int32_t)v;
	}
	if (!tokens || n_ctx < 2 || n % n_ctx || !n) {
		fprintf(stderr, "qp_kld_tool: %s: %lld tokens are not whole chunks of %lld\n", tok_path, (long long)n,
		        (long long)n_ctx);
		return 1;
	}
	int64_t chunks = n / n_ctx, nv = (int64_t)(quant.size / sizeof(float)) / n;
	if (nv < 1 || (size_t)(nv * n) * sizeof(float) != quant.size) {
		fprintf(stderr, "qp_kld_tool: %s: %zu bytes are not %lld rows of f32 logits\n", quant_path, quant.size,
		        (long long)n);
		return 1;
	}
	const float *q = (const float *)quant.data;
	struct qp_kld_acc exact = {0}, stored = {0};
	struct qp_logits_file *f = NULL;
	bool raw = !is_logits_file(base_path);
	if (raw) {
		if (qp_os_map(&base, base_path, &err))
			return die(&err);
		if (base.size != quant.size) {
			fprintf(stderr, "qp_kld_tool: %s and %s differ in size\n", base_path, quant_path);
			return 1;
		}
		const float *b = (const float *)base.data;
		struct qp_logits_info info = {.n_vocab = nv, .n_ctx = n_ctx, .n_chunks = chunks, .first = n_ctx / 2,
		                              .bos = tokens[0], .n_text = n, .model = base_path, .tokenizer = "",
		                              .text = tok_path, .tokens = tokens};
		struct qp_logits_writer *w;
		if (qp_logits_writer_open(&w, out, &info, &err))
			return die(&err);
		for (int64_t c = 0; c < chunks; c++)
			if (qp_logits_writer_chunk(w, b + c * n_ctx * nv, &err) ||
			    qp_kld_add(&exact, b + c * n_ctx * nv, q + c * n_ctx * nv, nv, tokens + c * n_ctx, n_ctx,
			               n_ctx / 2, &err))
				return die(&err);
		if (qp_logits_writer_finish(w, &err))
			return die(&err);
		qp_logits_writer_free(w);
		base_path = out;
	}
	if (qp_logits_open(&f, base_path, &err))
		return die(&err);
	const struct qp_logits_info *in = qp_logits_info(f);
	if (in->n_vocab != nv || in->n_ctx != n_ctx || in->n_chunks != chunks ||
	    memcmp(in->tokens, tokens, (size_t)n * sizeof(int32_t))) {
		fprintf(stderr, "qp_kld_tool: %s covers other tokens than %s\n", base_path, tok_path);
		return 1;
	}
	for (int64_t c = 0; c < chunks; c++)
		if (qp_kld_add_stored(&stored, f, c, q + c * n_ctx * nv, &err))
			return die(&err);
	uint64_t bytes = 0;
	qp_os_file_size(base_path, &bytes);
	printf("{");
	if (raw) {
		print_stats("exact", &exact);
		printf(", ");
	}
	print_stats("stored", &stored);
	printf(", \"file_bytes\": %llu}\n", (unsigned long long)bytes);
	qp_logits_close(f);
	qp_kld_acc_free(&exact);
	qp_kld_acc_free(&stored);
	qp_os_unmap(&quant);
	qp_os_unmap(&base);
	free(tokens);
	free(text);
	return 0;
}
