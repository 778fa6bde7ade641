/* Per-key locks: two qpipe processes sharing a store never run the same
 * stage at once.
 *
 * Calling sequence (the executor's child, for one stage key):
 *   1. qp_lock_key(&fd, store, key)  blocks until no other process holds it
 *   2. look the action record up again: another process may have just
 *      finished this very stage; if so, use its result
 *   3. run the stage, commit its outputs and record
 *   4. qp_unlock(fd), or simply exit: the kernel drops flock(2) locks of a
 *      dead process, so a crash never leaves a stale lock behind.
 * Lock files live in <store>/locks/<k0k1>/<k2..k31> and are never removed
 * while qpipe runs (removing a lock file that another process is about to
 * open would let two processes hold "the" lock); gc may remove them. */
#ifndef QP_LOCK_H
#define QP_LOCK_H

#include "cache/hash.h"
#include "cache/store.h"
#include "common/err.h"

/* Block until this process holds the lock of key; *fd is the lock. */
int qp_lock_key(int *fd, struct qp_store *s, const struct qp_hash *key, struct qp_err *err);
/* Like qp_lock_key but fails with QP_ELOCKED at once if it is held. */
int qp_trylock_key(int *fd, struct qp_store *s, const struct qp_hash *key, struct qp_err *err);
/* Take the lock of GPU device id (as CUDA_VISIBLE_DEVICES names it) at
 * once, or fail with QP_ELOCKED: processes sharing the store, ninja's
 * `qpipe stage` edges among them, so never hand one device to two stages.
 * The file is <store>/locks/gpu-<16 hex of the id's hash>. */
int qp_trylock_gpu(int *fd, struct qp_store *s, const char *id, struct qp_err *err);
/* Release; accepts -1. */
void qp_unlock(int fd);

#endif
