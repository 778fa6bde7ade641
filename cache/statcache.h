/* The stat cache: (path, size, mtime, ctime, inode, device) -> content hash, so
 * unchanged multi-GB inputs are not rehashed on every plan.
 *
 * Racy entries (git's racy-git.adoc): a file changed within the same
 * timestamp tick as it was hashed keeps its mtime. An entry is trusted only
 * if the file's mtime is strictly older than the stat cache file's own
 * mtime as the filesystem recorded it when the cache was last written;
 * otherwise the file is rehashed. */
#ifndef QP_STATCACHE_H
#define QP_STATCACHE_H

#include "cache/hash.h"
#include "cache/store.h"
#include "common/err.h"

struct qp_statcache;

/* Load D/meta/statcache (a missing or damaged one is an empty cache). */
int qp_statcache_open(struct qp_statcache **out, struct qp_store *s, struct qp_err *err);
void qp_statcache_free(struct qp_statcache *c);
/* Content hash of the regular file at path, from the cache when it can be
 * trusted, else by reading it (and remembering the result). */
int qp_statcache_hash_file(struct qp_statcache *c, const char *path, struct qp_hash *out,
                           struct qp_err *err);
/* Write the cache back if anything changed. */
int qp_statcache_save(struct qp_statcache *c, struct qp_err *err);
/* Files, and their bytes, hashed by reading them since open (for tests
 * and benchmarks: a stat cache hit reads nothing). */
unsigned long qp_statcache_misses(const struct qp_statcache *c);
unsigned long long qp_statcache_bytes_hashed(const struct qp_statcache *c);

#endif
