/* Multiple-choice tasks (HellaSwag, PIQA) scored by log-likelihood, the
 * way lm-evaluation-harness scores them zero-shot.
 *
 * Each item is a context and n choices. Choice i's continuation is " " +
 * choice (lm-eval's target delimiter); trailing whitespace of the context
 * moves to the front of the continuation. Tokens: ctx = BOS +
 * encode(context), whole = BOS + encode(context + continuation), and the
 * continuation's tokens are whole[len(ctx):]; the model runs ctx followed
 * by them (the context once per item: its KV cache is shared by the
 * choices). ll_i = sum over the continuation's tokens of log p(token | all
 * before it). acc: argmax_i ll_i is the label; acc_norm: argmax_i ll_i /
 * len_i is, len_i the choice's length in characters (Unicode code points,
 * as Python's len); ties go to the lower index, as numpy's argmax. Standard
 * errors are lm-eval's: sqrt(p (1 - p) / (n - 1)).
 *
 * Task files are JSON Lines; the format is told by the first item's fields:
 *   hellaswag  endings [..], label, and either ctx_a, ctx_b, activity_label
 *              (the original files): context = pre(activity_label + ": " +
 *              ctx_a + " " + capitalize(ctx_b)), or only ctx (the layout
 *              llama.cpp's data and shared/data/tasks use, where activity
 *              label and ctx are already joined): context = pre(ctx). The
 *              choices are pre(ending). pre is lm-eval's preprocess: strip,
 *              " [title]" -> ". ", drop "[...]" (not across a newline),
 *              then "  " -> " " once, left to right. capitalize is
 *              Python's (first letter upper, the rest lower), ASCII only.
 *   piqa       goal, sol1, sol2, label: context "Question: " + goal +
 *              "\nAnswer:", choices sol1 and sol2 as they are.
 * A label may be a number or a string of digits (Hugging Face's layout). */
#ifndef QP_MC_H
#define QP_MC_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

struct qp_llama;
struct qp_tokenizer;

enum qp_mc_format { QP_MC_HELLASWAG, QP_MC_PIQA };

struct qp_mc_item {
	int64_t line;          /* 1-based line in the task file */
	char *context;         /* after the format's preprocessing */
	char **choices;        /* n_choices, preprocessed, without the delimiter */
	size_t n_choices;
	int label;             /* index of the right choice */
};

struct qp_mc_task {
	enum qp_mc_format format;
	const char *name;      /* "hellaswag", "piqa" (static) */
	char *path;
	struct qp_mc_item *items;
	size_t n_items;
};

/* Per-task totals. */
struct qp_mc_result {
	int64_t n;                      /* items scored */
	int64_t correct, correct_norm;  /* items right by acc, by acc_norm */
	double acc, acc_stderr, acc_norm, acc_norm_stderr;
};

/* What qp_mc_run reports for each item; ll and n_tokens hold n_choices
 * entries and are valid only during the call. */
struct qp_mc_scored {
	size_t index;              /* item index in the task */
	const double *ll;          /* log-likelihood of each choice, nats */
	const int64_t *n_tokens;   /* continuation tokens of each choice */
	int pred, pred_norm;       /* argmax of ll, of ll / length */
};

/* Called after each item; a nonzero return (with err set) stops the run. */
typedef int (*qp_mc_item_fn)(void *arg, const struct qp_mc_task *t, const struct qp_mc_scored *s,
                             struct qp_err *err);

/* lm-eval's HellaSwag preprocess of text[len] into a malloc'd *out. */
int qp_mc_preprocess(char **out, const char *text, size_t len, struct qp_err *err);

/* Read the task file at path, its first limit items (0: all). Fails naming
 * the file and line of a line that is not JSON, lacks a field, mixes
 * formats or has a label out of range; an empty file is an error too. */
int qp_mc_load(struct qp_mc_task **out, const char *path, int64_t limit, struct qp_err *err);
void qp_mc_task_free(struct qp_mc_task *t);

/* Score every item of t with m and its tokenizer tok (each item's tokens
 * must fit the model's KV cache: a longer one fails naming its line), call
 * each (may be NULL) after every item, and fill out. */
int qp_mc_run(struct qp_mc_result *out, struct qp_llama *m, const struct qp_tokenizer *tok,
              const struct qp_mc_task *t, qp_mc_item_fn each, void *arg, struct qp_err *err);

#endif
