/* struct qp_stage_ctx, shared by the two places that make one: graph.c at
 * plan time (for a kind's hash_extra: parameters only, r == NULL) and
 * exec.c at run time. Private to pipeline/. */
#ifndef QP_PIPELINE_CTX_H
#define QP_PIPELINE_CTX_H

#include <limits.h>

#include <jansson.h>

#include "common/arena.h"
#include "pipeline/graph.h"
#include "stages/stage.h"

struct qp_runner;

struct qp_stage_ctx {
	struct qp_runner *r;                 /* NULL at plan time */
	const struct qp_instance *in;
	struct qp_instance *planning;        /* plan time only: the instance being keyed */
	struct qp_arena *arena;              /* plan time only: for pinned strings */
	const struct qp_artifact ***inputs;  /* per parameter */
	char out_dir[PATH_MAX];
	char partial_dir[PATH_MAX];          /* "" until the stage asks for it */
	json_t *outputs;     /* array of names declared in out_dir */
	json_t *external;    /* object name -> absolute path */
	json_t *metrics;
};

#endif
