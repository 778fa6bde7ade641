#include "pipeline/ytree.h"

#include <stdlib.h>
#include <string.h>
#include <yaml.h>

struct builder {
	yaml_parser_t parser;
	struct qp_arena *arena;
	const char *name;
	size_t nodes;
	struct qp_err *err;
};

static int oom(struct builder *b)
{
	return qp_err_nomem(b->err);
}

static int parse_error(struct builder *b)
{
	yaml_parser_t *p = &b->parser;
	const char *problem = p->problem ? p->problem : "malformed YAML";
	if (p->context)
		return qp_err_set(b->err, QP_EINVAL, "%s:%zu:%zu: %s %s (line %zu)", b->name,
		                  p->problem_mark.line + 1, p->problem_mark.column + 1, problem,
		                  p->context, p->context_mark.line + 1);
	return qp_err_set(b->err, QP_EINVAL, "%s:%zu:%zu: %s", b->name, p->problem_mark.line + 1,
	                  p->problem_mark.column + 1, problem);
}

static int next(struct builder *b, yaml_event_t *ev)
{
	if (!yaml_parser_parse(&b->parser, ev))
		return parse_error(b);
	return 0;
}

static struct qp_ynode *new_node(struct builder *b, enum qp_ykind kind, const yaml_mark_t *m)
{
	if (++b->nodes > QP_YAML_MAX_NODES)
		return NULL;
	struct qp_ynode *n = qp_arena_alloc(b->arena, sizeof(*n));
	if (!n)
		return NULL;
	n->kind = kind;
	n->file = b->name;
	n->line = (int)m->line + 1;
	n->col = (int)m->column + 1;
	return n;
}

/* Append to a growable array of node pointers kept in the arena; cap is the
 * current capacity, doubled on demand (old storage is left in the arena). */
static int push(struct builder *b, struct qp_ynode ***arr, size_t *cap, size_t n,
                struct qp_ynode *v)
{
	if (n == *cap) {
		size_t nc = *cap ? *cap * 2 : 8;
		struct qp_ynode **na = qp_arena_calloc(b->arena, nc, sizeof(*na));
		if (!na)
			return oom(b);
		if (n)
			memcpy(na, *arr, n * sizeof(*na));
		*arr = na;
		*cap = nc;
	}
	(*arr)[n] = v;
	return 0;
}

static int build_node(struct builder *b, yaml_event_t *ev, int depth, struct qp_ynode **out);

static int cmp_key(const void *x, const void *y)
{
	const struct qp_ynode *a = *(const struct qp_ynode *const *)x;
	const struct qp_ynode *c = *(const struct qp_ynode *const *)y;
	int r = strcmp(a->str, c->str);
	if (r)
		return r;
	return a->line != c->line ? (a->line < c->line ? -1 : 1) : (a->col < c->col ? -1 : a->col > c->col);
}

/* Duplicate keys, found by sorting (a recipe of thousands of stages must
 * not cost a quadratic number of comparisons); the message names the later
 * one and the line of the first. */
static int check_duplicates(struct builder *b, const struct qp_ynode *map)
{
	if (map->n < 2)
		return 0;
	struct qp_ynode **sorted = qp_arena_calloc(b->arena, map->n, sizeof(*sorted));
	if (!sorted)
		return oom(b);
	memcpy(sorted, map->keys, map->n * sizeof(*sorted));
	qsort(sorted, map->n, sizeof(*sorted), cmp_key);
	const struct qp_ynode *bad = NULL, *first = NULL;
	for (size_t i = 1; i < map->n; i++)
		if (!strcmp(sorted[i - 1]->str, sorted[i]->str)) {
			/* the earliest duplicate in the file is the one to report */
			size_t f = i - 1;
			while (f > 0 && !strcmp(sorted[f - 1]->str, sorted[i]->str))
				f--;
			if (!bad || sorted[i]->line < bad->line ||
			    (sorted[i]->line == bad->line && sorted[i]->col < bad->col)) {
				bad = sorted[i];
				first = sorted[f];
			}
		}
	if (bad)
		return qp_err_set(b->err, QP_EINVAL, "%s:%d:%d: duplicate key '%s' (first at line %d)",
		                  b->name, bad->line, bad->col, bad->str, first->line);
	return 0;
}

static int build_children(struct builder *b, struct qp_ynode *node, int depth)
{
	size_t kcap = 0, icap = 0;
	yaml_event_type_t end = node->kind == QP_Y_MAP ? YAML_MAPPING_END_EVENT : YAML_SEQUENCE_END_EVENT;
	for (;;) {
		yaml_event_t ev;
		int rc = next(b, &ev);
		if (rc)
			return rc;
		if (ev.type == end) {
			yaml_event_delete(&ev);
			return node->kind == QP_Y_MAP ? check_duplicates(b, node) : 0;
		}
		struct qp_ynode *child = NULL;
		rc = build_node(b, &ev, depth + 1, &child);
		if (rc)
			return rc;
		if (node->kind == QP_Y_SEQ) {
			rc = push(b, &node->items, &icap, node->n, child);
			if (rc)
				return rc;
			node->n++;
			continue;
		}
		if (child->kind != QP_Y_SCALAR)
			return qp_err_set(b->err, QP_EINVAL, "%s:%d:%d: a mapping key must be a plain string",
			                  b->name, child->line, child->col);
		struct qp_ynode *value = NULL;
		rc = next(b, &ev);
		if (rc)
			return rc;
		rc = build_node(b, &ev, depth + 1, &value);
		if (rc)
			return rc;
		rc = push(b, &node->keys, &kcap, node->n, child);
		if (!rc)
			rc = push(b, &node->items, &icap, node->n, value);
		if (rc)
			return rc;
		node->n++;
	}
}

/* Consumes ev. */
static int build_node(struct builder *b, yaml_event_t *ev, int depth, struct qp_ynode **out)
{
	int rc = 0;
	if (depth > QP_YAML_MAX_DEPTH) {
		rc = qp_err_set(b->err, QP_EINVAL, "%s:%zu:%zu: nesting deeper than %d levels", b->name,
		                ev->start_mark.line + 1, ev->start_mark.column + 1, QP_YAML_MAX_DEPTH);
		yaml_event_delete(ev);
		return rc;
	}
	struct qp_ynode *n = NULL;
	const unsigned char *anchor = NULL;
	switch (ev->type) {
	case YAML_ALIAS_EVENT:
		rc = qp_err_set(b->err, QP_EINVAL, "%s:%zu:%zu: YAML aliases are not allowed in recipes",
		                b->name, ev->start_mark.line + 1, ev->start_mark.column + 1);
		break;
	case YAML_SCALAR_EVENT:
		anchor = ev->data.scalar.anchor;
		n = new_node(b, QP_Y_SCALAR, &ev->start_mark);
		if (n) {
			n->str = qp_arena_strndup(b->arena, (const char *)ev->data.scalar.value,
			                          ev->data.scalar.length);
			n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
		}
		if (!n || !n->str)
			rc = b->nodes > QP_YAML_MAX_NODES
			         ? qp_err_set(b->err, QP_EINVAL, "%s: more than %d nodes", b->name,
			                      QP_YAML_MAX_NODES)
			         : oom(b);
		break;
	case YAML_MAPPING_START_EVENT:
	case YAML_SEQUENCE_START_EVENT:
		anchor = ev->type == YAML_MAPPING_START_EVENT ? ev->data.mapping_start.anchor
		                                              : ev->data.sequence_start.anchor;
		n = new_node(b, ev->type == YAML_MAPPING_START_EVENT ? QP_Y_MAP : QP_Y_SEQ,
		             &ev->start_mark);
		if (!n)
			rc = b->nodes > QP_YAML_MAX_NODES
			         ? qp_err_set(b->err, QP_EINVAL, "%s: more than %d nodes", b->name,
			                      QP_YAML_MAX_NODES)
			         : oom(b);
		break;
	default:
		rc = qp_err_set(b->err, QP_EINVAL, "%s:%zu:%zu: unexpected YAML event", b->name,
		                ev->start_mark.line + 1, ev->start_mark.column + 1);
	}
	if (!rc && anchor)
		rc = qp_err_set(b->err, QP_EINVAL, "%s:%d:%d: YAML anchors are not allowed in recipes",
		                b->name, n->line, n->col);
	yaml_event_delete(ev);
	if (rc)
		return rc;
	if (n->kind != QP_Y_SCALAR) {
		rc = build_children(b, n, depth);
		if (rc)
			return rc;
	}
	*out = n;
	return 0;
}

/* Events: STREAM_START, then either STREAM_END (empty input) or
 * DOCUMENT_START, node events or nothing, DOCUMENT_END, STREAM_END. */
static int parse_stream(struct builder *b, struct qp_ynode **root)
{
	yaml_event_t ev;
	int rc = next(b, &ev);
	if (rc)
		return rc;
	yaml_event_delete(&ev); /* stream start */
	if ((rc = next(b, &ev)))
		return rc;
	if (ev.type == YAML_STREAM_END_EVENT) {
		yaml_event_delete(&ev);
		return 0;
	}
	yaml_event_delete(&ev); /* document start */
	if ((rc = next(b, &ev)))
		return rc;
	if (ev.type == YAML_DOCUMENT_END_EVENT)
		yaml_event_delete(&ev);
	else if ((rc = build_node(b, &ev, 0, root)) || (rc = next(b, &ev)))
		return rc;
	else
		yaml_event_delete(&ev); /* document end */
	if ((rc = next(b, &ev)))
		return rc;
	if (ev.type == YAML_DOCUMENT_START_EVENT)
		rc = qp_err_set(b->err, QP_EINVAL, "%s:%zu:%zu: a recipe is one YAML document", b->name,
		                ev.start_mark.line + 1, ev.start_mark.column + 1);
	yaml_event_delete(&ev);
	return rc;
}

int qp_yaml_parse(struct qp_ynode **out, struct qp_arena *a, const char *name, const char *buf,
                  size_t len, struct qp_err *err)
{
	struct builder b = {.arena = a, .name = name, .err = err};
	*out = NULL;
	if (!yaml_parser_initialize(&b.parser))
		return qp_err_nomem(err);
	yaml_parser_set_input_string(&b.parser, (const unsigned char *)buf, len);
	struct qp_ynode *root = NULL;
	int rc = parse_stream(&b, &root);
	yaml_parser_delete(&b.parser);
	if (rc)
		return rc;
	if (!root) {
		yaml_mark_t m = {0, 0, 0};
		root = new_node(&b, QP_Y_MAP, &m);
		if (!root)
			return qp_err_nomem(err);
	}
	*out = root;
	return 0;
}

struct qp_ynode *qp_ymap_get(const struct qp_ynode *map, const char *key)
{
	if (!map || map->kind != QP_Y_MAP)
		return NULL;
	for (size_t i = 0; i < map->n; i++)
		if (strcmp(map->keys[i]->str, key) == 0)
			return map->items[i];
	return NULL;
}

const char *qp_ykind_name(enum qp_ykind k)
{
	switch (k) {
	case QP_Y_SCALAR: return "a string";
	case QP_Y_MAP: return "a mapping";
	case QP_Y_SEQ: return "a list";
	}
	return "?";
}
