/* qpipe cache: look into the store and check it. */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "cache/store.h"
#include "cmd/cli.h"

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
	static const char *const subs[] = {"dir", "ls", "verify", NULL};
	int sub = -1;
	for (int i = 0; a.npos == 1 && subs[i]; i++)
		if (!strcmp(a.pos[0], subs[i]))
			sub = i;
	if (sub < 0) {
		qp_cli_error("cache: expected one of dir, ls, verify (see 'qpipe cache --help')");
		return QP_EXIT_USAGE;
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
