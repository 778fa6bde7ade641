/* qpipe stages [KIND]: documentation generated from the declarations. */
#include <stdio.h>
#include <string.h>

#include "cmd/cli.h"
#include "common/suggest.h"
#include "stages/stage.h"

static const char *ptype_name(enum qp_ptype t)
{
	switch (t) {
	case QP_P_STRING: return "string";
	case QP_P_INT: return "integer";
	case QP_P_NUMBER: return "number";
	case QP_P_BOOL: return "bool";
	case QP_P_PATH: return "path";
	case QP_P_ENUM: return "choice";
	case QP_P_LIST: return "list";
	case QP_P_PATHS: return "list of paths";
	case QP_P_INPUT: return "stage";
	case QP_P_INPUTS: return "stage (all instances)";
	}
	return "?";
}

int cmd_stages(const struct qp_cmd *cmd, int argc, char **argv)
{
	struct qp_args a;
	if (qp_cli_parse(cmd, argc, argv, &a) != 0)
		return QP_EXIT_USAGE;
	if (a.help) {
		qp_cli_help(cmd, stdout);
		return QP_EXIT_OK;
	}
	if (a.npos == 0) {
		for (size_t i = 0; qp_stage_kinds[i]; i++)
			printf("%-16s %s\n", qp_stage_kinds[i]->name, qp_stage_kinds[i]->summary);
		return QP_EXIT_OK;
	}
	const struct qp_stage_kind *k = qp_stage_kind_find(a.pos[0]);
	if (!k) {
		const char *names[64];
		size_t n = 0;
		for (; qp_stage_kinds[n] && n < 63; n++)
			names[n] = qp_stage_kinds[n]->name;
		names[n] = NULL;
		const char *s = qp_suggest(a.pos[0], names);
		if (s)
			qp_cli_error("unknown stage kind '%s' (did you mean '%s'?)", a.pos[0], s);
		else
			qp_cli_error("unknown stage kind '%s' (see 'qpipe stages')", a.pos[0]);
		return QP_EXIT_USAGE;
	}
	printf("%s (version %d)\n  %s\n\nParameters:\n", k->name, k->version, k->summary);
	for (size_t i = 0; k->params[i].name; i++) {
		const struct qp_param_decl *p = &k->params[i];
		printf("  %-12s %-22s %s", p->name, ptype_name(p->type), p->doc);
		if (p->def)
			printf(" [default: %s]", p->def[0] ? p->def : "\"\"");
		else
			printf(" [required]");
		if (p->choices) {
			printf(" (one of:");
			for (size_t j = 0; p->choices[j]; j++)
				printf(" %s", p->choices[j]);
			printf(")");
		}
		if (p->min < p->max && (p->type == QP_P_INT || p->type == QP_P_NUMBER))
			printf(" (range %g..%g)", p->min, p->max);
		printf("\n");
	}
	printf("\nGPUs:\n  ");
	if (k->gpus_param)
		printf("as many as '%s' says, ", k->gpus_param);
	else if (k->gpus > 0)
		printf("%d per instance, ", k->gpus);
	if (k->gpus_param || k->gpus > 0)
		printf("from the run's pool (qpipe run --gpus): an instance waits until that many\n"
		       "  devices are free, and its process sees only its own, in CUDA_VISIBLE_DEVICES and\n"
		       "  QPIPE_GPUS. A plan whose stage needs more than the pool holds fails.\n");
	else
		printf("none: its process sees no device (CUDA_VISIBLE_DEVICES is empty).\n");
	return QP_EXIT_OK;
}
