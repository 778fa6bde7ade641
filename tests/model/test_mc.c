/* model/mc without a model: lm-eval's HellaSwag preprocess (expected
 * strings from Python's re and str on the same inputs), the queries built
 * for each format, format detection, limits, and bad task files failing
 * with the file and line named. The scores themselves are checked against
 * a numpy forward pass in test_mc_ref.py. */
#include "model/mc.h"
#include "../formats/tf.h"

static struct qp_err err;

static void check_pre(const char *in, const char *want, int *ok)
{
	char *out = NULL;
	if (qp_mc_preprocess(&out, in, strlen(in), &err) || strcmp(out, want)) {
		fprintf(stderr, "    preprocess('%s') = '%s', expected '%s'\n", in, out ? out : "(error)", want);
		*ok = 0;
	}
	free(out);
}

static void mc__preprocess_matches_lm_eval(void)
{
	int ok = 1;
	check_pre("  How to fold [title] Fold the shirt. [step] Lay it flat.  ",
	          "How to fold. Fold the shirt. Lay it flat.", &ok);
	check_pre("a [x\ny] b [z] c", "a [x\ny] b c", &ok);     /* '.' does not match a newline */
	check_pre("one   three", "one  three", &ok);             /* one non-overlapping pass */
	check_pre("unclosed [ bracket", "unclosed [ bracket", &ok);
	check_pre("[header] x [sub]]y", " x ]y", &ok);           /* strip runs first */
	check_pre("\t\n trailing tabs\t", "trailing tabs", &ok);
	check_pre("", "", &ok);
	CHECK(ok);
}

static const char *write_tmp(const char *name, const char *text)
{
	static char path[4096];
	tf_path(path, sizeof(path), name);
	tf_spit(path, text, strlen(text));
	return path;
}

static void mc__hellaswag_original_fields_build_lm_eval_query(void)
{
	const char *p = write_tmp("hs.jsonl",
		"{\"activity_label\": \"Washing dishes\", \"ctx_a\": \"A woman is at a sink.\", "
		"\"ctx_b\": \"she SCRUBS a pot.\", \"endings\": [\"She [step] rinses it.\", \" b \"], \"label\": \"1\"}\n");
	struct qp_mc_task *t;
	CHECK_OK(qp_mc_load(&t, p, 0, &err));
	CHECK_EQ_INT(t->format, QP_MC_HELLASWAG);
	CHECK_EQ_STR(t->name, "hellaswag");
	CHECK_EQ_INT(t->n_items, 1);
	CHECK_EQ_STR(t->items[0].context, "Washing dishes: A woman is at a sink. She scrubs a pot.");
	CHECK_EQ_INT(t->items[0].n_choices, 2);
	CHECK_EQ_STR(t->items[0].choices[0], "She rinses it.");
	CHECK_EQ_STR(t->items[0].choices[1], "b");
	CHECK_EQ_INT(t->items[0].label, 1);
	qp_mc_task_free(t);
}

static void mc__shared_hellaswag_ctx_layout_and_limit(void)
{
	struct qp_mc_task *t;
	CHECK_OK(qp_mc_load(&t, tf_shared("data/tasks/hellaswag_validation.jsonl"), 3, &err));
	CHECK_EQ_INT(t->n_items, 3);
	CHECK_EQ_INT(t->items[2].line, 3);
	CHECK_EQ_STR(t->items[0].context, "Roof shingle removal: A man is sitting on a roof. he");
	CHECK_EQ_INT(t->items[0].n_choices, 4);
	CHECK_EQ_STR(t->items[0].choices[3], "starts pulling up roofing on a roof.");
	CHECK_EQ_INT(t->items[0].label, 3);
	qp_mc_task_free(t);
}

static void mc__piqa_query_and_choices_kept_verbatim(void)
{
	struct qp_mc_task *t;
	CHECK_OK(qp_mc_load(&t, tf_shared("data/tasks/piqa_validation.jsonl"), 0, &err));
	CHECK_EQ_INT(t->format, QP_MC_PIQA);
	CHECK_EQ_INT(t->n_items, 1838);
	CHECK_EQ_STR(t->items[1].context, "Question: dresser\nAnswer:");
	CHECK_EQ_STR(t->items[1].choices[1], "finish, woodgrain with  bobby pin ");
	CHECK_EQ_INT(t->items[1].label, 1);
	qp_mc_task_free(t);
}

static void mc__bad_task_files_name_file_and_line(void)
{
	struct qp_mc_task *t = NULL;
	char want[8192];
	const char *good = "{\"goal\": \"g\", \"sol1\": \"a\", \"sol2\": \"b\", \"label\": 0}\n";
	char text[1024];

	snprintf(text, sizeof(text), "%s\n%s{\"goal\": \"g\", \"sol1\": \"a\"", good, good);
	const char *p = write_tmp("bad.jsonl", text);
	snprintf(want, sizeof(want), "%s:4:25: not JSON: '}' expected near end of file", p);
	CHECK_ERR(qp_mc_load(&t, p, 0, &err), QP_ECORRUPT, want);
	CHECK(t == NULL);
	/* a limit stops reading before the bad line */
	CHECK_OK(qp_mc_load(&t, p, 2, &err));
	CHECK_EQ_INT(t->n_items, 2);
	qp_mc_task_free(t);
	t = NULL;

	snprintf(text, sizeof(text), "%s{\"ctx\": \"c\", \"endings\": [\"a\", \"b\"], \"label\": 0}\n", good);
	p = write_tmp("mixed.jsonl", text);
	snprintf(want, sizeof(want), "%s:2: piqa item has no string 'goal'", p);
	CHECK_ERR(qp_mc_load(&t, p, 0, &err), QP_ECORRUPT, want);

	p = write_tmp("label.jsonl", "{\"ctx\": \"c\", \"endings\": [\"a\", \"b\"], \"label\": 2}\n");
	snprintf(want, sizeof(want), "%s:1: label 2 is out of range for 2 choices", p);
	CHECK_ERR(qp_mc_load(&t, p, 0, &err), QP_ECORRUPT, want);

	p = write_tmp("label2.jsonl", "{\"ctx\": \"c\", \"endings\": [\"a\", \"b\"], \"label\": \"x\"}\n");
	snprintf(want, sizeof(want), "%s:1: 'label' is not an integer", p);
	CHECK_ERR(qp_mc_load(&t, p, 0, &err), QP_ECORRUPT, want);

	p = write_tmp("ends.jsonl", "{\"ctx\": \"c\", \"endings\": [\"a\", 3], \"label\": 0}\n");
	snprintf(want, sizeof(want), "%s:1: ending 1 is not a string", p);
	CHECK_ERR(qp_mc_load(&t, p, 0, &err), QP_ECORRUPT, want);

	p = write_tmp("other.jsonl", "\n{\"question\": \"q\", \"choices\": []}\n");
	snprintf(want, sizeof(want), "%s:2: neither a hellaswag item (ctx, endings, label) nor a piqa item "
	         "(goal, sol1, sol2, label)", p);
	CHECK_ERR(qp_mc_load(&t, p, 0, &err), QP_EINVAL, want);

	p = write_tmp("empty.jsonl", "\n  \n");
	snprintf(want, sizeof(want), "%s: no items", p);
	CHECK_ERR(qp_mc_load(&t, p, 0, &err), QP_EINVAL, want);
	CHECK(t == NULL);
}

int main(int argc, char **argv)
{
	static const struct tf_test tests[] = {
		TF_TEST(mc__preprocess_matches_lm_eval),
		TF_TEST(mc__hellaswag_original_fields_build_lm_eval_query),
		TF_TEST(mc__shared_hellaswag_ctx_layout_and_limit),
		TF_TEST(mc__piqa_query_and_choices_kept_verbatim),
		TF_TEST(mc__bad_task_files_name_file_and_line),
	};
	return tf_main(argc, argv, tests, sizeof(tests) / sizeof(tests[0]));
}
