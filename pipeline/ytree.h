/* A YAML document as a tree whose every node keeps its 1-based line and
 * column, so errors can point at the recipe text (libyaml marks are
 * 0-based; we add 1 once, here).
 *
 * Aliases and anchors are refused: they buy nothing in a recipe and are
 * the way to build an alias bomb. Nesting depth and node count are capped. */
#ifndef QP_YTREE_H
#define QP_YTREE_H

#include <stdbool.h>
#include <stddef.h>

#include "common/arena.h"
#include "common/err.h"

enum qp_ykind { QP_Y_SCALAR, QP_Y_MAP, QP_Y_SEQ };

struct qp_ynode {
	enum qp_ykind kind;
	const char *file;         /* the file it was read from (as named to qp_yaml_parse) */
	int line, col;            /* 1-based position of the node's start */
	const char *str;          /* SCALAR: the value (arena) */
	bool plain;               /* SCALAR: unquoted (so "true" and true differ) */
	size_t n;                 /* MAP: pairs; SEQ: items */
	struct qp_ynode **keys;   /* MAP: key nodes (always scalars) */
	struct qp_ynode **items;  /* MAP: values; SEQ: items */
};

#define QP_YAML_MAX_DEPTH 64
#define QP_YAML_MAX_NODES 1000000

/* Parse the YAML text buf[len]; name is used in messages ("recipe.yaml").
 * Nodes live in arena a. An empty document gives an empty map. Duplicate
 * map keys are errors. */
int qp_yaml_parse(struct qp_ynode **out, struct qp_arena *a, const char *name, const char *buf,
                  size_t len, struct qp_err *err);

/* Value of key in a MAP node, or NULL. */
struct qp_ynode *qp_ymap_get(const struct qp_ynode *map, const char *key);

/* Human name of a node kind: "a string", "a mapping", "a list". */
const char *qp_ykind_name(enum qp_ykind k);

#endif
