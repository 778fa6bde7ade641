/* The table model every report kind shares (report.markdown, .csv, .json,
 * .svg), and the comparisons made on it (qpipe run --check, report diff).
 *
 * A table is a JSON document, the very one report.json writes, so a
 * renderer and a baseline read the same thing:
 *
 *   {
 *     "qpipe_report": 1,                    format version
 *     "stage": "table",                     the report stage instance
 *     "title": "…",
 *     "row_key": "type",                    header of the label column
 *     "columns": ["size_mb", "ppl"],        in order
 *     "formats": {"ppl": "%.4f", …},        printf format of each numeric column
 *     "rows": [{"label": "q4_0",            row label (a matrix coordinate)
 *               "instance": "eval[type=q4_0]",  null for a reference-only row
 *               "values": {"size_mb": 14.2, "ppl": 11.3},  full precision
 *               "reference": {"ppl": 10.9}}],   published values, if any
 *     "caption": {"model": …, "text": …, "n_ctx": …, "chunks": …,
 *                 "tokenizer": …, "threads": …, "host": …, "cpu": …,
 *                 "qpipe": …},              what is known of the setting
 *     "notes": ["…"],                       lines under the table
 *     "fallbacks": ["…"],                   one paragraph per instance
 *     "reference": {"source": "…", "setting": {"model": "…", …},
 *                   "differs": [{"key": "model", "theirs": "…", "ours": "…"}]}
 *   }
 *
 * Values keep full precision (a baseline compares raw numbers); formats
 * apply only when a table is rendered. */
#ifndef QP_REPORT_TABLE_H
#define QP_REPORT_TABLE_H

#include <stddef.h>

#include <jansson.h>

#include "common/err.h"
#include "stages/stage.h"

#define QP_REPORT_FORMAT_VERSION 1

/* The parameters every report kind declares, in this order; a kind may add
 * its own after them. */
#define QP_REPORT_PARAMS                                                                          \
	{.name = "from", .type = QP_P_INPUTS, .doc = "the stage whose instances become rows"},      \
	{.name = "rows", .type = QP_P_STRING, .def = "",                                            \
	 .doc = "matrix coordinate labelling each row (default: the instance id)"},                 \
	{.name = "columns", .type = QP_P_LIST,                                                      \
	 .def = "size_mb,bits_per_weight,rmse,rel_err,max_abs",                                     \
	 .doc = "coordinates or metrics to show, in order"},                                        \
	{.name = "title", .type = QP_P_STRING, .def = "",                                           \
	 .doc = "heading (default: the recipe's stage name)"},                                      \
	{.name = "sort", .type = QP_P_STRING, .def = "",                                            \
	 .doc = "COLUMN or COLUMN:desc: order rows by a column (default: instance order)"},         \
	{.name = "formats", .type = QP_P_LIST, .def = "",                                           \
	 .doc = "METRIC=FORMAT entries, FORMAT one printf conversion of f, e or g (ppl=%.2f)"},     \
	{.name = "model", .type = QP_P_STRING, .def = "",                                           \
	 .doc = "the model, for the caption (default: a 'model' metric if any)"},                   \
	{.name = "reference", .type = QP_P_PATH, .def = "",                                         \
	 .doc = "published table: a CSV or markdown file, label column first, metric columns"},     \
	{.name = "reference_rows", .type = QP_P_LIST, .def = "",                                    \
	 .doc = "published table inline: 'LABEL: METRIC=VALUE, METRIC=VALUE' per row"},             \
	{.name = "reference_match", .type = QP_P_LIST, .def = "",                                   \
	 .doc = "THEIR_LABEL=OUR_LABEL entries pairing published rows with ours"},                  \
	{.name = "reference_source", .type = QP_P_STRING, .def = "",                                \
	 .doc = "where the published numbers come from (paper, URL)"},                              \
	{.name = "reference_setting", .type = QP_P_LIST, .def = "",                                 \
	 .doc = "KEY=VALUE of their setting (model, text, n_ctx, hardware), compared with ours"}

/* Build the table of a report stage from its parameters and gathered
 * inputs; *out is a new reference the caller releases with json_decref. */
int qp_table_from_ctx(json_t **out, struct qp_stage_ctx *ctx, struct qp_err *err);

/* Load a report.json (any version up to ours) and check its shape. */
int qp_table_load(json_t **out, const char *path, struct qp_err *err);

/* Render: a malloc'd, NUL-terminated text into *out, its length in *len. */
int qp_table_markdown(const json_t *t, char **out, size_t *len, struct qp_err *err);
int qp_table_csv(const json_t *t, char **out, size_t *len, struct qp_err *err);
/* chart: "scatter" (x against y, a point per row) or "bars" (y per row). */
int qp_table_svg(const json_t *t, const char *chart, const char *x, const char *y, char **out,
                 size_t *len, struct qp_err *err);

/* The printf format of column col (the table's own, else the built-in one
 * for known metrics, else %g). */
const char *qp_table_format(const json_t *t, const char *col);
/* Human name of a metric with its unit, for axes ("size (MB)"). */
const char *qp_metric_label(const char *metric);
/* Is fmt a single printf conversion of a double (f, e, g), safe to use? */
int qp_table_format_ok(const char *fmt);

/* ---- comparing two tables (--check, report diff) ---- */

/* A tolerance: how far a metric may move in its bad direction. */
struct qp_tolerance {
	char metric[64];
	int dir;        /* +1: increases are bad, -1: decreases are bad, 0: either */
	double amount;  /* >= 0 */
	int relative;   /* amount is a percentage of the baseline value */
};

/* Parse "ppl=+0.5%,tok_s=-10%,rmse=1e-4" into out[max]; *n the count. */
int qp_tolerance_parse(const char *spec, struct qp_tolerance *out, size_t max, size_t *n,
                       struct qp_err *err);

/* One compared value. */
struct qp_delta {
	const char *row, *metric;   /* borrowed from the tables */
	double a, b;                /* baseline, now */
	int has_a, has_b;
	const struct qp_tolerance *tol;  /* NULL: not checked */
	int checked;                /* a tolerance (or exactness) applies */
	int regressed;              /* beyond tolerance in the bad direction, or missing now */
};

/* Compare every numeric value of rows present in baseline a with b. With
 * tolerances (ntol > 0) only their metrics are checked; without, every
 * numeric value must match to a relative 1e-9. *out is malloc'd (caller
 * frees), *n entries, *regressions how many regressed. */
int qp_table_compare(const json_t *a, const json_t *b, const struct qp_tolerance *tol,
                     size_t ntol, struct qp_delta **out, size_t *n, size_t *regressions,
                     struct qp_err *err);

#endif
