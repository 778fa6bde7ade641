#include "pipeline/recipe.h"

#include <libgen.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/os.h"
#include "common/suggest.h"

#define RECIPE_MAX_BYTES (16u << 20)

static const char *const top_keys[] = {"name", "vars", "stages", "include", NULL};

#define INCLUDE_MAX_DEPTH 8
static const char *const stage_keys[] = {"uses", "with", "matrix", "needs", NULL};

struct loader {
	struct qp_recipe *r;
	struct qp_arena *arena;
	struct qp_diags *d;
};

static void unknown_key(struct loader *l, const struct qp_ynode *key, const char *where,
                        const char *const *known)
{
	const char *s = qp_suggest(key->str, known);
	if (s)
		qp_diag_add(l->d, "%s:%d:%d: unknown key '%s' in %s (did you mean '%s'?)", key->file,
		            key->line, key->col, key->str, where, s);
	else
		qp_diag_add(l->d, "%s:%d:%d: unknown key '%s' in %s", key->file, key->line, key->col,
		            key->str, where);
}

static int in_list(const char *s, const char *const *list)
{
	for (size_t i = 0; list[i]; i++)
		if (strcmp(s, list[i]) == 0)
			return 1;
	return 0;
}

static void want_kind(struct loader *l, const struct qp_ynode *n, enum qp_ykind k, const char *what)
{
	if (n->kind != k)
		qp_diag_add(l->d, "%s:%d:%d: %s must be %s, not %s", n->file, n->line, n->col, what,
		            qp_ykind_name(k), qp_ykind_name(n->kind));
}

static const char **kind_names(struct qp_arena *a)
{
	size_t n = 0;
	while (qp_stage_kinds[n])
		n++;
	const char **names = qp_arena_calloc(a, n + 1, sizeof(*names));
	if (names)
		for (size_t i = 0; i < n; i++)
			names[i] = qp_stage_kinds[i]->name;
	return names;
}

static const char **param_names(struct qp_arena *a, const struct qp_stage_kind *k)
{
	size_t n = 0;
	while (k->params[n].name)
		n++;
	const char **names = qp_arena_calloc(a, n + 1, sizeof(*names));
	if (names)
		for (size_t i = 0; i < n; i++)
			names[i] = k->params[i].name;
	return names;
}

static void load_stage(struct loader *l, struct qp_rstage *st, const struct qp_ynode *key,
                       const struct qp_ynode *node)
{
	st->name = key->str;
	st->node = node;
	if (node->kind != QP_Y_MAP) {
		want_kind(l, node, QP_Y_MAP, "a stage");
		return;
	}
	for (size_t i = 0; i < node->n; i++)
		if (!in_list(node->keys[i]->str, stage_keys))
			unknown_key(l, node->keys[i], "stage", stage_keys);
	const struct qp_ynode *uses = qp_ymap_get(node, "uses");
	if (!uses) {
		qp_diag_add(l->d, "%s:%d:%d: stage '%s' has no 'uses' (its kind)", key->file, key->line,
		            key->col, st->name);
	} else if (uses->kind != QP_Y_SCALAR) {
		want_kind(l, uses, QP_Y_SCALAR, "'uses'");
	} else {
		st->kind = qp_stage_kind_find(uses->str);
		if (!st->kind) {
			const char **names = kind_names(l->arena);
			const char *s = names ? qp_suggest(uses->str, names) : NULL;
			if (s)
				qp_diag_add(l->d, "%s:%d:%d: unknown stage kind '%s' (did you mean '%s'?)", uses->file,
				            uses->line, uses->col, uses->str, s);
			else
				qp_diag_add(l->d, "%s:%d:%d: unknown stage kind '%s' (see 'qpipe stages')",
				            uses->file, uses->line, uses->col, uses->str);
		}
	}
	st->with = qp_ymap_get(node, "with");
	if (st->with && st->with->kind != QP_Y_MAP) {
		want_kind(l, st->with, QP_Y_MAP, "'with'");
		st->with = NULL;
	}
	if (st->with && st->kind) {
		const char **names = param_names(l->arena, st->kind);
		for (size_t i = 0; i < st->with->n && names; i++) {
			const struct qp_ynode *k = st->with->keys[i];
			if (qp_stage_param_find(st->kind, k->str))
				continue;
			const char *s = qp_suggest(k->str, names);
			if (s)
				qp_diag_add(l->d,
				            "%s:%d:%d: unknown parameter '%s' for stage kind '%s' (did you mean '%s'?)",
				            k->file, k->line, k->col, k->str, st->kind->name, s);
			else
				qp_diag_add(l->d, "%s:%d:%d: unknown parameter '%s' for stage kind '%s'", k->file,
				            k->line, k->col, k->str, st->kind->name);
		}
	}
	st->matrix = qp_ymap_get(node, "matrix");
	if (st->matrix) {
		if (st->matrix->kind != QP_Y_MAP) {
			want_kind(l, st->matrix, QP_Y_MAP, "'matrix'");
			st->matrix = NULL;
		} else {
			for (size_t i = 0; i < st->matrix->n; i++) {
				const struct qp_ynode *v = st->matrix->items[i];
				const char *k = st->matrix->keys[i]->str;
				if (!strcmp(k, "include") || !strcmp(k, "exclude")) {
					if (v->kind != QP_Y_SEQ) {
						want_kind(l, v, QP_Y_SEQ, "matrix 'include' or 'exclude'");
						continue;
					}
					for (size_t j = 0; j < v->n; j++) {
						const struct qp_ynode *m = v->items[j];
						want_kind(l, m, QP_Y_MAP, "an entry of matrix 'include' or 'exclude'");
						for (size_t q = 0; m->kind == QP_Y_MAP && q < m->n; q++)
							want_kind(l, m->items[q], QP_Y_SCALAR, "a matrix value");
					}
					continue;
				}
				if (v->kind != QP_Y_SEQ || v->n == 0) {
					qp_diag_add(l->d, "%s:%d:%d: matrix entry '%s' must be a non-empty list", v->file,
					            v->line, v->col, st->matrix->keys[i]->str);
					continue;
				}
				for (size_t j = 0; j < v->n; j++)
					want_kind(l, v->items[j], QP_Y_SCALAR, "a matrix value");
			}
		}
	}
	st->needs = qp_ymap_get(node, "needs");
	if (st->needs) {
		if (st->needs->kind != QP_Y_SEQ) {
			want_kind(l, st->needs, QP_Y_SEQ, "'needs'");
			st->needs = NULL;
		} else {
			for (size_t j = 0; j < st->needs->n; j++)
				want_kind(l, st->needs->items[j], QP_Y_SCALAR, "an entry of 'needs'");
		}
	}
}

/* Set key to a plain scalar value in map m (replacing, or appending with
 * the map's own position). */
static int map_set(struct qp_arena *a, struct qp_ynode *m, const char *key, const char *value)
{
	struct qp_ynode *v = qp_arena_alloc(a, sizeof(*v));
	if (!v || !(v->str = qp_arena_strdup(a, value)))
		return -1;
	v->kind = QP_Y_SCALAR;
	v->plain = 1;
	for (size_t i = 0; i < m->n; i++)
		if (!strcmp(m->keys[i]->str, key)) {
			v->file = m->items[i]->file;
			v->line = m->items[i]->line;
			v->col = m->items[i]->col;
			m->items[i] = v;
			return 0;
		}
	struct qp_ynode *k = qp_arena_alloc(a, sizeof(*k));
	struct qp_ynode **keys = qp_arena_calloc(a, m->n + 1, sizeof(*keys));
	struct qp_ynode **items = qp_arena_calloc(a, m->n + 1, sizeof(*items));
	if (!k || !keys || !items || !(k->str = qp_arena_strdup(a, key)))
		return -1;
	k->kind = QP_Y_SCALAR;
	k->plain = 1;
	k->file = v->file = m->file;
	k->line = v->line = m->line;
	k->col = v->col = m->col;
	if (m->n) {
		memcpy(keys, m->keys, m->n * sizeof(*keys));
		memcpy(items, m->items, m->n * sizeof(*items));
	}
	keys[m->n] = k;
	items[m->n] = v;
	m->keys = keys;
	m->items = items;
	m->n++;
	return 0;
}

/* The mapping under key in m, created empty if absent; NULL if key holds
 * something else. */
static struct qp_ynode *map_child(struct qp_arena *a, struct qp_ynode *m, const char *key)
{
	struct qp_ynode *c = qp_ymap_get(m, key);
	if (c)
		return c->kind == QP_Y_MAP ? c : NULL;
	if (map_set(a, m, key, ""))
		return NULL;
	c = m->items[m->n - 1];
	c->kind = QP_Y_MAP;
	c->str = NULL;
	return c;
}

/* Merge the included recipe's vars (the including file's own win) and
 * stages (a name defined twice is an error naming both places) into root. */
static void merge_included(struct loader *l, struct qp_ynode *root, struct qp_ynode *inc)
{
	struct qp_ynode *vars = qp_ymap_get(inc, "vars");
	if (vars && vars->kind == QP_Y_MAP) {
		struct qp_ynode *mine = map_child(l->arena, root, "vars");
		for (size_t i = 0; mine && i < vars->n; i++)
			if (!qp_ymap_get(mine, vars->keys[i]->str) && vars->items[i]->kind == QP_Y_SCALAR &&
			    map_set(l->arena, mine, vars->keys[i]->str, vars->items[i]->str) == 0) {
				/* keep the included value's position for messages */
				mine->items[mine->n - 1]->file = vars->items[i]->file;
				mine->items[mine->n - 1]->line = vars->items[i]->line;
				mine->items[mine->n - 1]->col = vars->items[i]->col;
			}
	}
	struct qp_ynode *st = qp_ymap_get(inc, "stages");
	if (!st || st->kind != QP_Y_MAP)
		return;
	struct qp_ynode *mine = map_child(l->arena, root, "stages");
	if (!mine)
		return;
	struct qp_ynode **keys = qp_arena_calloc(l->arena, mine->n + st->n + 1, sizeof(*keys));
	struct qp_ynode **items = qp_arena_calloc(l->arena, mine->n + st->n + 1, sizeof(*items));
	if (!keys || !items)
		return;
	size_t n = mine->n;
	if (n) {
		memcpy(keys, mine->keys, n * sizeof(*keys));
		memcpy(items, mine->items, n * sizeof(*items));
	}
	for (size_t i = 0; i < st->n; i++) {
		struct qp_ynode *k = st->keys[i];
		const struct qp_ynode *dup = qp_ymap_get(mine, k->str);
		if (dup) {
			const struct qp_ynode *dk = NULL;
			for (size_t j = 0; j < mine->n; j++)
				if (!strcmp(mine->keys[j]->str, k->str))
					dk = mine->keys[j];
			qp_diag_add(l->d, "%s:%d:%d: stage '%s' is defined again (first at %s:%d:%d)", k->file,
			            k->line, k->col, k->str, dk->file, dk->line, dk->col);
			continue;
		}
		keys[n] = k;
		items[n++] = st->items[i];
	}
	mine->keys = keys;
	mine->items = items;
	mine->n = n;
}

/* include: [files...] relative to the including file, recursively; a file
 * included twice on one path is a cycle. */
static void apply_includes(struct loader *l, struct qp_ynode *root, const char *dir,
                           const char **stack, int depth)
{
	struct qp_ynode *inc = qp_ymap_get(root, "include");
	if (!inc)
		return;
	if (inc->kind == QP_Y_SCALAR) {
		struct qp_ynode **one = qp_arena_calloc(l->arena, 1, sizeof(*one));
		if (!one)
			return;
		struct qp_ynode *seq = qp_arena_alloc(l->arena, sizeof(*seq));
		if (!seq)
			return;
		*seq = *inc;
		one[0] = seq;
		inc->kind = QP_Y_SEQ;
		inc->items = one;
		inc->n = 1;
	}
	if (inc->kind != QP_Y_SEQ) {
		want_kind(l, inc, QP_Y_SEQ, "'include'");
		return;
	}
	for (size_t i = 0; i < inc->n; i++) {
		const struct qp_ynode *f = inc->items[i];
		if (f->kind != QP_Y_SCALAR) {
			want_kind(l, f, QP_Y_SCALAR, "an included file");
			continue;
		}
		char joined[PATH_MAX], real[PATH_MAX];
		snprintf(joined, sizeof(joined), "%s/%s", f->str[0] == '/' ? "" : dir, f->str);
		struct stat st;
		if (!realpath(joined, real) || stat(real, &st) != 0) {
			qp_diag_add(l->d, "%s:%d:%d: included file '%s' does not exist", f->file, f->line, f->col,
			            f->str);
			continue;
		}
		if (!S_ISREG(st.st_mode)) {
			/* a FIFO or device would block or never end */
			qp_diag_add(l->d, "%s:%d:%d: included '%s' is not a regular file", f->file, f->line,
			            f->col, f->str);
			continue;
		}
		int cycle = 0;
		for (int d = 0; d < depth; d++)
			cycle |= !strcmp(stack[d], real);
		if (cycle || depth >= INCLUDE_MAX_DEPTH) {
			qp_diag_add(l->d, "%s:%d:%d: '%s' %s", f->file, f->line, f->col, f->str,
			            cycle ? "includes itself" : "is included too deeply");
			continue;
		}
		char *text = NULL;
		size_t len = 0;
		struct qp_err e = {0};
		struct qp_ynode *sub = NULL;
		char *name = qp_arena_strdup(l->arena, real);
		if (!name || qp_os_read_file(&text, &len, real, RECIPE_MAX_BYTES, &e) ||
		    qp_yaml_parse(&sub, l->arena, name, text, len, &e)) {
			qp_diag_add(l->d, "%s", e.msg[0] ? e.msg : "out of memory");
			free(text);
			continue;
		}
		free(text);
		if (sub->kind != QP_Y_MAP) {
			want_kind(l, sub, QP_Y_MAP, "an included recipe");
			continue;
		}
		for (size_t k = 0; k < sub->n; k++)
			if (!in_list(sub->keys[k]->str, top_keys) || !strcmp(sub->keys[k]->str, "name"))
				unknown_key(l, sub->keys[k], "included recipe", top_keys);
		stack[depth] = name;
		char subdir[PATH_MAX];
		snprintf(subdir, sizeof(subdir), "%s", real);
		char *slash = strrchr(subdir, '/');
		if (slash)
			*slash = '\0';
		apply_includes(l, sub, subdir, stack, depth + 1);
		merge_included(l, root, sub);
	}
}

/* --set NAME=VALUE sets a variable; --set STAGE.PARAM=VALUE a parameter of
 * a stage, overriding what the file says. */
static void apply_sets(struct loader *l, struct qp_ynode *root, const char *const *sets, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const char *eq = strchr(sets[i], '=');
		if (!eq || eq == sets[i]) {
			qp_diag_add(l->d, "--set '%s': expected NAME=VALUE or STAGE.PARAM=VALUE", sets[i]);
			continue;
		}
		char key[256];
		snprintf(key, sizeof(key), "%.*s", (int)(eq - sets[i]), sets[i]);
		char *dot = strchr(key, '.');
		struct qp_ynode *target;
		if (!dot) {
			target = map_child(l->arena, root, "vars");
		} else {
			*dot = '\0';
			struct qp_ynode *stages = qp_ymap_get(root, "stages");
			struct qp_ynode *st = stages ? qp_ymap_get(stages, key) : NULL;
			if (!st || st->kind != QP_Y_MAP) {
				qp_diag_add(l->d, "--set '%s': the recipe has no stage '%s'", sets[i], key);
				continue;
			}
			target = map_child(l->arena, st, "with");
		}
		if (!target || map_set(l->arena, target, dot ? dot + 1 : key, eq + 1))
			qp_diag_add(l->d, "--set '%s': cannot apply here (not a mapping)", sets[i]);
	}
}

static int cmp_stage(const void *a, const void *b)
{
	return strcmp(((const struct qp_stage_ref *)a)->name, ((const struct qp_stage_ref *)b)->name);
}

static int absolute_dir(struct qp_recipe *r, struct qp_arena *a, const char *path, struct qp_err *err)
{
	char buf[PATH_MAX];
	if (!realpath(path, buf))
		return qp_err_set(err, QP_ENOTFOUND, "%s: cannot resolve path:", path);
	r->dir = qp_arena_strdup(a, dirname(buf));
	return r->dir ? 0 : qp_err_nomem(err);
}

int qp_recipe_load(struct qp_recipe **out, struct qp_arena *arena, const char *path,
                   const char *const *sets, size_t n_sets, struct qp_diags *diags,
                   struct qp_err *err)
{
	*out = NULL;
	char *text = NULL;
	size_t len = 0;
	int rc = qp_os_read_file(&text, &len, path, RECIPE_MAX_BYTES, err);
	if (rc)
		return rc;
	struct qp_recipe tmp = {0};
	if ((rc = absolute_dir(&tmp, arena, path, err))) {
		free(text);
		return rc;
	}
	rc = qp_recipe_parse(out, arena, path, tmp.dir, text, len, sets, n_sets, diags, err);
	free(text);
	return rc;
}

int qp_recipe_parse(struct qp_recipe **out, struct qp_arena *arena, const char *name_for_msgs,
                    const char *dir, const char *text, size_t len, const char *const *sets,
                    size_t n_sets, struct qp_diags *diags, struct qp_err *err)
{
	*out = NULL;
	const char *path = name_for_msgs;
	struct qp_recipe *r = qp_arena_alloc(arena, sizeof(*r));
	if (!r)
		return qp_err_nomem(err);
	r->path = qp_arena_strdup(arena, path);
	r->dir = qp_arena_strdup(arena, dir);
	if (!r->path || !r->dir)
		return qp_err_nomem(err);
	struct qp_ynode *root = NULL;
	int rc = qp_yaml_parse(&root, arena, r->path, text, len, err);
	if (rc) {
		qp_diag_add(diags, "%s", err->msg);
		return rc;
	}

	struct loader l = {.r = r, .arena = arena, .d = diags};
	size_t before = diags->n + diags->dropped;
	if (root->kind != QP_Y_MAP) {
		qp_diag_add(diags, "%s:%d:%d: a recipe must be a mapping with 'stages'", root->file,
		            root->line, root->col);
		goto done;
	}
	const char *stack[INCLUDE_MAX_DEPTH + 1];
	char self[PATH_MAX];
	stack[0] = realpath(path, self) ? self : path;
	apply_includes(&l, root, r->dir, stack, 1);
	apply_sets(&l, root, sets, n_sets);
	for (size_t i = 0; i < root->n; i++)
		if (!in_list(root->keys[i]->str, top_keys))
			unknown_key(&l, root->keys[i], "recipe", top_keys);
	const struct qp_ynode *name = qp_ymap_get(root, "name");
	if (name && name->kind == QP_Y_SCALAR) {
		r->name = name->str;
	} else {
		if (name)
			want_kind(&l, name, QP_Y_SCALAR, "'name'");
		char buf[PATH_MAX];
		snprintf(buf, sizeof(buf), "%s", path);
		r->name = qp_arena_strdup(arena, basename(buf));
	}
	r->vars = qp_ymap_get(root, "vars");
	if (r->vars) {
		if (r->vars->kind != QP_Y_MAP) {
			want_kind(&l, r->vars, QP_Y_MAP, "'vars'");
			r->vars = NULL;
		} else {
			for (size_t i = 0; i < r->vars->n; i++)
				want_kind(&l, r->vars->items[i], QP_Y_SCALAR, "a variable's value");
		}
	}
	const struct qp_ynode *stages = qp_ymap_get(root, "stages");
	if (!stages) {
		qp_diag_add(diags, "%s:%d:%d: recipe has no 'stages'", root->file, root->line, root->col);
		goto done;
	}
	if (stages->kind != QP_Y_MAP) {
		want_kind(&l, stages, QP_Y_MAP, "'stages'");
		goto done;
	}
	r->n_stages = stages->n;
	r->stages = qp_arena_calloc(arena, stages->n ? stages->n : 1, sizeof(*r->stages));
	if (!r->stages)
		return qp_err_nomem(err);
	for (size_t i = 0; i < stages->n; i++)
		load_stage(&l, &r->stages[i], stages->keys[i], stages->items[i]);
	r->by_name = qp_arena_calloc(arena, stages->n + 1, sizeof(*r->by_name));
	if (!r->by_name)
		return qp_err_nomem(err);
	for (size_t i = 0; i < stages->n; i++)
		r->by_name[i] = (struct qp_stage_ref){r->stages[i].name, i};
	if (stages->n)
		qsort(r->by_name, stages->n, sizeof(*r->by_name), cmp_stage);
done:
	if (diags->n + diags->dropped > before)
		return qp_err_set(err, QP_EINVAL, "%s", diags->msgs[before < diags->n ? before : 0]);
	*out = r;
	return 0;
}

long qp_recipe_stage_index(const struct qp_recipe *r, const char *name)
{
	size_t lo = 0, hi = r->by_name ? r->n_stages : 0;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(r->by_name[mid].name, name);
		if (c == 0)
			return (long)r->by_name[mid].idx;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

const struct qp_rstage *qp_recipe_stage(const struct qp_recipe *r, const char *name)
{
	long i = qp_recipe_stage_index(r, name);
	return i < 0 ? NULL : &r->stages[i];
}
