/* qpipe cache: look into the store and check it. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/store.h"
#include "cmd/cli.h"
#include "common/units.h"

int qp_cli_cache_dir(const char *opt, char *buf, size_t n);

static const char *field(json_t *rec, const char *name)
{
	const char *s = json_string_value(json_object_get(rec, name));
	return s ? s : "?";
}

static int print_record(void *ud, const char *key_hex, json_t *rec)
{
	(void)ud;
	printf("%s  %-16s %-32s %8.2fs  %s\n", key_hex, field(rec, "kind"), field(rec, "stage"),
	       json_number_value(json_object_get(rec, "wall_s")), field(rec, "created"));
	return 0;
}

static void print_problem(void *ud, const char *what)
{
	(void)ud;
	printf("bad  %s\n", what);
}

int cmd_cache(const struct qp_cmd *cmd, int argc, char **argv)
{
	struct qp_args a;
	if (qp_cli_parse(cmd, argc, argv, &a) != 0)
		return QP_EXIT_USAGE;
	if (a.help) {
		qp_cli_help(cmd, stdout);
		return QP_EXIT_OK;
	}
	static const char *const subs[] = {"dir", "ls", "verify", "gc", "rm", NULL};
	int sub = -1;
	for (int i = 0; a.npos >= 1 && subs[i]; i++)
		if (!strcmp(a.pos[0], subs[i]))
			sub = i;
	if (sub < 0 || (sub != 4 && a.npos != 1) || (sub == 4 && a.npos < 2)) {
		qp_cli_error("cache: expected dir, ls, verify, gc or rm KEY... (see 'qpipe cache --help')");
		return QP_EXIT_USAGE;
	}
	unsigned long long max_size;
	double grace = 3600;
	const char *ms = qp_cli_get(cmd, &a, "max-size"), *gs = qp_cli_get(cmd, &a, "grace");
	long long msz = ms ? qp_parse_size(ms) : 0;
	if (msz < 0) {
		qp_cli_error("cache: --max-size must be a size like 500M or 20G, not '%s'", ms);
		return QP_EXIT_USAGE;
	}
	max_size = (unsigned long long)msz;
	if (gs) {
		char *end;
		grace = strtod(gs, &end);
		if (*end || grace < 0) {
			qp_cli_error("cache: --grace must be a number of seconds, not '%s'", gs);
			return QP_EXIT_USAGE;
		}
	}
	char dir[PATH_MAX];
	if (qp_cli_cache_dir(qp_cli_get(cmd, &a, "cache-dir"), dir, sizeof(dir))) {
		qp_cli_error("cache directory path too long");
		return QP_EXIT_ENV;
	}
	if (sub == 0) {
		printf("%s\n", dir);
		return QP_EXIT_OK;
	}
	struct qp_err err = {0};
	struct qp_store *s;
	if (qp_store_open(&s, dir, &err)) {
		qp_cli_error("%s", err.msg);
		return QP_EXIT_ENV;
	}
	int ex = QP_EXIT_OK;
	if (sub == 1) {
		if (qp_store_list_actions(s, print_record, NULL, &err)) {
			qp_cli_error("%s", err.msg);
			ex = QP_EXIT_ENV;
		}
	} else if (sub == 3) {
		struct qp_gc_stats g;
		if (qp_store_gc(s, max_size, grace, &g, &err)) {
			qp_cli_error("%s", err.msg);
			ex = QP_EXIT_ENV; /* locked by another gc, or I/O */
		} else {
			printf("removed %zu action record(s), %zu object(s) (%.1f MB), %zu temporary file(s); "
			       "objects: %.1f MB before, %.1f MB in use now\n",
			       g.records_removed, g.objects_removed, (double)g.bytes_freed / 1e6,
			       g.temporaries_removed, (double)g.bytes_before / 1e6, (double)g.bytes_after / 1e6);
		}
	} else if (sub == 4) {
		for (int i = 1; i < a.npos; i++) {
			struct qp_hash h;
			if (qp_hash_from_hex(&h, a.pos[i]) != 0) {
				qp_cli_error("cache rm: '%s' is not a 32-digit key (see 'qpipe cache ls')", a.pos[i]);
				ex = QP_EXIT_USAGE;
			} else if (qp_store_rm_action(s, &h, &err)) {
				qp_cli_error("%s", err.msg);
				ex = err.code == QP_ENOTFOUND ? QP_EXIT_USAGE : QP_EXIT_ENV;
			}
		}
	} else {
		struct qp_verify v;
		if (qp_store_verify(s, &v, print_problem, NULL, &err)) {
			qp_cli_error("%s", err.msg);
			ex = QP_EXIT_ENV;
		} else {
			printf("%zu object(s), %zu bad; %zu action record(s), %zu unusable; "
			       "%zu temporary file(s) of interrupted writers (harmless)\n",
			       v.objects, v.bad_objects, v.records, v.bad_records, v.temporaries);
			if (v.bad_objects || v.bad_records)
				ex = QP_EXIT_FAILED;
		}
	}
	qp_store_free(s);
	return ex;
}
