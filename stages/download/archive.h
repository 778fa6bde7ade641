/* Unpacking downloaded archives (zip, tar, tar.gz, tar.xz, tar.zst) with
 * libarchive, treating every header as hostile.
 *
 * Every member is checked before anything is written, selected or not:
 * its path must be relative and stay inside the destination (no leading
 * '/', no ".." part); a symbolic or hard link must point inside it too;
 * device files, fifos and sockets are refused; there are at most
 * QP_ARCHIVE_MAX_ENTRIES members. Bytes written are capped (max_bytes),
 * checked against each header's size and again while decompressing, so a
 * bomb stops at the cap. Nothing is ever created as a link on disk: a
 * selected link member becomes a copy of the (extracted) file it names,
 * and files are created with O_EXCL | O_NOFOLLOW. Each error names the
 * member. */
#ifndef QP_DL_ARCHIVE_H
#define QP_DL_ARCHIVE_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define QP_ARCHIVE_MAX_ENTRIES 1000000

struct qp_archive_opts {
	const char *const *members;   /* fnmatch globs selecting members; NULL/0: all */
	size_t n_members;
	uint64_t max_bytes;           /* cap on bytes written, in total */
};

/* Extracted regular files, as relative paths (malloc'd). */
struct qp_archive_list {
	char **names;
	size_t n, cap;
	uint64_t bytes;               /* total written */
};

/* Extract the archive at path (or, with path NULL, in mem[len]) into the
 * existing folder dest. On failure dest may hold some files. */
int qp_archive_extract(struct qp_archive_list *out, const char *path, const void *mem, size_t len,
                       const char *dest, const struct qp_archive_opts *o, struct qp_err *err);
/* Free the names; accepts a zeroed list. */
void qp_archive_list_free(struct qp_archive_list *l);

#endif
