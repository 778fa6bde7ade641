/* libFuzzer target: a recipe through parse, expand and validate (no input
 * file is hashed, no stage runs). Relative paths resolve against a folder
 * that does not exist, so they are plain "does not exist" errors. */
#include <stddef.h>
#include <stdint.h>

#include "pipeline/graph.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct qp_arena *a = qp_arena_new();
	if (!a)
		return 0;
	struct qp_diags d = {.arena = a};
	struct qp_err err = {0};
	struct qp_recipe *r = NULL;
	static const char *const sets[] = {"v=1", "a.cmd=true"};
	if (qp_recipe_parse(&r, a, "fuzz.yaml", "/nonexistent-qpipe-fuzz", (const char *)data, size,
	                    sets, 2, &d, &err) == 0) {
		struct qp_graph *g = NULL;
		if (qp_graph_expand(&g, a, r, &d, &err) == 0 && g) {
			for (size_t i = 0; i < g->n; i++)
				if (!g->inst[i].id || !g->inst[i].kind)
					__builtin_trap();
		}
	}
	/* every diagnostic is one line */
	for (size_t i = 0; i < d.n; i++)
		for (const char *p = d.msgs[i]; *p; p++)
			if (*p == '\n')
				__builtin_trap();
	qp_arena_free(a);
	return 0;
}
