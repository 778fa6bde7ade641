/* What the report kinds share at run time (internal to stages/report). */
#ifndef QP_REPORT_KINDS_H
#define QP_REPORT_KINDS_H

#include <stddef.h>

#include <jansson.h>

#include "stages/stage.h"

/* Renders table t into a malloc'd text. */
typedef int (*qp_report_render_fn)(const json_t *t, struct qp_stage_ctx *ctx, char **out,
                                   size_t *len, struct qp_err *err);

/* Build ctx's table, render it, write it to out_dir/name and declare it;
 * the stage's metrics get "rows". */
int qp_report_run(struct qp_stage_ctx *ctx, const char *name, qp_report_render_fn render,
                  struct qp_err *err);

#endif
