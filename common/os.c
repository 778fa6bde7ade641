#include "common/os.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
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

/* Past this the page cache, not the syscall count, sets the speed. */
#define COPY_CHUNK (1u << 20)

/* Filesystems without hard links (FAT, some FUSE and network mounts) fail
 * link(2) with these; git falls back to rename there, and so do we. */
static int no_hard_links(int e)
{
	return e == EPERM || e == EOPNOTSUPP || e == ENOSYS;
}

int qp_os_atomic_link(struct qp_atomic_file *f, const char *dst, struct qp_err *err)
{
	if (dst) {
		size_t len = strlen(dst);
		if (len >= sizeof(f->dst_path)) {
			qp_err_set(err, QP_EINVAL, "'%s': path too long", dst);
			qp_os_atomic_abort(f);
			return QP_EINVAL;
		}
		memcpy(f->dst_path, dst, len + 1);
	}
	/* Durable before visible: the name must never point at unflushed data. */
	if (fsync(f->fd) != 0) {
		qp_err_set(err, QP_EIO, "%s: fsync failed:", f->tmp_path);
		qp_os_atomic_abort(f);
		return QP_EIO;
	}
	fchmod(f->fd, 0444);
	if (link(f->tmp_path, f->dst_path) != 0) {
		int e = errno;
		if (e == EEXIST || (no_hard_links(e) && qp_os_exists(f->dst_path)))
			return QP_EEXISTS;
		/* Without hard links a racing writer may win between the check and
		 * the rename; content addressing makes that replacement harmless. */
		if (!no_hard_links(e) || rename(f->tmp_path, f->dst_path) != 0) {
			qp_err_set(err, QP_EIO, "%s: cannot link into place:", f->dst_path);
			qp_os_atomic_abort(f);
			return QP_EIO;
		}
		f->tmp_path[0] = '\0';
	}
	fsync_dir(f->dst_path);
	/* A crash before this unlink leaves a stray .tmp-* beside a complete
	 * file: garbage for gc, never a half-written file under a real name. */
	qp_os_atomic_abort(f);
	return 0;
}

int qp_os_atomic_adopt(struct qp_atomic_file *f, const char *src, struct qp_err *err)
{
	/* O_NOFOLLOW: adopting a symlink would store the link, not the data.
	 * O_NONBLOCK: opening a FIFO must fail the type check, not hang. */
	int fd = open(src, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ELOOP)
			return qp_err_set(err, QP_EINVAL, "%s: is a symbolic link", src);
		return qp_err_set(err, errno == ENOENT ? QP_ENOTFOUND : QP_EIO, "%s: cannot open:", src);
	}
	struct stat st;
	if (fstat(fd, &st) != 0) {
		close(fd);
		return qp_err_set(err, QP_EIO, "%s: cannot stat:", src);
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return qp_err_set(err, QP_EINVAL, "%s: not a regular file", src);
	}
	if (st.st_nlink != 1) {
		close(fd);
		return qp_err_set(err, QP_EINVAL, "%s: has %ju hard links", src, (uintmax_t)st.st_nlink);
	}
	if (rename(src, f->tmp_path) != 0) {
		int e = errno;
		close(fd);
		if (e == EXDEV)
			return qp_err_set(err, QP_EINVAL, "%s: on another filesystem than '%s'", src,
			                  f->tmp_path);
		errno = e;
		return qp_err_set(err, QP_EIO, "%s: cannot rename to '%s':", src, f->tmp_path);
	}
	/* The placeholder mkostemp made is gone; fd now names the adopted file. */
	close(f->fd);
	f->fd = fd;
	return 0;
}

int qp_os_atomic_copy(struct qp_atomic_file *f, const char *src,
                      void (*fn)(void *arg, const void *chunk, size_t len), void *arg,
                      struct qp_err *err)
{
	int fd = open(src, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return qp_err_set(err, errno == ENOENT ? QP_ENOTFOUND : QP_EIO, "%s: cannot open:", src);
	struct stat st;
	if (fstat(fd, &st) != 0) {
		close(fd);
		return qp_err_set(err, QP_EIO, "%s: cannot stat:", src);
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return qp_err_set(err, QP_EINVAL, "%s: not a regular file", src);
	}
	posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	uint8_t *buf = malloc(COPY_CHUNK);
	if (!buf) {
		close(fd);
		return qp_err_nomem(err);
	}
	int rc = 0;
	for (;;) {
		ssize_t r = read(fd, buf, COPY_CHUNK);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			rc = qp_err_set(err, QP_EIO, "%s: read failed:", src);
			break;
		}
		if (r == 0)
			break;
		if (fn)
			fn(arg, buf, (size_t)r);
		rc = qp_os_atomic_write(f, buf, (size_t)r, err);
		if (rc)
			break;
	}
	free(buf);
	close(fd);
	return rc;
}

int qp_os_file_size(const char *path, uint64_t *size)
{
	struct stat st;
	if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
		return 0;
	*size = (uint64_t)st.st_size;
	return 1;
}

int qp_os_remove(const char *path, struct qp_err *err)
{
	if (unlink(path) != 0 && errno != ENOENT)
		return qp_err_set(err, QP_EIO, "%s: cannot remove:", path);
	return 0;
}

int qp_os_mkdtemp(char *buf, size_t n, const char *parent, struct qp_err *err)
{
	int w = snprintf(buf, n, "%s/XXXXXX", parent);
	if (w < 0 || (size_t)w >= n) {
		if (n)
			buf[0] = '\0';
		return qp_err_set(err, QP_EINVAL, "'%s': path too long", parent);
	}
	if (!mkdtemp(buf)) {
		qp_err_set(err, QP_EIO, "%s: cannot create directory:", parent);
		buf[0] = '\0';
		return QP_EIO;
	}
	return 0;
}

/* A stage may leave read-only directories (a copied package cache, say);
 * their entries cannot be unlinked until the directory is writable again. */
static int open_up_dir(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)ftw;
	if (type == FTW_D && (st->st_mode & 0700) != 0700)
		chmod(path, (st->st_mode & 07777) | 0700);
	return 0;
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (type == FTW_DP || type == FTW_DNR)
		rmdir(path);
	else
		unlink(path);
	return 0;
}

void qp_os_remove_tree(const char *dir)
{
	/* Refuse the two mistakes that would be a disaster to act on. */
	if (!dir || !dir[0] || strcmp(dir, "/") == 0)
		return;
	nftw(dir, open_up_dir, 16, FTW_PHYS | FTW_MOUNT);
	nftw(dir, remove_entry, 16, FTW_PHYS | FTW_MOUNT | FTW_DEPTH);
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
