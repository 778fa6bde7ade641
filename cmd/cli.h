/* The command line: a table of subcommands, each with one options table
 * that drives both parsing and --help (git's parse-options shape). */
#ifndef QP_CLI_H
#define QP_CLI_H

#include <stdio.h>

/* Exit codes, fixed and listed in `qpipe --help`. */
enum {
	QP_EXIT_OK = 0,
	QP_EXIT_FAILED = 1,    /* a stage failed, or --check found a regression */
	QP_EXIT_USAGE = 2,     /* bad command line */
	QP_EXIT_RECIPE = 3,    /* the recipe is invalid */
	QP_EXIT_ENV = 4,       /* environment or I/O: cache, disk, locks, kernels */
	QP_EXIT_INTR = 130,    /* interrupted */
};

struct qp_opt {
	const char *name;      /* long name without dashes */
	char short_name;       /* 0 if none */
	const char *arg;       /* placeholder ("DIR"); NULL for a flag */
	const char *help;
	int repeat;            /* may be given more than once; see qp_cli_get_all */
};

struct qp_cmd {
	const char *name;
	int (*fn)(const struct qp_cmd *cmd, int argc, char **argv);
	const char *summary;
	const char *usage;             /* "RECIPE" */
	const struct qp_opt *opts;     /* terminated by a NULL name */
};

#define QP_CLI_MAX_OPTS 32
#define QP_CLI_MAX_POS 16
#define QP_CLI_MAX_REP 128

struct qp_args {
	const char *val[QP_CLI_MAX_OPTS];  /* per option: its argument, "1" for a set flag, NULL */
	int npos;
	char *pos[QP_CLI_MAX_POS];
	int help;                          /* -h/--help was given */
	int nrep;                          /* values of repeatable options, in order */
	int rep_opt[QP_CLI_MAX_REP];
	const char *rep[QP_CLI_MAX_REP];
};

/* Parse argv[1..] per cmd->opts; prints a usage error and returns -1. */
int qp_cli_parse(const struct qp_cmd *cmd, int argc, char **argv, struct qp_args *out);
/* Value of option name, or NULL. */
const char *qp_cli_get(const struct qp_cmd *cmd, const struct qp_args *a, const char *name);
/* All values of a repeatable option, in command-line order, into out[max];
 * returns how many. */
size_t qp_cli_get_all(const struct qp_cmd *cmd, const struct qp_args *a, const char *name,
                      const char **out, size_t max);
/* Print the subcommand's help. */
void qp_cli_help(const struct qp_cmd *cmd, FILE *f);
/* Print an error line prefixed with "qpipe: " to stderr. */
void qp_cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The exit-code table, for help texts. */
void qp_cli_print_exit_codes(FILE *f);

/* Subcommands. */
int cmd_run(const struct qp_cmd *cmd, int argc, char **argv);
int cmd_plan(const struct qp_cmd *cmd, int argc, char **argv);
int cmd_cache(const struct qp_cmd *cmd, int argc, char **argv);
int cmd_version(const struct qp_cmd *cmd, int argc, char **argv);
int cmd_stages(const struct qp_cmd *cmd, int argc, char **argv);
int cmd_stage(const struct qp_cmd *cmd, int argc, char **argv);
int cmd_ninja(const struct qp_cmd *cmd, int argc, char **argv);
int cmd_report(const struct qp_cmd *cmd, int argc, char **argv);

#endif
