#include "common/os.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int qp_os_map(struct qp_map *out, const char *path, struct qp_err *err)
{
	out->data = NULL;
	out->size = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return qp_err_set(err, errno == ENOENT ? QP_ENOTFOUND : QP_EIO, "%s: cannot open:", path);
	struct stat st;
	if (fstat(fd, &st) != 0) {
		close(fd);
		return qp_err_set(err, QP_EIO, "%s: cannot stat:", path);
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return qp_err_set(err, QP_EINVAL, "%s: not a regular file", path);
	}
	if (st.st_size > 0) {
		void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
		if (p == MAP_FAILED) {
			close(fd);
			return qp_err_set(err, QP_EIO, "%s: cannot map:", path);
		}
		out->data = p;
		out->size = (size_t)st.st_size;
	}
	close(fd);
	return 0;
}

void qp_os_unmap(struct qp_map *map)
{
	if (map->data)
		munmap((void *)map->data, map->size);
	map->data = NULL;
	map->size = 0;
}

int qp_os_read_file(char **out, size_t *len, const char *path, size_t max, struct qp_err *err)
{
	*out = NULL;
	FILE *f = fopen(path, "rb");
	if (!f)
		return qp_err_set(err, errno == ENOENT ? QP_ENOTFOUND : QP_EIO, "%s: cannot open:", path);
	size_t cap = 4096, n = 0;
	char *buf = malloc(cap);
	if (!buf) {
		fclose(f);
		return qp_err_nomem(err);
	}
	for (;;) {
		if (n + 1 >= cap) {
			/* Only content past max is too much: testing cap here refused a
			 * file of exactly max bytes whenever max + 1 was a power of two. */
			if (n > max || cap > SIZE_MAX / 2) {
				free(buf);
				fclose(f);
				return qp_err_set(err, QP_ENOMEM, "%s: file is larger than %zu bytes", path, max);
			}
			char *nb = realloc(buf, cap * 2);
			if (!nb) {
				free(buf);
				fclose(f);
				return qp_err_nomem(err);
			}
			buf = nb;
			cap *= 2;
		}
		size_t r = fread(buf + n, 1, cap - 1 - n, f);
		n += r;
		if (r == 0)
			break;
	}
	int bad = ferror(f);
	fclose(f);
	if (bad) {
		free(buf);
		return qp_err_set(err, QP_EIO, "%s: read error", path);
	}
	if (n > max) {
		free(buf);
		return qp_err_set(err, QP_ENOMEM, "%s: file is larger than %zu bytes", path, max);
	}
	buf[n] = '\0';
	*out = buf;
	if (len)
		*len = n;
	return 0;
}

int qp_os_mkdir_p(const char *dir, struct qp_err *err)
{
	char path[4096];
	size_t n = strlen(dir);
	if (n == 0 || n >= sizeof(path))
		return qp_err_set(err, QP_EINVAL, "'%s': bad directory path", dir);
	memcpy(path, dir, n + 1);
	for (size_t i = 1; i <= n; i++) {
		if (path[i] == '/' || path[i] == '\0') {
			char c = path[i];
			path[i] = '\0';
			if (mkdir(path, 0777) != 0) {
				struct stat st;
				/* EEXIST from a file in the way is not success: every
				 * later open under it would fail with a vaguer error. */
				if (errno != EEXIST)
					return qp_err_set(err, QP_EIO, "%s: cannot create directory:", path);
				if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
					return qp_err_set(err, QP_EIO, "%s: exists and is not a directory", path);
			}
			path[i] = c;
		}
	}
	return 0;
}

int qp_os_atomic_open(struct qp_atomic_file *f, const char *dst, struct qp_err *err)
{
	/* An empty tmp_path tells qp_os_atomic_abort there is nothing to unlink;
	 * without it, abort after a failed open unlinked an uninitialized path. */
	f->fd = -1;
	f->tmp_path[0] = '\0';
	f->dst_path[0] = '\0';
	size_t len = strlen(dst);
	if (len >= sizeof(f->dst_path) - 16)
		return qp_err_set(err, QP_EINVAL, "'%s': path too long", dst);
	memcpy(f->dst_path, dst, len + 1);
	char dircopy[4096];
	memcpy(dircopy, dst, len + 1);
	const char *dir = dirname(dircopy);
	snprintf(f->tmp_path, sizeof(f->tmp_path), "%s/.tmp-XXXXXX", dir);
	f->fd = mkostemp(f->tmp_path, O_CLOEXEC);
	if (f->fd < 0) {
		f->tmp_path[0] = '\0';
		return qp_err_set(err, QP_EIO, "%s: cannot create temporary file:", dir);
	}
	return 0;
}

int qp_os_atomic_write(struct qp_atomic_file *f, const void *buf, size_t len, struct qp_err *err)
{
	const uint8_t *p = buf;
	while (len > 0) {
		ssize_t w = write(f->fd, p, len);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return qp_err_set(err, QP_EIO, "%s: write failed:", f->tmp_path);
		}
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

static void fsync_dir(const char *path)
{
	char dircopy[4096];
	snprintf(dircopy, sizeof(dircopy), "%s", path);
	int dfd = open(dirname(dircopy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
}

int qp_os_atomic_commit(struct qp_atomic_file *f, struct qp_err *err)
{
	if (fsync(f->fd) != 0) {
		qp_err_set(err, QP_EIO, "%s: fsync failed:", f->tmp_path);
		qp_os_atomic_abort(f);
		return QP_EIO;
	}
	/* Stored objects are read-only: nobody edits them in place. */
	fchmod(f->fd, 0444);
	close(f->fd);
	f->fd = -1;
	/* Once renamed or unlinked, the temporary's name is free for another
	 * writer's mkostemp; forget it so a later abort cannot unlink theirs. */
	if (rename(f->tmp_path, f->dst_path) != 0) {
		qp_err_set(err, QP_EIO, "%s: cannot rename into place:", f->dst_path);
		unlink(f->tmp_path);
		f->tmp_path[0] = '\0';
		return QP_EIO;
	}
	f->tmp_path[0] = '\0';
	fsync_dir(f->dst_path);
	return 0;
}

void qp_os_atomic_abort(struct qp_atomic_file *f)
{
	if (f->fd >= 0) {
		close(f->fd);
		f->fd = -1;
	}
	if (f->tmp_path[0]) {
		unlink(f->tmp_path);
		f->tmp_path[0] = '\0';
	}
}

int qp_os_write_file_atomic(const char *path, const void *buf, size_t len, struct qp_err *err)
{
	struct qp_atomic_file f;
	int rc = qp_os_atomic_open(&f, path, err);
	if (rc)
		return rc;
	rc = qp_os_atomic_write(&f, buf, len, err);
	if (rc) {
		qp_os_atomic_abort(&f);
		return rc;
	}
	return qp_os_atomic_commit(&f, err);
}

int qp_os_exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

double qp_os_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
