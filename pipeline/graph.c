#include "pipeline/graph.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cache/statcache.h"
#include "common/path.h"
#include "pipeline/ctx.h"
#include "common/suggest.h"

#define PATH_TREE_MAX_FILES 100000

struct combo {
	size_t n_coords;
	const char **names;
	const char **values;
	size_t *pick;     /* per parameter: chosen upstream instance for INPUT */
};

struct builder {
	struct qp_arena *a;
	const struct qp_recipe *r;
	struct qp_diags *d;
	struct qp_err *err;
	/* per recipe stage: its instances [first, first + count) */
	size_t *first, *count;
	int *state;        /* DFS: 0 new, 1 on stack, 2 expanded */
	size_t *order;     /* stage indices in dependency order */
	size_t n_order;
	struct qp_instance *inst;
	size_t n_inst, cap_inst;
	int fatal;         /* an I/O or memory failure: stop */
	struct qp_statcache *sc;  /* may be NULL: hash every input file */
};

int qp_kind_param_index(const struct qp_stage_kind *k, const char *name)
{
	for (int i = 0; k->params[i].name; i++)
		if (strcmp(k->params[i].name, name) == 0)
			return i;
	return -1;
}

static size_t n_params(const struct qp_stage_kind *k)
{
	size_t n = 0;
	while (k->params[n].name)
		n++;
	return n;
}

static int is_ref(enum qp_ptype t)
{
	return t == QP_P_INPUT || t == QP_P_INPUTS;
}

static long stage_index(const struct qp_recipe *r, const char *name)
{
	return qp_recipe_stage_index(r, name);
}

static const char **stage_names(struct builder *b)
{
	const char **names = qp_arena_calloc(b->a, b->r->n_stages + 1, sizeof(*names));
	if (names)
		for (size_t i = 0; i < b->r->n_stages; i++)
			names[i] = b->r->stages[i].name;
	return names;
}

/* Upstream stage named by node (a reference), or -1 with a diagnostic. */
static long resolve_ref(struct builder *b, const struct qp_rstage *st, const struct qp_ynode *n,
                        const char *what)
{
	if (n->kind != QP_Y_SCALAR) {
		qp_diag_add(b->d, "%s:%d:%d: %s of stage '%s' must name a stage, not %s", n->file,
		            n->line, n->col, what, st->name, qp_ykind_name(n->kind));
		return -1;
	}
	long i = stage_index(b->r, n->str);
	if (i < 0) {
		const char **names = stage_names(b);
		const char *s = names ? qp_suggest(n->str, names) : NULL;
		if (s)
			qp_diag_add(b->d, "%s:%d:%d: %s of stage '%s' names unknown stage '%s' (did you mean '%s'?)",
			            n->file, n->line, n->col, what, st->name, n->str, s);
		else
			qp_diag_add(b->d, "%s:%d:%d: %s of stage '%s' names unknown stage '%s'", n->file,
			            n->line, n->col, what, st->name, n->str);
	}
	return i;
}

/* Check that every reference of stage si (its INPUT/INPUTS parameters and
 * its needs) names a stage, with a diagnostic per bad one. */
static void check_refs(struct builder *b, size_t si)
{
	const struct qp_rstage *st = &b->r->stages[si];
	if (st->kind && st->with) {
		for (size_t i = 0; i < st->with->n; i++) {
			int pi = qp_kind_param_index(st->kind, st->with->keys[i]->str);
			if (pi < 0 || !is_ref(st->kind->params[pi].type))
				continue;
			char what[128];
			snprintf(what, sizeof(what), "parameter '%s'", st->kind->params[pi].name);
			resolve_ref(b, st, st->with->items[i], what);
		}
	}
	if (st->needs)
		for (size_t j = 0; j < st->needs->n; j++)
			resolve_ref(b, st, st->needs->items[j], "'needs'");
}

/* Depth-first order with a cycle check (samurai's buildadd): a stage found
 * on the DFS stack again closes a cycle, reported with its whole path. */
static void visit(struct builder *b, size_t si, size_t *stack, size_t depth)
{
	if (b->state[si] == 2)
		return;
	stack[depth] = si;
	if (b->state[si] == 1) {
		size_t start = 0;
		while (stack[start] != si)
			start++;
		char path[1024] = "";
		for (size_t i = start; i <= depth; i++) {
			size_t len = strlen(path);
			snprintf(path + len, sizeof(path) - len, "%s'%s'", i > start ? " -> " : "",
			         b->r->stages[stack[i]].name);
		}
		const struct qp_ynode *n = b->r->stages[si].node;
		qp_diag_add(b->d, "%s:%d:%d: dependency cycle: %s", n->file, n->line, n->col, path);
		return;
	}
	b->state[si] = 1;
	const struct qp_rstage *st = &b->r->stages[si];
	long tos[256];
	size_t nt = 0;
	if (st->kind && st->with)
		for (size_t i = 0; i < st->with->n && nt < 256; i++) {
			int pi = qp_kind_param_index(st->kind, st->with->keys[i]->str);
			const struct qp_ynode *v = st->with->items[i];
			if (pi >= 0 && is_ref(st->kind->params[pi].type) && v->kind == QP_Y_SCALAR)
				tos[nt++] = stage_index(b->r, v->str);
		}
	if (st->needs)
		for (size_t j = 0; j < st->needs->n && nt < 256; j++)
			if (st->needs->items[j]->kind == QP_Y_SCALAR)
				tos[nt++] = stage_index(b->r, st->needs->items[j]->str);
	for (size_t i = 0; i < nt; i++)
		if (tos[i] >= 0)
			visit(b, (size_t)tos[i], stack, depth + 1);
	if (b->state[si] == 1) {
		b->state[si] = 2;
		b->order[b->n_order++] = si;
	}
}

/* ---- values ---- */

static const char *coord_get(const struct combo *c, const char *name)
{
	for (size_t i = 0; i < c->n_coords; i++)
		if (strcmp(c->names[i], name) == 0)
			return c->values[i];
	return NULL;
}

/* Replace ${matrix.k}, ${vars.x} and ${x} in s. NULL with a diagnostic on
 * an unknown name. */
static const char *interpolate(struct builder *b, const struct qp_ynode *n, const char *s,
                               const struct combo *c)
{
	if (!strstr(s, "${"))
		return s;
	char out[4096];
	size_t o = 0;
	const char *p = s;
	while (*p) {
		if (p[0] == '$' && p[1] == '{') {
			const char *end = strchr(p, '}');
			if (!end) {
				qp_diag_add(b->d, "%s:%d:%d: unterminated '${' in '%s'", n->file, n->line, n->col, s);
				return NULL;
			}
			char name[256];
			size_t len = (size_t)(end - p - 2);
			if (len >= sizeof(name))
				len = sizeof(name) - 1;
			memcpy(name, p + 2, len);
			name[len] = '\0';
			const char *val = NULL;
			if (strncmp(name, "matrix.", 7) == 0) {
				val = coord_get(c, name + 7);
			} else {
				const char *vn = strncmp(name, "vars.", 5) == 0 ? name + 5 : name;
				const struct qp_ynode *v = qp_ymap_get(b->r->vars, vn);
				if (v && v->kind == QP_Y_SCALAR)
					val = v->str;
			}
			if (!val) {
				qp_diag_add(b->d, "%s:%d:%d: unknown variable '%s' in '%s'", n->file, n->line,
				            n->col, name, s);
				return NULL;
			}
			size_t vl = strlen(val);
			if (o + vl >= sizeof(out))
				break;
			memcpy(out + o, val, vl);
			o += vl;
			p = end + 1;
		} else {
			if (o + 1 >= sizeof(out))
				break;
			out[o++] = *p++;
		}
	}
	out[o] = '\0';
	return qp_arena_strdup(b->a, out);
}

static const char *type_name(enum qp_ptype t)
{
	switch (t) {
	case QP_P_STRING: return "a string";
	case QP_P_INT: return "an integer";
	case QP_P_NUMBER: return "a number";
	case QP_P_BOOL: return "true or false";
	case QP_P_PATH: return "a path";
	case QP_P_ENUM: return "one of its choices";
	case QP_P_LIST: return "a list of strings";
	case QP_P_PATHS: return "a list of paths";
	case QP_P_INPUT:
	case QP_P_INPUTS: return "a stage name";
	}
	return "?";
}

static void bad_value(struct builder *b, const struct qp_instance *in, const struct qp_param_decl *p,
                      const struct qp_ynode *n, const char *detail)
{
	if (n)
		qp_diag_add(b->d, "%s:%d:%d: parameter '%s' of stage '%s' must be %s, not %s",
		            n->file, n->line, n->col, p->name, in->stage->name, type_name(p->type), detail);
	else
		qp_diag_add(b->d, "%s: default of parameter '%s' of stage kind '%s' is not %s",
		            b->r->path, p->name, in->kind->name, type_name(p->type));
}

/* Absolute, symlink-free form of a path relative to the recipe's folder;
 * the text itself with a diagnostic if it does not exist. */
static const char *resolve_path(struct builder *b, const struct qp_instance *in,
                                const struct qp_param_decl *p, const struct qp_ynode *n,
                                const char *text)
{
	const char *joined = text[0] == '/' ? text : qp_arena_printf(b->a, "%s/%s", b->r->dir, text);
	char buf[PATH_MAX];
	if (joined && realpath(joined, buf))
		return qp_arena_strdup(b->a, buf);
	const struct qp_ynode *at = n ? n : in->stage->node;
	qp_diag_add(b->d, "%s:%d:%d: parameter '%s' of stage '%s': '%s' does not exist", at->file,
	            at->line, at->col, p->name, in->stage->name, text);
	return text;
}

/* Parse text into v per p's type. */
static void type_scalar(struct builder *b, struct qp_instance *in, const struct qp_param_decl *p,
                        const struct qp_ynode *n, const char *text, struct qp_value *v)
{
	char quoted[300];
	snprintf(quoted, sizeof(quoted), "'%s'", text);
	char *end = NULL;
	v->s = text;
	switch (p->type) {
	case QP_P_STRING:
		return;
	case QP_P_INT:
		errno = 0;
		v->i = strtoll(text, &end, 10);
		if (errno || end == text || *end) {
			bad_value(b, in, p, n, quoted);
			return;
		}
		v->d = (double)v->i;
		break;
	case QP_P_NUMBER:
		errno = 0;
		v->d = strtod(text, &end);
		if (errno || end == text || *end || !isfinite(v->d)) {
			bad_value(b, in, p, n, quoted);
			return;
		}
		break;
	case QP_P_BOOL:
		if (!strcmp(text, "true") || !strcmp(text, "yes") || !strcmp(text, "on"))
			v->i = 1;
		else if (!strcmp(text, "false") || !strcmp(text, "no") || !strcmp(text, "off"))
			v->i = 0;
		else
			bad_value(b, in, p, n, quoted);
		v->s = v->i ? "true" : "false";
		return;
	case QP_P_ENUM:
		for (size_t i = 0; p->choices[i]; i++)
			if (strcmp(p->choices[i], text) == 0)
				return;
		{
			const char *s = qp_suggest(text, p->choices);
			char list[512] = "";
			for (size_t i = 0; p->choices[i]; i++) {
				size_t len = strlen(list);
				snprintf(list + len, sizeof(list) - len, "%s%s", i ? ", " : "", p->choices[i]);
			}
			const struct qp_ynode *at = n ? n : in->stage->node;
			if (s)
				qp_diag_add(b->d, "%s:%d:%d: parameter '%s' of stage '%s': unknown value '%s' (did you mean '%s'?)",
				            at->file, at->line, at->col, p->name, in->stage->name, text, s);
			else
				qp_diag_add(b->d, "%s:%d:%d: parameter '%s' of stage '%s': unknown value '%s' (one of: %s)",
				            at->file, at->line, at->col, p->name, in->stage->name, text, list);
		}
		return;
	case QP_P_PATH:
		if (!text[0] && !n) /* optional path, not given */
			return;
		v->s = resolve_path(b, in, p, n, text);
		return;
	default:
		return;
	}
	if (p->min < p->max && (v->d < p->min || v->d > p->max)) {
		const struct qp_ynode *at = n ? n : in->stage->node;
		qp_diag_add(b->d, "%s:%d:%d: parameter '%s' of stage '%s' is %s, outside [%g, %g]",
		            at->file, at->line, at->col, p->name, in->stage->name, text, p->min, p->max);
	}
}

/* ---- expansion ---- */

static int consistent(const struct combo *c, const struct qp_instance *u)
{
	for (size_t i = 0; i < u->n_coords; i++) {
		const char *v = coord_get(c, u->coord_names[i]);
		if (v && strcmp(v, u->coord_values[i]) != 0)
			return 0;
	}
	return 1;
}

static int inst_consistent(const struct qp_instance *in, const struct qp_instance *u)
{
	struct combo c = {.n_coords = in->n_coords, .names = in->coord_names, .values = in->coord_values};
	return consistent(&c, u);
}

static struct combo *combo_extend(struct builder *b, const struct combo *c, size_t np,
                                  size_t extra)
{
	struct combo *n = qp_arena_alloc(b->a, sizeof(*n));
	if (!n)
		return NULL;
	n->names = qp_arena_calloc(b->a, c->n_coords + extra + 1, sizeof(char *));
	n->values = qp_arena_calloc(b->a, c->n_coords + extra + 1, sizeof(char *));
	n->pick = qp_arena_calloc(b->a, np + 1, sizeof(size_t));
	if (!n->names || !n->values || !n->pick)
		return NULL;
	if (c->n_coords) {
		memcpy(n->names, c->names, c->n_coords * sizeof(char *));
		memcpy(n->values, c->values, c->n_coords * sizeof(char *));
	}
	if (np)
		memcpy(n->pick, c->pick, np * sizeof(size_t));
	n->n_coords = c->n_coords;
	return n;
}

static int oom(struct builder *b)
{
	b->fatal = 1;
	return qp_err_nomem(b->err);
}

static int push_instance(struct builder *b, struct qp_instance **out)
{
	if (b->n_inst >= QP_GRAPH_MAX_INSTANCES) {
		b->fatal = 1;
		return qp_err_set(b->err, QP_EINVAL, "%s: the recipe expands to more than %d stage instances",
		                  b->r->path, QP_GRAPH_MAX_INSTANCES);
	}
	if (b->n_inst == b->cap_inst) {
		size_t nc = b->cap_inst ? b->cap_inst * 2 : 64;
		struct qp_instance *ni = qp_arena_calloc(b->a, nc, sizeof(*ni));
		if (!ni)
			return oom(b);
		if (b->n_inst)
			memcpy(ni, b->inst, b->n_inst * sizeof(*ni));
		b->inst = ni;
		b->cap_inst = nc;
	}
	*out = &b->inst[b->n_inst++];
	return 0;
}

static void add_dep(struct qp_instance *in, size_t idx)
{
	for (size_t i = 0; i < in->n_deps; i++)
		if (in->deps[i] == idx)
			return;
	in->deps[in->n_deps++] = idx;
}

/* LIST and PATHS: a YAML list of strings, or one comma-separated string. */
static int type_list(struct builder *b, struct qp_instance *in, const struct qp_param_decl *p,
                     const struct qp_ynode *n, const struct combo *c, struct qp_value *v)
{
	if (n && n->kind == QP_Y_SEQ) {
		v->n = n->n;
		v->list = qp_arena_calloc(b->a, n->n + 1, sizeof(char *));
		if (!v->list)
			return oom(b);
		for (size_t j = 0; j < n->n; j++) {
			const struct qp_ynode *it = n->items[j];
			if (it->kind != QP_Y_SCALAR) {
				bad_value(b, in, p, it, qp_ykind_name(it->kind));
				return 0;
			}
			v->list[j] = interpolate(b, it, it->str, c);
		}
		v->s = v->n ? v->list[0] : "";
		return 0;
	}
	if (n && n->kind != QP_Y_SCALAR) {
		bad_value(b, in, p, n, qp_ykind_name(n->kind));
		return 0;
	}
	/* a single string is a comma-separated list */
	const char *t = n ? interpolate(b, n, n->str, c) : p->def;
	if (!t)
		return 0;
	v->s = t;
	size_t cnt = 1;
	for (const char *q = t; *q; q++)
		cnt += *q == ',';
	v->list = qp_arena_calloc(b->a, cnt + 1, sizeof(char *));
	if (!v->list)
		return oom(b);
	for (const char *q = t; *t;) {
		q = strchr(t, ',');
		size_t len = q ? (size_t)(q - t) : strlen(t);
		while (len && t[0] == ' ')
			t++, len--;
		while (len && t[len - 1] == ' ')
			len--;
		if (len && !(v->list[v->n++] = qp_arena_strndup(b->a, t, len)))
			return oom(b);
		if (!q)
			break;
		t = q + 1;
	}
	return 0;
}

/* How many instances one instance of st may depend on at most: sized by
 * this, not by every instance so far, a recipe's deps take linear room. */
static size_t max_deps(const struct builder *b, const struct qp_rstage *st, size_t np)
{
	size_t m = 0;
	for (size_t pi = 0; pi < np; pi++) {
		const struct qp_param_decl *p = &st->kind->params[pi];
		const struct qp_ynode *n = qp_ymap_get(st->with, p->name);
		if (p->type == QP_P_INPUT)
			m++;
		else if (p->type == QP_P_INPUTS && n && stage_index(b->r, n->str) >= 0)
			m += b->count[stage_index(b->r, n->str)];
	}
	for (size_t j = 0; st->needs && j < st->needs->n; j++)
		if (stage_index(b->r, st->needs->items[j]->str) >= 0)
			m += b->count[stage_index(b->r, st->needs->items[j]->str)];
	return m;
}

static int make_instance(struct builder *b, size_t si, const struct combo *c)
{
	const struct qp_rstage *st = &b->r->stages[si];
	const struct qp_stage_kind *k = st->kind;
	size_t np = n_params(k);
	struct qp_instance *in = NULL;
	int rc = push_instance(b, &in);
	if (rc)
		return rc;
	in->stage = st;
	in->kind = k;
	in->n_coords = c->n_coords;
	in->coord_names = c->names;
	in->coord_values = c->values;
	if (c->n_coords == 0) {
		in->id = st->name;
	} else {
		char id[1024];
		int o = snprintf(id, sizeof(id), "%s[", st->name);
		for (size_t i = 0; i < c->n_coords && o < (int)sizeof(id); i++)
			o += snprintf(id + o, sizeof(id) - (size_t)o, "%s%s=%s", i ? "," : "", c->names[i],
			              c->values[i]);
		if (o < (int)sizeof(id))
			snprintf(id + o, sizeof(id) - (size_t)o, "]");
		in->id = qp_arena_strdup(b->a, id);
	}
	in->values = qp_arena_calloc(b->a, np + 1, sizeof(*in->values));
	in->n_in = qp_arena_calloc(b->a, np + 1, sizeof(size_t));
	in->in = qp_arena_calloc(b->a, np + 1, sizeof(size_t *));
	in->deps = qp_arena_calloc(b->a, max_deps(b, st, np) + 1, sizeof(size_t));
	if (!in->id || !in->values || !in->n_in || !in->in || !in->deps)
		return oom(b);

	for (size_t pi = 0; pi < np; pi++) {
		const struct qp_param_decl *p = &k->params[pi];
		struct qp_value *v = &in->values[pi];
		v->type = p->type;
		const struct qp_ynode *n = qp_ymap_get(st->with, p->name);
		if (p->type == QP_P_INPUT) {
			if (!n && p->def) { /* optional input, not given */
				v->s = "";
				continue;
			}
			if (!n) {
				qp_diag_add(b->d, "%s:%d:%d: stage '%s' needs parameter '%s' (%s)", st->node->file,
				            st->node->line, st->node->col, st->name, p->name, p->doc);
				continue;
			}
			in->in[pi] = qp_arena_calloc(b->a, 1, sizeof(size_t));
			if (!in->in[pi])
				return oom(b);
			in->in[pi][0] = c->pick[pi];
			in->n_in[pi] = 1;
			v->s = b->inst[c->pick[pi]].id;
			add_dep(in, c->pick[pi]);
			continue;
		}
		if (p->type == QP_P_INPUTS) {
			if (!n) {
				qp_diag_add(b->d, "%s:%d:%d: stage '%s' needs parameter '%s' (%s)", st->node->file,
				            st->node->line, st->node->col, st->name, p->name, p->doc);
				continue;
			}
			long up = stage_index(b->r, n->str);
			size_t f = b->first[up], cnt = b->count[up];
			in->in[pi] = qp_arena_calloc(b->a, cnt + 1, sizeof(size_t));
			if (!in->in[pi])
				return oom(b);
			for (size_t j = f; j < f + cnt; j++)
				if (inst_consistent(in, &b->inst[j])) {
					in->in[pi][in->n_in[pi]++] = j;
					add_dep(in, j);
				}
			v->s = n->str;
			continue;
		}
		if (!n && !p->def) {
			qp_diag_add(b->d, "%s:%d:%d: stage '%s' needs parameter '%s' (%s)", st->node->file,
			            st->node->line, st->node->col, st->name, p->name, p->doc);
			continue;
		}
		if (p->type == QP_P_LIST || p->type == QP_P_PATHS) {
			int rc = type_list(b, in, p, n, c, v);
			if (rc)
				return rc;
			for (size_t j = 0; p->type == QP_P_PATHS && j < v->n; j++)
				if (v->list[j])
					v->list[j] = resolve_path(b, in, p, n && n->kind == QP_Y_SEQ ? n->items[j] : n,
					                          v->list[j]);
			continue;
		}
		if (n && n->kind != QP_Y_SCALAR) {
			bad_value(b, in, p, n, qp_ykind_name(n->kind));
			continue;
		}
		const char *text = n ? interpolate(b, n, n->str, c) : p->def;
		if (!text)
			continue;
		type_scalar(b, in, p, n, text, v);
	}
	if (st->needs)
		for (size_t j = 0; j < st->needs->n; j++) {
			long up = stage_index(b->r, st->needs->items[j]->str);
			for (size_t q = b->first[up]; q < b->first[up] + b->count[up]; q++)
				if (inst_consistent(in, &b->inst[q]))
					add_dep(in, q);
		}
	return 0;
}

static int is_matrix_rule(const char *key)
{
	return !strcmp(key, "include") || !strcmp(key, "exclude");
}

/* Does combination c agree with every key: value of the mapping m that
 * names one of the matrix's own keys (only_own) or any key? */
static int rule_matches(const struct qp_rstage *st, const struct combo *c, const struct qp_ynode *m,
                        int only_own)
{
	for (size_t q = 0; q < m->n; q++) {
		const char *k = m->keys[q]->str;
		const struct qp_ynode *own = qp_ymap_get(st->matrix, k);
		if (only_own && (!own || is_matrix_rule(k)))
			continue;
		const char *v = coord_get(c, k);
		if (!v || strcmp(v, m->items[q]->str))
			return 0;
	}
	return 1;
}

/* The matrix's exclude and include entries, as CI workflow files define
 * them: exclude drops every combination matching all of an entry's pairs;
 * include adds an entry's other pairs to each combination matching its
 * matrix keys, or, matching none, adds the entry as a combination of its
 * own (only for stages without upstream fan-out, where that is defined). */
static int matrix_rules(struct builder *b, const struct qp_rstage *st, size_t np, int fanout,
                        struct combo ***cur, size_t *ncur)
{
	const struct qp_ynode *ex = qp_ymap_get(st->matrix, "exclude");
	const struct qp_ynode *inc = qp_ymap_get(st->matrix, "include");
	size_t n = *ncur;
	struct combo **c = *cur;
	size_t own = 0;
	for (size_t i = 0; i < st->matrix->n; i++)
		own += !is_matrix_rule(st->matrix->keys[i]->str);
	if (!own && inc) {
		/* only include entries: each is a combination of its own, for
		 * every upstream combination */
		struct combo **nc = qp_arena_calloc(b->a, n * inc->n + 1, sizeof(*nc));
		if (!nc)
			return oom(b);
		size_t nn = 0;
		for (size_t i = 0; i < n; i++)
			for (size_t j = 0; j < inc->n; j++) {
				const struct qp_ynode *m = inc->items[j];
				struct combo *x = combo_extend(b, c[i], np, m->n);
				if (!x)
					return oom(b);
				for (size_t q = 0; q < m->n; q++)
					if (!coord_get(x, m->keys[q]->str)) {
						x->names[x->n_coords] = m->keys[q]->str;
						x->values[x->n_coords++] = m->items[q]->str;
					}
				nc[nn++] = x;
			}
		c = nc;
		n = nn;
		inc = NULL;
	}
	for (size_t j = 0; ex && j < ex->n; j++) {
		const struct qp_ynode *m = ex->items[j];
		size_t kept = 0, before = n;
		for (size_t i = 0; i < n; i++)
			if (!rule_matches(st, c[i], m, 0))
				c[kept++] = c[i];
		n = kept;
		if (n == before)
			qp_diag_add(b->d, "%s:%d:%d: matrix exclude entry of stage '%s' matches no combination",
			            m->file, m->line, m->col, st->name);
	}
	for (size_t j = 0; inc && j < inc->n; j++) {
		const struct qp_ynode *m = inc->items[j];
		int matched = 0;
		for (size_t i = 0; i < n; i++) {
			if (!rule_matches(st, c[i], m, 1))
				continue;
			matched = 1;
			struct combo *x = combo_extend(b, c[i], np, m->n);
			if (!x)
				return oom(b);
			for (size_t q = 0; q < m->n; q++)
				if (!coord_get(x, m->keys[q]->str)) {
					x->names[x->n_coords] = m->keys[q]->str;
					x->values[x->n_coords++] = m->items[q]->str;
				}
			c[i] = x;
		}
		if (matched)
			continue;
		if (fanout) {
			/* with upstream coordinates there is no base to add it to */
			qp_diag_add(b->d, "%s:%d:%d: matrix include entry of stage '%s' matches no combination",
			            m->file, m->line, m->col, st->name);
			continue;
		}
		struct combo base = {0};
		base.pick = qp_arena_calloc(b->a, np + 1, sizeof(size_t));
		struct combo *x = base.pick ? combo_extend(b, &base, np, m->n) : NULL;
		struct combo **nc = qp_arena_calloc(b->a, n + 2, sizeof(*nc));
		if (!x || !nc)
			return oom(b);
		for (size_t q = 0; q < m->n; q++) {
			x->names[x->n_coords] = m->keys[q]->str;
			x->values[x->n_coords++] = m->items[q]->str;
		}
		if (n)
			memcpy(nc, c, n * sizeof(*nc));
		nc[n++] = x;
		c = nc;
	}
	*cur = c;
	*ncur = n;
	return 0;
}

static int expand_stage(struct builder *b, size_t si)
{
	const struct qp_rstage *st = &b->r->stages[si];
	const struct qp_stage_kind *k = st->kind;
	size_t np = n_params(k);
	struct combo root = {0};
	root.pick = qp_arena_calloc(b->a, np + 1, sizeof(size_t));
	if (!root.pick)
		return oom(b);
	struct combo **cur = qp_arena_calloc(b->a, 1, sizeof(*cur));
	if (!cur)
		return oom(b);
	cur[0] = &root;
	size_t ncur = 1;

	for (size_t pi = 0; pi < np; pi++) {
		if (k->params[pi].type != QP_P_INPUT)
			continue;
		const struct qp_ynode *n = qp_ymap_get(st->with, k->params[pi].name);
		if (!n)
			continue;
		long up = stage_index(b->r, n->str);
		size_t f = b->first[up], cnt = b->count[up];
		if (ncur * (cnt ? cnt : 1) > QP_GRAPH_MAX_INSTANCES) {
			b->fatal = 1;
			return qp_err_set(b->err, QP_EINVAL, "%s: stage '%s' expands to more than %d instances",
			                  b->r->path, st->name, QP_GRAPH_MAX_INSTANCES);
		}
		struct combo **next = qp_arena_calloc(b->a, ncur * cnt + 1, sizeof(*next));
		if (!next)
			return oom(b);
		size_t nn = 0;
		for (size_t ci = 0; ci < ncur; ci++)
			for (size_t j = f; j < f + cnt; j++) {
				const struct qp_instance *u = &b->inst[j];
				if (!consistent(cur[ci], u))
					continue;
				struct combo *c = combo_extend(b, cur[ci], np, u->n_coords);
				if (!c)
					return oom(b);
				for (size_t q = 0; q < u->n_coords; q++)
					if (!coord_get(c, u->coord_names[q])) {
						c->names[c->n_coords] = u->coord_names[q];
						c->values[c->n_coords++] = u->coord_values[q];
					}
				c->pick[pi] = j;
				next[nn++] = c;
			}
		cur = next;
		ncur = nn;
	}
	/* combinations inherited from upstream stages, if any */
	int fanout = ncur != 1 || cur[0]->n_coords > 0;
	if (st->matrix) {
		for (size_t mi = 0; mi < st->matrix->n; mi++) {
			const struct qp_ynode *key = st->matrix->keys[mi];
			const struct qp_ynode *vals = st->matrix->items[mi];
			if (is_matrix_rule(key->str))
				continue;
			if (ncur && coord_get(cur[0], key->str)) {
				qp_diag_add(b->d, "%s:%d:%d: matrix key '%s' of stage '%s' is already set by an upstream stage",
				            key->file, key->line, key->col, key->str, st->name);
				continue;
			}
			if (ncur * vals->n > QP_GRAPH_MAX_INSTANCES) {
				b->fatal = 1;
				return qp_err_set(b->err, QP_EINVAL,
				                  "%s:%d:%d: the matrix of stage '%s' expands to more than %d instances",
				                  key->file, key->line, key->col, st->name, QP_GRAPH_MAX_INSTANCES);
			}
			struct combo **next = qp_arena_calloc(b->a, ncur * vals->n + 1, sizeof(*next));
			if (!next)
				return oom(b);
			size_t nn = 0;
			for (size_t ci = 0; ci < ncur; ci++)
				for (size_t j = 0; j < vals->n; j++) {
					struct combo *c = combo_extend(b, cur[ci], np, 1);
					if (!c)
						return oom(b);
					c->names[c->n_coords] = key->str;
					c->values[c->n_coords++] = vals->items[j]->str;
					next[nn++] = c;
				}
			cur = next;
			ncur = nn;
		}
		int rc = matrix_rules(b, st, np, fanout, &cur, &ncur);
		if (rc)
			return rc;
	}
	b->first[si] = b->n_inst;
	for (size_t ci = 0; ci < ncur; ci++) {
		int rc = make_instance(b, si, cur[ci]);
		if (rc)
			return rc;
	}
	b->count[si] = b->n_inst - b->first[si];
	return 0;
}

/* ---- keys ---- */

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Hash a folder tree: sorted (relative name, content hash) of regular
 * files, dot-files skipped. */
static int hash_one(struct qp_statcache *sc, const char *path, struct qp_hash *out,
                    struct qp_err *err)
{
	return sc ? qp_statcache_hash_file(sc, path, out, err) : qp_hash_file(out, path, err);
}

static int hash_tree(struct qp_statcache *sc, struct qp_hasher *h, const char *root,
                     const char *rel, size_t *nfiles, struct qp_err *err)
{
	char path[PATH_MAX];
	int rc = rel[0] ? qp_path_join(path, sizeof(path), root, rel, err)
	                : (snprintf(path, sizeof(path), "%s", root), 0);
	if (rc)
		return rc;
	DIR *d = opendir(path);
	if (!d)
		return qp_err_set(err, QP_EIO, "%s: cannot open directory:", path);
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 32;
			char **nn = realloc(names, cap * sizeof(*nn));
			if (!nn) {
				rc = qp_err_nomem(err);
				break;
			}
			names = nn;
		}
		names[n] = strdup(e->d_name);
		if (!names[n]) {
			rc = qp_err_nomem(err);
			break;
		}
		n++;
	}
	closedir(d);
	if (!rc && n)
		qsort(names, n, sizeof(*names), cmp_str);
	for (size_t i = 0; i < n && !rc; i++) {
		char sub[PATH_MAX], full[PATH_MAX];
		if (rel[0])
			rc = qp_path_join(sub, sizeof(sub), rel, names[i], err);
		else
			snprintf(sub, sizeof(sub), "%s", names[i]);
		if (rc || (rc = qp_path_join(full, sizeof(full), root, sub, err)))
			break;
		struct stat st;
		if (stat(full, &st) != 0) {
			rc = qp_err_set(err, QP_EIO, "%s: cannot stat:", full);
			break;
		}
		if (S_ISDIR(st.st_mode)) {
			rc = hash_tree(sc, h, root, sub, nfiles, err);
		} else if (S_ISREG(st.st_mode)) {
			if (++*nfiles > PATH_TREE_MAX_FILES) {
				rc = qp_err_set(err, QP_EINVAL, "%s: more than %d files", root, PATH_TREE_MAX_FILES);
				break;
			}
			struct qp_hash fh;
			rc = hash_one(sc, full, &fh, err);
			if (!rc) {
				qp_hasher_str(h, sub);
				qp_hasher_update(h, fh.b, sizeof(fh.b));
			}
		}
	}
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return rc;
}

static int hash_path(struct qp_statcache *sc, struct qp_hasher *h, const char *path,
                     struct qp_err *err)
{
	struct stat st;
	if (stat(path, &st) != 0)
		return qp_err_set(err, QP_ENOTFOUND, "%s: cannot stat:", path);
	if (S_ISDIR(st.st_mode)) {
		size_t nfiles = 0;
		qp_hasher_str(h, "tree");
		return hash_tree(sc, h, path, "", &nfiles, err);
	}
	struct qp_hash fh;
	int rc = hash_one(sc, path, &fh, err);
	if (rc)
		return rc;
	qp_hasher_str(h, "file");
	qp_hasher_update(h, fh.b, sizeof(fh.b));
	return 0;
}

/* Digest of one parameter's canonical value into h. */
static int hash_param(struct builder *b, const struct qp_instance *in, size_t pi,
                      struct qp_hasher *h)
{
	const struct qp_value *v = &in->values[pi];
	char num[64];
	int rc = 0;
	switch (v->type) {
	case QP_P_INPUT:
	case QP_P_INPUTS:
		snprintf(num, sizeof(num), "%zu", in->n_in[pi]);
		qp_hasher_str(h, num);
		for (size_t j = 0; j < in->n_in[pi]; j++) {
			const struct qp_instance *u = &b->inst[in->in[pi][j]];
			qp_hasher_str(h, u->id);
			qp_hasher_update(h, u->key.b, sizeof(u->key.b));
		}
		break;
	case QP_P_PATH:
		if (v->s && v->s[0])
			rc = hash_path(b->sc, h, v->s, b->err);
		else
			qp_hasher_str(h, "");
		break;
	case QP_P_PATHS:
		snprintf(num, sizeof(num), "%zu", v->n);
		qp_hasher_str(h, num);
		for (size_t j = 0; j < v->n && !rc; j++)
			rc = hash_path(b->sc, h, v->list[j], b->err);
		break;
	case QP_P_LIST:
		snprintf(num, sizeof(num), "%zu", v->n);
		qp_hasher_str(h, num);
		for (size_t j = 0; j < v->n; j++)
			qp_hasher_str(h, v->list[j]);
		break;
	case QP_P_NUMBER:
		snprintf(num, sizeof(num), "%.17g", v->d);
		qp_hasher_str(h, num);
		break;
	case QP_P_INT:
		snprintf(num, sizeof(num), "%lld", (long long)v->i);
		qp_hasher_str(h, num);
		break;
	default:
		qp_hasher_str(h, v->s ? v->s : "");
	}
	return rc;
}

/* Each parameter is digested on its own (kept in in->parts, so a plan can
 * say which one changed); the key covers kind, version and those digests. */
static int compute_key(struct builder *b, struct qp_instance *in)
{
	size_t np = n_params(in->kind);
	in->parts = qp_arena_calloc(b->a, np + 1, sizeof(*in->parts));
	if (!in->parts)
		return qp_err_nomem(b->err);
	struct qp_hasher *h = NULL, *ph = NULL;
	int rc = qp_hasher_new(&h, b->err);
	if (rc)
		return rc;
	char ver[32];
	snprintf(ver, sizeof(ver), "%d", in->kind->version);
	qp_hasher_str(h, "qpipe-key/2");
	qp_hasher_str(h, in->kind->name);
	qp_hasher_str(h, ver);
	for (size_t pi = 0; pi < np && !rc; pi++) {
		if ((rc = qp_hasher_new(&ph, b->err)))
			break;
		rc = hash_param(b, in, pi, ph);
		qp_hasher_digest(ph, &in->parts[pi]);
		qp_hasher_free(ph);
		qp_hasher_str(h, in->kind->params[pi].name);
		qp_hasher_update(h, in->parts[pi].b, sizeof(in->parts[pi].b));
	}
	if (!rc && in->kind->hash_extra) {
		struct qp_stage_ctx ctx = {.in = in, .planning = in, .arena = b->a};
		qp_hasher_str(h, "extra");
		rc = in->kind->hash_extra(&ctx, h, b->err);
	}
	if (!rc) {
		qp_hasher_digest(h, &in->key);
		qp_hash_hex(&in->key, in->key_hex);
	}
	qp_hasher_free(h);
	return rc;
}

static int build(struct qp_graph **out, struct qp_arena *arena, const struct qp_recipe *r,
                 struct qp_statcache *sc, int with_keys, struct qp_diags *diags, struct qp_err *err)
{
	*out = NULL;
	size_t ns = r->n_stages;
	struct builder b = {.a = arena, .r = r, .d = diags, .err = err, .sc = sc};
	size_t before = diags->n + diags->dropped;
	b.first = qp_arena_calloc(arena, ns + 1, sizeof(size_t));
	b.count = qp_arena_calloc(arena, ns + 1, sizeof(size_t));
	b.state = qp_arena_calloc(arena, ns + 1, sizeof(int));
	b.order = qp_arena_calloc(arena, ns + 1, sizeof(size_t));
	size_t *stack = qp_arena_calloc(arena, ns + 2, sizeof(size_t));
	if (!b.first || !b.count || !b.state || !b.order || !stack)
		return qp_err_nomem(err);

	/* References first: each is checked once, with a position. */
	for (size_t si = 0; si < ns; si++)
		check_refs(&b, si);
	if (diags->n + diags->dropped > before)
		goto invalid;
	for (size_t si = 0; si < ns; si++)
		visit(&b, si, stack, 0);
	if (diags->n + diags->dropped > before)
		goto invalid;
	for (size_t oi = 0; oi < b.n_order; oi++) {
		size_t si = b.order[oi];
		if (!r->stages[si].kind)
			continue;
		int rc = expand_stage(&b, si);
		if (rc && b.fatal)
			return rc;
	}
	if (diags->n + diags->dropped > before)
		goto invalid;
	for (size_t i = 0; with_keys && i < b.n_inst; i++) {
		int rc = compute_key(&b, &b.inst[i]);
		if (rc)
			return qp_err_prefix(err, "stage '%s'", b.inst[i].id);
	}
	struct qp_graph *g = qp_arena_alloc(arena, sizeof(*g));
	if (!g)
		return qp_err_nomem(err);
	g->recipe = r;
	g->n = b.n_inst;
	g->inst = b.inst;
	*out = g;
	return 0;
invalid:
	return qp_err_set(err, QP_EINVAL, "%s", diags->msgs[before < diags->n ? before : 0]);
}

int qp_graph_build(struct qp_graph **out, struct qp_arena *arena, const struct qp_recipe *r,
                   struct qp_statcache *sc, struct qp_diags *diags, struct qp_err *err)
{
	return build(out, arena, r, sc, 1, diags, err);
}

int qp_graph_expand(struct qp_graph **out, struct qp_arena *arena, const struct qp_recipe *r,
                    struct qp_diags *diags, struct qp_err *err)
{
	return build(out, arena, r, NULL, 0, diags, err);
}
