/* report.markdown: one markdown table over the metrics of many instances.
 *
 * A row per gathered instance; the first column is the matrix coordinate
 * named by 'rows' (or the instance id), then one column per entry of
 * 'columns', each a coordinate or a metric. Notes under the table say what
 * the numbers mean, the setting (model, text, n_ctx, threads, host, qpipe
 * version), every tensor that fell back to another type and, with a
 * 'reference', the published numbers beside ours. The table model and its
 * parameters are shared with report.csv, report.json and report.svg
 * (table.h). */
#include <stdlib.h>

#include "stages/report/kinds.h"
#include "stages/report/table.h"

static const struct qp_param_decl params[] = {
	QP_REPORT_PARAMS,
	{0},
};

static int render(const json_t *t, struct qp_stage_ctx *ctx, char **out, size_t *len,
                  struct qp_err *err)
{
	(void)ctx;
	return qp_table_markdown(t, out, len, err);
}

static int run(struct qp_stage_ctx *ctx, struct qp_err *err)
{
	return qp_report_run(ctx, "report.md", render, err);
}

const struct qp_stage_kind qp_kind_report_markdown = {
	.name = "report.markdown",
	.version = 4,
	.summary = "a markdown table of the metrics of a stage's instances",
	.params = params,
	.run = run,
};
