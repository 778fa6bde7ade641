/* run: any command, with declared inputs and outputs, keyed like every
 * other stage (DVC's stages, CI's run steps).
 *
 * The command runs under /bin/sh -c in the recipe's folder with
 * QPIPE_OUT set to a fresh folder; it must write each name in 'outs'
 * there. 'deps' are the files it reads: their content is part of the key,
 * so editing one reruns the stage. Its stdout and stderr go to run.log, an
 * output too. 'memory' caps its address space (RLIMIT_AS), so a runaway
 * command fails alone instead of dragging the machine into swap. 'gpus'
 * devices of the run's pool are its own while it runs: the executor names
 * them in CUDA_VISIBLE_DEVICES and QPIPE_GPUS (both empty for 0). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/os.h"
#include "common/path.h"
#include "common/units.h"
#include "stages/stage.h"

static const struct qp_param_decl params[] = {
	{.name = "cmd", .type = QP_P_STRING, .doc = "shell command (/bin/sh -c), run in the recipe's folder"},
	{.name = "deps", .type = QP_P_PATHS, .def = "", .doc = "files or folders the command reads"},
	{.name = "outs", .type = QP_P_LIST, .def = "", .doc = "files the command writes into $QPIPE_OUT"},
	{.name = "memory", .type = QP_P_STRING, .def = "",
	 .doc = "address-space limit of the command, e.g. 512M or 4G (default: none)"},
	{.name = "gpus", .type = QP_P_INT, .def = "0", .min = 0, .max = QP_STAGE_MAX_GPUS,
	 .doc = "GPUs the command needs from the run's pool (qpipe run --gpus); it gets its own, "
	        "named in $CUDA_VISIBLE_DEVICES and $QPIPE_GPUS, and waits until that many are free"},
	{0},
};

/* Last non-empty line of the log, for the failure message. */
static void last_line(const char *log, char *buf, size_t n)
{
	buf[0] = '\0';
	char *text = NULL;
	size_t len = 0;
	struct qp_err e;
	if (qp_os_read_file(&text, &len, log, 64u << 20, &e))
		return;
	while (len && (text[len - 1] == '\n' || text[len - 1] == '\r'))
		text[--len] = '\0';
	char *nl = strrchr(text, '\n');
	snprintf(buf, n, "%s", nl ? nl + 1 : text);
	free(text);
}

static void child(const char *dir, const char *out, const char *cmd, long long mem, int logfd)
{
	/* the command must not outlive a stage process that crashes or is killed */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	if (chdir(dir) != 0)
		_exit(126);
	setenv("QPIPE_OUT", out, 1);
	if (mem > 0) {
		struct rlimit rl = {(rlim_t)mem, (rlim_t)mem};
		setrlimit(RLIMIT_AS, &rl);
	}
	dup2(logfd, 1);
	dup2(logfd, 2);
	int devnull = open("/dev/null", O_RDONLY);
	if (devnull >= 0)
		dup2(devnull, 0);
	execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
	_exit(127);
}

static int run(struct qp_stage_ctx *ctx, struct qp_err *err)
{
	const char *cmd = qp_ctx_param(ctx, "cmd")->s;
	const struct qp_value *outs = qp_ctx_param(ctx, "outs");
	const char *mems = qp_ctx_param(ctx, "memory")->s;
	long long mem = qp_parse_size(mems);
	if (mem < 0)
		return qp_err_set(err, QP_EINVAL, "memory '%s' is not a size like 512M or 4G", mems);
	const char *out = qp_ctx_out_dir(ctx);
	char log[PATH_MAX];
	int rc = qp_path_join(log, sizeof(log), out, "run.log", err);
	if (rc)
		return rc;
	int logfd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (logfd < 0)
		return qp_err_set(err, QP_EIO, "%s: cannot create:", log);
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		close(logfd);
		return qp_err_set(err, QP_EIO, "cannot fork:");
	}
	if (pid == 0)
		child(qp_ctx_recipe_dir(ctx), out, cmd, mem, logfd);
	close(logfd);
	int status = 0;
	/* poll quickly at first (most commands are short), then every 50 ms */
	struct timespec tick = {0, 200 * 1000};
	for (long n = 0;; n++) {
		pid_t w = waitpid(pid, &status, WNOHANG);
		if (w == pid)
			break;
		if (w < 0 && errno != EINTR)
			return qp_err_set(err, QP_EIO, "waiting for the command failed:");
		/* progress reports are where an interrupt is noticed */
		if ((rc = qp_ctx_progress(ctx, "running", n, 0, err))) {
			kill(pid, SIGTERM);
			waitpid(pid, &status, 0);
			return rc;
		}
		nanosleep(&tick, NULL);
		if (tick.tv_nsec < 50 * 1000 * 1000)
			tick.tv_nsec *= 2;
	}
	char tail[512];
	if (WIFSIGNALED(status)) {
		last_line(log, tail, sizeof(tail));
		return qp_err_set(err, QP_EINVAL, "command killed by signal %d (%s)%s%s", WTERMSIG(status),
		                  strsignal(WTERMSIG(status)), tail[0] ? ": " : "", tail);
	}
	if (WEXITSTATUS(status) != 0) {
		last_line(log, tail, sizeof(tail));
		return qp_err_set(err, QP_EINVAL, "command exited with status %d%s%s", WEXITSTATUS(status),
		                  tail[0] ? ": " : "", tail);
	}
	for (size_t i = 0; i < outs->n; i++)
		if ((rc = qp_ctx_add_output(ctx, outs->list[i], err)))
			return rc;
	return qp_ctx_add_output(ctx, "run.log", err);
}

const struct qp_stage_kind qp_kind_run = {
	.name = "run",
	.version = 2, /* 2: the gpus parameter */
	.summary = "run a shell command with declared dependencies and outputs",
	.params = params,
	.run = run,
	.memory_param = "memory",
	.gpus_param = "gpus",
};
