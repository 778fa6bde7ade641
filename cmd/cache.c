/* qpipe cache: look into the store. */
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

int cmd_cache(const struct qp_cmd *cmd, int argc, char **argv)
{
	struct qp_args a;
	if (qp_cli_parse(cmd, argc, argv, &a) != 0)
		return QP_EXIT_USAGE;
	if (a.help) {
		qp_cli_help(cmd, stdout);
		return QP_EXIT_OK;
	}
	if (a.npos != 1 || (strcmp(a.pos[0], "dir") && strcmp(a.pos[0], "ls"))) {
		qp_cli_error("cache: expected 'dir' or 'ls' (see 'qpipe cache --help')");
		return QP_EXIT_USAGE;
	}
	char dir[PATH_MAX];
	if (qp_cli_cache_dir(qp_cli_get(cmd, &a, "cache-dir"), dir, sizeof(dir))) {
		qp_cli_error("cache directory path too long");
		return QP_EXIT_ENV;
	}
	if (!strcmp(a.pos[0], "dir")) {
		printf("%s\n", dir);
		return QP_EXIT_OK;
	}
	struct qp_err err = {0};
	struct qp_store *s;
	if (qp_store_open(&s, dir, &err) || qp_store_list_actions(s, print_record, NULL, &err)) {
		qp_cli_error("%s", err.msg);
		return QP_EXIT_ENV;
	}
	qp_store_free(s);
	return QP_EXIT_OK;
}
