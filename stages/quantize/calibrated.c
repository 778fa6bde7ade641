/* GPTQ and AWQ specs and calibration statistics; see calibrated.h. */
#include "stages/quantize/calibrated.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool named(const char *text, const char *name)
{
	size_t n = strlen(name);
	return !strncmp(text, name, n) && (!text[n] || text[n] == ':');
}

bool qp_calibrated_is(const char *text)
{
	return named(text, "gptq") || named(text, "awq") || named(text, "smoothquant");
}

static int num(const char *text, const char *key, const char *v, double lo, double hi, double *out,
               struct qp_err *err)
{
	char *end;
	errno = 0;
	double d = strtod(v, &end);
	if (errno || end == v || *end || !(d >= lo && d <= hi))
		return qp_err_set(err, QP_EINVAL, "method '%s': bad value '%s' for %s (%g..%g)", text, v, key, lo, hi);
	*out = d;
	return 0;
}

static int flag(const char *text, const char *key, const char *v, bool *out, struct qp_err *err)
{
	if (!v || !strcmp(v, "true"))
		*out = true;
	else if (!strcmp(v, "false"))
		*out = false;
	else
		return qp_err_set(err, QP_EINVAL, "method '%s': %s=%s: expected true or false", text, key, v);
	return 0;
}

static int item(struct qp_calibrated *c, char *it, const char *text, struct qp_err *err)
{
	char *eq = strchr(it, '=');
	const char *v = eq ? eq + 1 : NULL;
	if (eq)
		*eq = '\0';
	double d;
	int rc = 0;
	int *bits = c->awq ? &c->awq_p.bits : &c->gptq.bits;
	int64_t *group = c->awq ? &c->awq_p.group : &c->gptq.group;
	bool *sym = c->awq ? &c->awq_p.sym : &c->gptq.sym, *f16 = c->awq ? &c->awq_p.scale_f16 : &c->gptq.scale_f16;
	if (c->smooth) {
		if (strcmp(it, "alpha") || !v)
			return qp_err_set(err, QP_EINVAL, "method '%s': unknown key '%s' (alpha=F)", text, it);
		if (!(rc = num(text, it, v, 0, 1, &d, err)))
			c->alpha = (float)d;
		return rc;
	}
	if (!strcmp(it, "sym") || !strcmp(it, "asym")) {
		if (v)
			return qp_err_set(err, QP_EINVAL, "method '%s': %s takes no value", text, it);
		*sym = it[0] == 's';
		return 0;
	}
	if (!strcmp(it, "scale")) {
		if (!v || (strcmp(v, "f16") && strcmp(v, "f32")))
			return qp_err_set(err, QP_EINVAL, "method '%s': scale=%s: expected f16 or f32", text, v ? v : "");
		*f16 = !strcmp(v, "f16");
		return 0;
	}
	if (!c->awq && !strcmp(it, "true_sequential"))
		return flag(text, it, v, &c->true_sequential, err);
	if (!c->awq && (!strcmp(it, "act_order") || !strcmp(it, "static_groups")))
		return flag(text, it, v, it[0] == 'a' ? &c->gptq.act_order : &c->gptq.static_groups, err);
	if (c->awq && !strcmp(it, "clip"))
		return flag(text, it, v, &c->awq_p.clip, err);
	if (!v)
		return qp_err_set(err, QP_EINVAL, "method '%s': item '%s' needs a value (KEY=VALUE)", text, it);
	if (!strcmp(it, "bits")) {
		if (!(rc = num(text, it, v, 2, 8, &d, err)))
			*bits = (int)d;
	} else if (!strcmp(it, "group")) {
		if (!(rc = num(text, it, v, c->awq ? 1 : -1, 1 << 20, &d, err)))
			*group = (int64_t)d;
	} else if (!c->awq && !strcmp(it, "damp")) {
		if (!(rc = num(text, it, v, 0, 1, &d, err)))
			c->gptq.damp_percent = d;
	} else if (!c->awq && !strcmp(it, "block")) {
		if (!(rc = num(text, it, v, 1, 1 << 20, &d, err)))
			c->gptq.block = (int64_t)d;
	} else if (c->awq && !strcmp(it, "grid")) {
		if (!(rc = num(text, it, v, 1, 1000, &d, err)))
			c->awq_p.n_grid = (int)d;
	} else if (c->awq && !strcmp(it, "clip_grid")) {
		if (!(rc = num(text, it, v, 1, 1000, &d, err)))
			c->awq_p.clip_grid = (int)d;
	} else if (c->awq && !strcmp(it, "shrink")) {
		if (!(rc = num(text, it, v, 0, 0.99, &d, err)))
			c->awq_p.max_shrink = (float)d;
	} else {
		return qp_err_set(err, QP_EINVAL, "method '%s': unknown key '%s' (%s)", text, it,
		                  c->awq ? "bits, group, sym, asym, scale, grid, clip, clip_grid, shrink"
		                         : "bits, group, sym, asym, scale, act_order, static_groups, damp, block, true_sequential");
	}
	return rc;
}

int qp_calibrated_parse(struct qp_calibrated *c, const char *text, struct qp_err *err)
{
	memset(c, 0, sizeof(*c));
	if (!qp_calibrated_is(text))
		return qp_err_set(err, QP_EINVAL, "'%s' is not gptq, awq or smoothquant", text);
	c->awq = text[0] == 'a';
	c->smooth = text[0] == 's';
	c->alpha = 0.5f;
	qp_gptq_params_default(&c->gptq);
	qp_awq_params_default(&c->awq_p);
	const char *colon = strchr(text, ':');
	if (!colon)
		return 0;
	char *rest = strdup(colon + 1), *save = NULL;
	if (!rest)
		return qp_err_nomem(err);
	int rc = 0;
	for (char *it = strtok_r(rest, ":", &save); it && !rc; it = strtok_r(NULL, ":", &save))
		rc = item(c, it, text, err);
	free(rest);
	if (!rc && !c->awq && c->gptq.bits != 2 && c->gptq.bits != 3 && c->gptq.bits != 4 && c->gptq.bits != 8)
		rc = qp_err_set(err, QP_EINVAL, "method '%s': GPTQ takes bits 2, 3, 4 or 8", text);
	return rc;
}

void qp_calibrated_format(const struct qp_calibrated *c, char *buf, size_t n)
{
	if (c->smooth) {
		snprintf(buf, n, "smoothquant:alpha=%g", (double)c->alpha);
	} else if (c->awq) {
		const struct qp_awq_params *p = &c->awq_p;
		snprintf(buf, n, "awq:bits=%d:group=%lld:%s:grid=%d:clip=%s:clip_grid=%d:shrink=%g:scale=%s", p->bits,
		         (long long)p->group, p->sym ? "sym" : "asym", p->n_grid, p->clip ? "true" : "false", p->clip_grid,
		         (double)p->max_shrink, p->scale_f16 ? "f16" : "f32");
	} else {
		const struct qp_gptq_params *p = &c->gptq;
		snprintf(buf, n,
		         "gptq:bits=%d:group=%lld:%s:act_order=%s:static_groups=%s:damp=%g:block=%lld:scale=%s"
		         ":true_sequential=%s",
		         p->bits, (long long)p->group, p->sym ? "sym" : "asym", p->act_order ? "true" : "false",
		         p->static_groups ? "true" : "false", p->damp_percent, (long long)p->block,
		         p->scale_f16 ? "f16" : "f32", c->true_sequential ? "true" : "false");
	}
}

void qp_calibrated_spec(const struct qp_calibrated *c, struct qp_qspec *out)
{
	if (c->awq)
		qp_awq_spec(&c->awq_p, out);
	else
		qp_gptq_spec(&c->gptq, out);
}

struct qp_calib_stats {
	struct qp_st_model *st;
	char *path;
};

int qp_calib_stats_open(struct qp_calib_stats **out, const char *path, struct qp_err *err)
{
	*out = NULL;
	struct qp_calib_stats *s = calloc(1, sizeof(*s));
	if (!s || !(s->path = strdup(path))) {
		free(s);
		return qp_err_nomem(err);
	}
	int rc = qp_st_open(&s->st, path, err);
	if (rc) {
		qp_calib_stats_close(s);
		return rc;
	}
	*out = s;
	return 0;
}

void qp_calib_stats_close(struct qp_calib_stats *s)
{
	if (!s)
		return;
	qp_st_close(s->st);
	free(s->path);
	free(s);
}

/* A copy of an F32 tensor of n elements, named owner + suffix. */
static int f32_copy(const struct qp_calib_stats *s, const char *owner, const char *suffix, int64_t n, float **out,
                    struct qp_err *err)
{
	char name[512];
	snprintf(name, sizeof(name), "%s%s", owner, suffix);
	const struct qp_st_tensor *t = qp_st_find(s->st, name);
	if (!t)
		return qp_err_set(err, QP_ENOTFOUND, "%s: no tensor '%s' (calibrate with hessian: true for GPTQ and AWQ)",
		                  s->path, name);
	if (t->dtype != QP_ST_F32 || t->nelem != n)
		return qp_err_set(err, QP_ECORRUPT, "%s: tensor '%s' at offset %llu: expected %lld F32 values", s->path, name,
		                  (unsigned long long)t->file_offset, (long long)n);
	if (!(*out = malloc((size_t)n * sizeof(float))))
		return qp_err_nomem(err);
	memcpy(*out, t->data, (size_t)n * sizeof(float));
	return 0;
}

/* The weight whose record holds name's input statistics, or NULL. */
static const char *owner_of(const struct qp_calib_stats *s, const char *weight)
{
	char key[512];
	snprintf(key, sizeof(key), "%s.input", weight);
	return qp_st_metadata(s->st, key);
}

bool qp_calib_stats_has(const struct qp_calib_stats *s, const char *weight)
{
	return owner_of(s, weight) != NULL;
}

static int no_input(const struct qp_calib_stats *s, const char *weight, struct qp_err *err)
{
	return qp_err_set(err, QP_ENOTFOUND, "%s: calibrate recorded no input for '%s'", s->path, weight);
}

int qp_calib_stats_vec(const struct qp_calib_stats *s, const char *weight, const char *what, int64_t cols,
                       float **out, struct qp_err *err)
{
	*out = NULL;
	const char *owner = owner_of(s, weight);
	if (!owner)
		return no_input(s, weight, err);
	char suffix[64];
	snprintf(suffix, sizeof(suffix), ".%s", what);
	return f32_copy(s, owner, suffix, cols, out, err);
}

int qp_calib_stats_input(const struct qp_calib_stats *s, const char *weight, int64_t cols, float **gram,
                         float **mean_abs, struct qp_err *err)
{
	*gram = NULL;
	if (mean_abs)
		*mean_abs = NULL;
	const char *owner = owner_of(s, weight);
	if (!owner)
		return no_input(s, weight, err);
	int rc = f32_copy(s, owner, ".hessian", cols * cols, gram, err);
	if (!rc && mean_abs)
		rc = f32_copy(s, owner, ".act_mean_abs", cols, mean_abs, err);
	if (rc) {
		free(*gram);
		*gram = NULL;
	}
	return rc;
}
