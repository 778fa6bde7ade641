/* qpipe: the command table and dispatch. */
#include <stdio.h>
#include <string.h>

#include "cmd/cli.h"
#include "common/suggest.h"
#include "qp_config.h"

static const struct qp_opt pipeline_opts[] = {
	{"cache-dir", 0, "DIR", "content-addressed store (default: $QPIPE_CACHE_DIR, else $XDG_CACHE_HOME/qpipe, else ~/.cache/qpipe)", 0},
	{"kernels", 0, "LEVEL", "kernel level: auto, scalar, avx2, avx512 (default: $QPIPE_KERNELS, else auto)", 0},
	{"jobs", 'j', "N", "stages run at once, each in its own process (default: 1; run only)", 0},
	{"keep-going", 'k', NULL, "after a failure, go on with the stages that do not depend on it", 0},
	{"memory", 0, "SIZE", "budget for the running stages' declared memory (default: 80% of RAM)", 0},
	{"gpus", 0, "N|LIST", "GPU pool: N devices, or their ids (0,2; one as 2,). A stage declares the GPUs it needs "
	                      "(run: gpus: 1) and waits until that many are free; its process sees its own as "
	                      "CUDA_VISIBLE_DEVICES and QPIPE_GPUS, and a stage that declares none sees none; one that "
	                      "needs more than the pool stops the plan (default: the devices CUDA_VISIBLE_DEVICES "
	                      "names, else one per /dev/nvidiaN, else none)", 0},
	{"threads", 't', "N", "threads a stage may use (default: all cores)", 0},
	{"log-json", 0, "FILE", "append one JSON event per line to FILE", 0},
	{"set", 0, "K=V", "override: NAME=VALUE sets a variable, STAGE.PARAM=VALUE a stage parameter (repeatable)", 1},
	{"format", 0, "FMT", "plan output: text or json (plan only)", 0},
	{"quiet", 'q', NULL, "no progress or stage lines on stderr", 0},
	{"check", 0, "BASELINE", "after the run, compare its report.json with BASELINE (a report.json); exit 1 on a regression (run only)", 0},
	{"tolerance", 0, "SPEC", "for --check: METRIC=[+|-]AMOUNT[%],... e.g. ppl=+0.5%,tok_s=-10% (default: every value exact)", 0},
	{NULL, 0, NULL, NULL, 0},
};

static const struct qp_opt report_opts[] = {
	{"tolerance", 0, "SPEC", "METRIC=[+|-]AMOUNT[%],...: mark what moved past it, exit 1 if any did", 0},
	{NULL, 0, NULL, NULL, 0},
};

static const struct qp_opt stage_opts[] = {
	{"cache-dir", 0, "DIR", "the store (default as for 'run')", 0},
	{"kernels", 0, "LEVEL", "kernel level: auto, scalar, avx2, avx512", 0},
	{"threads", 't', "N", "threads the stage may use", 0},
	{"gpus", 0, "N|LIST", "the GPU pool, as for 'run'; the stage's devices are locked against other edges", 0},
	{"set", 0, "K=V", "override, as for 'run' (repeatable)", 1},
	{"stamp", 0, "FILE", "write the stage's key to FILE when done (for ninja's restat)", 0},
	{"key", 0, "HEX", "the key build.ninja expects; a different one is noted", 0},
	{"log-json", 0, "FILE", "append one JSON event per line to FILE", 0},
	{"quiet", 'q', NULL, "no progress or stage lines on stderr", 0},
	{NULL, 0, NULL, NULL, 0},
};

static const struct qp_opt ninja_opts[] = {
	{"cache-dir", 0, "DIR", "the store the edges use (default as for 'run')", 0},
	{"output", 'o', "FILE", "where to write (default: build.ninja)", 0},
	{"gpus", 0, "N|LIST", "the GPU pool, as for 'run': GPU stages go in a ninja pool this deep", 0},
	{"set", 0, "K=V", "override, as for 'run' (repeatable)", 1},
	{"quiet", 'q', NULL, "say nothing on success", 0},
	{NULL, 0, NULL, NULL, 0},
};

static const struct qp_opt cache_opts[] = {
	{"cache-dir", 0, "DIR", "the store (default as for 'run')", 0},
	{"max-size", 0, "SIZE", "gc: drop least recently used results until the store fits (e.g. 20G)", 0},
	{"grace", 0, "SECONDS", "gc: leave anything younger alone, for runs in progress (default 3600)", 0},
	{NULL, 0, NULL, NULL, 0},
};

static const struct qp_opt version_opts[] = {
	{"kernels", 0, NULL, "also print the kernel level in use and why it was chosen", 0},
	{NULL, 0, NULL, NULL, 0},
};

static const struct qp_opt no_opts[] = {
	{NULL, 0, NULL, NULL, 0},
};

static const struct qp_cmd commands[] = {
	{"run", cmd_run, "Run a recipe: execute the stages whose results are not cached, then print its reports.", "RECIPE", pipeline_opts},
	{"plan", cmd_plan, "Print which stages of a recipe are cached and which would run, and why.", "RECIPE", pipeline_opts},
	{"cache", cmd_cache, "Inspect the store: dir prints its folder, ls lists its action records, verify rehashes every object and checks every record (exit 1 if any is bad), gc frees space (least recently used first), rm KEY... forgets results.", "dir|ls|verify|gc|rm KEY...", cache_opts},
	{"stage", cmd_stage, "Run one stage instance of a recipe (its upstream stages must be cached); what build.ninja edges call.", "RECIPE STAGE_ID", stage_opts},
	{"ninja", cmd_ninja, "Write a build.ninja whose edges run the recipe's stages through the same store, for ninja to schedule.", "RECIPE", ninja_opts},
	{"report", cmd_report, "Compare reports: diff A.json B.json prints every value of two report.json files side by side.", "diff A.json B.json", report_opts},
	{"stages", cmd_stages, "List the stage kinds, or document one with its parameters.", "[KIND]", no_opts},
	{"version", cmd_version, "Print qpipe's version.", "", version_opts},
};

#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *f)
{
	fprintf(f, "usage: qpipe COMMAND [options] [args]\n\n"
	           "A declarative, cached pipeline for LLM quantization: recipe -> quantize -> export -> evaluate -> report.\n\n"
	           "Commands:\n");
	for (size_t i = 0; i < N_COMMANDS; i++)
		fprintf(f, "  %-9s %s\n", commands[i].name, commands[i].summary);
	fprintf(f, "\nRun 'qpipe COMMAND --help' for a command's options.\n\n");
	qp_cli_print_exit_codes(f);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return QP_EXIT_USAGE;
	}
	const char *name = argv[1];
	if (!strcmp(name, "-h") || !strcmp(name, "--help") || !strcmp(name, "help")) {
		usage(stdout);
		return QP_EXIT_OK;
	}
	if (!strcmp(name, "--version")) {
		printf("qpipe %s\n", QP_VERSION);
		return QP_EXIT_OK;
	}
	for (size_t i = 0; i < N_COMMANDS; i++)
		if (!strcmp(commands[i].name, name))
			return commands[i].fn(&commands[i], argc - 1, argv + 1);
	const char *names[N_COMMANDS + 1];
	for (size_t i = 0; i < N_COMMANDS; i++)
		names[i] = commands[i].name;
	names[N_COMMANDS] = NULL;
	const char *s = qp_suggest(name, names);
	if (s)
		qp_cli_error("'%s' is not a qpipe command (did you mean '%s'?)", name, s);
	else
		qp_cli_error("'%s' is not a qpipe command (see 'qpipe --help')", name);
	return QP_EXIT_USAGE;
}
