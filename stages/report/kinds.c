/* report.csv, report.json and report.svg: the table of report.markdown
 * (table.h) as CSV, as the JSON a baseline is made of, and as a chart. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/os.h"
#include "stages/report/kinds.h"
#include "stages/report/table.h"

int qp_report_run(struct qp_stage_ctx *ctx, const char *name, qp_report_render_fn render,
                  struct qp_err *err)
{
	json_t *t = NULL;
	int rc = qp_table_from_ctx(&t, ctx, err);
	if (rc)
		return rc;
	char *text = NULL;
	size_t len = 0;
	rc = render(t, ctx, &text, &len, err);
	size_t nrows = json_array_size(json_object_get(t, "rows"));
	json_decref(t);
	if (rc)
		return rc;
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", qp_ctx_out_dir(ctx), name);
	rc = qp_os_write_file_atomic(path, text, len, err);
	free(text);
	if (rc)
		return rc;
	json_object_set_new(qp_ctx_metrics(ctx), "rows", json_integer((json_int_t)nrows));
	return qp_ctx_add_output(ctx, name, err);
}

/* ---- report.csv ---- */

static const struct qp_param_decl csv_params[] = {
	QP_REPORT_PARAMS,
	{0},
};

static int render_csv(const json_t *t, struct qp_stage_ctx *ctx, char **out, size_t *len,
                      struct qp_err *err)
{
	(void)ctx;
	return qp_table_csv(t, out, len, err);
}

static int run_csv(struct qp_stage_ctx *ctx, struct qp_err *err)
{
	return qp_report_run(ctx, "report.csv", render_csv, err);
}

const struct qp_stage_kind qp_kind_report_csv = {
	.name = "report.csv",
	.version = 2,
	.summary = "the report table as CSV (values in each column's format; reference columns "
	           "METRIC_theirs, METRIC_delta, METRIC_delta_pct)",
	.params = csv_params,
	.run = run_csv,
};

/* ---- report.json ---- */

static const struct qp_param_decl json_params[] = {
	QP_REPORT_PARAMS,
	{0},
};

static int render_json(const json_t *t, struct qp_stage_ctx *ctx, char **out, size_t *len,
                       struct qp_err *err)
{
	(void)ctx;
	char *s = json_dumps(t, JSON_INDENT(2) | JSON_REAL_PRECISION(15));
	if (!s)
		return qp_err_nomem(err);
	*len = strlen(s);
	/* a trailing newline, as text files have */
	char *s2 = realloc(s, *len + 2);
	if (!s2) {
		free(s);
		return qp_err_nomem(err);
	}
	s2[(*len)++] = '\n';
	s2[*len] = '\0';
	*out = s2;
	return 0;
}

static int run_json(struct qp_stage_ctx *ctx, struct qp_err *err)
{
	return qp_report_run(ctx, "report.json", render_json, err);
}

const struct qp_stage_kind qp_kind_report_json = {
	.name = "report.json",
	.version = 2,
	.summary = "the report table as JSON, full precision: a baseline for 'qpipe run --check' "
	           "and 'qpipe report diff'",
	.params = json_params,
	.run = run_json,
};

/* ---- report.svg ---- */

static const char *const chart_choices[] = {"scatter", "bars", NULL};

static const struct qp_param_decl svg_params[] = {
	QP_REPORT_PARAMS,
	{.name = "chart", .type = QP_P_ENUM, .def = "scatter", .choices = chart_choices,
	 .doc = "scatter: a point per row at (x, y); bars: a bar of y per row"},
	{.name = "x", .type = QP_P_STRING, .def = "size_mb", .doc = "scatter: the metric across"},
	{.name = "y", .type = QP_P_STRING, .def = "ppl", .doc = "the metric up (scatter) or the bars' metric"},
	{0},
};

static int render_svg(const json_t *t, struct qp_stage_ctx *ctx, char **out, size_t *len,
                      struct qp_err *err)
{
	return qp_table_svg(t, qp_ctx_param(ctx, "chart")->s, qp_ctx_param(ctx, "x")->s,
	                    qp_ctx_param(ctx, "y")->s, out, len, err);
}

static int run_svg(struct qp_stage_ctx *ctx, struct qp_err *err)
{
	return qp_report_run(ctx, "report.svg", render_svg, err);
}

const struct qp_stage_kind qp_kind_report_svg = {
	.name = "report.svg",
	.version = 2,
	.summary = "a chart of the report table as SVG: size against perplexity, bits per weight "
	           "against a metric, bars of any metric; published points hollow",
	.params = svg_params,
	.run = run_svg,
};
