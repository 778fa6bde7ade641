/* qpipe version */
#include <stdio.h>

#include "cmd/cli.h"
#include "kernels/kernels.h"
#include "qp_config.h"

int cmd_version(const struct qp_cmd *cmd, int argc, char **argv)
{
	struct qp_args a;
	if (qp_cli_parse(cmd, argc, argv, &a) != 0)
		return QP_EXIT_USAGE;
	if (a.help) {
		qp_cli_help(cmd, stdout);
		return QP_EXIT_OK;
	}
	printf("qpipe %s\n", QP_VERSION);
	if (qp_cli_get(cmd, &a, "kernels")) {
		struct qp_err err = {0};
		if (qp_kernels_init(NULL, &err) != 0) {
			qp_cli_error("%s", err.msg);
			return QP_EXIT_ENV;
		}
		printf("kernels: %s (%s)\n", qp_kernel_level_name(qp_kernels_level()), qp_kernels_reason());
		printf("cuda: %s\n", QP_HAVE_CUDA ? "built (no CUDA kernels yet)" : "not built");
	}
	return QP_EXIT_OK;
}
