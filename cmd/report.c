/* qpipe report diff A.json B.json: two report.json files side by side. */
#include <stdlib.h>
#include <string.h>

#include "cmd/check.h"
#include "cmd/cli.h"

static int diff(const struct qp_cmd *cmd, const struct qp_args *a)
{
	if (a->npos != 3) {
		qp_cli_error("report diff: expected A.json B.json (see 'qpipe report --help')");
		return QP_EXIT_USAGE;
	}
	struct qp_tolerance tol[QP_CHECK_MAX_TOL];
	size_t ntol;
	int ex = qp_cli_check_tolerances(qp_cli_get(cmd, a, "tolerance"), tol, &ntol);
	if (ex)
		return ex;
	struct qp_err err = {0};
	json_t *ta = NULL, *tb = NULL;
	if (qp_table_load(&ta, a->pos[1], &err) || qp_table_load(&tb, a->pos[2], &err)) {
		qp_cli_error("report diff: %s", err.msg);
		json_decref(ta);
		return QP_EXIT_ENV;
	}
	struct qp_delta *d = NULL;
	size_t n = 0, bad = 0;
	if (qp_table_compare(ta, tb, tol, ntol, &d, &n, &bad, &err)) {
		qp_cli_error("report diff: %s", err.msg);
		ex = QP_EXIT_ENV;
	} else {
		printf("## %s -> %s\n\n", a->pos[1], a->pos[2]);
		qp_cli_print_deltas(stdout, d, n, 0);
		if (ntol)
			printf("\n%zu regression(s)\n", bad);
		ex = ntol && bad ? QP_EXIT_FAILED : QP_EXIT_OK;
	}
	free(d);
	json_decref(ta);
	json_decref(tb);
	return ex;
}

int cmd_report(const struct qp_cmd *cmd, int argc, char **argv)
{
	struct qp_args a;
	if (qp_cli_parse(cmd, argc, argv, &a) != 0)
		return QP_EXIT_USAGE;
	if (a.help) {
		qp_cli_help(cmd, stdout);
		return QP_EXIT_OK;
	}
	if (a.npos >= 1 && !strcmp(a.pos[0], "diff"))
		return diff(cmd, &a);
	qp_cli_error("report: expected 'diff A.json B.json' (see 'qpipe report --help')");
	return QP_EXIT_USAGE;
}
