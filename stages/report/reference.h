/* Published numbers beside ours: a report's `reference`.
 *
 * The published table comes from a file (`reference`: CSV, or a markdown
 * file whose first pipe table is read) or inline (`reference_rows`:
 * "LABEL: METRIC=VALUE, METRIC=VALUE" per row), or both (inline rows win).
 * Its first column labels the rows, the others are metrics; a cell that
 * starts with a number ("275 MB", "1.5x") counts as that number, bold
 * markers are dropped, empty and "-" cells are left out.
 * `reference_match` pairs names: THEIRS=OURS, for row labels and column
 * headers alike ("8-bit=q8_0", "PPL=ppl"). A published row that matches
 * none of ours is added as a row of its own, so methods qpipe lacks still
 * show. `reference_setting` (KEY=VALUE) is compared with our caption:
 * model, text, n_ctx and hardware (our cpu, else host); a key we do not
 * know is listed as differing with "unknown". */
#ifndef QP_REPORT_REFERENCE_H
#define QP_REPORT_REFERENCE_H

#include <jansson.h>

#include "common/err.h"
#include "stages/stage.h"

/* Read the published table of a file: an object LABEL -> {METRIC: value}
 * (insertion order kept). */
int qp_reference_read(json_t **out, const char *path, struct qp_err *err);

/* Parse one inline row into rows (an object as above). */
int qp_reference_parse_row(json_t *rows, const char *text, struct qp_err *err);

/* Attach the reference of ctx's parameters to table t (no-op without
 * one). */
int qp_reference_apply(json_t *t, struct qp_stage_ctx *ctx, struct qp_err *err);

#endif
