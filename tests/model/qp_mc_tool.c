/* Test helper for the python suite: runs model/mc on task files and prints
 * what it read and computed as JSON lines, so an independent scorer
 * (sentencepiece + tests/model/llama_ref.py) can be held against it.
 *
 *   qp_mc_tool items TASK LIMIT
 *       one line per item: {"line", "context", "choices", "label"}, then
 *       {"task": name}
 *   qp_mc_tool score GGUF TASK LIMIT THREADS N_CTX
 *       one line per item: {"line", "ll", "n_tokens", "pred", "pred_norm"},
 *       then the totals {"task", "n", "acc", "acc_norm", ...}
 *
 * QPIPE_KERNELS picks the kernel level, as for qpipe. Errors go to stderr as "qp_mc_tool: MESSAGE", exit status 1. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "model/llama.h"
#include "model/mc.h"
#include "model/tokenizer.h"

static int die(const struct qp_err *err)
{
	fprintf(stderr, "qp_mc_tool: %s\n", err->msg);
	return 1;
}

static void print_json(json_t *j)
{
	char *s = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(17));
	puts(s ? s : "null");
	free(s);
	json_decref(j);
}

static int cmd_items(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	struct qp_err err = {0};
	struct qp_mc_task *t;
	if (qp_mc_load(&t, argv[0], atoll(argv[1]), &err))
		return die(&err);
	for (size_t i = 0; i < t->n_items; i++) {
		const struct qp_mc_item *it = &t->items[i];
		json_t *ch = json_array();
		for (size_t c = 0; c < it->n_choices; c++)
			json_array_append_new(ch, json_string(it->choices[c]));
		print_json(json_pack("{s:I, s:s, s:o, s:i}", "line", (json_int_t)it->line, "context", it->context,
		                     "choices", ch, "label", it->label));
	}
	print_json(json_pack("{s:s}", "task", t->name));
	qp_mc_task_free(t);
	return 0;
}

static int print_item(void *arg, const struct qp_mc_task *t, const struct qp_mc_scored *s,
                      struct qp_err *err)
{
	(void)arg;
	(void)err;
	const struct qp_mc_item *it = &t->items[s->index];
	json_t *ll = json_array(), *nt = json_array();
	for (size_t c = 0; c < it->n_choices; c++) {
		json_array_append_new(ll, json_real(s->ll[c]));
		json_array_append_new(nt, json_integer(s->n_tokens[c]));
	}
	print_json(json_pack("{s:I, s:o, s:o, s:i, s:i}", "line", (json_int_t)it->line, "ll", ll, "n_tokens", nt,
	                     "pred", s->pred, "pred_norm", s->pred_norm));
	return 0;
}

static int cmd_score(int argc, char **argv)
{
	if (argc < 5)
		return 2;
	struct qp_err err = {0};
	struct qp_mc_task *t = NULL;
	struct qp_llama *m = NULL;
	struct qp_tokenizer *tok = NULL;
	struct qp_mc_result r;
	if (qp_mc_load(&t, argv[1], atoll(argv[2]), &err) ||
	    qp_llama_open(&m, argv[0], atoll(argv[4]), atoi(argv[3]), &err) ||
	    qp_tokenizer_from_gguf(&tok, qp_llama_gguf(m), &err) ||
	    qp_mc_run(&r, m, tok, t, print_item, NULL, &err)) {
		qp_mc_task_free(t);
		qp_tokenizer_free(tok);
		qp_llama_free(m);
		return die(&err);
	}
	print_json(json_pack("{s:s, s:I, s:I, s:I, s:f, s:f, s:f, s:f}", "task", t->name, "n", (json_int_t)r.n,
	                     "correct", (json_int_t)r.correct, "correct_norm", (json_int_t)r.correct_norm,
	                     "acc", r.acc, "acc_norm", r.acc_norm, "acc_stderr", r.acc_stderr,
	                     "acc_norm_stderr", r.acc_norm_stderr));
	qp_mc_task_free(t);
	qp_tokenizer_free(tok);
	qp_llama_free(m);
	return 0;
}

int main(int argc, char **argv)
{
	struct qp_err err = {0};
	if (qp_kernels_init(NULL, &err))
		return die(&err);
	int rc = 2;
	if (argc > 1 && !strcmp(argv[1], "items"))
		rc = cmd_items(argc - 2, argv + 2);
	else if (argc > 1 && !strcmp(argv[1], "score"))
		rc = cmd_score(argc - 2, argv + 2);
	if (rc == 2)
		fprintf(stderr, "usage: qp_mc_tool items TASK LIMIT | score GGUF TASK LIMIT THREADS N_CTX\n");
	return rc;
}
