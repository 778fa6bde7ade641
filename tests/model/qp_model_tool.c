/* Test helper for the python suite: runs model/ code on files and prints
 * what it computed, so the reference packages (sentencepiece, numpy,
 * llama-cpp-python) can be held against it.
 *
 *   qp_model_tool tokenize SRC FILE [--no-special]
 *       ids of FILE's bytes, space-separated on one line; SRC is a model
 *       folder (tokenizer.json, else tokenizer.model), a tokenizer.json or
 *       tokenizer.model file, or a GGUF file
 *   qp_model_tool tokenize-batch SRC FILE
 *       FILE holds records (u32 little-endian length, then the bytes); for
 *       each, three lines: the ids without and with the special tokens,
 *       and the hex of decode(ids without)
 *   qp_model_tool logits MODEL OUT THREADS ID...
 *       logits of the IDs run as one batch from position 0, written to OUT
 *       as float32 [n_ids][n_vocab]
 *   qp_model_tool score GGUF IDS N_CTX FIRST THREADS
 *       IDS holds whitespace-separated ids, cut into windows of N_CTX run
 *       each from an empty cache; prints the NLL sums of positions >= FIRST
 *       as JSON
 *   qp_model_tool ppl MODEL TEXT N_CTX CHUNKS THREADS
 *       llama.cpp's perplexity method on TEXT with the model's tokenizer;
 *       prints the result and the prefill rate as JSON
 *   qp_model_tool pplhf MODEL TEXT MAX_LENGTH STRIDE WINDOWS THREADS
 *       Hugging Face's strided method (qp_ppl_hf_run); prints the result
 *       as JSON
 *
 * MODEL (and GGUF above) is a GGUF file or a Hugging Face model folder.
 *
 * QPIPE_KERNELS picks the kernel level, as for qpipe.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/os.h"
#include "formats/gguf.h"
#include "kernels/kernels.h"
#include "model/llama.h"
#include "model/perplexity.h"
#include "model/tokenizer.h"

static int die(const struct qp_err *err)
{
	fprintf(stderr, "qp_model_tool: %s\n", err->msg);
	return 1;
}


static int load_tokenizer(struct qp_tokenizer **t, const char *src, struct qp_err *err)
{
	uint64_t size;
	if (!qp_os_file_size(src, &size))
		return qp_tokenizer_from_dir(t, src, err);
	size_t sl = strlen(src);
	if ((sl >= 5 && strcmp(src + sl - 5, ".json") == 0) ||
	    (sl >= 6 && strcmp(src + sl - 6, ".model") == 0))
		return qp_tokenizer_from_file(t, src, err);
	struct qp_gguf_file *f;
	int rc = qp_gguf_open(&f, src, err);
	if (rc)
		return rc;
	rc = qp_tokenizer_from_gguf(t, f, err);
	qp_gguf_close(f);
	return rc;
}

static int cmd_tokenize(int argc, char **argv)
{
	struct qp_err err = {0};
	if (argc < 2)
		return 2;
	int special = !(argc > 2 && strcmp(argv[2], "--no-special") == 0);
	struct qp_tokenizer *t;
	char *text;
	size_t len;
	int32_t *ids;
	size_t n;
	if (load_tokenizer(&t, argv[0], &err) || qp_os_read_file(&text, &len, argv[1], (size_t)1 << 30, &err) ||
	    qp_tokenizer_encode(t, text, len, special, &ids, &n, &err))
		return die(&err);
	for (size_t i = 0; i < n; i++)
		printf(i ? " %d" : "%d", ids[i]);
	printf("\n");
	free(ids);
	free(text);
	qp_tokenizer_free(t);
	return 0;
}

static int print_ids(const int32_t *ids, size_t n)
{
	for (size_t i = 0; i < n; i++)
		printf(i ? " %d" : "%d", ids[i]);
	return printf("\n") < 0;
}

static int cmd_tokenize_batch(int argc, char **argv)
{
	struct qp_err err = {0};
	if (argc < 2)
		return 2;
	struct qp_tokenizer *t;
	char *data;
	size_t len;
	if (load_tokenizer(&t, argv[0], &err) || qp_os_read_file(&data, &len, argv[1], (size_t)1 << 30, &err))
		return die(&err);
	int rc = 0;
	for (size_t off = 0; off + 4 <= len && !rc;) {
		const unsigned char *h = (const unsigned char *)data + off;
		size_t n = (size_t)h[0] | (size_t)h[1] << 8 | (size_t)h[2] << 16 | (size_t)h[3] << 24;
		off += 4;
		if (n > len - off) {
			fprintf(stderr, "qp_model_tool: %s: record at %zu runs past the end\n", argv[1], off - 4);
			rc = 1;
			break;
		}
		int32_t *ids, *sids;
		size_t ni, ns, nt;
		char *text;
		if (qp_tokenizer_encode(t, data + off, n, false, &ids, &ni, &err) ||
		    qp_tokenizer_encode(t, data + off, n, true, &sids, &ns, &err))
			return die(&err);
		if (qp_tokenizer_decode(t, ids, ni, &text, &nt, &err))
			return die(&err);
		rc = print_ids(ids, ni) || print_ids(sids, ns);
		for (size_t i = 0; i < nt; i++)
			printf("%02x", (unsigned char)text[i]);
		printf("\n");
		free(ids);
		free(sids);
		free(text);
		off += n;
	}
	free(data);
	qp_tokenizer_free(t);
	return rc;
}

static int cmd_logits(int argc, char **argv)
{
	struct qp_err err = {0};
	if (argc < 4)
		return 2;
	int64_t n = argc - 3;
	int32_t *ids = malloc((size_t)n * sizeof(int32_t));
	for (int64_t i = 0; i < n; i++)
		ids[i] = (int32_t)atoi(argv[3 + i]);
	struct qp_llama *m;
	if (qp_llama_open(&m, argv[0], n, atoi(argv[2]), &err))
		return die(&err);
	int64_t nv = qp_llama_hparams(m)->n_vocab;
	float *logits = malloc((size_t)(n * nv) * sizeof(float));
	if (qp_llama_eval(m, ids, n, 0, logits, &err))
		return die(&err);
	FILE *f = fopen(argv[1], "wb");
	if (!f || fwrite(logits, sizeof(float), (size_t)(n * nv), f) != (size_t)(n * nv) || fclose(f)) {
		perror(argv[1]);
		return 1;
	}
	free(logits);
	free(ids);
	qp_llama_free(m);
	return 0;
}

static int cmd_score(int argc, char **argv)
{
	struct qp_err err = {0};
	if (argc < 5)
		return 2;
	int64_t n_ctx = atoll(argv[2]), first = atoll(argv[3]);
	FILE *f = fopen(argv[1], "r");
	if (!f) {
		perror(argv[1]);
		return 1;
	}
	size_t n = 0, cap = 1024;
	int32_t *ids = malloc(cap * sizeof(int32_t));
	int v;
	while (fscanf(f, "%d", &v) == 1) {
		if (n == cap)
			ids = realloc(ids, (cap *= 2) * sizeof(int32_t));
		ids[n++] = v;
	}
	fclose(f);
	struct qp_llama *m;
	if (qp_llama_open(&m, argv[0], n_ctx, atoi(argv[4]), &err))
		return die(&err);
	float *logits = malloc((size_t)n_ctx * (size_t)qp_llama_hparams(m)->n_vocab * sizeof(float));
	struct qp_nll_sums s = {0};
	for (size_t w = 0; w + (size_t)n_ctx <= n; w += (size_t)n_ctx)
		if (qp_ppl_window(&s, m, ids + w, n_ctx, first, logits, &err))
			return die(&err);
	printf("{\"nll\": %.17g, \"nll2\": %.17g, \"n\": %lld}\n", s.nll, s.nll2, (long long)s.n);
	free(logits);
	free(ids);
	qp_llama_free(m);
	return 0;
}

static int cmd_ppl(int argc, char **argv)
{
	struct qp_err err = {0};
	if (argc < 5)
		return 2;
	struct qp_ppl_params p = {.n_ctx = atoll(argv[2]), .chunks = atoll(argv[3]), .first = -1};
	struct qp_llama *m;
	struct qp_tokenizer *t;
	char *text;
	size_t len;
	int32_t *ids;
	size_t n;
	if (qp_llama_open(&m, argv[0], p.n_ctx, atoi(argv[4]), &err) || load_tokenizer(&t, argv[0], &err) ||
	    qp_os_read_file(&text, &len, argv[1], (size_t)1 << 30, &err) ||
	    qp_tokenizer_encode(t, text, len, true, &ids, &n, &err))
		return die(&err);
	struct qp_ppl_result r;
	double t0 = qp_os_now();
	if (qp_ppl_run(&r, m, ids, (int64_t)n, qp_tokenizer_bos(t), &p, NULL, NULL, &err))
		return die(&err);
	double dt = qp_os_now() - t0;
	printf("{\"ppl\": %.17g, \"ppl_err\": %.17g, \"nll\": %.17g, \"chunks\": %lld, "
	       "\"scored\": %lld, \"tokens\": %lld, \"seconds\": %.3f, \"prefill_tok_s\": %.1f}\n",
	       r.ppl, r.ppl_err, r.nll, (long long)r.n_chunks, (long long)r.n_scored,
	       (long long)r.n_tokens, dt, dt > 0 ? (double)(r.n_chunks * p.n_ctx) / dt : 0.0);
	free(ids);
	free(text);
	qp_tokenizer_free(t);
	qp_llama_free(m);
	return 0;
}

static int cmd_pplhf(int argc, char **argv)
{
	struct qp_err err = {0};
	if (argc < 6)
		return 2;
	struct qp_ppl_hf_params p = {.max_length = atoll(argv[2]), .stride = atoll(argv[3]),
	                             .windows = atoll(argv[4])};
	struct qp_llama *m;
	struct qp_tokenizer *t;
	char *text;
	size_t len;
	int32_t *ids;
	size_t n;
	if (qp_llama_open(&m, argv[0], p.max_length, atoi(argv[5]), &err) || load_tokenizer(&t, argv[0], &err) ||
	    qp_os_read_file(&text, &len, argv[1], (size_t)1 << 30, &err) ||
	    qp_tokenizer_encode(t, text, len, true, &ids, &n, &err))
		return die(&err);
	struct qp_ppl_result r;
	if (qp_ppl_hf_run(&r, m, ids, (int64_t)n, &p, NULL, NULL, &err))
		return die(&err);
	printf("{\"ppl\": %.17g, \"ppl_err\": %.17g, \"nll\": %.17g, \"windows\": %lld, "
	       "\"scored\": %lld, \"tokens\": %lld}\n",
	       r.ppl, r.ppl_err, r.nll, (long long)r.n_chunks, (long long)r.n_scored, (long long)r.n_tokens);
	free(ids);
	free(text);
	qp_tokenizer_free(t);
	qp_llama_free(m);
	return 0;
}

int main(int argc, char **argv)
{
	struct qp_err err = {0};
	if (qp_kernels_init(NULL, &err))
		return die(&err);
	if (argc >= 2 && strcmp(argv[1], "tokenize") == 0)
		return cmd_tokenize(argc - 2, argv + 2);
	if (argc >= 2 && strcmp(argv[1], "tokenize-batch") == 0)
		return cmd_tokenize_batch(argc - 2, argv + 2);
	if (argc >= 2 && strcmp(argv[1], "logits") == 0)
		return cmd_logits(argc - 2, argv + 2);
	if (argc >= 2 && strcmp(argv[1], "score") == 0)
		return cmd_score(argc - 2, argv + 2);
	if (argc >= 2 && strcmp(argv[1], "ppl") == 0)
		return cmd_ppl(argc - 2, argv + 2);
	if (argc >= 2 && strcmp(argv[1], "pplhf") == 0)
		return cmd_pplhf(argc - 2, argv + 2);
	fprintf(stderr, "usage: qp_model_tool tokenize|tokenize-batch|logits|score|ppl|pplhf ... (see the source)\n");
	return 2;
}
