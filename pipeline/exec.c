#include "pipeline/exec.h"
#include "pipeline/ctx.h"

#include <assert.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/arena.h"
#include "common/os.h"
#include "common/path.h"
#include "qp_config.h"

struct qp_runner {
	const struct qp_graph *g;
	struct qp_store *store;
	struct qp_exec_opts opts;
	struct qp_arena *arena;       /* artifact strings */
	struct qp_entry *entries;     /* one per instance */
};


int qp_runner_new(struct qp_runner **out, const struct qp_graph *g, struct qp_store *s,
                  const struct qp_exec_opts *opts, struct qp_err *err)
{
	*out = NULL;
	struct qp_runner *r = calloc(1, sizeof(*r));
	if (!r)
		return qp_err_nomem(err);
	r->g = g;
	r->store = s;
	r->opts = *opts;
	if (r->opts.threads < 1)
		r->opts.threads = 1;
	r->arena = qp_arena_new();
	r->entries = calloc(g->n ? g->n : 1, sizeof(*r->entries));
	if (!r->arena || !r->entries) {
		qp_runner_free(r);
		return qp_err_nomem(err);
	}
	*out = r;
	return 0;
}

void qp_runner_free(struct qp_runner *r)
{
	if (!r)
		return;
	for (size_t i = 0; r->entries && i < r->g->n; i++)
		json_decref(r->entries[i].record);
	free(r->entries);
	qp_arena_free(r->arena);
	free(r);
}

const struct qp_entry *qp_runner_entry(const struct qp_runner *r, size_t i)
{
	return &r->entries[i];
}

/* Fill e->art from an action record. */
static int artifact_from_record(struct qp_runner *r, const struct qp_instance *in,
                                struct qp_entry *e, struct qp_err *err)
{
	struct qp_artifact *a = &e->art;
	json_t *outs = json_object_get(e->record, "outputs");
	json_t *ext = json_object_get(e->record, "external");
	size_t n = json_object_size(outs) + json_object_size(ext);
	a->instance = in->id;
	a->kind = in->kind->name;
	a->key = in->key;
	a->file_names = qp_arena_calloc(r->arena, n + 1, sizeof(char *));
	a->file_paths = qp_arena_calloc(r->arena, n + 1, sizeof(char *));
	if (!a->file_names || !a->file_paths)
		return qp_err_nomem(err);
	const char *name;
	json_t *v;
	json_object_foreach(outs, name, v) {
		struct qp_hash h;
		if (!json_is_string(v) || qp_hash_from_hex(&h, json_string_value(v)) != 0)
			return qp_err_set(err, QP_ECORRUPT, "action record of '%s': bad hash for output '%s'",
			                  in->id, name);
		char path[PATH_MAX];
		qp_store_object_path(r->store, &h, path, sizeof(path));
		a->file_names[a->n_files] = qp_arena_strdup(r->arena, name);
		a->file_paths[a->n_files++] = qp_arena_strdup(r->arena, path);
	}
	json_object_foreach(ext, name, v) {
		if (!json_is_string(v))
			return qp_err_set(err, QP_ECORRUPT, "action record of '%s': bad path for '%s'", in->id,
			                  name);
		a->file_names[a->n_files] = qp_arena_strdup(r->arena, name);
		a->file_paths[a->n_files++] = qp_arena_strdup(r->arena, json_string_value(v));
	}
	a->metrics = json_object_get(e->record, "metrics");
	a->n_coords = in->n_coords;
	a->coord_names = in->coord_names;
	a->coord_values = in->coord_values;
	return 0;
}

int qp_runner_plan(struct qp_runner *r, struct qp_err *err)
{
	for (size_t i = 0; i < r->g->n; i++) {
		const struct qp_instance *in = &r->g->inst[i];
		struct qp_entry *e = &r->entries[i];
		char why[QP_ERR_MSG_MAX + 32] = "";
		json_t *rec = NULL;
		struct qp_miss miss;
		int rc = qp_store_get_action_ex(r->store, &in->key, &rec, &miss, err);
		if (rc)
			return rc;
		if (!rec && miss.kind != QP_MISS_ABSENT)
			snprintf(why, sizeof(why), "record unusable: %s", miss.why);
		json_decref(e->record);
		e->record = NULL;
		if (rec) {
			/* External files (model.local) are covered by the key; if one has
			 * since vanished, the record is no use. */
			json_t *ext = json_object_get(rec, "external");
			const char *name;
			json_t *v;
			json_object_foreach(ext, name, v) {
				if (!json_is_string(v) || !qp_os_exists(json_string_value(v))) {
					snprintf(why, sizeof(why), "external file '%s' is gone", name);
					json_decref(rec);
					rec = NULL;
					break;
				}
			}
		}
		if (in->deferred) {
			/* The key is incomplete: no record can be trusted under it. */
			json_decref(rec);
			rec = NULL;
			snprintf(why, sizeof(why), "%s", in->deferred);
		}
		if (rec) {
			e->state = QP_INST_CACHED;
			e->record = rec;
			e->why = "cached";
			if ((rc = artifact_from_record(r, in, e, err)))
				return rc;
		} else {
			e->state = QP_INST_TO_RUN;
			e->why = qp_arena_strdup(r->arena, why[0] ? why : "new");
		}
	}
	return 0;
}

/* ---- the stage context ---- */

const char *qp_ctx_instance(const struct qp_stage_ctx *ctx)
{
	return ctx->in->id;
}

const char *qp_ctx_key_hex(const struct qp_stage_ctx *ctx)
{
	return ctx->in->key_hex;
}

const struct qp_value *qp_ctx_param(const struct qp_stage_ctx *ctx, const char *name)
{
	int pi = qp_kind_param_index(ctx->in->kind, name);
	return pi < 0 ? NULL : &ctx->in->values[pi];
}

const struct qp_artifact *qp_ctx_input(const struct qp_stage_ctx *ctx, const char *name)
{
	int pi = qp_kind_param_index(ctx->in->kind, name);
	if (pi < 0 || ctx->in->n_in[pi] == 0)
		return NULL;
	return ctx->inputs[pi][0];
}

size_t qp_ctx_inputs(const struct qp_stage_ctx *ctx, const char *name,
                     const struct qp_artifact *const **out)
{
	int pi = qp_kind_param_index(ctx->in->kind, name);
	if (pi < 0) {
		*out = NULL;
		return 0;
	}
	*out = ctx->inputs[pi];
	return ctx->in->n_in[pi];
}

const char *qp_ctx_out_dir(const struct qp_stage_ctx *ctx)
{
	return ctx->out_dir;
}

/* A relative path whose parts are neither empty nor start with '.' (so
 * neither "..", "." nor hidden names), short enough for any record. */
static int valid_output_name(const char *name)
{
	if (strlen(name) >= 512)
		return 0;
	for (const char *p = name;;) {
		const char *slash = strchr(p, '/');
		if (p[0] == '\0' || p[0] == '.' || p[0] == '/')
			return 0;
		if (!slash)
			return 1;
		p = slash + 1;
	}
}

int qp_ctx_add_output(struct qp_stage_ctx *ctx, const char *name, struct qp_err *err)
{
	if (!valid_output_name(name))
		return qp_err_set(err, QP_EINVAL, "stage '%s': bad output name '%s'", ctx->in->id, name);
	char path[PATH_MAX];
	int rc = qp_path_join(path, sizeof(path), ctx->out_dir, name, err);
	if (rc)
		return rc;
	if (!qp_os_exists(path))
		return qp_err_set(err, QP_EINVAL, "stage '%s': declared output '%s' was not written",
		                  ctx->in->id, name);
	if (json_array_append_new(ctx->outputs, json_string(name)))
		return qp_err_nomem(err);
	return 0;
}

int qp_ctx_add_external(struct qp_stage_ctx *ctx, const char *name, const char *abs_path,
                        struct qp_err *err)
{
	if (json_object_set_new(ctx->external, name, json_string(abs_path)))
		return qp_err_nomem(err);
	return 0;
}

int qp_ctx_pin(const struct qp_stage_ctx *ctx, const char *value, struct qp_err *err)
{
	assert(ctx->planning);
	if (!(ctx->planning->pin = qp_arena_strdup(ctx->arena, value)))
		return qp_err_nomem(err);
	return 0;
}

const char *qp_ctx_pinned(const struct qp_stage_ctx *ctx)
{
	return ctx->in->pin;
}

int qp_ctx_defer(const struct qp_stage_ctx *ctx, const char *why, struct qp_err *err)
{
	assert(ctx->planning);
	if (!(ctx->planning->deferred = qp_arena_strdup(ctx->arena, why)))
		return qp_err_nomem(err);
	return 0;
}

json_t *qp_ctx_metrics(struct qp_stage_ctx *ctx)
{
	return ctx->metrics;
}

int qp_ctx_threads(const struct qp_stage_ctx *ctx)
{
	return ctx->r->opts.threads;
}

static int interrupted(const struct qp_runner *r)
{
	return r->opts.interrupt && *r->opts.interrupt;
}

int qp_ctx_progress(struct qp_stage_ctx *ctx, const char *what, int64_t done, int64_t total,
                    struct qp_err *err)
{
	if (ctx->r->opts.events.progress)
		ctx->r->opts.events.progress(ctx->r->opts.events.ud, ctx->in, what, done, total);
	if (interrupted(ctx->r))
		return qp_err_set(err, QP_EINTR, "interrupted");
	return 0;
}

const char *qp_artifact_file(const struct qp_artifact *a, const char *name)
{
	for (size_t i = 0; i < a->n_files; i++)
		if (strcmp(a->file_names[i], name) == 0)
			return a->file_paths[i];
	return NULL;
}

const char *qp_artifact_coord(const struct qp_artifact *a, const char *name)
{
	for (size_t i = 0; i < a->n_coords; i++)
		if (strcmp(a->coord_names[i], name) == 0)
			return a->coord_values[i];
	return NULL;
}

/* ---- execution ---- */

static json_t *params_json(const struct qp_instance *in)
{
	json_t *p = json_object();
	for (size_t pi = 0; in->kind->params[pi].name; pi++) {
		const struct qp_value *v = &in->values[pi];
		json_t *j;
		if (v->type == QP_P_LIST) {
			j = json_array();
			for (size_t k = 0; k < v->n; k++)
				json_array_append_new(j, json_string(v->list[k] ? v->list[k] : ""));
		} else if (v->type == QP_P_INT) {
			j = json_integer(v->i);
		} else if (v->type == QP_P_NUMBER) {
			j = json_real(v->d);
		} else if (v->type == QP_P_BOOL) {
			j = json_boolean(v->i);
		} else {
			j = json_string(v->s ? v->s : "");
		}
		json_object_set_new(p, in->kind->params[pi].name, j);
	}
	return p;
}

static json_t *coords_json(const struct qp_instance *in)
{
	json_t *c = json_object();
	for (size_t i = 0; i < in->n_coords; i++)
		json_object_set_new(c, in->coord_names[i], json_string(in->coord_values[i]));
	return c;
}

/* Move the declared outputs into the store and write the action record. */
static int commit(struct qp_runner *r, const struct qp_instance *in, struct qp_stage_ctx *ctx,
                  double wall_s, json_t **out_record, struct qp_err *err)
{
	json_t *outs = json_object();
	size_t i;
	json_t *v;
	int rc = 0;
	json_array_foreach(ctx->outputs, i, v) {
		const char *name = json_string_value(v);
		char path[PATH_MAX];
		struct qp_hash h;
		if ((rc = qp_path_join(path, sizeof(path), ctx->out_dir, name, err)) ||
		    (rc = qp_store_put_file(r->store, path, &h, err)))
			break;
		char hex[QP_HASH_HEX_LEN + 1];
		qp_hash_hex(&h, hex);
		json_object_set_new(outs, name, json_string(hex));
	}
	if (rc) {
		json_decref(outs);
		return rc;
	}
	char host[256] = "";
	gethostname(host, sizeof(host) - 1);
	char when[64];
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	json_t *rec = json_pack("{s:s, s:s, s:i, s:s, s:s, s:o, s:o, s:o, s:O, s:O, s:f, s:s, s:s, s:s}",
	                        "stage", in->id, "kind", in->kind->name, "kind_version",
	                        in->kind->version, "key", in->key_hex, "recipe", r->g->recipe->name,
	                        "params", params_json(in), "coords", coords_json(in), "outputs", outs,
	                        "external", ctx->external, "metrics", ctx->metrics, "wall_s", wall_s,
	                        "created", when, "host", host, "qpipe_version", QP_VERSION);
	if (!rec)
		return qp_err_nomem(err);
	rc = qp_store_put_action(r->store, &in->key, rec, err);
	if (rc) {
		json_decref(rec);
		return rc;
	}
	*out_record = rec;
	return 0;
}

static int run_one(struct qp_runner *r, size_t idx, struct qp_err *err)
{
	const struct qp_instance *in = &r->g->inst[idx];
	struct qp_entry *e = &r->entries[idx];
	struct qp_stage_ctx ctx = {.r = r, .in = in};
	size_t np = 0;
	while (in->kind->params[np].name)
		np++;
	ctx.inputs = qp_arena_calloc(r->arena, np + 1, sizeof(*ctx.inputs));
	if (!ctx.inputs)
		return qp_err_nomem(err);
	for (size_t pi = 0; pi < np; pi++) {
		if (!in->n_in[pi])
			continue;
		ctx.inputs[pi] = qp_arena_calloc(r->arena, in->n_in[pi], sizeof(**ctx.inputs));
		if (!ctx.inputs[pi])
			return qp_err_nomem(err);
		for (size_t j = 0; j < in->n_in[pi]; j++)
			ctx.inputs[pi][j] = &r->entries[in->in[pi][j]].art;
	}
	if (in->deferred)
		return qp_err_set(err, QP_ENOTFOUND, "%s", in->deferred);
	int rc = qp_store_scratch_dir(r->store, ctx.out_dir, sizeof(ctx.out_dir), err);
	if (rc)
		return rc;
	ctx.outputs = json_array();
	ctx.external = json_object();
	ctx.metrics = json_object();
	double t0 = qp_os_now();
	rc = in->kind->run(&ctx, err);
	double wall = qp_os_now() - t0;
	json_t *rec = NULL;
	if (!rc)
		rc = commit(r, in, &ctx, wall, &rec, err);
	qp_store_scratch_remove(ctx.out_dir);
	json_decref(ctx.outputs);
	json_decref(ctx.external);
	json_decref(ctx.metrics);
	if (rc)
		return rc;
	e->record = rec;
	e->wall_s = wall;
	e->state = QP_INST_RAN;
	return artifact_from_record(r, in, e, err);
}

int qp_runner_execute(struct qp_runner *r, struct qp_err *err)
{
	size_t total = 0, done = 0;
	for (size_t i = 0; i < r->g->n; i++)
		total += r->entries[i].state == QP_INST_TO_RUN;
	const struct qp_exec_events *ev = &r->opts.events;
	int first_rc = 0;
	for (size_t i = 0; i < r->g->n; i++) {
		const struct qp_instance *in = &r->g->inst[i];
		struct qp_entry *e = &r->entries[i];
		if (e->state != QP_INST_TO_RUN) {
			if (ev->stage_end)
				ev->stage_end(ev->ud, in, e);
			continue;
		}
		int blocked = 0;
		for (size_t d = 0; d < in->n_deps; d++) {
			enum qp_inst_state s = r->entries[in->deps[d]].state;
			if (s == QP_INST_FAILED || s == QP_INST_SKIPPED)
				blocked = 1;
		}
		if (!first_rc && interrupted(r))
			first_rc = qp_err_set(err, QP_EINTR, "interrupted: %zu stage(s) not run", total - done);
		if (blocked || first_rc) {
			e->state = QP_INST_SKIPPED;
			e->why = blocked ? "an upstream stage failed"
			         : first_rc == QP_EINTR ? "interrupted" : "the run stopped at a failure";
			if (ev->stage_end)
				ev->stage_end(ev->ud, in, e);
			continue;
		}
		if (ev->stage_start)
			ev->stage_start(ev->ud, in, done, total);
		struct qp_err serr = {0};
		int rc = run_one(r, i, &serr);
		done++;
		if (rc == QP_EINTR) {
			e->state = QP_INST_SKIPPED;
			e->why = "interrupted";
			if (!first_rc)
				first_rc = qp_err_set(err, QP_EINTR, "interrupted during stage '%s'", in->id);
		} else if (rc) {
			e->state = QP_INST_FAILED;
			snprintf(e->error, sizeof(e->error), "%s", serr.msg);
			if (!first_rc) {
				first_rc = rc;
				qp_err_set(err, rc, "stage '%s' failed: %s", in->id, serr.msg);
			}
		}
		if (ev->stage_end)
			ev->stage_end(ev->ud, in, e);
	}
	return first_rc;
}
