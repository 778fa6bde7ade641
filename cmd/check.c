/* qpipe run --check BASELINE.json --tolerance ppl=+0.5%,tok_s=-10%
 *
 * A baseline is a report.json (the output of a report.json stage; its
 * format is described in stages/report/table.h). After the run, the
 * report.json of the same report stage (its "stage" field), or the run's
 * only report.json, is compared with it row by row (rows matched by
 * label): a metric regresses when it moves past its tolerance in the bad
 * direction (+: increases are bad, -: decreases are bad, no sign: either
 * way; an amount with % is relative to the baseline value), or when a
 * baseline row or value is missing now. Without --tolerance every numeric
 * value must match the baseline (to a relative 1e-9). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/check.h"
#include "cmd/cli.h"

int qp_cli_check_tolerances(const char *spec, struct qp_tolerance *tol, size_t *ntol)
{
	*ntol = 0;
	if (!spec)
		return QP_EXIT_OK;
	struct qp_err err = {0};
	if (qp_tolerance_parse(spec, tol, QP_CHECK_MAX_TOL, ntol, &err)) {
		qp_cli_error("--tolerance: %s", err.msg);
		return QP_EXIT_USAGE;
	}
	return QP_EXIT_OK;
}

static void tol_text(char *buf, size_t n, const struct qp_tolerance *t)
{
	if (!t) {
		snprintf(buf, n, "exact");
		return;
	}
	snprintf(buf, n, "%s%g%s", t->dir > 0 ? "+" : t->dir < 0 ? "-" : "±", t->amount,
	         t->relative ? "%" : "");
}

void qp_cli_print_deltas(FILE *f, const struct qp_delta *d, size_t n, int only_regressed)
{
	fprintf(f, "| row | metric | baseline | now | Δ | Δ%% | tolerance | |\n"
	           "|---|---|---:|---:|---:|---:|---|---|\n");
	for (size_t i = 0; i < n; i++) {
		const struct qp_delta *e = &d[i];
		if (only_regressed && !e->regressed)
			continue;
		char tt[64], now[64] = "missing", dl[64] = "–", pct[64] = "–";
		if (e->checked)
			tol_text(tt, sizeof(tt), e->tol);
		else
			snprintf(tt, sizeof(tt), "–");
		if (e->has_b) {
			snprintf(now, sizeof(now), "%.6g", e->b);
			snprintf(dl, sizeof(dl), "%+.4g", e->b - e->a);
			if (e->a != 0)
				snprintf(pct, sizeof(pct), "%+.2f%%", 100.0 * (e->b - e->a) / fabs(e->a));
		}
		fprintf(f, "| %s | %s | %.6g | %s | %s | %s | %s | %s |\n", e->row, e->metric, e->a, now,
		        dl, pct, tt, e->regressed ? "**REGRESSED**" : e->checked ? "ok" : "");
	}
}

int qp_cli_check(const char *baseline, const struct qp_tolerance *tol, size_t ntol,
                 const char *const *ids, const char *const *paths, size_t n)
{
	struct qp_err err = {0};
	json_t *base = NULL, *now = NULL;
	if (qp_table_load(&base, baseline, &err)) {
		qp_cli_error("--check: %s", err.msg);
		return QP_EXIT_ENV;
	}
	const char *want = json_string_value(json_object_get(base, "stage"));
	size_t pick = n;
	for (size_t i = 0; want && i < n; i++)
		if (!strcmp(ids[i], want))
			pick = i;
	if (pick == n && n == 1)
		pick = 0;
	if (pick == n) {
		qp_cli_error("--check: %s is the report of stage '%s', and the run has %s report.json "
		             "stage of that name", baseline, want ? want : "?", "no");
		json_decref(base);
		return QP_EXIT_FAILED;
	}
	if (qp_table_load(&now, paths[pick], &err)) {
		qp_cli_error("--check: %s", err.msg);
		json_decref(base);
		return QP_EXIT_ENV;
	}
	struct qp_delta *d = NULL;
	size_t nd = 0, bad = 0;
	int ex = QP_EXIT_OK;
	if (qp_table_compare(base, now, tol, ntol, &d, &nd, &bad, &err)) {
		qp_cli_error("--check: %s", err.msg);
		ex = QP_EXIT_ENV;
	} else if (bad) {
		printf("## check: %zu regression(s) against %s (stage '%s')\n\n", bad, baseline, ids[pick]);
		qp_cli_print_deltas(stdout, d, nd, 1);
		fflush(stdout);
		qp_cli_error("check failed: %zu value(s) regressed past their tolerance", bad);
		ex = QP_EXIT_FAILED;
	} else {
		size_t checked = 0;
		for (size_t i = 0; i < nd; i++)
			checked += (size_t)d[i].checked;
		printf("check: %zu value(s) of stage '%s' within tolerance of %s\n", checked, ids[pick],
		       baseline);
	}
	free(d);
	json_decref(base);
	json_decref(now);
	return ex;
}

int qp_cli_check_run(const struct qp_graph *g, const struct qp_runner *r, const char *baseline,
                     const struct qp_tolerance *tol, size_t ntol)
{
	const char **ids = calloc(g->n + 1, sizeof(*ids));
	const char **paths = calloc(g->n + 1, sizeof(*paths));
	size_t n = 0;
	for (size_t i = 0; ids && paths && i < g->n; i++) {
		const struct qp_entry *e = qp_runner_entry(r, i);
		const char *p = e->art.n_files ? qp_artifact_file(&e->art, "report.json") : NULL;
		if (p) {
			ids[n] = g->inst[i].id;
			paths[n++] = p;
		}
	}
	int ex = QP_EXIT_ENV;
	if (ids && paths)
		ex = qp_cli_check(baseline, tol, ntol, ids, paths, n);
	else
		qp_cli_error("out of memory");
	free(ids);
	free(paths);
	return ex;
}
