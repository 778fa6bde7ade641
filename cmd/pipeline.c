/* qpipe run and qpipe plan: load, expand, plan, and (run) execute. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cmd/check.h"
#include "cmd/cli.h"
#include "cache/statcache.h"
#include "common/os.h"
#include "common/units.h"
#include "kernels/kernels.h"
#include "pipeline/exec.h"

/* Set by the SIGINT/SIGTERM handler; read by the executor. */
static volatile sig_atomic_t interrupt_flag;

static void on_signal(int sig)
{
	(void)sig;
	interrupt_flag = 1;
}

static void catch_signals(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

struct session {
	const struct qp_cmd *cmd;
	struct qp_args args;
	struct qp_arena *arena;
	struct qp_diags diags;
	struct qp_recipe *recipe;
	struct qp_graph *graph;
	struct qp_store *store;
	struct qp_statcache *statcache;
	struct qp_runner *runner;
	FILE *log;           /* --log-json, or NULL */
	int tty, quiet;
	int progress_shown;  /* a progress line is on the terminal */
	char *gpu_text;      /* the pool's ids, NUL-separated (owned) */
	size_t n_gpus;
	const char *gpus[QP_STAGE_MAX_GPUS];  /* point into gpu_text */
};

int qp_cli_cache_dir(const char *opt, char *buf, size_t n);

int qp_cli_cache_dir(const char *opt, char *buf, size_t n)
{
	const char *env = getenv("QPIPE_CACHE_DIR");
	const char *xdg = getenv("XDG_CACHE_HOME");
	const char *home = getenv("HOME");
	int w;
	if (opt)
		w = snprintf(buf, n, "%s", opt);
	else if (env && env[0])
		w = snprintf(buf, n, "%s", env);
	else if (xdg && xdg[0])
		w = snprintf(buf, n, "%s/qpipe", xdg);
	else if (home && home[0])
		w = snprintf(buf, n, "%s/.cache/qpipe", home);
	else
		w = snprintf(buf, n, ".qpipe-cache");
	return w < 0 || (size_t)w >= n ? -1 : 0;
}

/* Map an error code from loading or I/O to an exit status. */
static int exit_for(int code)
{
	switch (code) {
	case QP_EINVAL: return QP_EXIT_RECIPE;
	case QP_EINTR: return QP_EXIT_INTR;
	default: return QP_EXIT_ENV;
	}
}

static void json_event(struct session *s, json_t *ev)
{
	if (s->log && ev) {
		char *line = json_dumps(ev, JSON_COMPACT | JSON_ENSURE_ASCII);
		if (line) {
			fprintf(s->log, "%s\n", line);
			fflush(s->log);
			free(line);
		}
	}
	json_decref(ev);
}

static const char *state_name(enum qp_inst_state st)
{
	switch (st) {
	case QP_INST_CACHED: return "cached";
	case QP_INST_TO_RUN: return "run";
	case QP_INST_RAN: return "ran";
	case QP_INST_FAILED: return "failed";
	case QP_INST_SKIPPED: return "skipped";
	}
	return "?";
}

static void clear_progress(struct session *s)
{
	if (s->progress_shown) {
		fputs("\r\033[K", stderr);
		s->progress_shown = 0;
	}
}

/* The device ids in "0,3" as a JSON array. */
static json_t *gpus_json(const char *ids)
{
	json_t *a = json_array();
	for (const char *p = ids; p && *p;) {
		const char *c = strchr(p, ',');
		size_t n = c ? (size_t)(c - p) : strlen(p);
		json_array_append_new(a, json_stringn(p, n));
		p = c ? c + 1 : p + n;
	}
	return a;
}

static void on_start(void *ud, const struct qp_instance *in, const struct qp_entry *e, size_t done,
                     size_t total)
{
	struct session *s = ud;
	if (s->log)
		json_event(s, json_pack("{s:s, s:s, s:s, s:s, s:o}", "event", "start", "stage", in->id,
		                        "kind", in->kind->name, "key", in->key_hex, "gpus",
		                        gpus_json(e->gpus)));
	if (s->quiet)
		return;
	clear_progress(s);
	if (s->tty) {
		fprintf(stderr, "[%zu/%zu] %s ...", done + 1, total, in->id);
		s->progress_shown = 1;
	}
	fflush(stderr);
}

static void on_progress(void *ud, const struct qp_instance *in, const char *what, int64_t done,
                        int64_t total)
{
	struct session *s = ud;
	if (s->quiet || !s->tty)
		return;
	if (total > 0) {
		int pct = (int)(100 * done / total), fill = pct / 5;
		char bar[21];
		for (int i = 0; i < 20; i++)
			bar[i] = i < fill ? '#' : '-';
		bar[20] = '\0';
		fprintf(stderr, "\r\033[K%s [%s] %3d%% %s", in->id, bar, pct, what);
	} else {
		fprintf(stderr, "\r\033[K%s: %s", in->id, what);
	}
	s->progress_shown = 1;
	fflush(stderr);
}

static void on_end(void *ud, const struct qp_instance *in, const struct qp_entry *e)
{
	struct session *s = ud;
	if (!s->quiet) {
		clear_progress(s);
		if (e->state == QP_INST_RAN)
			fprintf(stderr, "ran     %s (%.2f s, %.0f MB peak)\n", in->id, e->wall_s,
			        (double)e->peak_rss_kb / 1024.0);
		else if (e->state == QP_INST_FAILED)
			fprintf(stderr, "failed  %s: %s\n", in->id, e->error);
		else if (e->state == QP_INST_SKIPPED)
			fprintf(stderr, "skipped %s (%s)\n", in->id, e->why);
		else if (e->state == QP_INST_CACHED && e->why && strcmp(e->why, "cached"))
			fprintf(stderr, "cached  %s (%s)\n", in->id, e->why);
		else if (e->state == QP_INST_CACHED)
			fprintf(stderr, "cached  %s\n", in->id);
	}
	if (!s->log)
		return; /* the JSON event costs more than the line: build it only for a log */
	json_t *outs = json_object();
	for (size_t i = 0; i < e->art.n_files; i++)
		json_object_set_new(outs, e->art.file_names[i], json_string(e->art.file_paths[i]));
	json_t *ev = json_pack("{s:s, s:s, s:s, s:s, s:s, s:o}", "event", "stage", "stage", in->id,
	                       "kind", in->kind->name, "key", in->key_hex, "status",
	                       state_name(e->state), "outputs", outs);
	if (ev && (e->state == QP_INST_RAN || e->state == QP_INST_FAILED)) {
		json_object_set_new(ev, "mem_estimate", json_integer(e->mem_estimate));
		json_object_set_new(ev, "wall_s", json_real(e->wall_s));
		json_object_set_new(ev, "peak_rss_kb", json_integer(e->peak_rss_kb));
		json_object_set_new(ev, "gpus", gpus_json(e->gpus));
	}
	if (ev && e->why && e->state != QP_INST_RAN)
		json_object_set_new(ev, "why", json_string(e->why));
	if (ev && e->state == QP_INST_FAILED)
		json_object_set_new(ev, "error", json_string(e->error));
	json_event(s, ev);
}

/* What this process read, for the log: rchar counts every byte read through
 * read(2), page cache included, so it shows whether inputs were rehashed. */
static void io_event(struct session *s)
{
	if (!s->log)
		return;
	long long rchar = -1, read_bytes = -1;
	FILE *f = fopen("/proc/self/io", "r");
	if (f) {
		char line[128];
		while (fgets(line, sizeof(line), f)) {
			sscanf(line, "rchar: %lld", &rchar);
			sscanf(line, "read_bytes: %lld", &read_bytes);
		}
		fclose(f);
	}
	json_event(s, json_pack("{s:s, s:I, s:I, s:I, s:I, s:I}", "event", "io", "rchar",
	                        (json_int_t)rchar, "read_bytes", (json_int_t)read_bytes, "inputs_hashed",
	                        (json_int_t)(s->statcache ? qp_statcache_misses(s->statcache) : 0),
	                        "bytes_hashed",
	                        (json_int_t)(s->statcache ? qp_statcache_bytes_hashed(s->statcache) : 0),
	                        "records_read",
	                        (json_int_t)(s->runner ? qp_runner_records_read(s->runner) : 0)));
}

static void print_diags(const struct qp_diags *d)
{
	for (size_t i = 0; i < d->n; i++)
		fprintf(stderr, "%s\n", d->msgs[i]);
	if (d->dropped)
		fprintf(stderr, "qpipe: ... and %zu more errors\n", d->dropped);
}

/* Report why the recipe could not be loaded or expanded: every
 * diagnostic, or the one error; returns the exit status. */
static int load_failed(struct session *s, int rc, const struct qp_err *err)
{
	if (!s->diags.n) {
		qp_cli_error("%s", err->msg);
		return exit_for(rc);
	}
	print_diags(&s->diags);
	if (rc == QP_EINVAL)
		fprintf(stderr, "qpipe: %s: %zu error(s); nothing was run\n", s->args.pos[0],
		        s->diags.n + s->diags.dropped);
	return QP_EXIT_RECIPE;
}

static void session_free(struct session *s)
{
	qp_runner_free(s->runner);
	qp_statcache_free(s->statcache);
	qp_store_free(s->store);
	qp_arena_free(s->arena);
	free(s->gpu_text);
	if (s->log)
		fclose(s->log);
}

/* A device id as CUDA_VISIBLE_DEVICES spells one: an index, or a
 * GPU-/MIG- UUID. */
static int valid_gpu_id(const char *id)
{
	if (!id[0])
		return 0;
	for (const char *p = id; *p; p++)
		if (!isalnum((unsigned char)*p) && !strchr("-_:./", *p))
			return 0;
	return 1;
}

/* Split text (owned by s from here) at commas into the pool; 0, or -1 with
 * a reason in why. */
static int set_pool(struct session *s, char *text, char *why, size_t n)
{
	s->gpu_text = text;
	s->n_gpus = 0;
	for (char *p = text; *p;) {
		char *c = strchr(p, ',');
		if (c)
			*c = '\0';
		if (*p) {
			if (!valid_gpu_id(p)) {
				snprintf(why, n, "'%s' is not a device id", p);
				return -1;
			}
			for (size_t i = 0; i < s->n_gpus; i++)
				if (!strcmp(s->gpus[i], p)) {
					snprintf(why, n, "device '%s' is listed twice", p);
					return -1;
				}
			if (s->n_gpus == QP_STAGE_MAX_GPUS) {
				snprintf(why, n, "more than %d devices", QP_STAGE_MAX_GPUS);
				return -1;
			}
			s->gpus[s->n_gpus++] = p;
		}
		if (!c)
			break;
		p = c + 1;
	}
	return 0;
}

/* "0,1,2": the first n CUDA indices. */
static char *indices(size_t n)
{
	char *t = malloc(n * 4 + 1);
	if (!t)
		return NULL;
	size_t len = 0;
	t[0] = '\0';
	for (size_t i = 0; i < n; i++)
		len += (size_t)snprintf(t + len, n * 4 + 1 - len, "%s%zu", i ? "," : "", i);
	return t;
}

/* How many /dev/nvidiaN device nodes there are. */
static size_t dev_nvidia_count(void)
{
	size_t n = 0;
	DIR *d = opendir("/dev");
	struct dirent *e;
	while (d && (e = readdir(d)))
		n += !strncmp(e->d_name, "nvidia", 6) && e->d_name[6] &&
		     strspn(e->d_name + 6, "0123456789") == strlen(e->d_name + 6);
	if (d)
		closedir(d);
	return n < QP_STAGE_MAX_GPUS ? n : QP_STAGE_MAX_GPUS;
}

/* The GPU pool: --gpus N takes the first N devices (in CUDA_VISIBLE_DEVICES's
 * order if it is set, else 0..N-1); --gpus LIST takes those ids ("0,2", a
 * single one as "2,"). Without --gpus: what CUDA_VISIBLE_DEVICES names if
 * it is set, else one per /dev/nvidiaN, else none. Returns an exit status. */
static int gpu_pool(struct session *s, const char *opt)
{
	const char *env = getenv("CUDA_VISIBLE_DEVICES");
	int count = opt && opt[0] && strspn(opt, "0123456789") == strlen(opt);
	long n = count ? strtol(opt, NULL, 10) : 0;
	char why[256] = "";
	if (count && (strlen(opt) > 3 || n > QP_STAGE_MAX_GPUS)) {
		qp_cli_error("%s: --gpus must be at most %d, not '%s'", s->cmd->name, QP_STAGE_MAX_GPUS, opt);
		return QP_EXIT_USAGE;
	}
	char *text = count ? (env ? strdup(env) : indices((size_t)n))
	             : opt ? strdup(opt) : env ? strdup(env) : indices(dev_nvidia_count());
	if (!text) {
		qp_cli_error("out of memory");
		return QP_EXIT_ENV;
	}
	if (set_pool(s, text, why, sizeof(why)) == 0 && count) {
		if ((size_t)n > s->n_gpus)
			snprintf(why, sizeof(why), "CUDA_VISIBLE_DEVICES names %zu device(s)", s->n_gpus);
		else
			s->n_gpus = (size_t)n;
	}
	if (why[0] && opt) {
		qp_cli_error("%s: --gpus must be a count or a list of device ids like 0,2, not '%s' (%s)",
		             s->cmd->name, opt, why);
		return QP_EXIT_USAGE;
	}
	if (why[0]) {
		qp_cli_error("CUDA_VISIBLE_DEVICES='%s': %s (or set the pool with --gpus)", env, why);
		return QP_EXIT_USAGE;
	}
	return QP_EXIT_OK;
}

/* Parse options, load the recipe, build the graph, open the store and plan.
 * Returns an exit status; QP_EXIT_OK means s is ready. */
static int session_open(struct session *s, const struct qp_cmd *cmd, int argc, char **argv,
                        int npos)
{
	memset(s, 0, sizeof(*s));
	s->cmd = cmd;
	if (qp_cli_parse(cmd, argc, argv, &s->args) != 0)
		return QP_EXIT_USAGE;
	if (s->args.help) {
		qp_cli_help(cmd, stdout);
		return -1;
	}
	if (s->args.npos != npos) {
		qp_cli_error("%s: expected %s (see 'qpipe %s --help')", cmd->name, cmd->usage, cmd->name);
		return QP_EXIT_USAGE;
	}
	struct qp_err err = {0};
	const char *kernels = qp_cli_get(cmd, &s->args, "kernels");
	if (qp_kernels_init(kernels, &err) != 0) {
		qp_cli_error("%s", err.msg);
		return kernels ? QP_EXIT_USAGE : QP_EXIT_ENV;
	}
	int threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
	const char *topt = qp_cli_get(cmd, &s->args, "threads");
	if (topt) {
		char *end;
		long t = strtol(topt, &end, 10);
		if (*end || t < 1 || t > 256) {
			qp_cli_error("%s: --threads must be an integer in 1..256, not '%s'", cmd->name, topt);
			return QP_EXIT_USAGE;
		}
		threads = (int)t;
	}
	int jobs = 1;
	const char *jopt = qp_cli_get(cmd, &s->args, "jobs");
	if (jopt) {
		char *end;
		long j = strtol(jopt, &end, 10);
		if (*end || j < 1 || j > 1024) {
			qp_cli_error("%s: --jobs must be an integer in 1..1024, not '%s'", cmd->name, jopt);
			return QP_EXIT_USAGE;
		}
		jobs = (int)j;
	}
	long long budget = (long long)sysconf(_SC_PHYS_PAGES) * sysconf(_SC_PAGESIZE) / 10 * 8;
	const char *mopt = qp_cli_get(cmd, &s->args, "memory");
	if (mopt && (budget = qp_parse_size(mopt)) <= 0) {
		qp_cli_error("%s: --memory must be a size like 8G, not '%s'", cmd->name, mopt);
		return QP_EXIT_USAGE;
	}
	int ex = gpu_pool(s, qp_cli_get(cmd, &s->args, "gpus"));
	if (ex != QP_EXIT_OK)
		return ex;
	const char *fmt = qp_cli_get(cmd, &s->args, "format");
	if (fmt && strcmp(fmt, "text") && strcmp(fmt, "json")) {
		qp_cli_error("%s: --format must be text or json, not '%s'", cmd->name, fmt);
		return QP_EXIT_USAGE;
	}
	s->quiet = qp_cli_get(cmd, &s->args, "quiet") != NULL;
	s->tty = isatty(2);
	const char *log = qp_cli_get(cmd, &s->args, "log-json");
	if (log && !(s->log = fopen(log, "a"))) {
		qp_cli_error("%s: cannot open: %s", log, strerror(errno));
		return QP_EXIT_ENV;
	}
	s->arena = qp_arena_new();
	if (!s->arena) {
		qp_cli_error("out of memory");
		return QP_EXIT_ENV;
	}
	s->diags.arena = s->arena;
	const char *sets[QP_CLI_MAX_REP];
	size_t nsets = qp_cli_get_all(cmd, &s->args, "set", sets, QP_CLI_MAX_REP);
	int rc = qp_recipe_load(&s->recipe, s->arena, s->args.pos[0], sets, nsets, &s->diags, &err);
	if (rc) {
		return load_failed(s, rc, &err);
	}
	char dir[PATH_MAX];
	if (qp_cli_cache_dir(qp_cli_get(cmd, &s->args, "cache-dir"), dir, sizeof(dir))) {
		qp_cli_error("cache directory path too long");
		return QP_EXIT_ENV;
	}
	if ((rc = qp_store_open(&s->store, dir, &err)) ||
	    (rc = qp_statcache_open(&s->statcache, s->store, &err))) {
		qp_cli_error("%s", err.msg);
		return QP_EXIT_ENV;
	}
	rc = qp_graph_build(&s->graph, s->arena, s->recipe, s->statcache, &s->diags, &err);
	if (rc) {
		return load_failed(s, rc, &err);
	}
	struct qp_err serr = {0};
	if (qp_statcache_save(s->statcache, &serr) && !s->quiet)
		qp_cli_error("warning: %s", serr.msg);
	struct qp_exec_opts opts = {
		.threads = threads,
		.jobs = jobs,
		.keep_going = qp_cli_get(cmd, &s->args, "keep-going") != NULL,
		.memory_budget = budget,
		.n_gpus = s->n_gpus,
		.gpus = s->gpus,
		.events = {.ud = s, .stage_start = on_start, .stage_end = on_end, .progress = on_progress},
		.interrupt = &interrupt_flag,
	};
	if ((rc = qp_runner_new(&s->runner, s->graph, s->store, &opts, &err)) ||
	    (rc = qp_runner_plan(s->runner, &err))) {
		qp_cli_error("%s", err.msg);
		return QP_EXIT_ENV;
	}
	return QP_EXIT_OK;
}

int cmd_plan(const struct qp_cmd *cmd, int argc, char **argv)
{
	struct session s;
	int ex = session_open(&s, cmd, argc, argv, 1);
	if (ex != QP_EXIT_OK) {
		session_free(&s);
		return ex < 0 ? QP_EXIT_OK : ex;
	}
	const char *fmt = qp_cli_get(cmd, &s.args, "format");
	int json = fmt && !strcmp(fmt, "json");
	json_t *arr = json ? json_array() : NULL;
	size_t to_run = 0;
	for (size_t i = 0; i < s.graph->n; i++) {
		const struct qp_instance *in = &s.graph->inst[i];
		const struct qp_entry *e = qp_runner_entry(s.runner, i);
		to_run += e->state == QP_INST_TO_RUN;
		if (json) {
			json_t *deps = json_array();
			for (size_t d = 0; d < in->n_deps; d++)
				json_array_append_new(deps, json_string(s.graph->inst[in->deps[d]].id));
			json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:s, s:s, s:o}", "stage", in->id,
			                                     "kind", in->kind->name, "key", in->key_hex,
			                                     "status", state_name(e->state), "why", e->why,
			                                     "needs", deps));
		} else if (e->state == QP_INST_CACHED) {
			printf("cached  %s\n", in->id);
		} else {
			printf("run     %s (%s)\n", in->id, e->why);
		}
	}
	if (json) {
		json_dumpf(arr, stdout, JSON_INDENT(2));
		putchar('\n');
		json_decref(arr);
	} else {
		printf("%zu stage(s): %zu cached, %zu to run\n", s.graph->n, s.graph->n - to_run, to_run);
	}
	io_event(&s);
	session_free(&s);
	return QP_EXIT_OK;
}

/* Print every report the run produced, in graph order. */
static void print_reports(struct session *s)
{
	for (size_t i = 0; i < s->graph->n; i++) {
		const struct qp_entry *e = qp_runner_entry(s->runner, i);
		const char *md = e->art.n_files ? qp_artifact_file(&e->art, "report.md") : NULL;
		if (!md || (e->state != QP_INST_RAN && e->state != QP_INST_CACHED))
			continue;
		char *text = NULL;
		size_t len = 0;
		struct qp_err err = {0};
		if (qp_os_read_file(&text, &len, md, 64u << 20, &err) == 0) {
			fwrite(text, 1, len, stdout);
			putchar('\n');
		} else {
			qp_cli_error("%s", err.msg);
		}
		free(text);
	}
	fflush(stdout);
}

int cmd_run(const struct qp_cmd *cmd, int argc, char **argv)
{
	struct session s;
	int ex = session_open(&s, cmd, argc, argv, 1);
	if (ex != QP_EXIT_OK) {
		session_free(&s);
		return ex < 0 ? QP_EXIT_OK : ex;
	}
	struct qp_tolerance tol[QP_CHECK_MAX_TOL];
	size_t ntol;
	if ((ex = qp_cli_check_tolerances(qp_cli_get(cmd, &s.args, "tolerance"), tol, &ntol))) {
		session_free(&s);
		return ex;
	}
	struct qp_err err = {0};
	catch_signals();
	int rc = qp_runner_execute(s.runner, &err);
	struct qp_err ierr = {0};
	if (qp_runner_save_index(s.runner, &ierr) && !s.quiet)
		qp_cli_error("warning: %s", ierr.msg);
	size_t ran = 0, cached = 0, failed = 0, skipped = 0;
	for (size_t i = 0; i < s.graph->n; i++) {
		enum qp_inst_state st = qp_runner_entry(s.runner, i)->state;
		ran += st == QP_INST_RAN;
		cached += st == QP_INST_CACHED;
		failed += st == QP_INST_FAILED;
		skipped += st == QP_INST_SKIPPED;
	}
	json_event(&s, json_pack("{s:s, s:s, s:i, s:i, s:i, s:i}", "event", "summary", "recipe",
	                         s.recipe->name, "ran", (int)ran, "cached", (int)cached, "failed",
	                         (int)failed, "skipped", (int)skipped));
	io_event(&s);
	if (!s.quiet)
		fprintf(stderr, "%zu stage(s): %zu ran, %zu cached, %zu failed, %zu skipped\n", s.graph->n,
		        ran, cached, failed, skipped);
	if (rc) {
		/* a failed stage's message was already shown on its own line */
		if (!failed || s.quiet)
			qp_cli_error("%s", err.msg);
		session_free(&s);
		return rc == QP_EINTR ? QP_EXIT_INTR : failed ? QP_EXIT_FAILED : exit_for(rc);
	}
	print_reports(&s);
	const char *baseline = qp_cli_get(cmd, &s.args, "check");
	if (baseline)
		ex = qp_cli_check_run(s.graph, s.runner, baseline, tol, ntol);
	session_free(&s);
	return ex;
}

/* ---- qpipe stage and qpipe ninja ---- */

static long find_instance(const struct qp_graph *g, const char *id)
{
	for (size_t i = 0; i < g->n; i++)
		if (!strcmp(g->inst[i].id, id))
			return (long)i;
	return -1;
}

/* Write the stamp only when its content (the key) changes, so ninja's
 * restat sees an unchanged output and spares what depends on it. */
static int write_stamp(const char *path, const char *key, struct qp_err *err)
{
	char *old = NULL;
	size_t len = 0;
	struct qp_err ignore = {0};
	if (qp_os_read_file(&old, &len, path, 4096, &ignore) == 0 && len == QP_HASH_HEX_LEN + 1 &&
	    !strncmp(old, key, QP_HASH_HEX_LEN)) {
		free(old);
		return 0;
	}
	free(old);
	char line[QP_HASH_HEX_LEN + 2];
	snprintf(line, sizeof(line), "%s\n", key);
	return qp_os_write_file_atomic(path, line, strlen(line), err);
}

int cmd_stage(const struct qp_cmd *cmd, int argc, char **argv)
{
	struct session s;
	int ex = session_open(&s, cmd, argc, argv, 2);
	if (ex != QP_EXIT_OK) {
		session_free(&s);
		return ex < 0 ? QP_EXIT_OK : ex;
	}
	long idx = find_instance(s.graph, s.args.pos[1]);
	if (idx < 0) {
		qp_cli_error("stage: the recipe has no stage instance '%s' (see 'qpipe plan')", s.args.pos[1]);
		session_free(&s);
		return QP_EXIT_USAGE;
	}
	const struct qp_instance *in = &s.graph->inst[idx];
	const char *want = qp_cli_get(cmd, &s.args, "key");
	if (want && strcmp(want, in->key_hex) && !s.quiet)
		fprintf(stderr, "qpipe: note: '%s' now has key %s (build.ninja says %s); regenerate it\n",
		        in->id, in->key_hex, want);
	struct qp_err err = {0};
	catch_signals();
	int rc = 0;
	if (qp_runner_entry(s.runner, (size_t)idx)->state != QP_INST_CACHED)
		rc = qp_runner_execute_one(s.runner, (size_t)idx, &err);
	const char *stamp = qp_cli_get(cmd, &s.args, "stamp");
	if (!rc && stamp)
		rc = write_stamp(stamp, in->key_hex, &err);
	if (!rc)
		qp_runner_save_index(s.runner, &err);
	int failed = qp_runner_entry(s.runner, (size_t)idx)->state == QP_INST_FAILED;
	if (rc && (!failed || s.quiet))
		qp_cli_error("%s", err.msg);
	session_free(&s);
	return rc == 0 ? QP_EXIT_OK : rc == QP_EINTR ? QP_EXIT_INTR : failed ? QP_EXIT_FAILED
	       : rc == QP_EINVAL ? QP_EXIT_USAGE : QP_EXIT_ENV;
}

/* A path as ninja wants it in a build line ($, space and colon escaped). */
static void ninja_path(FILE *f, const char *p)
{
	for (; *p; p++) {
		if (*p == '$' || *p == ' ' || *p == ':')
			fputc('$', f);
		if (*p == '\n')
			continue;
		fputc(*p, f);
	}
}

/* A value for a ninja variable that the shell will see as one word. */
static void ninja_shell_word(FILE *f, const char *p)
{
	fputc('\'', f);
	for (; *p; p++) {
		if (*p == '\'')
			fputs("'\\''", f);
		else if (*p == '$')
			fputs("$$", f);
		else if (*p != '\n')
			fputc(*p, f);
	}
	fputc('\'', f);
}

static void stamp_name(const struct qp_instance *in, char *buf, size_t n)
{
	struct qp_hash h;
	qp_hash_buf(&h, in->id, strlen(in->id));
	char hex[QP_HASH_HEX_LEN + 1];
	qp_hash_hex(&h, hex);
	char safe[128];
	size_t j = 0;
	for (const char *p = in->id; *p && j < sizeof(safe) - 1; p++)
		safe[j++] = (isalnum((unsigned char)*p) || *p == '.' || *p == '-') ? *p : '_';
	safe[j] = '\0';
	snprintf(buf, n, ".qpipe-ninja/%s-%.8s.stamp", safe, hex);
}

/* The files a PATH parameter names (a folder's regular files, one level):
 * build.ninja is regenerated when one changes, because keys depend on them. */
static void ninja_path_deps(FILE *f, const struct qp_graph *g)
{
	for (size_t i = 0; i < g->n; i++) {
		const struct qp_instance *in = &g->inst[i];
		for (size_t pi = 0; in->kind->params[pi].name; pi++) {
			const struct qp_value *v = &in->values[pi];
			size_t cnt = v->type == QP_P_PATH ? 1 : v->type == QP_P_PATHS ? v->n : 0;
			for (size_t j = 0; j < cnt; j++) {
				const char *p = v->type == QP_P_PATH ? v->s : v->list[j];
				DIR *d = opendir(p);
				if (!d) {
					fputc(' ', f);
					ninja_path(f, p);
					continue;
				}
				struct dirent *e;
				while ((e = readdir(d))) {
					char full[PATH_MAX];
					struct stat st;
					if (e->d_name[0] == '.' ||
					    snprintf(full, sizeof(full), "%s/%s", p, e->d_name) >= (int)sizeof(full) ||
					    stat(full, &st) || !S_ISREG(st.st_mode))
						continue;
					fputc(' ', f);
					ninja_path(f, full);
				}
				closedir(d);
			}
		}
	}
}

int cmd_ninja(const struct qp_cmd *cmd, int argc, char **argv)
{
	struct session s;
	int ex = session_open(&s, cmd, argc, argv, 1);
	if (ex != QP_EXIT_OK) {
		session_free(&s);
		return ex < 0 ? QP_EXIT_OK : ex;
	}
	const char *out = qp_cli_get(cmd, &s.args, "output");
	if (!out)
		out = "build.ninja";
	char self[PATH_MAX], recipe[PATH_MAX];
	ssize_t sl = readlink("/proc/self/exe", self, sizeof(self) - 1);
	self[sl > 0 ? sl : 0] = '\0';
	if (!realpath(s.args.pos[0], recipe))
		snprintf(recipe, sizeof(recipe), "%s", s.args.pos[0]);
	char tmp[PATH_MAX];
	snprintf(tmp, sizeof(tmp), "%s.tmp", out);
	FILE *f = fopen(tmp, "w");
	if (!f) {
		qp_cli_error("%s: cannot create: %s", tmp, strerror(errno));
		session_free(&s);
		return QP_EXIT_ENV;
	}
	fprintf(f, "# Generated by qpipe ninja from %s; ninja regenerates it when the recipe or\n"
	           "# its input files change. Each edge runs one stage instance through the store.\n"
	           "ninja_required_version = 1.7\n", recipe);
	fputs("qpipe = ", f);
	ninja_shell_word(f, self);
	fputs("\nrecipe = ", f);
	ninja_shell_word(f, recipe);
	fputs("\ncache = ", f);
	ninja_shell_word(f, qp_store_dir(s.store));
	/* the edges use this run's pool, spelled as a list ("2," is device 2,
	 * "2" would be two devices) */
	fputs("\ngpus = ", f);
	char pool[QP_STAGE_MAX_GPUS * 64] = "";
	size_t pl = 0;
	for (size_t d = 0; d < s.n_gpus && pl < sizeof(pool); d++)
		pl += (size_t)snprintf(pool + pl, sizeof(pool) - pl, "%s,", s.gpus[d]);
	if (s.n_gpus > 1)
		pool[pl - 1] = '\0';
	ninja_shell_word(f, s.n_gpus ? pool : "0");
	if (s.n_gpus)
		/* ninja's pools count edges, not devices: a stage that needs two
		 * takes one slot, and waits at its start for both devices' locks */
		fprintf(f, "\n\npool gpu\n  depth = %zu", s.n_gpus);
	fputs("\n\nrule qpipe_stage\n"
	      "  command = $qpipe stage $recipe $id --cache-dir $cache --gpus $gpus --key $key --stamp $out -q\n"
	      "  description = qpipe $id\n"
	      "  restat = 1\n\n"
	      "rule qpipe_ninja\n"
	      "  command = $qpipe ninja $recipe --cache-dir $cache -o $out -q\n"
	      "  description = qpipe ninja (regenerating $out)\n"
	      "  generator = 1\n\n", f);
	/* ninja runs in the manifest's folder and must recognise this edge's
	 * output as the manifest it loaded, to reload it after regenerating */
	const char *base = strrchr(out, '/');
	fputs("build ", f);
	ninja_path(f, base ? base + 1 : out);
	fputs(": qpipe_ninja ", f);
	ninja_path(f, recipe);
	fputs(" |", f);
	ninja_path_deps(f, s.graph);
	fputs("\n\n", f);
	char stamp[256];
	for (size_t i = 0; i < s.graph->n; i++) {
		const struct qp_instance *in = &s.graph->inst[i];
		stamp_name(in, stamp, sizeof(stamp));
		fputs("build ", f);
		ninja_path(f, stamp);
		fputs(": qpipe_stage", f);
		if (in->n_deps)
			fputs(" |", f);
		for (size_t d = 0; d < in->n_deps; d++) {
			char up[256];
			stamp_name(&s.graph->inst[in->deps[d]], up, sizeof(up));
			fputc(' ', f);
			ninja_path(f, up);
		}
		fputs("\n  id = ", f);
		ninja_shell_word(f, in->id);
		fprintf(f, "\n  key = %s\n", in->key_hex);
		if (s.n_gpus && qp_runner_gpus(s.runner, i) > 0)
			fputs("  pool = gpu\n", f);
	}
	int bad = ferror(f);
	if (fclose(f) != 0 || bad || rename(tmp, out) != 0) {
		qp_cli_error("%s: cannot write: %s", out, strerror(errno));
		unlink(tmp);
		session_free(&s);
		return QP_EXIT_ENV;
	}
	if (!s.quiet)
		fprintf(stderr, "wrote %s: %zu stage instance(s)\n", out, s.graph->n);
	session_free(&s);
	return QP_EXIT_OK;
}
