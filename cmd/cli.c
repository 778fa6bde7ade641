#include "cmd/cli.h"

#include <stdarg.h>
#include <string.h>

void qp_cli_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("qpipe: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static int find_long(const struct qp_cmd *cmd, const char *name, size_t len)
{
	for (int i = 0; cmd->opts[i].name; i++)
		if (strlen(cmd->opts[i].name) == len && !strncmp(cmd->opts[i].name, name, len))
			return i;
	return -1;
}

static int find_short(const struct qp_cmd *cmd, char c)
{
	for (int i = 0; cmd->opts[i].name; i++)
		if (cmd->opts[i].short_name == c)
			return i;
	return -1;
}

int qp_cli_parse(const struct qp_cmd *cmd, int argc, char **argv, struct qp_args *out)
{
	memset(out, 0, sizeof(*out));
	int only_pos = 0;
	for (int i = 1; i < argc; i++) {
		char *a = argv[i];
		if (only_pos || a[0] != '-' || a[1] == '\0') {
			if (out->npos == QP_CLI_MAX_POS) {
				qp_cli_error("%s: too many arguments", cmd->name);
				return -1;
			}
			out->pos[out->npos++] = a;
			continue;
		}
		if (!strcmp(a, "--")) {
			only_pos = 1;
			continue;
		}
		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			out->help = 1;
			continue;
		}
		int oi;
		const char *inline_val = NULL;
		if (a[1] == '-') {
			const char *eq = strchr(a + 2, '=');
			size_t len = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
			oi = find_long(cmd, a + 2, len);
			if (eq)
				inline_val = eq + 1;
		} else {
			oi = a[2] == '\0' ? find_short(cmd, a[1]) : -1;
			if (oi < 0 && a[2] != '\0' && find_short(cmd, a[1]) >= 0 && cmd->opts[find_short(cmd, a[1])].arg) {
				oi = find_short(cmd, a[1]);
				inline_val = a + 2;
			}
		}
		if (oi < 0) {
			qp_cli_error("%s: unknown option '%s' (see 'qpipe %s --help')", cmd->name, a, cmd->name);
			return -1;
		}
		const struct qp_opt *o = &cmd->opts[oi];
		if (!o->arg) {
			if (inline_val) {
				qp_cli_error("%s: option '--%s' takes no value", cmd->name, o->name);
				return -1;
			}
			out->val[oi] = "1";
		} else if (inline_val || i + 1 < argc) {
			out->val[oi] = inline_val ? inline_val : argv[++i];
			if (o->repeat) {
				if (out->nrep == QP_CLI_MAX_REP) {
					qp_cli_error("%s: option '--%s' given too often", cmd->name, o->name);
					return -1;
				}
				out->rep_opt[out->nrep] = oi;
				out->rep[out->nrep++] = out->val[oi];
			}
		} else {
			qp_cli_error("%s: option '--%s' needs a value (%s)", cmd->name, o->name, o->arg);
			return -1;
		}
	}
	return 0;
}

const char *qp_cli_get(const struct qp_cmd *cmd, const struct qp_args *a, const char *name)
{
	int i = find_long(cmd, name, strlen(name));
	return i < 0 ? NULL : a->val[i];
}

size_t qp_cli_get_all(const struct qp_cmd *cmd, const struct qp_args *a, const char *name,
                      const char **out, size_t max)
{
	int oi = find_long(cmd, name, strlen(name));
	size_t n = 0;
	for (int i = 0; i < a->nrep && n < max; i++)
		if (a->rep_opt[i] == oi)
			out[n++] = a->rep[i];
	return n;
}

void qp_cli_print_exit_codes(FILE *f)
{
	fputs("Exit status:\n"
	      "  0    success\n"
	      "  1    a stage failed, or --check found a regression\n"
	      "  2    bad command line\n"
	      "  3    the recipe is invalid\n"
	      "  4    environment or I/O error (cache, disk, kernels)\n"
	      "  130  interrupted\n",
	      f);
}

void qp_cli_help(const struct qp_cmd *cmd, FILE *f)
{
	fprintf(f, "usage: qpipe %s [options]%s%s\n\n%s\n\nOptions:\n", cmd->name,
	        cmd->usage[0] ? " " : "", cmd->usage, cmd->summary);
	for (int i = 0; cmd->opts[i].name; i++) {
		const struct qp_opt *o = &cmd->opts[i];
		char left[64];
		if (o->short_name)
			snprintf(left, sizeof(left), "-%c, --%s%s%s", o->short_name, o->name, o->arg ? " " : "",
			         o->arg ? o->arg : "");
		else
			snprintf(left, sizeof(left), "    --%s%s%s", o->name, o->arg ? " " : "",
			         o->arg ? o->arg : "");
		fprintf(f, "  %-26s %s\n", left, o->help);
	}
	fprintf(f, "  %-26s %s\n\n", "-h, --help", "show this help");
	qp_cli_print_exit_codes(f);
}
