/* The action log: action records already found usable, and what they list,
 * so that a plan's cache hits need neither read nor parse a record (the
 * role of ninja's .ninja_log).
 *
 * An entry remembers the record file as stat(2) saw it when the record was
 * read and checked in full (inode, size, mtime, ctime) and the files it
 * lists. A lookup trusts the entry only while the record file still stats
 * the same: a record rewritten (always by rename: a new inode), removed by
 * `qpipe cache rm` or gc, or touched by anyone since, sends the caller back
 * to the full read. The objects the record lists are not stat'ed again:
 * objects are immutable, and gc removes only those no usable record lists;
 * an object deleted by hand is what `qpipe cache verify` reports, and a
 * caller that meets one forgets the entry (qp_actlog_forget).
 *
 * The log is only an accelerator: a missing, damaged or lost entry costs a
 * full read of that record, never a wrong hit. Layout atop actlog.c. */
#ifndef QP_ACTLOG_H
#define QP_ACTLOG_H

#include <stddef.h>

#include "cache/hash.h"
#include "cache/store.h"
#include "common/err.h"

struct qp_actlog;

/* One file a record lists. */
struct qp_actlog_file {
	const char *name;     /* the output's name, "model.gguf" */
	const char *value;    /* object: its 32-hex hash; external: its absolute path */
	int external;         /* 1: a file outside the store (model.local) */
};

/* What the log knows of one record. */
struct qp_actlog_entry {
	size_t n_files;
	const struct qp_actlog_file *files;
	long long mtime_ns;   /* the record file's mtime (ns since the epoch) when checked */
};

/* Load D/meta/actlog (a missing or damaged one is an empty log). */
int qp_actlog_open(struct qp_actlog **out, struct qp_store *s, struct qp_err *err);
void qp_actlog_free(struct qp_actlog *l);
/* The entry for key if the record file is unchanged since it was noted
 * (one stat), else NULL. Valid until the next note or forget of key, or
 * qp_actlog_free. */
const struct qp_actlog_entry *qp_actlog_lookup(struct qp_actlog *l, const struct qp_hash *key);
/* Remember that key's record, as its file stats now, is usable and lists
 * files; to be appended by qp_actlog_flush. Names or values holding a tab
 * or a newline cannot be written: such a record is simply not remembered. */
void qp_actlog_note(struct qp_actlog *l, const struct qp_hash *key,
                    const struct qp_actlog_file *files, size_t n_files);
/* Forget key (its record turned out unusable after all). */
void qp_actlog_forget(struct qp_actlog *l, const struct qp_hash *key);
/* Append what was noted or forgotten since the last flush, in one write;
 * rewrite the file instead when most of its lines are superseded. */
int qp_actlog_flush(struct qp_actlog *l, struct qp_err *err);
/* Lines found malformed or failing their check, at open or when first
 * looked up (tests). */
size_t qp_actlog_bad_lines(const struct qp_actlog *l);

#endif
