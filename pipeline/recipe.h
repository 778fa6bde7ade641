/* A recipe as written: its stages, their kinds, parameters and matrices,
 * checked for shape (known keys, kinds and parameters, right node kinds)
 * but not yet expanded. Expansion and typing of values is graph.c's. */
#ifndef QP_RECIPE_H
#define QP_RECIPE_H

#include <stddef.h>

#include "common/arena.h"
#include "common/err.h"
#include "pipeline/diag.h"
#include "pipeline/ytree.h"
#include "stages/stage.h"

struct qp_rstage {
	const char *name;
	const struct qp_ynode *node;         /* the stage's mapping */
	const struct qp_stage_kind *kind;    /* NULL when 'uses' was bad */
	const struct qp_ynode *with;         /* mapping or NULL */
	const struct qp_ynode *matrix;       /* mapping of name -> list, or NULL */
	const struct qp_ynode *needs;        /* list of stage names, or NULL */
};

struct qp_stage_ref {
	const char *name;
	size_t idx;                /* into qp_recipe.stages */
};

struct qp_recipe {
	const char *path;          /* as given */
	const char *dir;           /* absolute folder of the recipe; paths resolve here */
	const char *name;          /* 'name:' or the file name */
	const struct qp_ynode *vars;  /* mapping or NULL */
	size_t n_stages;
	struct qp_rstage *stages;  /* in file order */
	struct qp_stage_ref *by_name;  /* stages sorted by name, for lookups */
};

/* Read and check the recipe at path, with n_sets overrides applied first
 * ("NAME=VALUE" sets a variable, "STAGE.PARAM=VALUE" a stage parameter).
 * Returns QP_EINVAL with every problem found in diags (err holds the
 * first), or 0. All memory is in arena. */
int qp_recipe_load(struct qp_recipe **out, struct qp_arena *arena, const char *path,
                   const char *const *sets, size_t n_sets, struct qp_diags *diags,
                   struct qp_err *err);

/* The same from text in memory: name_for_msgs names it in messages, dir is
 * the folder its relative paths resolve against. */
int qp_recipe_parse(struct qp_recipe **out, struct qp_arena *arena, const char *name_for_msgs,
                    const char *dir, const char *text, size_t len, const char *const *sets,
                    size_t n_sets, struct qp_diags *diags, struct qp_err *err);

/* Stage by name, or NULL; its index, or -1. O(log n). */
const struct qp_rstage *qp_recipe_stage(const struct qp_recipe *r, const char *name);
long qp_recipe_stage_index(const struct qp_recipe *r, const char *name);

#endif
