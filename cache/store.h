/* The content-addressed store and its action records.
 *
 * Layout under the store directory (specified in full atop store.c):
 *   format                     "qpipe-store 1": the layout's version
 *   objects/<h0h1>/<h2..h31>   immutable content, named by its XXH3-128
 *   actions/<k0k1>/<k2..k31>   one action record per executed stage key (JSON)
 *   tmp/                       scratch space for stages and temporaries
 * Objects and records are written atomically (temp file in the same
 * directory, fsync, rename); an object that already exists is already
 * stored. A missing, unreadable or wrongly versioned action record is a
 * cache miss, never an error. */
#ifndef QP_STORE_H
#define QP_STORE_H

#include <stddef.h>
#include <sys/stat.h>

#include <jansson.h>

#include "cache/hash.h"
#include "common/err.h"

struct qp_store;

/* Open (creating if needed) the store at dir. */
int qp_store_open(struct qp_store **out, const char *dir, struct qp_err *err);
void qp_store_free(struct qp_store *s);
/* The store's root directory; valid until qp_store_free. */
const char *qp_store_dir(const struct qp_store *s);

/* Move (rename) or copy the file at src into objects/, returning its hash.
 * src is consumed: it no longer exists afterwards (nor, once moved in,
 * after a failure). A symlink or a file with other hard links is copied. */
int qp_store_put_file(struct qp_store *s, const char *src, struct qp_hash *out, struct qp_err *err);
/* Store a buffer as an object. */
int qp_store_put_buf(struct qp_store *s, const void *data, size_t len, struct qp_hash *out,
                     struct qp_err *err);
/* Path of an object into buf (whether or not it exists). */
void qp_store_object_path(const struct qp_store *s, const struct qp_hash *h, char *buf, size_t n);
int qp_store_has_object(const struct qp_store *s, const struct qp_hash *h);

/* Make a fresh empty scratch directory under tmp/ into buf (for a stage to
 * write its outputs into before they are stored). */
int qp_store_scratch_dir(struct qp_store *s, char *buf, size_t n, struct qp_err *err);
/* Remove a scratch directory and everything in it. */
void qp_store_scratch_remove(const char *dir);

/* partial/<key>/: where a long stage keeps finished pieces of its work
 * (GPTQ's layers) so a killed run resumes where it stopped. Created on
 * demand into buf; its content is only valid for that key, which covers
 * everything the stage depends on. Removed when the stage's result is
 * stored (qp_store_partial_remove); gc removes stale ones. */
int qp_store_partial_dir(struct qp_store *s, const struct qp_hash *key, char *buf, size_t n, struct qp_err *err);
void qp_store_partial_remove(const struct qp_store *s, const struct qp_hash *key);

/* Action records. The record is a JSON object; the store adds "format" and
 * "version" fields on write and checks them on read. */
int qp_store_put_action(struct qp_store *s, const struct qp_hash *key, json_t *record,
                        struct qp_err *err);
/* *out = the record (caller decrefs), or NULL on a miss (returns 0). A
 * record whose objects are missing is a miss too. */
int qp_store_get_action(struct qp_store *s, const struct qp_hash *key, json_t **out,
                        struct qp_err *err);

/* stat(2) of key's action record; -1 (errno set) if it cannot be stat'ed. */
int qp_store_stat_action(const struct qp_store *s, const struct qp_hash *key, struct stat *st);
/* The action record version this qpipe writes and reads (actlog.c keys on it). */
int qp_store_record_version(void);

/* Why a lookup found no usable record; the CLI warns on all but ABSENT. */
enum qp_miss_kind {
	QP_MISS_NONE = 0,   /* a hit */
	QP_MISS_ABSENT,     /* no record for the key: the ordinary miss */
	QP_MISS_UNREADABLE, /* the record exists but cannot be read (I/O, size cap) */
	QP_MISS_CORRUPT,    /* not a well-formed action record */
	QP_MISS_VERSION,    /* a record version this qpipe does not read */
	QP_MISS_OBJECT,     /* an output it lists is no longer in the store */
};

struct qp_miss {
	enum qp_miss_kind kind;
	char why[QP_ERR_MSG_MAX]; /* one line, record path first; "" on a hit */
};

/* qp_store_get_action, also saying in *miss (may be NULL) why a miss was one. */
int qp_store_get_action_ex(struct qp_store *s, const struct qp_hash *key, json_t **out,
                           struct qp_miss *miss, struct qp_err *err);

/* Call fn for every usable action record, in key order; unusable ones are
 * skipped. A non-zero return from fn stops the walk and is returned. */
int qp_store_list_actions(struct qp_store *s, int (*fn)(void *ud, const char *key_hex, json_t *rec),
                          void *ud, struct qp_err *err);

/* Small named files beside the store (D/meta/<name>), written atomically.
 * get: *text is malloc'd and NUL-terminated, caller frees; QP_ENOTFOUND if
 * absent. */
int qp_store_put_meta(struct qp_store *s, const char *name, const char *text, struct qp_err *err);
int qp_store_get_meta(struct qp_store *s, const char *name, char **text, struct qp_err *err);

struct qp_verify {
	size_t objects, bad_objects;   /* objects read; those whose content is not their name */
	size_t records, bad_records;   /* action records read; unusable ones */
	size_t temporaries;            /* writers' .tmp-* files (crashed or in flight): harmless */
};

/* Rehash every object and check every action record; each problem is
 * passed to problem() as one line naming the path. Fails only on I/O that
 * stops the walk itself. */
int qp_store_verify(struct qp_store *s, struct qp_verify *out,
                    void (*problem)(void *ud, const char *what), void *ud, struct qp_err *err);

/* Mark key's record as just used (gc removes least recently used first). */
int qp_store_touch_action(struct qp_store *s, const struct qp_hash *key);
/* Remove key's action record; its objects go at the next gc. */
int qp_store_rm_action(struct qp_store *s, const struct qp_hash *key, struct qp_err *err);

struct qp_gc_stats {
	size_t records_removed, objects_removed, temporaries_removed;
	unsigned long long bytes_before;   /* all objects, before */
	unsigned long long bytes_after;    /* objects the surviving records use */
	unsigned long long bytes_freed;
};

/* Drop least recently used action records until the objects the rest use
 * fit in max_bytes (0: no limit, only unusable records go), then every
 * object no record uses, and writers' temporaries; nothing younger than
 * grace_s seconds is touched (a run in progress may still need it).
 * QP_ELOCKED if another gc runs. */
int qp_store_gc(struct qp_store *s, unsigned long long max_bytes, double grace_s,
                struct qp_gc_stats *st, struct qp_err *err);

/* Crash tests: fn(arg, step) runs at each step of an object or record
 * commit: "tmp-open", "tmp-half", "tmp-full", "placed" (store.c). A fn that
 * _exit()s there leaves what a writer killed at that step leaves. */
void qp_store_set_step_hook(struct qp_store *s, void (*fn)(void *arg, const char *step),
                            void *arg);

#endif
