/* The contract between the pipeline and the stage kinds.
 *
 * A stage kind declares its parameters once (type, default, range or
 * choices, one line of doc); validation, `qpipe stages` and the cache key
 * are all derived from that declaration. At run time a stage reads its
 * resolved parameters and input artifacts through struct qp_stage_ctx,
 * writes its output files into ctx's scratch directory and declares them;
 * the executor then moves them into the content-addressed store. */
#ifndef QP_STAGE_H
#define QP_STAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "cache/hash.h"
#include "common/err.h"

enum qp_ptype {
	QP_P_STRING,
	QP_P_INT,
	QP_P_NUMBER,
	QP_P_BOOL,
	QP_P_PATH,    /* a path, relative to the recipe's folder */
	QP_P_ENUM,    /* one of choices */
	QP_P_LIST,    /* a list of strings (one string: comma-separated items) */
	QP_P_PATHS,   /* a list of paths, each keyed by its content like PATH */
	QP_P_INPUT,   /* the name of an upstream stage; one instance per upstream instance */
	QP_P_INPUTS,  /* the name of an upstream stage; gathers all its instances */
};

struct qp_param_decl {
	const char *name;
	enum qp_ptype type;
	/* default, as recipe text; NULL: required. "" makes an INPUT or a
	 * PATH optional: left out, qp_ctx_input gives NULL, a PATH's value
	 * is "" */
	const char *def;
	const char *const *choices;  /* ENUM: NULL-terminated list */
	double min, max;             /* INT, NUMBER: allowed range when min < max */
	const char *doc;             /* one line */
};

/* A parameter's value after expansion and validation. */
struct qp_value {
	enum qp_ptype type;
	const char *s;       /* textual form (all types); PATH: absolute */
	int64_t i;           /* INT, BOOL */
	double d;            /* NUMBER, INT */
	size_t n;            /* LIST: count */
	const char **list;   /* LIST: items */
};

/* What one stage instance produced, as recorded in its action record. */
struct qp_artifact {
	const char *instance;        /* "quant[type=q4_0]" */
	const char *kind;
	struct qp_hash key;
	size_t n_files;
	const char **file_names;     /* "model.gguf" */
	const char **file_paths;     /* absolute paths (store objects or external files) */
	json_t *metrics;             /* object; borrowed from the artifact's owner */
	size_t n_coords;             /* matrix coordinates, e.g. type=q4_0 */
	const char **coord_names;
	const char **coord_values;
};

struct qp_stage_ctx;

/* The most GPUs a stage may need, and a pool may hold. */
#define QP_STAGE_MAX_GPUS 64

struct qp_stage_kind {
	const char *name;            /* "quantize" */
	int version;                 /* bumped when outputs change for the same inputs */
	const char *summary;         /* one line for `qpipe stages` */
	const struct qp_param_decl *params;  /* terminated by a NULL name */
	/* Optional: add what the key must cover beyond parameters and upstream
	 * keys (hf.download: the commit its revision resolves to). Runs at plan
	 * time, after the parameters are hashed, with a ctx that offers only
	 * qp_ctx_instance, qp_ctx_param, qp_ctx_pin and qp_ctx_defer. A non-zero
	 * return fails the whole plan (a bad parameter combination: QP_EINVAL). */
	int (*hash_extra)(const struct qp_stage_ctx *ctx, struct qp_hasher *h, struct qp_err *err);
	int (*run)(struct qp_stage_ctx *ctx, struct qp_err *err);
	/* Memory the stage needs, for the scheduler's budget: mem_inputs times
	 * the bytes of its input files plus mem_fixed bytes, or, if memory_param
	 * names a size parameter that is set, that size. */
	double mem_inputs;
	int64_t mem_fixed;
	const char *memory_param;
	/* GPUs one instance needs from the run's pool (qpipe run --gpus), or,
	 * if gpus_param names an INT parameter, that parameter's value. The
	 * stage's process gets that many devices of its own, named in
	 * CUDA_VISIBLE_DEVICES and QPIPE_GPUS; with 0 it gets none. */
	int gpus;
	const char *gpus_param;
};

/* The registry: all kinds, NULL-terminated; lookup by name. */
extern const struct qp_stage_kind *const qp_stage_kinds[];
const struct qp_stage_kind *qp_stage_kind_find(const char *name);
const struct qp_param_decl *qp_stage_param_find(const struct qp_stage_kind *k, const char *name);

/* ---- what a stage sees while it runs (implemented by the pipeline) ---- */

/* "quant[type=q4_0]" */
const char *qp_ctx_instance(const struct qp_stage_ctx *ctx);
/* This instance's key in hex. */
const char *qp_ctx_key_hex(const struct qp_stage_ctx *ctx);
/* Parameter by declared name; never NULL for a declared name. */
const struct qp_value *qp_ctx_param(const struct qp_stage_ctx *ctx, const char *name);
/* INPUT parameter: the one upstream artifact. */
const struct qp_artifact *qp_ctx_input(const struct qp_stage_ctx *ctx, const char *name);
/* INPUTS parameter: all upstream artifacts, in instance order. */
size_t qp_ctx_inputs(const struct qp_stage_ctx *ctx, const char *name,
                     const struct qp_artifact *const **out);
/* The recipe's folder (absolute): where relative paths of the recipe point. */
const char *qp_ctx_recipe_dir(const struct qp_stage_ctx *ctx);
/* A folder that survives a failed or killed run of this instance (same
 * key): a long stage saves finished pieces there, each written atomically,
 * and a rerun picks them up instead of redoing them. Removed once the
 * stage's result is stored. */
int qp_ctx_partial_dir(struct qp_stage_ctx *ctx, const char **out, struct qp_err *err);
/* Scratch folder the stage writes its outputs into. */
const char *qp_ctx_out_dir(const struct qp_stage_ctx *ctx);
/* Declare out_dir/name as an output, to be moved into the store. name is a
 * relative path: '/'-separated parts, none empty or starting with '.'. */
int qp_ctx_add_output(struct qp_stage_ctx *ctx, const char *name, struct qp_err *err);
/* Declare a file outside the store as an output (model.local): its content
 * is covered by the key through hash_extra. */
int qp_ctx_add_external(struct qp_stage_ctx *ctx, const char *name, const char *abs_path,
                        struct qp_err *err);
/* The metrics object this stage fills (borrowed). */
json_t *qp_ctx_metrics(struct qp_stage_ctx *ctx);
/* Threads the stage may use. */
int qp_ctx_threads(const struct qp_stage_ctx *ctx);
/* Progress: done of total units; shown by the CLI on a terminal only.
 * Returns QP_EINTR (with err set) once the run has been interrupted: the
 * stage then returns that code, leaving its scratch folder to be dropped. */
int qp_ctx_progress(struct qp_stage_ctx *ctx, const char *what, int64_t done, int64_t total,
                    struct qp_err *err);

/* Plan time, from hash_extra: keep value (copied) for the run, which reads
 * it back with qp_ctx_pinned, so both agree on what was resolved (the
 * commit a branch pointed at when the key was made). hash_extra hashes it
 * itself. */
int qp_ctx_pin(const struct qp_stage_ctx *ctx, const char *value, struct qp_err *err);
/* What hash_extra pinned, or NULL. */
const char *qp_ctx_pinned(const struct qp_stage_ctx *ctx);
/* Plan time, from hash_extra: the key cannot be completed now (offline, the
 * Hub unreachable). The plan shows why (copied) as the reason to run, and
 * running the instance fails at once with it; nothing is cached. */
int qp_ctx_defer(const struct qp_stage_ctx *ctx, const char *why, struct qp_err *err);

/* Path of an artifact's file by name, or NULL. */
const char *qp_artifact_file(const struct qp_artifact *a, const char *name);
/* Value of a matrix coordinate, or NULL. */
const char *qp_artifact_coord(const struct qp_artifact *a, const char *name);

#endif
