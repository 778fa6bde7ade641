/* The report table: built from a report stage's inputs, rendered as
 * markdown and CSV. The model is described in table.h. */
#include <ctype.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/os.h"
#include "qp_config.h"
#include "stages/report/reference.h"
#include "stages/report/sbuf.h"
#include "stages/report/table.h"

/* ---- text buffer ---- */

void qp_sbuf_printf(struct qp_sbuf *b, const char *fmt, ...)
{
	if (b->bad)
		return;
	for (;;) {
		va_list ap;
		va_start(ap, fmt);
		int w = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
		va_end(ap);
		if (w < 0) {
			b->bad = 1;
			return;
		}
		if (b->p && (size_t)w < b->cap - b->len) {
			b->len += (size_t)w;
			return;
		}
		size_t nc = b->cap * 2 + (size_t)w + 256;
		char *np = realloc(b->p, nc);
		if (!np) {
			b->bad = 1;
			return;
		}
		b->p = np;
		b->cap = nc;
	}
}

void qp_sbuf_num(struct qp_sbuf *b, const char *fmt, double v)
{
	char tmp[128];
	snprintf(tmp, sizeof(tmp), fmt, v);
	qp_sbuf_printf(b, "%s", tmp);
}

void qp_sbuf_xml(struct qp_sbuf *b, const char *s)
{
	for (; s && *s; s++) {
		switch (*s) {
		case '<': qp_sbuf_printf(b, "&lt;"); break;
		case '>': qp_sbuf_printf(b, "&gt;"); break;
		case '&': qp_sbuf_printf(b, "&amp;"); break;
		case '"': qp_sbuf_printf(b, "&quot;"); break;
		case '\'': qp_sbuf_printf(b, "&apos;"); break;
		default:
			/* control characters are not allowed in XML 1.0 */
			if ((unsigned char)*s >= 0x20 || *s == '\n' || *s == '\t')
				qp_sbuf_printf(b, "%c", *s);
		}
	}
}

int qp_sbuf_finish(struct qp_sbuf *b, char **out, size_t *len, struct qp_err *err)
{
	if (!b->p && !b->bad)
		qp_sbuf_printf(b, "%s", "");
	if (b->bad) {
		free(b->p);
		*b = (struct qp_sbuf){0};
		return qp_err_nomem(err);
	}
	*out = b->p;
	*len = b->len;
	*b = (struct qp_sbuf){0};
	return 0;
}

/* ---- formats and labels ---- */

static const struct {
	const char *name, *fmt, *label;
} known[] = {
	{"size_mb", "%.2f", "size (MB)"},
	{"bits_per_weight", "%.2f", "bits per weight"},
	{"rmse", "%.3e", "weight RMSE"},
	{"max_abs", "%.3e", "max |w - q|"},
	{"rel_err", "%.4f", "relative weight error"},
	{"ppl", "%.4f", "perplexity"},
	{"ppl_err", "%.4f", "perplexity std. error"},
	{"kld", "%.5f", "KL divergence (nats)"},
	{"kld_median", "%.5f", "median KL divergence (nats)"},
	{"kld_p99", "%.4f", "99th percentile KL divergence (nats)"},
	{"top1_pct", "%.2f", "same top token (%)"},
	{"rms_dp", "%.2f", "RMS delta p (%)"},
	{"prefill_tok_s", "%.0f", "prefill tokens/s"},
	{"decode_tok_s", "%.0f", "decode tokens/s"},
	{"peak_rss_mb", "%.0f", "peak RSS (MB)"},
	{"tok_s", "%.1f", "tokens/s"},
	{"ms_per_tok", "%.2f", "ms/token"},
	{"memory_mb", "%.0f", "peak memory (MB)"},
	{"load_s", "%.2f", "load time (s)"},
	{"acc", "%.3f", "accuracy"},
	{"acc_norm", "%.3f", "accuracy (normalized)"},
	{"hellaswag_acc", "%.4f", "HellaSwag accuracy"},
	{"hellaswag_acc_norm", "%.4f", "HellaSwag accuracy (normalized)"},
	{"piqa_acc", "%.4f", "PIQA accuracy"},
	{"piqa_acc_norm", "%.4f", "PIQA accuracy (normalized)"},
	{"compression", "%.1f", "compression (x)"},
	{"n_params", "%.0f", "parameters"},
};

#define N_KNOWN (sizeof(known) / sizeof(known[0]))

const char *qp_metric_label(const char *metric)
{
	for (size_t i = 0; i < N_KNOWN; i++)
		if (!strcmp(known[i].name, metric))
			return known[i].label;
	return metric;
}

int qp_table_format_ok(const char *fmt)
{
	const char *p = strchr(fmt, '%');
	if (!p || strlen(fmt) > 32)
		return 0;
	p++;
	while (*p && strchr("-+ 0#", *p))
		p++;
	int digits = 0;
	while (isdigit((unsigned char)*p) && digits++ < 2)
		p++;
	if (*p == '.') {
		p++;
		digits = 0;
		while (isdigit((unsigned char)*p) && digits++ < 2)
			p++;
	}
	if (!*p || !strchr("feEgG", *p))
		return 0;
	return strchr(p + 1, '%') == NULL;
}

const char *qp_table_format(const json_t *t, const char *col)
{
	const char *f = json_string_value(json_object_get(json_object_get(t, "formats"), col));
	if (f && qp_table_format_ok(f))
		return f;
	for (size_t i = 0; i < N_KNOWN; i++)
		if (!strcmp(known[i].name, col))
			return known[i].fmt;
	return "%g";
}

/* A cell's text: coordinates and strings as they are, integers whole
 * unless the column has a format of its own, numbers in the format. */
static void cell_text(char *buf, size_t n, const json_t *t, const char *col, const json_t *v)
{
	const json_t *own = json_object_get(json_object_get(t, "formats"), col);
	if (json_is_string(v))
		snprintf(buf, n, "%s", json_string_value(v));
	else if (json_is_integer(v) && !json_is_string(own))
		snprintf(buf, n, "%lld", (long long)json_integer_value(v));
	else if (json_is_number(v))
		snprintf(buf, n, qp_table_format(t, col), json_number_value(v));
	else
		snprintf(buf, n, "–");
}

/* The column's format with a '+' flag, for deltas. */
static void signed_format(char *buf, size_t n, const char *fmt)
{
	const char *p = strchr(fmt, '%');
	if (!p || strchr(fmt, '+')) {
		snprintf(buf, n, "%s", fmt);
		return;
	}
	snprintf(buf, n, "%.*s%%+%s", (int)(p - fmt), fmt, p + 1);
}

/* ---- building ---- */

/* Value of col for artifact a: a coordinate (string) or a copy of the
 * metric; NULL if neither. */
static json_t *artifact_value(const struct qp_artifact *a, const char *col)
{
	const char *c = qp_artifact_coord(a, col);
	if (c)
		return json_string(c);
	json_t *v = json_object_get(a->metrics, col);
	if (json_is_string(v) || json_is_number(v))
		return json_deep_copy(v);
	return NULL;
}

static const char *basename_of(const char *p)
{
	const char *s = p ? strrchr(p, '/') : NULL;
	return s ? s + 1 : p;
}

/* The first "model name" line of /proc/cpuinfo, or NULL. */
static json_t *cpu_name(void)
{
	FILE *f = fopen("/proc/cpuinfo", "r");
	if (!f)
		return NULL;
	char line[512];
	json_t *out = NULL;
	while (!out && fgets(line, sizeof(line), f)) {
		if (strncmp(line, "model name", 10))
			continue;
		char *c = strchr(line, ':');
		if (!c)
			continue;
		c++;
		while (*c == ' ' || *c == '\t')
			c++;
		c[strcspn(c, "\n")] = '\0';
		out = json_string(c);
	}
	fclose(f);
	return out;
}

static json_t *build_caption(struct qp_stage_ctx *ctx, const struct qp_artifact *const *in,
                             size_t n)
{
	json_t *cap = json_object();
	const char *model = qp_ctx_param(ctx, "model")->s;
	for (size_t i = 0; !model[0] && i < n; i++) {
		const char *m = json_string_value(json_object_get(in[i]->metrics, "model"));
		if (m)
			model = m;
	}
	if (model[0])
		json_object_set_new(cap, "model", json_string(model));
	for (size_t i = 0; i < n; i++) {
		json_t *m = in[i]->metrics;
		if (!json_is_number(json_object_get(m, "ppl")))
			continue;
		const char *text = json_string_value(json_object_get(m, "text"));
		if (text)
			json_object_set_new(cap, "text", json_string(basename_of(text)));
		static const char *const keys[] = {"n_ctx", "stride", "chunks", "tokens_scored", "tokenizer", "ppl_method"};
		for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
			if (json_object_get(m, keys[k]))
				json_object_set(cap, keys[k], json_object_get(m, keys[k]));
		break;
	}
	json_object_set_new(cap, "threads", json_integer(qp_ctx_threads(ctx)));
	char host[256];
	if (gethostname(host, sizeof(host)) == 0) {
		host[sizeof(host) - 1] = '\0';
		json_object_set_new(cap, "host", json_string(host));
	}
	json_t *cpu = cpu_name();
	if (cpu)
		json_object_set_new(cap, "cpu", cpu);
	json_object_set_new(cap, "qpipe", json_string(QP_VERSION));
	return cap;
}

/* The lines the markdown report has always carried under its table. */
static json_t *build_notes(const struct qp_artifact *const *in, size_t n)
{
	json_t *notes = json_array();
	json_array_append_new(notes, json_string(
		"size_mb: tensor data in 10^6 bytes; bits_per_weight: tensor data bits per element, "
		"all tensors; rmse, max_abs, rel_err: dequantized 2-D weights against the source "
		"weights (rel_err = ||w - q|| / ||w||)."));
	for (size_t i = 0; i < n; i++) {
		json_t *m = in[i]->metrics;
		if (!json_is_number(json_object_get(m, "ppl")))
			continue;
		const char *text = json_string_value(json_object_get(m, "text"));
		const char *method = json_string_value(json_object_get(m, "ppl_method"));
		const char *tok = json_string_value(json_object_get(m, "tokenizer"));
		char line[1024];
		snprintf(line, sizeof(line),
		         "ppl: perplexity ± its standard error by %s; n_ctx %lld, %lld chunk(s), "
		         "%lld tokens scored of %s; tokenizer: %s.",
		         method ? method : "(null)",
		         (long long)json_integer_value(json_object_get(m, "n_ctx")),
		         (long long)json_integer_value(json_object_get(m, "chunks")),
		         (long long)json_integer_value(json_object_get(m, "tokens_scored")),
		         text ? basename_of(text) : "?", tok ? tok : "(null)");
		json_array_append_new(notes, json_string(line));
		break;
	}
	return notes;
}

static json_t *build_fallbacks(const struct qp_artifact *const *in, size_t n)
{
	json_t *out = json_array();
	for (size_t i = 0; i < n; i++) {
		json_t *fb = json_object_get(in[i]->metrics, "fallback");
		if (!json_array_size(fb))
			continue;
		const char *ft = json_string_value(json_object_get(in[i]->metrics, "fallback_type"));
		struct qp_sbuf b = {0};
		qp_sbuf_printf(&b, "%s: %zu tensor(s) whose rows do not divide into the type's blocks "
		               "are stored as %s:", in[i]->instance, json_array_size(fb),
		               ft ? ft : "another type");
		size_t k;
		json_t *v;
		json_array_foreach(fb, k, v)
			qp_sbuf_printf(&b, "%s %s", k ? "," : "", json_string_value(v));
		if (!b.bad && b.p)
			json_array_append_new(out, json_string(b.p));
		free(b.p);
	}
	return out;
}

/* Numeric order of rows by one column; rows without a number go last,
 * ties keep their order. */
struct sort_item {
	json_t *row;
	size_t pos;
	int has;
	double v;
	const char *s;
};

static int sort_cmp(const void *pa, const void *pb, void *arg)
{
	const struct sort_item *a = pa, *b = pb;
	int desc = *(const int *)arg;
	if (a->has != b->has)
		return a->has ? -1 : 1;
	int c = 0;
	if (a->has && a->s && b->s)
		c = strcmp(a->s, b->s);
	else if (a->has)
		c = a->v < b->v ? -1 : a->v > b->v;
	if (desc)
		c = -c;
	if (c)
		return c;
	return a->pos < b->pos ? -1 : a->pos > b->pos;
}

static int sort_rows(json_t *t, const char *spec, struct qp_err *err)
{
	char col[128];
	snprintf(col, sizeof(col), "%s", spec);
	int desc = 0;
	char *colon = strchr(col, ':');
	if (colon) {
		if (!strcmp(colon + 1, "desc"))
			desc = 1;
		else if (strcmp(colon + 1, "asc"))
			return qp_err_set(err, QP_EINVAL, "parameter 'sort': '%s' must be COLUMN, COLUMN:asc "
			                  "or COLUMN:desc", spec);
		*colon = '\0';
	}
	json_t *rows = json_object_get(t, "rows");
	size_t n = json_array_size(rows);
	int known_col = !strcmp(col, "label");
	size_t j;
	json_t *c;
	json_array_foreach(json_object_get(t, "columns"), j, c)
		known_col |= !strcmp(json_string_value(c), col);
	if (!known_col)
		return qp_err_set(err, QP_EINVAL, "parameter 'sort': '%s' is not one of the columns", col);
	struct sort_item *it = calloc(n ? n : 1, sizeof(*it));
	if (!it)
		return qp_err_nomem(err);
	for (size_t i = 0; i < n; i++) {
		json_t *r = json_array_get(rows, i);
		json_t *v = !strcmp(col, "label") ? json_object_get(r, "label")
		                                   : json_object_get(json_object_get(r, "values"), col);
		it[i] = (struct sort_item){.row = json_incref(r), .pos = i, .has = v != NULL,
		                           .v = json_number_value(v), .s = json_string_value(v)};
	}
	qsort_r(it, n, sizeof(*it), sort_cmp, &desc);
	json_array_clear(rows);
	for (size_t i = 0; i < n; i++)
		json_array_append_new(rows, it[i].row);
	free(it);
	return 0;
}

static int build_formats(json_t *t, const struct qp_value *fm, struct qp_err *err)
{
	json_t *f = json_object();
	json_object_set_new(t, "formats", f);
	for (size_t i = 0; i < fm->n; i++) {
		const char *eq = strchr(fm->list[i], '=');
		if (!eq || eq == fm->list[i] || !qp_table_format_ok(eq + 1))
			return qp_err_set(err, QP_EINVAL, "parameter 'formats': '%s' must be METRIC=FORMAT, "
			                  "FORMAT one printf conversion of f, e or g such as %%.3f",
			                  fm->list[i]);
		char name[128];
		snprintf(name, sizeof(name), "%.*s", (int)(eq - fm->list[i]), fm->list[i]);
		json_object_set_new(f, name, json_string(eq + 1));
	}
	return 0;
}

int qp_table_from_ctx(json_t **out, struct qp_stage_ctx *ctx, struct qp_err *err)
{
	const struct qp_artifact *const *in;
	size_t n = qp_ctx_inputs(ctx, "from", &in);
	const struct qp_value *cols = qp_ctx_param(ctx, "columns");
	const char *rows = qp_ctx_param(ctx, "rows")->s;
	const char *title = qp_ctx_param(ctx, "title")->s;
	json_t *t = json_object();
	if (!t)
		return qp_err_nomem(err);
	json_object_set_new(t, "qpipe_report", json_integer(QP_REPORT_FORMAT_VERSION));
	json_object_set_new(t, "stage", json_string(qp_ctx_instance(ctx)));
	json_object_set_new(t, "title", json_string(title[0] ? title : qp_ctx_instance(ctx)));
	json_object_set_new(t, "row_key", json_string(rows[0] ? rows : "stage"));
	json_t *ca = json_array();
	json_object_set_new(t, "columns", ca);
	for (size_t j = 0; j < cols->n; j++)
		json_array_append_new(ca, json_string(cols->list[j]));
	int rc = build_formats(t, qp_ctx_param(ctx, "formats"), err);
	if (rc)
		goto fail;
	json_t *ra = json_array();
	json_object_set_new(t, "rows", ra);
	for (size_t i = 0; i < n; i++) {
		const char *label = rows[0] ? qp_artifact_coord(in[i], rows) : NULL;
		json_t *vals = json_object();
		for (size_t j = 0; j < cols->n; j++) {
			json_t *v = artifact_value(in[i], cols->list[j]);
			if (v)
				json_object_set_new(vals, cols->list[j], v);
		}
		json_array_append_new(ra, json_pack("{s:s, s:s, s:o}", "label", label ? label : in[i]->instance,
		                                    "instance", in[i]->instance, "values", vals));
	}
	json_object_set_new(t, "caption", build_caption(ctx, in, n));
	json_object_set_new(t, "notes", build_notes(in, n));
	json_object_set_new(t, "fallbacks", build_fallbacks(in, n));
	const char *sort = qp_ctx_param(ctx, "sort")->s;
	if (sort[0] && (rc = sort_rows(t, sort, err)))
		goto fail;
	if ((rc = qp_reference_apply(t, ctx, err)))
		goto fail;
	*out = t;
	return 0;
fail:
	json_decref(t);
	return rc;
}

int qp_table_load(json_t **out, const char *path, struct qp_err *err)
{
	json_error_t je;
	json_t *t = json_load_file(path, 0, &je);
	if (!t)
		return qp_err_set(err, je.line > 0 ? QP_ECORRUPT : QP_EIO, "%s:%d:%d: %s", path, je.line,
		                  je.column, je.text);
	json_t *v = json_object_get(t, "qpipe_report");
	const char *why = NULL;
	if (!json_is_integer(v))
		why = "no 'qpipe_report' version (is it a report.json written by a report.json stage?)";
	else if (json_integer_value(v) > QP_REPORT_FORMAT_VERSION)
		why = "written by a newer qpipe (format version above 1)";
	else if (!json_is_array(json_object_get(t, "rows")) ||
	         !json_is_array(json_object_get(t, "columns")))
		why = "'rows' and 'columns' must be arrays";
	if (!why) {
		size_t i;
		json_t *r;
		json_array_foreach(json_object_get(t, "rows"), i, r)
			if (!json_is_string(json_object_get(r, "label")) ||
			    !json_is_object(json_object_get(r, "values")))
				why = "each row needs a string 'label' and an object 'values'";
	}
	if (why) {
		json_decref(t);
		return qp_err_set(err, QP_ECORRUPT, "%s: %s", path, why);
	}
	*out = t;
	return 0;
}

/* ---- markdown ---- */

static int column_numeric(const json_t *t, const char *col)
{
	size_t i;
	json_t *r;
	json_array_foreach(json_object_get(t, "rows"), i, r)
		if (json_is_number(json_object_get(json_object_get(r, "values"), col)) ||
		    json_is_number(json_object_get(json_object_get(r, "reference"), col)))
			return 1;
	return 0;
}

static int column_has_ref(const json_t *t, const char *col)
{
	size_t i;
	json_t *r;
	json_array_foreach(json_object_get(t, "rows"), i, r)
		if (json_object_get(json_object_get(r, "reference"), col))
			return 1;
	return 0;
}

/* Delta texts of ours against theirs for one cell; "–" where either is
 * not a number. */
static void delta_text(char *abs_buf, char *rel_buf, size_t n, const json_t *t, const char *col,
                       const json_t *ours, const json_t *theirs)
{
	if (!json_is_number(ours) || !json_is_number(theirs)) {
		snprintf(abs_buf, n, "–");
		snprintf(rel_buf, n, "–");
		return;
	}
	double a = json_number_value(ours), b = json_number_value(theirs);
	char f[48];
	signed_format(f, sizeof(f), qp_table_format(t, col));
	snprintf(abs_buf, n, f, a - b);
	if (b != 0)
		snprintf(rel_buf, n, "%+.1f%%", 100.0 * (a - b) / fabs(b));
	else
		snprintf(rel_buf, n, "–");
}

static void caption_line(struct qp_sbuf *b, const json_t *t)
{
	const json_t *cap = json_object_get(t, "caption");
	if (!json_is_object(cap))
		return;
	const char *model = json_string_value(json_object_get(cap, "model"));
	const char *text = json_string_value(json_object_get(cap, "text"));
	const char *host = json_string_value(json_object_get(cap, "host"));
	const char *cpu = json_string_value(json_object_get(cap, "cpu"));
	const char *ver = json_string_value(json_object_get(cap, "qpipe"));
	qp_sbuf_printf(b, "setting:");
	const char *sep = " ";
	if (model) {
		qp_sbuf_printf(b, "%smodel %s", sep, model);
		sep = "; ";
	}
	if (text) {
		qp_sbuf_printf(b, "%stext %s", sep, text);
		sep = "; ";
	}
	if (json_is_integer(json_object_get(cap, "n_ctx"))) {
		qp_sbuf_printf(b, "%sn_ctx %lld", sep, (long long)json_integer_value(json_object_get(cap, "n_ctx")));
		sep = "; ";
	}
	if (json_is_integer(json_object_get(cap, "threads"))) {
		qp_sbuf_printf(b, "%sthreads %lld", sep,
		               (long long)json_integer_value(json_object_get(cap, "threads")));
		sep = "; ";
	}
	if (host) {
		qp_sbuf_printf(b, "%shost %s%s%s%s", sep, host, cpu ? " (" : "", cpu ? cpu : "", cpu ? ")" : "");
		sep = "; ";
	}
	if (ver)
		qp_sbuf_printf(b, "%sqpipe %s", sep, ver);
	qp_sbuf_printf(b, ".\n");
}

static void reference_lines(struct qp_sbuf *b, const json_t *t)
{
	const json_t *ref = json_object_get(t, "reference");
	if (!json_is_object(ref))
		return;
	const char *src = json_string_value(json_object_get(ref, "source"));
	qp_sbuf_printf(b, "\nreference: %s; Δ = ours − theirs, Δ%% relative to theirs.",
	               src && src[0] ? src : "published numbers (source not given)");
	const json_t *set = json_object_get(ref, "setting");
	if (json_object_size(set)) {
		qp_sbuf_printf(b, " Their setting:");
		const char *k;
		json_t *v;
		const char *sep = " ";
		json_object_foreach((json_t *)set, k, v) {
			qp_sbuf_printf(b, "%s%s %s", sep, k, json_string_value(v));
			sep = ", ";
		}
		qp_sbuf_printf(b, ".");
	}
	qp_sbuf_printf(b, "\n");
	const json_t *d = json_object_get(ref, "differs");
	if (json_array_size(d)) {
		qp_sbuf_printf(b, "\n**settings differ** from the reference:");
		size_t i;
		json_t *e;
		json_array_foreach((json_t *)d, i, e)
			qp_sbuf_printf(b, "%s %s (theirs %s, ours %s)", i ? ";" : "",
			               json_string_value(json_object_get(e, "key")),
			               json_string_value(json_object_get(e, "theirs")),
			               json_string_value(json_object_get(e, "ours")));
		qp_sbuf_printf(b, ".\n");
	}
}

int qp_table_markdown(const json_t *t, char **out, size_t *len, struct qp_err *err)
{
	struct qp_sbuf b = {0};
	const json_t *cols = json_object_get(t, "columns");
	size_t nc = json_array_size(cols);
	const char *title = json_string_value(json_object_get(t, "title"));
	const char *key = json_string_value(json_object_get(t, "row_key"));
	qp_sbuf_printf(&b, "## %s\n\n| %s |", title ? title : "report", key ? key : "stage");
	for (size_t j = 0; j < nc; j++) {
		const char *c = json_string_value(json_array_get(cols, j));
		qp_sbuf_printf(&b, " %s |", c);
		if (column_has_ref(t, c))
			qp_sbuf_printf(&b, " %s (theirs) | Δ | Δ%% |", c);
	}
	qp_sbuf_printf(&b, "\n|---|");
	for (size_t j = 0; j < nc; j++) {
		const char *c = json_string_value(json_array_get(cols, j));
		int num = column_numeric(t, c);
		qp_sbuf_printf(&b, "%s|", num ? "---:" : "---");
		if (column_has_ref(t, c))
			qp_sbuf_printf(&b, "---:|---:|---:|");
	}
	qp_sbuf_printf(&b, "\n");
	size_t i;
	json_t *r;
	char cbuf[256], abuf[64], rbuf[64];
	json_array_foreach(json_object_get(t, "rows"), i, r) {
		const json_t *vals = json_object_get(r, "values");
		const json_t *ref = json_object_get(r, "reference");
		qp_sbuf_printf(&b, "| %s |", json_string_value(json_object_get(r, "label")));
		for (size_t j = 0; j < nc; j++) {
			const char *c = json_string_value(json_array_get(cols, j));
			const json_t *v = json_object_get(vals, c);
			cell_text(cbuf, sizeof(cbuf), t, c, v);
			qp_sbuf_printf(&b, " %s |", cbuf);
			if (!column_has_ref(t, c))
				continue;
			const json_t *rv = json_object_get(ref, c);
			cell_text(cbuf, sizeof(cbuf), t, c, rv);
			delta_text(abuf, rbuf, sizeof(abuf), t, c, v, rv);
			qp_sbuf_printf(&b, " %s | %s | %s |", cbuf, abuf, rbuf);
		}
		qp_sbuf_printf(&b, "\n");
	}
	json_t *note;
	const json_t *notes = json_object_get(t, "notes");
	if (json_array_size(notes))
		qp_sbuf_printf(&b, "\n");
	json_array_foreach((json_t *)notes, i, note)
		qp_sbuf_printf(&b, "%s\n", json_string_value(note));
	caption_line(&b, t);
	json_array_foreach(json_object_get(t, "fallbacks"), i, note)
		qp_sbuf_printf(&b, "\n%s\n", json_string_value(note));
	reference_lines(&b, t);
	return qp_sbuf_finish(&b, out, len, err);
}

/* ---- CSV (RFC 4180: quoted where needed, CRLF not required) ---- */

static void csv_field(struct qp_sbuf *b, const char *s)
{
	if (!strpbrk(s, ",\"\n\r")) {
		qp_sbuf_printf(b, "%s", s);
		return;
	}
	qp_sbuf_printf(b, "\"");
	for (; *s; s++)
		qp_sbuf_printf(b, *s == '"' ? "\"\"" : "%c", *s);
	qp_sbuf_printf(b, "\"");
}

/* Empty for a missing value, else the cell text. */
static void csv_value(struct qp_sbuf *b, const json_t *t, const char *col, const json_t *v)
{
	char cbuf[256];
	if (!v)
		return;
	cell_text(cbuf, sizeof(cbuf), t, col, v);
	csv_field(b, cbuf);
}

int qp_table_csv(const json_t *t, char **out, size_t *len, struct qp_err *err)
{
	struct qp_sbuf b = {0};
	const json_t *cols = json_object_get(t, "columns");
	size_t nc = json_array_size(cols);
	const char *key = json_string_value(json_object_get(t, "row_key"));
	csv_field(&b, key ? key : "stage");
	for (size_t j = 0; j < nc; j++) {
		const char *c = json_string_value(json_array_get(cols, j));
		qp_sbuf_printf(&b, ",");
		csv_field(&b, c);
		if (column_has_ref(t, c))
			qp_sbuf_printf(&b, ",%s_theirs,%s_delta,%s_delta_pct", c, c, c);
	}
	qp_sbuf_printf(&b, "\n");
	size_t i;
	json_t *r;
	char abuf[64], rbuf[64];
	json_array_foreach(json_object_get(t, "rows"), i, r) {
		const json_t *vals = json_object_get(r, "values");
		const json_t *ref = json_object_get(r, "reference");
		csv_field(&b, json_string_value(json_object_get(r, "label")));
		for (size_t j = 0; j < nc; j++) {
			const char *c = json_string_value(json_array_get(cols, j));
			const json_t *v = json_object_get(vals, c);
			qp_sbuf_printf(&b, ",");
			csv_value(&b, t, c, v);
			if (!column_has_ref(t, c))
				continue;
			const json_t *rv = json_object_get(ref, c);
			qp_sbuf_printf(&b, ",");
			csv_value(&b, t, c, rv);
			delta_text(abuf, rbuf, sizeof(abuf), t, c, v, rv);
			rbuf[strcspn(rbuf, "%")] = '\0';
			qp_sbuf_printf(&b, ",%s,%s", strcmp(abuf, "–") ? abuf : "", strcmp(rbuf, "–") ? rbuf : "");
		}
		qp_sbuf_printf(&b, "\n");
	}
	return qp_sbuf_finish(&b, out, len, err);
}
