/* Plan and execute an expanded graph against the store.
 *
 * Plan: each instance is cached (its key has a usable action record) or
 * will run, with the reason; the action log (cache/actlog.h) vouches for
 * records already checked, so a hit costs a stat, not a parse. Execute: up to `jobs` stages at once, each in
 * its own process (a crash or out-of-memory kill fails that stage alone),
 * started in graph order as their inputs become ready. A stage writes into
 * a scratch folder; its outputs are moved into the store, and only then is
 * its action record written, so a crash leaves no record that points at
 * missing outputs. Each stage holds its key's lock while it runs, so qpipe
 * processes sharing a store never run one stage twice. A stage that needs
 * GPUs (stage.h) starts only when that many devices of the pool are free,
 * here and in every process sharing the store (a lock per device); its
 * process sees just those as CUDA_VISIBLE_DEVICES. A failure stops
 * further starts (unless keep_going) and skips everything downstream of
 * it; an interrupt stops further starts and the running stages. */
#ifndef QP_EXEC_H
#define QP_EXEC_H

#include <signal.h>
#include <stdio.h>

#include "cache/store.h"
#include "pipeline/graph.h"

enum qp_inst_state {
	QP_INST_CACHED,   /* plan: a usable record exists */
	QP_INST_TO_RUN,   /* plan: will run */
	QP_INST_RAN,      /* executed now */
	QP_INST_FAILED,
	QP_INST_SKIPPED,  /* an upstream stage failed */
};

struct qp_entry {
	enum qp_inst_state state;
	const char *why;              /* TO_RUN: "new", "record unusable: ..."; SKIPPED: why */
	struct qp_artifact art;       /* CACHED and RAN: what it produced; for a CACHED entry
	                                 the action log vouched for, metrics stay NULL until a
	                                 stage that reads it runs */
	json_t *record;               /* CACHED and RAN: the action record (owned); NULL as
	                                 long as the metrics are */
	double wall_s;                /* RAN, FAILED: seconds */
	long peak_rss_kb;             /* RAN, FAILED: the stage process's peak resident set */
	long long mem_estimate;       /* bytes the scheduler reserved for it */
	const char *gpus;             /* from its start: the device ids it was given, "0,3"; NULL: none */
	char error[QP_ERR_MSG_MAX];   /* FAILED: the message */
};

/* Callbacks from the executor; only cmd/ prints. Any may be NULL. */
struct qp_exec_events {
	void *ud;
	void (*stage_start)(void *ud, const struct qp_instance *in, const struct qp_entry *e,
	                    size_t done, size_t total);
	void (*stage_end)(void *ud, const struct qp_instance *in, const struct qp_entry *e);
	void (*progress)(void *ud, const struct qp_instance *in, const char *what, int64_t done,
	                 int64_t total);
};

struct qp_exec_opts {
	int threads;                  /* for stages that use threads; >= 1 */
	int jobs;                     /* stages run at once, each in its own process; >= 1 */
	int keep_going;               /* after a failure, go on with what does not depend on it */
	long long memory_budget;      /* bytes the running stages' estimates may add up to; 0: none */
	size_t n_gpus;                /* the GPU pool: how many devices, at most QP_STAGE_MAX_GPUS (a stage's are a bit set) */
	const char *const *gpus;      /* their ids as CUDA_VISIBLE_DEVICES names them ("0", "GPU-<uuid>") */
	struct qp_exec_events events;
	/* Set non-zero (by a signal handler) to stop: no further stage starts,
	 * the running one stops at its next progress report, nothing of it is
	 * stored. NULL: never. */
	volatile sig_atomic_t *interrupt;
};

struct qp_runner;

int qp_runner_new(struct qp_runner **out, const struct qp_graph *g, struct qp_store *s,
                  const struct qp_exec_opts *opts, struct qp_err *err);
void qp_runner_free(struct qp_runner *r);
/* Decide cached or to-run for every instance. A stage to run that needs
 * more GPUs than the pool holds fails the plan (QP_EINVAL). */
int qp_runner_plan(struct qp_runner *r, struct qp_err *err);
/* Run what the plan says; returns the first failure's code (message in err). */
int qp_runner_execute(struct qp_runner *r, struct qp_err *err);
/* Run instance idx alone (what `qpipe stage` does for ninja): every stage
 * it depends on must already be cached. */
int qp_runner_execute_one(struct qp_runner *r, size_t idx, struct qp_err *err);
/* Remember each cached or executed instance's key for this recipe, so the
 * next plan can say what changed. */
int qp_runner_save_index(struct qp_runner *r, struct qp_err *err);
/* Entry of instance i (valid until qp_runner_free). */
const struct qp_entry *qp_runner_entry(const struct qp_runner *r, size_t i);
/* GPUs instance i needs from the pool. */
int qp_runner_gpus(const struct qp_runner *r, size_t i);
/* Action records this plan and run read in full, to check or for their
 * metrics: hits the action log vouches for need none. */
size_t qp_runner_records_read(const struct qp_runner *r);

#endif
