/* Comparing two report tables: tolerances, deltas, regressions. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stages/report/table.h"

int qp_tolerance_parse(const char *spec, struct qp_tolerance *out, size_t max, size_t *n,
                       struct qp_err *err)
{
	*n = 0;
	const char *p = spec;
	while (*p) {
		const char *end = strchr(p, ',');
		size_t l = end ? (size_t)(end - p) : strlen(p);
		char item[128];
		if (l >= sizeof(item))
			return qp_err_set(err, QP_EINVAL, "tolerance '%.*s...' is too long", 40, p);
		memcpy(item, p, l);
		item[l] = '\0';
		p = end ? end + 1 : p + l;
		if (!item[0])
			continue;
		char *eq = strchr(item, '=');
		if (!eq || eq == item || (size_t)(eq - item) >= sizeof(out->metric))
			return qp_err_set(err, QP_EINVAL, "tolerance '%s' must be METRIC=[+|-]AMOUNT[%%] "
			                  "(e.g. ppl=+0.5%%)", item);
		if (*n == max)
			return qp_err_set(err, QP_EINVAL, "more than %zu tolerances", max);
		struct qp_tolerance *t = &out[(*n)++];
		memset(t, 0, sizeof(*t));
		memcpy(t->metric, item, (size_t)(eq - item));
		const char *v = eq + 1;
		if (*v == '+' || *v == '-')
			t->dir = *v++ == '+' ? 1 : -1;
		char *e;
		errno = 0;
		t->amount = strtod(v, &e);
		if (e == v || errno || !isfinite(t->amount) || t->amount < 0 || !isdigit((unsigned char)*v))
			return qp_err_set(err, QP_EINVAL, "tolerance '%s': '%s' is not an amount such as 0.5%% "
			                  "or 0.01", item, eq + 1);
		if (*e == '%') {
			t->relative = 1;
			e++;
		}
		if (*e)
			return qp_err_set(err, QP_EINVAL, "tolerance '%s': unexpected '%s' after the amount",
			                  item, e);
	}
	return 0;
}

static const struct qp_tolerance *find_tol(const struct qp_tolerance *tol, size_t ntol,
                                           const char *metric)
{
	for (size_t i = 0; i < ntol; i++)
		if (!strcmp(tol[i].metric, metric))
			return &tol[i];
	return NULL;
}

static const json_t *find_row(const json_t *t, const char *label)
{
	size_t i;
	json_t *r;
	json_array_foreach(json_object_get(t, "rows"), i, r)
		if (json_object_get(r, "instance") != json_null() &&
		    !strcmp(json_string_value(json_object_get(r, "label")), label))
			return r;
	return NULL;
}

/* Does moving from a to b break tolerance t (or, without one, exactness)? */
static int regressed(const struct qp_tolerance *t, double a, double b)
{
	double d = b - a;
	if (!t)
		return fabs(d) > 1e-9 * fmax(fabs(a), 1e-300) && d != 0;
	double bad = t->dir > 0 ? d : t->dir < 0 ? -d : fabs(d);
	double limit = t->relative ? t->amount / 100.0 * fabs(a) : t->amount;
	/* a little slack for the rounding of the limit itself */
	return bad > limit * (1 + 1e-12) + 1e-300;
}

int qp_table_compare(const json_t *a, const json_t *b, const struct qp_tolerance *tol,
                     size_t ntol, struct qp_delta **out, size_t *n, size_t *regressions,
                     struct qp_err *err)
{
	size_t cap = 16, cnt = 0, bad = 0;
	struct qp_delta *d = malloc(cap * sizeof(*d));
	if (!d)
		return qp_err_nomem(err);
	size_t i;
	json_t *ra;
	json_array_foreach(json_object_get(a, "rows"), i, ra) {
		if (json_object_get(ra, "instance") == json_null())
			continue; /* a published row, not ours */
		const char *label = json_string_value(json_object_get(ra, "label"));
		const json_t *rb = find_row(b, label);
		const json_t *vb = json_object_get(rb, "values");
		const char *metric;
		json_t *va;
		json_object_foreach(json_object_get(ra, "values"), metric, va) {
			if (!json_is_number(va))
				continue;
			const struct qp_tolerance *t = find_tol(tol, ntol, metric);
			if (ntol && !t && !rb)
				continue;
			if (cnt == cap) {
				struct qp_delta *nd = realloc(d, 2 * cap * sizeof(*d));
				if (!nd) {
					free(d);
					return qp_err_nomem(err);
				}
				d = nd;
				cap *= 2;
			}
			const json_t *v = json_object_get(vb, metric);
			struct qp_delta *e = &d[cnt++];
			*e = (struct qp_delta){.row = label, .metric = metric, .a = json_number_value(va),
			                       .has_a = 1, .has_b = json_is_number(v),
			                       .b = json_number_value(v), .tol = t};
			int checked = !ntol || t;
			e->checked = checked;
			if (checked && !e->has_b)
				e->regressed = 1;
			else if (checked)
				e->regressed = regressed(t, e->a, e->b);
			bad += (size_t)e->regressed;
		}
	}
	*out = d;
	*n = cnt;
	*regressions = bad;
	return 0;
}
