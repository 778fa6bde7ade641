/* The regression gate (qpipe run --check) and the table both it and
 * `qpipe report diff` print. */
#ifndef QP_CMD_CHECK_H
#define QP_CMD_CHECK_H

#include <stddef.h>
#include <stdio.h>

#include "pipeline/exec.h"
#include "stages/report/table.h"

#define QP_CHECK_MAX_TOL 64

/* Parse --tolerance (NULL: none) into tol; prints the error and returns
 * QP_EXIT_USAGE, else QP_EXIT_OK. */
int qp_cli_check_tolerances(const char *spec, struct qp_tolerance *tol, size_t *ntol);

/* Print deltas as a markdown table to f: all of them, or only the
 * regressed ones. */
void qp_cli_print_deltas(FILE *f, const struct qp_delta *d, size_t n, int only_regressed);

/* Compare the report.json files a run produced (paths[n], of report
 * stage instances ids[n]) with the baseline file; prints what regressed.
 * Returns QP_EXIT_OK, QP_EXIT_FAILED (a regression) or QP_EXIT_ENV. */
int qp_cli_check(const char *baseline, const struct qp_tolerance *tol, size_t ntol,
                 const char *const *ids, const char *const *paths, size_t n);

/* qp_cli_check over the report.json files of a finished run. */
int qp_cli_check_run(const struct qp_graph *g, const struct qp_runner *r, const char *baseline,
                     const struct qp_tolerance *tol, size_t ntol);

#endif
