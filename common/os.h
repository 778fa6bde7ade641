/* OS calls behind one header: mapping files, atomic writes, directories.
 *
 * Atomic write protocol (git's object-file.c): write to a temporary file in
 * the destination's directory, fsync it, rename over the destination, fsync
 * the directory. A crash at any point leaves either the old file or the new
 * one, never a half-written one; stray temporaries are named ".tmp-*". */
#ifndef QP_OS_H
#define QP_OS_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

/* A read-only view of a whole file. */
struct qp_map {
	const uint8_t *data; /* NULL for an empty file */
	size_t size;         /* bytes */
};

/* Map path read-only into *out. */
int qp_os_map(struct qp_map *out, const char *path, struct qp_err *err);
/* Unmap; accepts a zeroed map. */
void qp_os_unmap(struct qp_map *map);

/* Read a whole file into a malloc'd, NUL-terminated buffer of *len bytes
 * (the NUL not counted); fails past max bytes. Caller frees *out. */
int qp_os_read_file(char **out, size_t *len, const char *path, size_t max, struct qp_err *err);

/* Create dir and its parents (mode 0777 & umask). */
int qp_os_mkdir_p(const char *dir, struct qp_err *err);

/* A file being written atomically; see the protocol above. */
struct qp_atomic_file {
	int fd;
	char tmp_path[4096];
	char dst_path[4096];
};

/* Open a temporary file beside dst. */
int qp_os_atomic_open(struct qp_atomic_file *f, const char *dst, struct qp_err *err);
/* Write all of buf (retrying short writes). */
int qp_os_atomic_write(struct qp_atomic_file *f, const void *buf, size_t len, struct qp_err *err);
/* fsync, rename onto dst, fsync the directory. Closes f either way. */
int qp_os_atomic_commit(struct qp_atomic_file *f, struct qp_err *err);
/* Close and unlink the temporary; safe after a failed commit. */
void qp_os_atomic_abort(struct qp_atomic_file *f);

/* Write buf to path atomically in one call. */
int qp_os_write_file_atomic(const char *path, const void *buf, size_t len, struct qp_err *err);

/* Like qp_os_atomic_commit, but never replaces an existing file: link(2) the
 * temporary into place, as git's finalize_object_file. A non-NULL dst
 * becomes f's destination (content-addressed files are named only once
 * written); it must be on the temporary's filesystem. If the destination
 * exists, returns QP_EEXISTS and leaves f open, so the caller can compare
 * and then qp_os_atomic_abort (keep it) or qp_os_atomic_commit (replace it);
 * otherwise closes f either way. */
int qp_os_atomic_link(struct qp_atomic_file *f, const char *dst, struct qp_err *err);
/* Rename the file at src over f's temporary, so it is committed without a
 * copy. QP_EINVAL, src untouched, where that would do harm or cannot work:
 * src is on another filesystem, is not a regular file, or has other hard
 * links that would alias the committed file. */
int qp_os_atomic_adopt(struct qp_atomic_file *f, const char *src, struct qp_err *err);
/* Append the content of the regular file src to f, passing each chunk read
 * to fn(arg, chunk, bytes) too when fn is not NULL (to hash it on the way). */
int qp_os_atomic_copy(struct qp_atomic_file *f, const char *src,
                      void (*fn)(void *arg, const void *chunk, size_t len), void *arg,
                      struct qp_err *err);

/* 1 and *size in bytes if path is a regular file (symlinks followed), else 0. */
int qp_os_file_size(const char *path, uint64_t *size);
/* Unlink a file; one already gone is success. */
int qp_os_remove(const char *path, struct qp_err *err);
/* Create a new directory <parent>/XXXXXX (mode 0700); its path into buf[n]. */
int qp_os_mkdtemp(char *buf, size_t n, const char *parent, struct qp_err *err);
/* Remove dir and all under it, best effort; never follows a symbolic link
 * and never enters another filesystem. */
void qp_os_remove_tree(const char *dir);

/* 1 if path exists (any type), 0 if not. */
int qp_os_exists(const char *path);

/* Monotonic clock in seconds. */
double qp_os_now(void);

#endif
