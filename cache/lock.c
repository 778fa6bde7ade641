#include "cache/lock.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "common/os.h"

/* Lock the file dir/name, creating both as needed. */
static int lock_file(int *fd, const char *dir, const char *name, int nonblock, struct qp_err *err)
{
	*fd = -1;
	char path[PATH_MAX];
	int rc = qp_os_mkdir_p(dir, err);
	if (rc)
		return rc;
	int w = snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (w < 0 || (size_t)w >= sizeof(path))
		return qp_err_set(err, QP_EINVAL, "%s: path too long", dir);
	int f = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
	if (f < 0)
		return qp_err_set(err, QP_EIO, "%s: cannot open lock:", path);
	if (flock(f, LOCK_EX | (nonblock ? LOCK_NB : 0)) != 0) {
		/* EINTR: our handlers only catch SIGINT/SIGTERM, which mean stop */
		int e = errno;
		close(f);
		if (e == EWOULDBLOCK)
			return qp_err_set(err, QP_ELOCKED, "%s: held by another process", path);
		errno = e;
		return qp_err_set(err, e == EINTR ? QP_EINTR : QP_EIO, "%s: cannot lock:", path);
	}
	*fd = f;
	return 0;
}

static int lock(int *fd, struct qp_store *s, const struct qp_hash *key, int nonblock,
                struct qp_err *err)
{
	*fd = -1;
	char hex[QP_HASH_HEX_LEN + 1], dir[PATH_MAX];
	qp_hash_hex(key, hex);
	int w = snprintf(dir, sizeof(dir), "%s/locks/%.2s", qp_store_dir(s), hex);
	if (w < 0 || (size_t)w >= sizeof(dir))
		return qp_err_set(err, QP_EINVAL, "%s: store path too long", qp_store_dir(s));
	return lock_file(fd, dir, hex + 2, nonblock, err);
}

int qp_trylock_gpu(int *fd, struct qp_store *s, const char *id, struct qp_err *err)
{
	*fd = -1;
	/* hashed: device ids may hold '/' (MIG-GPU-<uuid>/1/0) */
	struct qp_hash h;
	char hex[QP_HASH_HEX_LEN + 1], dir[PATH_MAX], name[32];
	qp_hash_buf(&h, id, strlen(id));
	qp_hash_hex(&h, hex);
	snprintf(name, sizeof(name), "gpu-%.16s", hex);
	int w = snprintf(dir, sizeof(dir), "%s/locks", qp_store_dir(s));
	if (w < 0 || (size_t)w >= sizeof(dir))
		return qp_err_set(err, QP_EINVAL, "%s: store path too long", qp_store_dir(s));
	return lock_file(fd, dir, name, 1, err);
}

int qp_lock_key(int *fd, struct qp_store *s, const struct qp_hash *key, struct qp_err *err)
{
	return lock(fd, s, key, 0, err);
}

int qp_trylock_key(int *fd, struct qp_store *s, const struct qp_hash *key, struct qp_err *err)
{
	return lock(fd, s, key, 1, err);
}

void qp_unlock(int fd)
{
	if (fd >= 0)
		close(fd);
}
