#include "pipeline/exec.h"
#include "pipeline/ctx.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cache/actlog.h"
#include "cache/lock.h"
#include "common/arena.h"
#include "common/os.h"
#include "common/path.h"
#include "common/units.h"
#include "qp_config.h"

struct qp_runner {
	const struct qp_graph *g;
	struct qp_store *store;
	struct qp_exec_opts opts;
	struct qp_arena *arena;       /* artifact strings */
	struct qp_entry *entries;     /* one per instance */
	struct qp_actlog *log;        /* records known usable, so hits need no parse */
	int child_fd;                 /* in a stage's child: its pipe; -1 in the scheduler */
	size_t only;                  /* if non-zero, only instance only-1 may run */
	size_t n_to_run, n_started, n_failed;
	size_t records_read;          /* action records read and parsed in full */
	int *gpu_lock;                /* per pool device: its lock while a stage of ours has it, or -1 */
	uint64_t child_gpus;          /* in a stage's child: the pool devices it was given */
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
	r->child_fd = -1;
	r->opts = *opts;
	if (r->opts.threads < 1)
		r->opts.threads = 1;
	assert(r->opts.n_gpus <= QP_STAGE_MAX_GPUS);
	r->arena = qp_arena_new();
	r->entries = calloc(g->n ? g->n : 1, sizeof(*r->entries));
	r->gpu_lock = malloc((r->opts.n_gpus + 1) * sizeof(*r->gpu_lock));
	for (size_t i = 0; r->gpu_lock && i < r->opts.n_gpus; i++)
		r->gpu_lock[i] = -1;
	if (!r->arena || !r->entries || !r->gpu_lock) {
		qp_runner_free(r);
		return qp_err_nomem(err);
	}
	int rc = qp_actlog_open(&r->log, s, err);
	if (rc) {
		qp_runner_free(r);
		return rc;
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
	free(r->gpu_lock);
	qp_actlog_free(r->log);
	qp_arena_free(r->arena);
	free(r);
}

const struct qp_entry *qp_runner_entry(const struct qp_runner *r, size_t i)
{
	return &r->entries[i];
}

size_t qp_runner_records_read(const struct qp_runner *r)
{
	return r->records_read;
}

/* Fill e->art from an action record. */
static json_t *params_json(const struct qp_instance *in);

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

/* Fill e->art from what the action log says the record lists; the metrics
 * wait for load_record, as only a stage that reads this one needs them. */
static int artifact_from_log(struct qp_runner *r, const struct qp_instance *in,
                             struct qp_entry *e, const struct qp_actlog_entry *le,
                             struct qp_err *err)
{
	struct qp_artifact *a = &e->art;
	memset(a, 0, sizeof(*a));
	a->instance = in->id;
	a->kind = in->kind->name;
	a->key = in->key;
	a->file_names = qp_arena_calloc(r->arena, le->n_files + 1, sizeof(char *));
	a->file_paths = qp_arena_calloc(r->arena, le->n_files + 1, sizeof(char *));
	if (!a->file_names || !a->file_paths)
		return qp_err_nomem(err);
	for (size_t i = 0; i < le->n_files; i++) {
		const struct qp_actlog_file *f = &le->files[i];
		const char *path = f->value;
		char buf[PATH_MAX];
		struct qp_hash h;
		if (!f->external) {
			if (qp_hash_from_hex(&h, f->value))
				return qp_err_set(err, QP_ECORRUPT, "action log: bad hash for '%s'", in->id);
			qp_store_object_path(r->store, &h, buf, sizeof(buf));
			path = buf;
		}
		a->file_names[i] = f->name; /* the log's strings live as long as the runner */
		a->file_paths[i] = qp_arena_strdup(r->arena, path);
		if (!a->file_paths[i])
			return qp_err_nomem(err);
	}
	a->n_files = le->n_files;
	a->n_coords = in->n_coords;
	a->coord_names = in->coord_names;
	a->coord_values = in->coord_values;
	return 0;
}

/* Tell the action log that e's record (just read in full and found usable)
 * lists these files. */
static void note_record(struct qp_runner *r, const struct qp_instance *in, const struct qp_entry *e)
{
	json_t *outs = json_object_get(e->record, "outputs");
	json_t *ext = json_object_get(e->record, "external");
	size_t n = json_object_size(outs) + json_object_size(ext), k = 0;
	struct qp_actlog_file *files = calloc(n + 1, sizeof(*files));
	if (!files)
		return; /* not remembering only costs a full read next time */
	const char *name;
	json_t *v;
	json_object_foreach(outs, name, v)
		files[k++] = (struct qp_actlog_file){name, json_string_value(v), 0};
	json_object_foreach(ext, name, v)
		files[k++] = (struct qp_actlog_file){name, json_string_value(v), 1};
	int ok = 1;
	for (size_t i = 0; i < k; i++)
		ok &= files[i].value != NULL;
	if (ok)
		qp_actlog_note(r->log, &in->key, files, k);
	free(files);
}

/* A CACHED entry the action log vouched for has no record in memory yet:
 * read it now, for its metrics. */
static int load_record(struct qp_runner *r, size_t idx, struct qp_err *err)
{
	struct qp_entry *e = &r->entries[idx];
	const struct qp_instance *in = &r->g->inst[idx];
	if (e->record || e->state != QP_INST_CACHED)
		return 0;
	json_t *rec = NULL;
	struct qp_miss miss = {0};
	r->records_read++;
	int rc = qp_store_get_action_ex(r->store, &in->key, &rec, &miss, err);
	if (rc)
		return rc;
	if (!rec) {
		/* an object deleted behind the store's back: the next plan reruns it */
		qp_actlog_forget(r->log, &in->key);
		return qp_err_set(err, QP_ECORRUPT, "the cached result of '%s' is no longer usable: %s",
		                  in->id, miss.why);
	}
	e->record = rec;
	e->art.metrics = json_object_get(rec, "metrics");
	return 0;
}

/* ---- why a stage runs ----
 *
 * The store keeps, per recipe file, the key each instance had when it last
 * ran or was found cached (D/meta/index-<hash of the recipe's path>). When
 * an instance's key has no record, the previous key's record tells what
 * changed: each parameter has its own digest in the record (key_parts). */

static void index_name(const struct qp_runner *r, char *buf, size_t n)
{
	char path[PATH_MAX + 256];
	const char *base = strrchr(r->g->recipe->path, '/');
	snprintf(path, sizeof(path), "%s/%s", r->g->recipe->dir, base ? base + 1 : r->g->recipe->path);
	struct qp_hash h;
	qp_hash_buf(&h, path, strlen(path));
	char hex[QP_HASH_HEX_LEN + 1];
	qp_hash_hex(&h, hex);
	snprintf(buf, n, "index-%s", hex);
}

/* The index, version 2: a first line "qpipe-index 2 <digest>", where
 * digest is index_digest of what the last save added, then a JSON object
 * {"stages": {"<instance id>": "<key hex>", ...}}. Version 1 was the JSON
 * alone, with "version": 1 beside "stages"; it is read, and rewritten as 2. */
#define INDEX_MAGIC "qpipe-index 2 "

static json_t *load_index(struct qp_runner *r)
{
	char name[64], *text = NULL;
	struct qp_err e = {0};
	index_name(r, name, sizeof(name));
	if (qp_store_get_meta(r->store, name, &text, &e))
		return json_object();
	const char *body = text;
	if (!strncmp(text, INDEX_MAGIC, strlen(INDEX_MAGIC))) {
		const char *nl = strchr(text, '\n');
		body = nl ? nl + 1 : "";
	}
	json_t *idx = json_loads(body, 0, NULL);
	free(text);
	if (!json_is_object(json_object_get(idx, "stages"))) {
		json_decref(idx);
		return json_object();
	}
	json_t *stages = json_incref(json_object_get(idx, "stages"));
	json_decref(idx);
	return stages;
}

/* Digest of the (instance, key) pairs a save would add, in graph order. */
static int index_digest(const struct qp_runner *r, char hex[QP_HASH_HEX_LEN + 1],
                        struct qp_err *err)
{
	struct qp_hasher *h;
	int rc = qp_hasher_new(&h, err);
	if (rc)
		return rc;
	for (size_t i = 0; i < r->g->n; i++) {
		enum qp_inst_state st = r->entries[i].state;
		if (st != QP_INST_RAN && st != QP_INST_CACHED)
			continue;
		qp_hasher_str(h, r->g->inst[i].id);
		qp_hasher_str(h, r->g->inst[i].key_hex);
	}
	struct qp_hash d;
	qp_hasher_digest(h, &d);
	qp_hasher_free(h);
	qp_hash_hex(&d, hex);
	return 0;
}

int qp_runner_save_index(struct qp_runner *r, struct qp_err *err)
{
	char name[64], digest[QP_HASH_HEX_LEN + 1], *old = NULL;
	index_name(r, name, sizeof(name));
	int rc = index_digest(r, digest, err);
	if (rc)
		return rc;
	/* If the index was last saved with these very pairs, it holds them all
	 * already: a no-op rerun writes nothing (and fsyncs nothing). */
	struct qp_err ignore = {0};
	if (qp_store_get_meta(r->store, name, &old, &ignore) == 0 &&
	    !strncmp(old, INDEX_MAGIC, strlen(INDEX_MAGIC)) &&
	    !strncmp(old + strlen(INDEX_MAGIC), digest, QP_HASH_HEX_LEN) &&
	    old[strlen(INDEX_MAGIC) + QP_HASH_HEX_LEN] == '\n') {
		free(old);
		return 0;
	}
	free(old);
	json_t *stages = load_index(r);
	for (size_t i = 0; i < r->g->n; i++) {
		enum qp_inst_state st = r->entries[i].state;
		if (st == QP_INST_RAN || st == QP_INST_CACHED)
			json_object_set_new(stages, r->g->inst[i].id, json_string(r->g->inst[i].key_hex));
	}
	json_t *idx = json_pack("{s:o}", "stages", stages);
	char *body = idx ? json_dumps(idx, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	json_decref(idx);
	if (!body)
		return qp_err_nomem(err);
	size_t len = strlen(INDEX_MAGIC) + QP_HASH_HEX_LEN + 2 + strlen(body);
	char *text = malloc(len + 1);
	if (!text) {
		free(body);
		return qp_err_nomem(err);
	}
	snprintf(text, len + 1, "%s%s\n%s", INDEX_MAGIC, digest, body);
	free(body);
	rc = qp_store_put_meta(r->store, name, text, err);
	free(text);
	return rc;
}

/* Text of a parameter's value as the record keeps it. */
static void value_text(json_t *v, char *buf, size_t n)
{
	if (json_is_string(v)) {
		snprintf(buf, n, "%s", json_string_value(v));
	} else if (json_is_array(v) || json_is_object(v)) {
		char *t = json_dumps(v, JSON_COMPACT);
		snprintf(buf, n, "%s", t ? t : "?");
		free(t);
	} else if (json_is_integer(v)) {
		snprintf(buf, n, "%lld", (long long)json_integer_value(v));
	} else if (json_is_real(v)) {
		snprintf(buf, n, "%g", json_real_value(v));
	} else if (json_is_boolean(v)) {
		snprintf(buf, n, "%s", json_is_true(v) ? "true" : "false");
	} else {
		snprintf(buf, n, "(unset)");
	}
}

/* Append one reason; reasons are joined by "; ". */
static void add_reason(char *buf, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void add_reason(char *buf, size_t n, const char *fmt, ...)
{
	size_t len = strlen(buf);
	if (len && len + 2 < n) {
		memcpy(buf + len, "; ", 3);
		len += 2;
	}
	if (len >= n)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf + len, n - len, fmt, ap);
	va_end(ap);
}

static void explain(struct qp_runner *r, size_t idx, json_t *old, char *why, size_t n)
{
	const struct qp_instance *in = &r->g->inst[idx];
	json_int_t ov = json_integer_value(json_object_get(old, "kind_version"));
	if (ov != in->kind->version) {
		add_reason(why, n, "stage kind '%s' changed (version %lld -> %d)", in->kind->name,
		           (long long)ov, in->kind->version);
		return;
	}
	json_t *oparts = json_object_get(old, "key_parts"), *oparams = json_object_get(old, "params");
	json_t *nparams = params_json(in);
	for (size_t pi = 0; in->kind->params[pi].name; pi++) {
		const char *pname = in->kind->params[pi].name;
		char hex[QP_HASH_HEX_LEN + 1];
		qp_hash_hex(&in->parts[pi], hex);
		const char *ohex = json_string_value(json_object_get(oparts, pname));
		if (ohex && !strcmp(ohex, hex))
			continue;
		char a[256], b[256];
		value_text(json_object_get(oparams, pname), a, sizeof(a));
		value_text(json_object_get(nparams, pname), b, sizeof(b));
		enum qp_ptype t = in->kind->params[pi].type;
		if (strcmp(a, b)) {
			add_reason(why, n, "parameter '%s' changed (%s -> %s)", pname, a, b);
		} else if (t == QP_P_PATH || t == QP_P_PATHS) {
			add_reason(why, n, "content of '%s' changed", pname);
		} else if (t == QP_P_INPUT || t == QP_P_INPUTS) {
			const char *up = NULL;
			for (size_t j = 0; j < in->n_in[pi] && !up; j++)
				if (r->entries[in->in[pi][j]].state == QP_INST_TO_RUN)
					up = r->g->inst[in->in[pi][j]].id;
			if (up)
				add_reason(why, n, "upstream '%s' reruns", up);
			else
				add_reason(why, n, "upstream of '%s' changed", pname);
		} else {
			add_reason(why, n, "parameter '%s' changed", pname);
		}
	}
	json_decref(nparams);
	if (!why[0] && in->pin)
		add_reason(why, n, "source now resolves to %s", in->pin);
	else if (!why[0])
		add_reason(why, n, "key changed");
}

/* A plan touches the records it hits, for gc's LRU, but a record at most
 * once in this long: a touch is a write, and it changes the record's stat,
 * which the action log then has to learn again. It is well under gc's
 * default grace of an hour, so a record a plan has just used stays too
 * young for gc to take. */
#define TOUCH_EVERY_NS (600LL * 1000000000LL)

static int due_for_touch(long long mtime_ns)
{
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	return (long long)now.tv_sec * 1000000000LL + now.tv_nsec - mtime_ns > TOUCH_EVERY_NS;
}

/* External files (model.local) are covered by the key; if one has since
 * vanished, the record is no use. Says which in why. */
static int externals_present_log(const struct qp_actlog_entry *le, char *why, size_t n)
{
	for (size_t i = 0; i < le->n_files; i++)
		if (le->files[i].external && !qp_os_exists(le->files[i].value)) {
			snprintf(why, n, "external file '%s' is gone", le->files[i].name);
			return 0;
		}
	return 1;
}

static int externals_present(json_t *rec, char *why, size_t n)
{
	const char *name;
	json_t *v;
	json_object_foreach(json_object_get(rec, "external"), name, v) {
		if (!json_is_string(v) || !qp_os_exists(json_string_value(v))) {
			snprintf(why, n, "external file '%s' is gone", name);
			return 0;
		}
	}
	return 1;
}

/* Decide instance i from the action log alone; 1 if it is cached. */
static int plan_from_log(struct qp_runner *r, size_t i, char *why, size_t n, int *rc,
                         struct qp_err *err)
{
	const struct qp_instance *in = &r->g->inst[i];
	struct qp_entry *e = &r->entries[i];
	const struct qp_actlog_entry *le = qp_actlog_lookup(r->log, &in->key);
	if (!le || !externals_present_log(le, why, n))
		return 0;
	e->state = QP_INST_CACHED;
	e->why = "cached";
	if ((*rc = artifact_from_log(r, in, e, le, err)))
		return 1;
	if (due_for_touch(le->mtime_ns) && qp_store_touch_action(r->store, &in->key) == 0)
		qp_actlog_note(r->log, &in->key, le->files, le->n_files);
	return 1;
}

/* GPUs instance idx needs (stage.h's gpus, gpus_param). */
static int gpus_needed(const struct qp_runner *r, size_t idx)
{
	const struct qp_instance *in = &r->g->inst[idx];
	const struct qp_stage_kind *k = in->kind;
	if (k->gpus_param) {
		int pi = qp_kind_param_index(k, k->gpus_param);
		if (pi >= 0 && in->values[pi].type == QP_P_INT)
			return (int)in->values[pi].i;
	}
	return k->gpus;
}

int qp_runner_gpus(const struct qp_runner *r, size_t i)
{
	return gpus_needed(r, i);
}

/* A stage that needs more GPUs than the pool holds could never start. */
static int check_gpus(const struct qp_runner *r, size_t idx, struct qp_err *err)
{
	int need = gpus_needed(r, idx);
	size_t have = r->opts.n_gpus;
	if (need <= 0 || (size_t)need <= have)
		return 0;
	const char *id = r->g->inst[idx].id;
	if (have == 0)
		return qp_err_set(err, QP_EINVAL,
		                  "stage '%s' needs %d GPU%s; this machine has none (--gpus to set the pool)",
		                  id, need, need == 1 ? "" : "s");
	return qp_err_set(err, QP_EINVAL, "stage '%s' needs %d GPUs; the pool has %zu (--gpus to set it)",
	                  id, need, have);
}

int qp_runner_plan(struct qp_runner *r, struct qp_err *err)
{
	json_t *index = NULL; /* read only if something runs: a no-op needs no reasons */
	int rc = 0;
	for (size_t i = 0; i < r->g->n && !rc; i++) {
		const struct qp_instance *in = &r->g->inst[i];
		struct qp_entry *e = &r->entries[i];
		char why[QP_ERR_MSG_MAX + 32] = "";
		json_decref(e->record);
		e->record = NULL;
		if (in->deferred) {
			/* The key is incomplete: no record can be trusted under it. */
			snprintf(why, sizeof(why), "%s", in->deferred);
		} else if (plan_from_log(r, i, why, sizeof(why), &rc, err)) {
			continue;
		}
		json_t *rec = NULL;
		struct qp_miss miss;
		if (!why[0]) {
			r->records_read++;
			if ((rc = qp_store_get_action_ex(r->store, &in->key, &rec, &miss, err)))
				break;
			if (!rec && miss.kind != QP_MISS_ABSENT)
				snprintf(why, sizeof(why), "record unusable: %s", miss.why);
		}
		if (rec && !externals_present(rec, why, sizeof(why))) {
			json_decref(rec);
			rec = NULL;
		}
		if (rec) {
			e->state = QP_INST_CACHED;
			e->record = rec;
			e->why = "cached";
			qp_store_touch_action(r->store, &in->key); /* for gc's LRU */
			note_record(r, in, e);
			rc = artifact_from_record(r, in, e, err);
			continue;
		}
		e->state = QP_INST_TO_RUN;
		if ((rc = check_gpus(r, i, err)))
			break;
		if (!index)
			index = load_index(r);
		const char *prev = json_string_value(json_object_get(index, in->id));
		struct qp_hash pk;
		json_t *old = NULL;
		if (!why[0] && prev && qp_hash_from_hex(&pk, prev) == 0 &&
		    qp_store_get_action(r->store, &pk, &old, err) == 0 && old)
			explain(r, i, old, why, sizeof(why));
		else if (!why[0] && prev)
			snprintf(why, sizeof(why), "its last result is no longer in the store");
		json_decref(old);
		e->why = qp_arena_strdup(r->arena, why[0] ? why : "new");
	}
	json_decref(index);
	/* what the log learned is worth keeping even if the plan failed */
	struct qp_err ferr = {0};
	qp_actlog_flush(r->log, &ferr);
	return rc;
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

const char *qp_ctx_recipe_dir(const struct qp_stage_ctx *ctx)
{
	return ctx->r->g->recipe->dir;
}

int qp_ctx_partial_dir(struct qp_stage_ctx *ctx, const char **out, struct qp_err *err)
{
	if (!ctx->partial_dir[0]) {
		int rc = qp_store_partial_dir(ctx->r->store, &ctx->in->key, ctx->partial_dir, sizeof(ctx->partial_dir), err);
		if (rc) {
			ctx->partial_dir[0] = '\0';
			return rc;
		}
	}
	*out = ctx->partial_dir;
	return 0;
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

static void child_say(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int interrupted(const struct qp_runner *r)
{
	return r->opts.interrupt && *r->opts.interrupt;
}

int qp_ctx_progress(struct qp_stage_ctx *ctx, const char *what, int64_t done, int64_t total,
                    struct qp_err *err)
{
	if (ctx->r->child_fd >= 0)
		child_say(ctx->r->child_fd, "P %lld %lld %s", (long long)done, (long long)total, what);
	else if (ctx->r->opts.events.progress)
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
		if (v->type == QP_P_LIST || v->type == QP_P_PATHS) {
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

static json_t *parts_json(const struct qp_instance *in)
{
	json_t *p = json_object();
	for (size_t pi = 0; in->kind->params[pi].name; pi++) {
		char hex[QP_HASH_HEX_LEN + 1];
		qp_hash_hex(&in->parts[pi], hex);
		json_object_set_new(p, in->kind->params[pi].name, json_string(hex));
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
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	json_t *rec = json_pack("{s:s, s:s, s:i, s:s, s:s, s:o, s:o, s:o, s:O, s:O, s:f, s:f, s:s, s:s, s:s}",
	                        "stage", in->id, "kind", in->kind->name, "kind_version",
	                        in->kind->version, "key", in->key_hex, "recipe", r->g->recipe->name,
	                        "params", params_json(in), "coords", coords_json(in), "outputs", outs,
	                        "external", ctx->external, "metrics", ctx->metrics, "wall_s", wall_s,
	                        "peak_rss_mb", (double)ru.ru_maxrss / 1024.0,
	                        "created", when, "host", host, "qpipe_version", QP_VERSION);
	if (!rec || json_object_set_new(rec, "key_parts", parts_json(in)))
		return qp_err_nomem(err);
	if (r->child_gpus) {
		/* which devices it ran on: not part of the key, but worth knowing */
		json_t *g = json_array();
		for (size_t d = 0; d < r->opts.n_gpus; d++)
			if (r->child_gpus & (UINT64_C(1) << d))
				json_array_append_new(g, json_string(r->opts.gpus[d]));
		if (json_object_set_new(rec, "gpus", g))
			return qp_err_nomem(err);
	}
	rc = qp_store_put_action(r->store, &in->key, rec, err);
	if (rc) {
		json_decref(rec);
		return rc;
	}
	*out_record = rec;
	return 0;
}

/* ---- the child: one stage in its own process ----
 *
 * A stage runs in a forked child, so a crash, an abort or an out-of-memory
 * kill fails that stage alone. The child talks to the scheduler through a
 * pipe, one line per message:
 *   P <done> <total> <what>   progress
 *   E <message>               why it failed
 *   C                         another process had just completed this key
 * and exits 0 (record written, or C), 1 (failed) or 2 (interrupted). */

enum { CHILD_OK = 0, CHILD_FAILED = 1, CHILD_INTERRUPTED = 2 };

static void child_say(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void child_say(int fd, const char *fmt, ...)
{
	char line[QP_ERR_MSG_MAX + 64];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	for (int i = 0; i < n; i++)
		if (line[i] == '\n')
			line[i] = ' ';
	line[n++] = '\n';
	/* a short write only loses a progress line or truncates a message */
	ssize_t w = write(fd, line, (size_t)n);
	(void)w;
}

static int run_stage(struct qp_runner *r, size_t idx, struct qp_err *err)
{
	const struct qp_instance *in = &r->g->inst[idx];
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
	if (!rc && ctx.partial_dir[0])
		qp_store_partial_remove(r->store, &in->key);
	json_decref(rec);
	qp_store_scratch_remove(ctx.out_dir);
	json_decref(ctx.outputs);
	json_decref(ctx.external);
	json_decref(ctx.metrics);
	return rc;
}

static void child_main(struct qp_runner *r, size_t idx, int fd, uint64_t gpus)
{
	r->child_fd = fd;
	r->child_gpus = gpus;
	const struct qp_instance *in = &r->g->inst[idx];
	struct qp_err err = {0};
	/* Other stages' device locks came along with fork: holding them would
	 * keep those devices locked after their stages end. */
	for (size_t d = 0; d < r->opts.n_gpus; d++)
		if (!(gpus & (UINT64_C(1) << d)) && r->gpu_lock[d] >= 0)
			close(r->gpu_lock[d]);
	/* The stage sees exactly its own devices, none if it declared none; in
	 * the pool's own ids, so a log names the physical device. */
	const char *ids = r->entries[idx].gpus ? r->entries[idx].gpus : "";
	setenv("CUDA_VISIBLE_DEVICES", ids, 1);
	setenv("QPIPE_GPUS", ids, 1);
	int lock = -1;
	int rc = qp_lock_key(&lock, r->store, &in->key, &err);
	if (!rc) {
		json_t *rec = NULL;
		rc = qp_store_get_action(r->store, &in->key, &rec, &err);
		if (!rc && rec) {
			json_decref(rec);
			child_say(fd, "C");
			_exit(CHILD_OK);
		}
	}
	if (!rc)
		rc = run_stage(r, idx, &err);
	if (rc == QP_EINTR || (rc && interrupted(r)))
		_exit(CHILD_INTERRUPTED);
	if (rc) {
		child_say(fd, "E %s", err.msg);
		_exit(CHILD_FAILED);
	}
	qp_unlock(lock);
	_exit(CHILD_OK);
}

/* ---- the scheduler ---- */

struct job {
	long long mem;      /* its estimate, held against the budget */
	uint64_t gpus;      /* the pool devices it holds (bit d: opts.gpus[d]) */
	pid_t pid;
	int fd;             /* read end of the child's pipe */
	size_t idx;
	double t0;
	int cached;         /* the child said C */
	size_t len;
	char buf[QP_ERR_MSG_MAX + 128];
	char error[QP_ERR_MSG_MAX];
};

static int blocked_by(const struct qp_runner *r, const struct qp_instance *in, int *ready)
{
	*ready = 1;
	for (size_t d = 0; d < in->n_deps; d++) {
		enum qp_inst_state s = r->entries[in->deps[d]].state;
		if (s == QP_INST_FAILED || s == QP_INST_SKIPPED)
			return 1;
		if (s != QP_INST_CACHED && s != QP_INST_RAN)
			*ready = 0;
	}
	return 0;
}

static void end_event(struct qp_runner *r, size_t idx)
{
	const struct qp_exec_events *ev = &r->opts.events;
	if (ev->stage_end)
		ev->stage_end(ev->ud, &r->g->inst[idx], &r->entries[idx]);
}

/* Read the full records of the instances idx takes as inputs. */
static int load_inputs(struct qp_runner *r, size_t idx, struct qp_err *err)
{
	const struct qp_instance *in = &r->g->inst[idx];
	for (size_t pi = 0; in->kind->params[pi].name; pi++)
		for (size_t j = 0; j < in->n_in[pi]; j++) {
			int rc = load_record(r, in->in[pi][j], err);
			if (rc)
				return rc;
		}
	return 0;
}

/* What the stage is expected to need (stage.h's mem_* declarations). */
static long long estimate(const struct qp_runner *r, size_t idx)
{
	const struct qp_instance *in = &r->g->inst[idx];
	const struct qp_stage_kind *k = in->kind;
	if (k->memory_param) {
		int pi = qp_kind_param_index(k, k->memory_param);
		long long v = pi >= 0 && in->values[pi].s ? qp_parse_size(in->values[pi].s) : 0;
		if (v > 0)
			return v;
	}
	double bytes = 0;
	for (size_t pi = 0; k->params[pi].name; pi++)
		for (size_t j = 0; j < in->n_in[pi]; j++) {
			const struct qp_artifact *a = &r->entries[in->in[pi][j]].art;
			for (size_t f = 0; f < a->n_files; f++) {
				struct stat st;
				if (stat(a->file_paths[f], &st) == 0)
					bytes += (double)st.st_size;
			}
		}
	return (long long)(k->mem_inputs * bytes) + k->mem_fixed;
}

static void release_gpus(struct qp_runner *r, uint64_t gpus)
{
	for (size_t d = 0; d < r->opts.n_gpus; d++)
		if (gpus & (UINT64_C(1) << d)) {
			qp_unlock(r->gpu_lock[d]);
			r->gpu_lock[d] = -1;
		}
}

/* Take need devices of the pool that no stage of ours holds and whose lock
 * no other process holds (a `qpipe stage` of ninja's, another run on this
 * store): 1 and *got, or 0 if there are not enough free now (or -1, err set,
 * if a lock cannot be taken for another reason). */
static int take_gpus(struct qp_runner *r, int need, uint64_t busy, uint64_t *got,
                     struct qp_err *err)
{
	*got = 0;
	int n = 0;
	for (size_t d = 0; d < r->opts.n_gpus && n < need; d++) {
		if (busy & (UINT64_C(1) << d))
			continue;
		int rc = qp_trylock_gpu(&r->gpu_lock[d], r->store, r->opts.gpus[d], err);
		if (rc == QP_ELOCKED)
			continue;
		if (rc) {
			release_gpus(r, *got);
			*got = 0;
			return -1;
		}
		*got |= UINT64_C(1) << d;
		n++;
	}
	if (n < need) {
		release_gpus(r, *got);
		*got = 0;
		return 0;
	}
	return 1;
}

/* "0,3": the ids of the devices in gpus, for CUDA_VISIBLE_DEVICES; NULL for none. */
static const char *gpu_ids(struct qp_runner *r, uint64_t gpus)
{
	if (!gpus)
		return NULL;
	size_t len = 1;
	for (size_t d = 0; d < r->opts.n_gpus; d++)
		if (gpus & (UINT64_C(1) << d))
			len += strlen(r->opts.gpus[d]) + 1;
	char *s = qp_arena_alloc(r->arena, len);
	if (!s)
		return NULL;
	for (size_t d = 0; d < r->opts.n_gpus; d++)
		if (gpus & (UINT64_C(1) << d)) {
			if (s[0])
				strcat(s, ",");
			strcat(s, r->opts.gpus[d]);
		}
	return s;
}

static int start_job(struct qp_runner *r, size_t idx, struct job *j, struct qp_err *err)
{
	int fds[2];
	if (pipe2(fds, O_CLOEXEC) != 0)
		return qp_err_set(err, QP_EIO, "cannot create a pipe:");
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		close(fds[0]);
		close(fds[1]);
		return qp_err_set(err, QP_EIO, "cannot fork:");
	}
	if (pid == 0) {
		close(fds[0]);
		child_main(r, idx, fds[1], j->gpus);
	}
	close(fds[1]);
	/* drain() reads until EAGAIN: a blocking read would stall the whole
	 * scheduler on one child until it next wrote or exited */
	fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK);
	long long mem = j->mem;
	uint64_t gpus = j->gpus;
	memset(j, 0, sizeof(*j));
	j->mem = mem;
	j->gpus = gpus;
	j->pid = pid;
	j->fd = fds[0];
	j->idx = idx;
	j->t0 = qp_os_now();
	const struct qp_exec_events *ev = &r->opts.events;
	if (ev->stage_start)
		ev->stage_start(ev->ud, &r->g->inst[idx], &r->entries[idx], r->n_started, r->n_to_run);
	r->n_started++;
	return 0;
}

static void handle_line(struct qp_runner *r, struct job *j, char *line)
{
	const struct qp_exec_events *ev = &r->opts.events;
	if (line[0] == 'P') {
		long long done = 0, total = 0;
		int used = 0;
		if (sscanf(line, "P %lld %lld %n", &done, &total, &used) >= 2 && ev->progress)
			ev->progress(ev->ud, &r->g->inst[j->idx], line + used, done, total);
	} else if (line[0] == 'E' && line[1] == ' ') {
		snprintf(j->error, sizeof(j->error), "%s", line + 2);
	} else if (line[0] == 'C') {
		j->cached = 1;
	}
}

/* Read what the child wrote; 1 at end of file. */
static int drain(struct qp_runner *r, struct job *j)
{
	for (;;) {
		ssize_t n = read(j->fd, j->buf + j->len, sizeof(j->buf) - 1 - j->len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n == 0 || errno != EAGAIN;
		j->len += (size_t)n;
		j->buf[j->len] = '\0';
		char *nl;
		while ((nl = strchr(j->buf, '\n'))) {
			*nl = '\0';
			handle_line(r, j, j->buf);
			size_t rest = j->len - (size_t)(nl + 1 - j->buf);
			memmove(j->buf, nl + 1, rest);
			j->len = rest;
			j->buf[j->len] = '\0';
		}
		if (j->len == sizeof(j->buf) - 1)
			j->len = 0; /* an over-long line: drop it */
	}
}

/* Reap a finished child and settle its entry. */
static void finish_job(struct qp_runner *r, struct job *j, int *first_rc, struct qp_err *err)
{
	int status = 0;
	struct rusage ru;
	while (wait4(j->pid, &status, 0, &ru) < 0 && errno == EINTR)
		;
	close(j->fd);
	release_gpus(r, j->gpus);
	struct qp_entry *e = &r->entries[j->idx];
	const struct qp_instance *in = &r->g->inst[j->idx];
	e->wall_s = qp_os_now() - j->t0;
	e->peak_rss_kb = ru.ru_maxrss;
	char why[QP_ERR_MSG_MAX + 64] = "";
	if (WIFEXITED(status) && WEXITSTATUS(status) == CHILD_OK) {
		struct qp_err lerr = {0};
		json_t *rec = NULL;
		if (qp_store_get_action(r->store, &in->key, &rec, &lerr) || !rec) {
			snprintf(why, sizeof(why), "finished but left no usable action record");
		} else {
			json_decref(e->record);
			e->record = rec;
			e->state = j->cached ? QP_INST_CACHED : QP_INST_RAN;
			e->why = j->cached ? "completed by another qpipe process" : NULL;
			if (artifact_from_record(r, in, e, &lerr))
				snprintf(why, sizeof(why), "%s", lerr.msg);
			else
				note_record(r, in, e);
		}
	} else if (WIFEXITED(status) && WEXITSTATUS(status) == CHILD_INTERRUPTED) {
		e->state = QP_INST_SKIPPED;
		e->why = "interrupted";
		if (!*first_rc)
			*first_rc = qp_err_set(err, QP_EINTR, "interrupted during stage '%s'", in->id);
	} else if (WIFEXITED(status)) {
		snprintf(why, sizeof(why), "%s", j->error[0] ? j->error : "failed without a message");
	} else if (WIFSIGNALED(status)) {
		int sig = WTERMSIG(status);
		snprintf(why, sizeof(why), "crashed: killed by signal %d (%s)%s", sig, strsignal(sig),
		         sig == SIGKILL ? "; out of memory?" : "");
	}
	if (why[0]) {
		e->state = QP_INST_FAILED;
		snprintf(e->error, sizeof(e->error), "%s", why);
		if (!*first_rc)
			*first_rc = qp_err_set(err, QP_EIO, "stage '%s' failed: %s", in->id, why);
		r->n_failed++;
	}
	end_event(r, j->idx);
}

int qp_runner_execute_one(struct qp_runner *r, size_t idx, struct qp_err *err)
{
	const struct qp_instance *in = &r->g->inst[idx];
	for (size_t d = 0; d < in->n_deps; d++)
		if (r->entries[in->deps[d]].state != QP_INST_CACHED)
			return qp_err_set(err, QP_EINVAL, "stage '%s' needs '%s', which has not run yet", in->id,
			                  r->g->inst[in->deps[d]].id);
	r->only = idx + 1;
	int rc = qp_runner_execute(r, err);
	r->only = 0;
	return rc;
}

int qp_runner_execute(struct qp_runner *r, struct qp_err *err)
{
	size_t n = r->g->n;
	int jobs = r->opts.jobs < 1 ? 1 : r->opts.jobs;
	struct job *running = calloc((size_t)jobs, sizeof(*running));
	struct pollfd *pfd = calloc((size_t)jobs, sizeof(*pfd));
	char *started = calloc(n ? n : 1, 1);
	if (!running || !pfd || !started) {
		free(running);
		free(pfd);
		free(started);
		return qp_err_nomem(err);
	}
	r->n_to_run = 0;
	for (size_t i = 0; i < n; i++) {
		if (r->only && i != r->only - 1)
			continue;
		if (r->entries[i].state == QP_INST_TO_RUN)
			r->n_to_run++;
		else
			end_event(r, i); /* cached: reported up front */
	}
	int first_rc = 0, nrun = 0, stop = 0, killed = 0;
	long long in_use = 0; /* estimates of the running stages */
	uint64_t gpus_busy = 0; /* pool devices the running stages hold */
	int gpu_wait = 0;       /* a ready stage waits for devices another process holds */
	size_t next = 0; /* entries before this are settled or started */
	for (;;) {
		if (!stop && interrupted(r)) {
			stop = 1;
			if (!first_rc)
				first_rc = qp_err_set(err, QP_EINTR, "interrupted");
		}
		if (stop && !killed && interrupted(r)) {
			/* a SIGTERM to us alone must reach the children too */
			for (int k = 0; k < nrun; k++)
				kill(running[k].pid, SIGTERM);
			killed = 1;
		}
		if (first_rc && !r->opts.keep_going)
			stop = 1;
		/* start what is ready, in graph order */
		gpu_wait = 0;
		for (size_t i = next; i < n && !stop && nrun < jobs; i++) {
			struct qp_entry *e = &r->entries[i];
			if (e->state != QP_INST_TO_RUN || started[i] || (r->only && i != r->only - 1))
				continue;
			int ready;
			if (blocked_by(r, &r->g->inst[i], &ready)) {
				e->state = QP_INST_SKIPPED;
				e->why = "an upstream stage failed";
				started[i] = 1;
				end_event(r, i);
				continue;
			}
			if (!ready)
				continue;
			/* the stage reads its inputs' metrics: records the log vouched for are read now */
			struct qp_err lerr = {0};
			if (load_inputs(r, i, &lerr)) {
				e->state = QP_INST_FAILED;
				snprintf(e->error, sizeof(e->error), "%s", lerr.msg);
				if (!first_rc)
					first_rc = qp_err_set(err, lerr.code, "stage '%s' failed: %s",
					                      r->g->inst[i].id, lerr.msg);
				r->n_failed++;
				started[i] = 1;
				end_event(r, i);
				continue;
			}
			/* the budget holds unless nothing runs: one stage always may */
			long long mem = estimate(r, i);
			if (r->opts.memory_budget > 0 && nrun > 0 && in_use + mem > r->opts.memory_budget)
				continue;
			/* the pool holds always: plan made sure each stage fits in it alone */
			int need = gpus_needed(r, i);
			uint64_t got = 0;
			if (need > 0) {
				int t = take_gpus(r, need, gpus_busy, &got, &lerr);
				if (t < 0) {
					if (!first_rc)
						first_rc = qp_err_set(err, lerr.code, "%s", lerr.msg);
					stop = 1;
					break;
				}
				if (t == 0) {
					gpu_wait |= need <= (int)r->opts.n_gpus - __builtin_popcountll(gpus_busy);
					continue;
				}
			}
			running[nrun].mem = mem;
			running[nrun].gpus = got;
			e->mem_estimate = mem;
			e->gpus = gpu_ids(r, got);
			int rc = got && !e->gpus ? qp_err_nomem(err) : start_job(r, i, &running[nrun], err);
			if (rc) {
				release_gpus(r, got);
				if (!first_rc)
					first_rc = rc;
				stop = 1;
				break;
			}
			started[i] = 1;
			in_use += mem;
			gpus_busy |= got;
			nrun++;
		}
		while (next < n && (started[next] || r->entries[next].state != QP_INST_TO_RUN ||
		                    (r->only && next != r->only - 1)))
			next++;
		if (nrun == 0 && gpu_wait && !stop) {
			/* nothing of ours runs: only another process's stages hold the
			 * devices this one waits for */
			struct timespec nap = {0, 100 * 1000 * 1000};
			nanosleep(&nap, NULL);
			continue;
		}
		if (nrun == 0)
			break;
		for (int k = 0; k < nrun; k++) {
			pfd[k].fd = running[k].fd;
			pfd[k].events = POLLIN;
			pfd[k].revents = 0;
		}
		if (poll(pfd, (nfds_t)nrun, 200) < 0 && errno != EINTR) {
			if (!first_rc)
				first_rc = qp_err_set(err, QP_EIO, "poll failed:");
			stop = 1;
		}
		for (int k = 0; k < nrun;) {
			if (!(pfd[k].revents & (POLLIN | POLLHUP | POLLERR)) || !drain(r, &running[k])) {
				k++;
				continue;
			}
			finish_job(r, &running[k], &first_rc, err);
			in_use -= running[k].mem;
			gpus_busy &= ~running[k].gpus;
			running[k] = running[nrun - 1];
			pfd[k] = pfd[nrun - 1];
			nrun--;
		}
	}
	for (size_t i = 0; i < n; i++) {
		struct qp_entry *e = &r->entries[i];
		if (e->state != QP_INST_TO_RUN || (r->only && i != r->only - 1))
			continue;
		e->state = QP_INST_SKIPPED;
		e->why = first_rc == QP_EINTR ? "interrupted"
		         : first_rc ? "the run stopped at a failure (see --keep-going)" : "not reached";
		end_event(r, i);
	}
	free(running);
	free(pfd);
	free(started);
	struct qp_err ferr = {0};
	qp_actlog_flush(r->log, &ferr); /* only an accelerator: failing to keep it costs speed */
	return first_rc;
}
