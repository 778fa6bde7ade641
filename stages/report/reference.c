/* Published numbers beside ours; see reference.h. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/os.h"
#include "stages/report/reference.h"

#define REF_FILE_MAX (4u << 20)
#define REF_CELLS_MAX 64

/* Trim spaces and markdown bold/italic markers in place. */
static char *trim(char *s)
{
	while (*s && (isspace((unsigned char)*s) || *s == '*' || *s == '_' || *s == '`'))
		s++;
	char *e = s + strlen(s);
	while (e > s && (isspace((unsigned char)e[-1]) || e[-1] == '*' || e[-1] == '_' || e[-1] == '`'))
		*--e = '\0';
	return s;
}

/* A cell's value: a number if it starts with one, else the text; NULL for
 * an empty cell. */
static json_t *cell_value(const char *text)
{
	if (!text[0] || !strcmp(text, "-") || !strcmp(text, "–") || !strcmp(text, "—"))
		return NULL;
	char *end;
	double d = strtod(text, &end);
	if (end != text && isfinite(d) && (isdigit((unsigned char)text[0]) || text[0] == '-' ||
	                                   text[0] == '+' || text[0] == '.'))
		return json_real(d);
	return json_string(text);
}

/* Split a line into cells at sep (CSV: '"' quotes a cell; markdown: the
 * leading and trailing '|' are dropped). Cells point into line. */
static size_t split(char *line, char sep, char **cells, size_t max)
{
	size_t n = 0;
	char *p = line;
	if (sep == '|') {
		p = trim(p);
		if (*p == '|')
			p++;
		size_t l = strlen(p);
		if (l && p[l - 1] == '|')
			p[l - 1] = '\0';
	}
	while (n < max) {
		char *start = p, *w = p;
		if (sep == ',' && *p == '"') {
			p++;
			while (*p) {
				if (*p == '"' && p[1] == '"') {
					*w++ = '"';
					p += 2;
				} else if (*p == '"') {
					p++;
					break;
				} else {
					*w++ = *p++;
				}
			}
			while (*p && *p != sep)
				p++;
		} else {
			while (*p && *p != sep)
				w = ++p;
		}
		int more = *p == sep;
		*w = '\0';
		cells[n++] = trim(start);
		if (!more)
			break;
		p++;
	}
	return n;
}

/* A markdown separator row: only '|', '-', ':' and spaces. */
static int separator_row(const char *s)
{
	int dash = 0;
	for (; *s; s++) {
		if (*s == '-')
			dash = 1;
		else if (!strchr("|: \t", *s))
			return 0;
	}
	return dash;
}

int qp_reference_read(json_t **out, const char *path, struct qp_err *err)
{
	char *text = NULL;
	size_t len;
	int rc = qp_os_read_file(&text, &len, path, REF_FILE_MAX, err);
	if (rc)
		return rc;
	const char *dot = strrchr(path, '.');
	int md = dot && (!strcasecmp(dot, ".md") || !strcasecmp(dot, ".markdown"));
	char sep = md ? '|' : ',';
	json_t *rows = json_object();
	char *hdr[REF_CELLS_MAX], *cells[REF_CELLS_MAX];
	size_t nh = 0;
	int lineno = 0, in_table = 0;
	char *hdr_line = NULL;
	char *rest = text;
	/* strsep, not strtok: an empty line ends a markdown table */
	for (char *line = strsep(&rest, "\n"); line; line = strsep(&rest, "\n")) {
		lineno++;
		line[strcspn(line, "\r")] = '\0';
		char *t = trim(line);
		if (md) {
			if (t[0] != '|' && line[0] != '|') {
				if (in_table)
					break; /* the first table only */
				continue;
			}
			in_table = 1;
			if (separator_row(t))
				continue;
		} else if (!t[0] || t[0] == '#') {
			continue;
		}
		if (!hdr_line) {
			hdr_line = line;
			nh = split(line, sep, hdr, REF_CELLS_MAX);
			if (nh < 2) {
				json_decref(rows);
				free(text);
				return qp_err_set(err, QP_EINVAL, "%s:%d: the header needs a label column and at "
				                  "least one metric", path, lineno);
			}
			continue;
		}
		size_t nc = split(line, sep, cells, REF_CELLS_MAX);
		if (!cells[0][0])
			continue;
		json_t *m = json_object();
		for (size_t j = 1; j < nc && j < nh; j++) {
			json_t *v = cell_value(cells[j]);
			if (v)
				json_object_set_new(m, hdr[j], v);
		}
		json_object_set_new(rows, cells[0], m);
	}
	free(text);
	if (!hdr_line) {
		json_decref(rows);
		return qp_err_set(err, QP_EINVAL, "%s: no table found (%s)", path,
		                  md ? "a markdown file needs a '| label | metric |' table"
		                     : "a CSV file needs a header line 'label,metric,...'");
	}
	*out = rows;
	return 0;
}

int qp_reference_parse_row(json_t *rows, const char *text, struct qp_err *err)
{
	char buf[1024];
	if (strlen(text) >= sizeof(buf))
		return qp_err_set(err, QP_EINVAL, "parameter 'reference_rows': row too long");
	snprintf(buf, sizeof(buf), "%s", text);
	char *colon = strchr(buf, ':');
	if (!colon)
		return qp_err_set(err, QP_EINVAL, "parameter 'reference_rows': '%s' must be "
		                  "'LABEL: METRIC=VALUE, ...'", text);
	*colon = '\0';
	const char *label = trim(buf);
	json_t *m = json_object();
	char *save = NULL;
	for (char *kv = strtok_r(colon + 1, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(kv, '=');
		if (!eq) {
			json_decref(m);
			return qp_err_set(err, QP_EINVAL, "parameter 'reference_rows': in '%s', '%s' is "
			                  "not METRIC=VALUE", text, trim(kv));
		}
		*eq = '\0';
		json_t *v = cell_value(trim(eq + 1));
		if (v)
			json_object_set_new(m, trim(kv), v);
	}
	json_object_set_new(rows, label, m);
	return 0;
}

/* Our name for their name, through reference_match (THEIRS=OURS). */
static const char *match(const struct qp_value *pairs, const char *theirs)
{
	size_t l = strlen(theirs);
	for (size_t i = 0; i < pairs->n; i++) {
		const char *eq = strchr(pairs->list[i], '=');
		if (eq && (size_t)(eq - pairs->list[i]) == l && !strncmp(pairs->list[i], theirs, l))
			return eq + 1;
	}
	return theirs;
}

static int values_equal(const char *a, const char *b)
{
	char *ea, *eb;
	double x = strtod(a, &ea), y = strtod(b, &eb);
	if (ea != a && !*ea && eb != b && !*eb)
		return x == y;
	return !strcasecmp(a, b);
}

/* Our value of a setting key, as text, into buf; 0 if unknown. */
static int our_setting(const json_t *cap, const char *key, char *buf, size_t n)
{
	const char *k = key;
	if (!strcmp(key, "hardware") || !strcmp(key, "cpu"))
		k = json_object_get(cap, "cpu") ? "cpu" : "host";
	else if (!strcmp(key, "context") || !strcmp(key, "ctx"))
		k = "n_ctx";
	const json_t *v = json_object_get(cap, k);
	if (json_is_string(v))
		snprintf(buf, n, "%s", json_string_value(v));
	else if (json_is_integer(v))
		snprintf(buf, n, "%lld", (long long)json_integer_value(v));
	else if (json_is_number(v))
		snprintf(buf, n, "%g", json_number_value(v));
	else
		return 0;
	return 1;
}

int qp_reference_apply(json_t *t, struct qp_stage_ctx *ctx, struct qp_err *err)
{
	const char *path = qp_ctx_param(ctx, "reference")->s;
	const struct qp_value *inl = qp_ctx_param(ctx, "reference_rows");
	const struct qp_value *pairs = qp_ctx_param(ctx, "reference_match");
	const struct qp_value *setting = qp_ctx_param(ctx, "reference_setting");
	const char *source = qp_ctx_param(ctx, "reference_source")->s;
	if (!path[0] && !inl->n)
		return 0;
	json_t *theirs = NULL;
	int rc;
	if (path[0] && (rc = qp_reference_read(&theirs, path, err)))
		return rc;
	if (!theirs)
		theirs = json_object();
	for (size_t i = 0; i < inl->n; i++)
		if ((rc = qp_reference_parse_row(theirs, inl->list[i], err))) {
			json_decref(theirs);
			return rc;
		}
	json_t *rows = json_object_get(t, "rows");
	const char *label;
	json_t *m;
	json_object_foreach(theirs, label, m) {
		json_t *mapped = json_object();
		const char *k;
		json_t *v;
		json_object_foreach(m, k, v)
			json_object_set(mapped, match(pairs, k), v);
		const char *ours = match(pairs, label);
		json_t *row = NULL;
		size_t i;
		json_t *r;
		json_array_foreach(rows, i, r)
			if (!row && json_object_get(r, "instance") != json_null() &&
			    !strcmp(json_string_value(json_object_get(r, "label")), ours))
				row = r;
		if (!row) {
			row = json_pack("{s:s, s:n, s:{}}", "label", label, "instance", "values");
			json_array_append_new(rows, row);
		}
		json_object_set_new(row, "reference", mapped);
	}
	json_decref(theirs);
	json_t *ref = json_object();
	json_object_set_new(t, "reference", ref);
	json_object_set_new(ref, "source", json_string(source));
	json_t *set = json_object(), *differs = json_array();
	json_object_set_new(ref, "setting", set);
	json_object_set_new(ref, "differs", differs);
	const json_t *cap = json_object_get(t, "caption");
	for (size_t i = 0; i < setting->n; i++) {
		const char *eq = strchr(setting->list[i], '=');
		if (!eq || eq == setting->list[i])
			return qp_err_set(err, QP_EINVAL, "parameter 'reference_setting': '%s' must be KEY=VALUE",
			                  setting->list[i]);
		char key[64], ours[512];
		snprintf(key, sizeof(key), "%.*s", (int)(eq - setting->list[i]), setting->list[i]);
		json_object_set_new(set, key, json_string(eq + 1));
		int known = our_setting(cap, key, ours, sizeof(ours));
		if (!known || !values_equal(ours, eq + 1))
			json_array_append_new(differs, json_pack("{s:s, s:s, s:s}", "key", key, "theirs",
			                                         eq + 1, "ours", known ? ours : "unknown"));
	}
	return 0;
}
