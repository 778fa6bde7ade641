/* A list of diagnostics, so a recipe's errors are reported in one go. */
#ifndef QP_DIAG_H
#define QP_DIAG_H

#include <stddef.h>

#include "common/arena.h"

#define QP_DIAG_MAX 100

struct qp_diags {
	struct qp_arena *arena;   /* messages live here */
	size_t n;                 /* messages kept (at most QP_DIAG_MAX) */
	size_t dropped;           /* messages past the cap */
	const char *msgs[QP_DIAG_MAX];
};

/* Add one message ("file:line:col: what"). */
void qp_diag_add(struct qp_diags *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
