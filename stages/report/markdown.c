/* report.markdown: one markdown table over the metrics of many instances.
 *
 * A row per gathered instance; the first column is the matrix coordinate
 * named by 'rows' (or the instance id), then one column per entry of
 * 'columns', each a coordinate or a metric. Notes under the table say what
 * the numbers mean and list every tensor that fell back to another type. */
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "common/os.h"
#include "stages/stage.h"

static const struct qp_param_decl params[] = {
	{.name = "from", .type = QP_P_INPUTS, .doc = "the stage whose instances become rows"},
	{.name = "rows", .type = QP_P_STRING, .def = "",
	 .doc = "matrix coordinate labelling each row (default: the instance id)"},
	{.name = "columns", .type = QP_P_LIST,
	 .def = "size_mb,bits_per_weight,rmse,rel_err,max_abs",
	 .doc = "coordinates or metrics to show, in order"},
	{.name = "title", .type = QP_P_STRING, .def = "", .doc = "heading (default: the recipe's stage name)"},
	{0},
};

/* Format of a known metric; others print with %g. */
static const char *metric_format(const char *name)
{
	static const struct { const char *name, *fmt; } f[] = {
		{"size_mb", "%.2f"}, {"bits_per_weight", "%.2f"}, {"rmse", "%.3e"},
		{"max_abs", "%.3e"}, {"rel_err", "%.4f"}, {"ppl", "%.4f"}, {"ppl_err", "%.4f"},
	};
	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++)
		if (!strcmp(f[i].name, name))
			return f[i].fmt;
	return "%g";
}

static void cell(char *buf, size_t n, const struct qp_artifact *a, const char *col)
{
	const char *c = qp_artifact_coord(a, col);
	if (c) {
		snprintf(buf, n, "%s", c);
		return;
	}
	json_t *v = json_object_get(a->metrics, col);
	if (json_is_string(v))
		snprintf(buf, n, "%s", json_string_value(v));
	else if (json_is_integer(v))
		snprintf(buf, n, "%lld", (long long)json_integer_value(v));
	else if (json_is_number(v))
		snprintf(buf, n, metric_format(col), json_number_value(v));
	else
		snprintf(buf, n, "–");
}

/* A column is numeric (right-aligned) if any row holds a number there. */
static int numeric(const struct qp_artifact *const *in, size_t n, const char *col)
{
	for (size_t i = 0; i < n; i++)
		if (!qp_artifact_coord(in[i], col) && json_is_number(json_object_get(in[i]->metrics, col)))
			return 1;
	return 0;
}

static int append(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int append(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
{
	for (;;) {
		va_list ap;
		va_start(ap, fmt);
		int w = vsnprintf(*buf + *len, *cap - *len, fmt, ap);
		va_end(ap);
		if (w < 0)
			return -1;
		if ((size_t)w < *cap - *len) {
			*len += (size_t)w;
			return 0;
		}
		size_t nc = *cap * 2 + (size_t)w;
		char *nb = realloc(*buf, nc);
		if (!nb)
			return -1;
		*buf = nb;
		*cap = nc;
	}
}

static int run(struct qp_stage_ctx *ctx, struct qp_err *err)
{
	const struct qp_artifact *const *in;
	size_t n = qp_ctx_inputs(ctx, "from", &in);
	const struct qp_value *cols = qp_ctx_param(ctx, "columns");
	const char *rows = qp_ctx_param(ctx, "rows")->s;
	const char *title = qp_ctx_param(ctx, "title")->s;
	size_t cap = 4096, len = 0;
	char *md = malloc(cap);
	if (!md)
		return qp_err_nomem(err);
	md[0] = '\0';
	int bad = 0;
	char c[256];
	bad |= append(&md, &len, &cap, "## %s\n\n| %s |", title[0] ? title : qp_ctx_instance(ctx),
	              rows[0] ? rows : "stage");
	for (size_t j = 0; j < cols->n; j++)
		bad |= append(&md, &len, &cap, " %s |", cols->list[j]);
	bad |= append(&md, &len, &cap, "\n|---|");
	for (size_t j = 0; j < cols->n; j++)
		bad |= append(&md, &len, &cap, "%s|", numeric(in, n, cols->list[j]) ? "---:" : "---");
	bad |= append(&md, &len, &cap, "\n");
	for (size_t i = 0; i < n; i++) {
		const char *label = rows[0] ? qp_artifact_coord(in[i], rows) : NULL;
		bad |= append(&md, &len, &cap, "| %s |", label ? label : in[i]->instance);
		for (size_t j = 0; j < cols->n; j++) {
			cell(c, sizeof(c), in[i], cols->list[j]);
			bad |= append(&md, &len, &cap, " %s |", c);
		}
		bad |= append(&md, &len, &cap, "\n");
	}
	bad |= append(&md, &len, &cap,
	              "\nsize_mb: tensor data in 10^6 bytes; bits_per_weight: tensor data bits per "
	              "element, all tensors; rmse, max_abs, rel_err: dequantized 2-D weights against "
	              "the source weights (rel_err = ||w - q|| / ||w||).\n");
	for (size_t i = 0; i < n; i++) {
		json_t *m = in[i]->metrics;
		if (!json_is_number(json_object_get(m, "ppl")))
			continue;
		const char *text = json_string_value(json_object_get(m, "text"));
		const char *base = text ? strrchr(text, '/') : NULL;
		bad |= append(&md, &len, &cap,
		              "ppl: perplexity ± its standard error by %s; n_ctx %lld, %lld chunk(s), "
		              "%lld tokens scored of %s; tokenizer: %s.\n",
		              json_string_value(json_object_get(m, "ppl_method")),
		              (long long)json_integer_value(json_object_get(m, "n_ctx")),
		              (long long)json_integer_value(json_object_get(m, "chunks")),
		              (long long)json_integer_value(json_object_get(m, "tokens_scored")),
		              base ? base + 1 : text ? text : "?",
		              json_string_value(json_object_get(m, "tokenizer")));
		break;
	}
	for (size_t i = 0; i < n; i++) {
		json_t *fb = json_object_get(in[i]->metrics, "fallback");
		if (!json_array_size(fb))
			continue;
		const char *ft = json_string_value(json_object_get(in[i]->metrics, "fallback_type"));
		bad |= append(&md, &len, &cap,
		              "\n%s: %zu tensor(s) whose rows do not divide into the type's blocks are "
		              "stored as %s:",
		              in[i]->instance, json_array_size(fb), ft ? ft : "another type");
		size_t k;
		json_t *v;
		json_array_foreach(fb, k, v)
			bad |= append(&md, &len, &cap, "%s %s", k ? "," : "", json_string_value(v));
		bad |= append(&md, &len, &cap, "\n");
	}
	if (bad) {
		free(md);
		return qp_err_nomem(err);
	}
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/report.md", qp_ctx_out_dir(ctx));
	int rc = qp_os_write_file_atomic(path, md, len, err);
	free(md);
	if (rc)
		return rc;
	json_object_set_new(qp_ctx_metrics(ctx), "rows", json_integer((json_int_t)n));
	return qp_ctx_add_output(ctx, "report.md", err);
}

const struct qp_stage_kind qp_kind_report_markdown = {
	.name = "report.markdown",
	.version = 2,
	.summary = "a markdown table of the metrics of a stage's instances",
	.params = params,
	.run = run,
};
