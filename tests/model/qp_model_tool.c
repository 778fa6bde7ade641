/* Test helper for the python suite: runs model/ code on files and prints
 * what it computed, so the reference packages (sentencepiece, numpy,
 * llama-cpp-python) can be held against it.
 *
 *   qp_model_tool tokenize SRC FILE [--no-special]
 *       ids of FILE's bytes, space-separated on one line; SRC is a model
 *       folder (tokenizer.model) or a .gguf file
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/os.h"
#include "formats/gguf.h"
#include "model/tokenizer.h"

static int die(const struct qp_err *err)
{
	fprintf(stderr, "qp_model_tool: %s\n", err->msg);
	return 1;
}

static int ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);
	return n >= m && strcmp(s + n - m, suffix) == 0;
}

static int load_tokenizer(struct qp_tokenizer **t, const char *src, struct qp_err *err)
{
	if (!ends_with(src, ".gguf"))
		return qp_tokenizer_from_dir(t, src, err);
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

int main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "tokenize") == 0)
		return cmd_tokenize(argc - 2, argv + 2);
	fprintf(stderr, "usage: qp_model_tool tokenize SRC FILE [--no-special]\n");
	return 2;
}
