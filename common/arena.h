/* A per-run arena: many small allocations, freed in one call. Holds the
 * recipe tree, expanded stage instances, the plan and strings copied out of
 * libyaml. Never tensors or file buffers. */
#ifndef QP_ARENA_H
#define QP_ARENA_H

#include <stddef.h>

struct qp_arena;

/* NULL on out of memory. */
struct qp_arena *qp_arena_new(void);
void qp_arena_free(struct qp_arena *a);
/* Zeroed, 16-byte aligned; NULL on out of memory or overflow. */
void *qp_arena_alloc(struct qp_arena *a, size_t size);
/* n * size, overflow-checked. */
void *qp_arena_calloc(struct qp_arena *a, size_t n, size_t size);
char *qp_arena_strdup(struct qp_arena *a, const char *s);
char *qp_arena_strndup(struct qp_arena *a, const char *s, size_t n);
char *qp_arena_printf(struct qp_arena *a, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#endif
