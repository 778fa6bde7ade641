/* The expanded DAG: one instance per stage × matrix combination, typed
 * parameter values, edges to upstream instances, and each instance's key.
 *
 * Expansion: a stage's instances are the natural join of the instances of
 * the stages its INPUT parameters name (instances agree on every matrix
 * coordinate they share), times its own matrix. An INPUTS parameter gathers
 * every instance of the named stage that agrees with the instance's
 * coordinates. Instances are stored in topological order.
 *
 * Key = XXH3-128 over ("qpipe-key/2", kind, kind version, and for each
 * declared parameter its name and the XXH3-128 of its canonical value: a
 * PATH by the content of the file or folder it names, an input by the
 * upstream instances' ids and keys), then what the kind's hash_extra adds
 * (hf.download: the commit a revision resolves to). The per-parameter
 * digests are kept so a plan can name the parameter that changed. */
#ifndef QP_GRAPH_H
#define QP_GRAPH_H

#include <stddef.h>

#include "cache/hash.h"
#include "pipeline/recipe.h"

#define QP_GRAPH_MAX_INSTANCES 100000

struct qp_instance {
	const char *id;                     /* "quant[type=q4_0]" */
	const struct qp_rstage *stage;
	const struct qp_stage_kind *kind;
	size_t n_coords;
	const char **coord_names;
	const char **coord_values;
	struct qp_value *values;            /* one per declared parameter, in declaration order */
	size_t *n_in;                       /* per parameter: upstream instances it names */
	size_t **in;                        /* per parameter: their indices in qp_graph.inst */
	size_t n_deps;
	size_t *deps;                       /* every upstream instance (inputs and needs) */
	struct qp_hash *parts;              /* per parameter: digest of its canonical value */
	const char *pin;                    /* what the kind's hash_extra pinned, or NULL */
	const char *deferred;               /* why the key is incomplete (hash_extra), or NULL */
	struct qp_hash key;
	char key_hex[QP_HASH_HEX_LEN + 1];
};

struct qp_graph {
	const struct qp_recipe *recipe;
	size_t n;
	struct qp_instance *inst;           /* topological order */
};

struct qp_statcache;

/* Expand and type the recipe, compute keys; input files are hashed through
 * sc when given (NULL: read them all). Problems go to diags and make it
 * return QP_EINVAL; I/O failures while hashing inputs return their code. */
int qp_graph_build(struct qp_graph **out, struct qp_arena *arena, const struct qp_recipe *r,
                   struct qp_statcache *sc, struct qp_diags *diags, struct qp_err *err);

/* Expand and type only, touching no input file: instances carry no keys
 * (for validation and the recipe fuzzer). */
int qp_graph_expand(struct qp_graph **out, struct qp_arena *arena, const struct qp_recipe *r,
                    struct qp_diags *diags, struct qp_err *err);

/* Index of the declared parameter name in kind->params, or -1. */
int qp_kind_param_index(const struct qp_stage_kind *k, const char *name);

#endif
