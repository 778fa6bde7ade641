#include "stages/download/archive.h"

#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#include "common/os.h"
#include "stages/download/dl.h"

/* A selected link member, copied from its target once all is extracted. */
struct link {
	char *name;
	char *target;         /* normalized, relative to dest */
};

/* Normalize a relative path in place: drop "." and empty parts, fold ".."
 * into its parent. -1 if a ".." would climb above the root. */
static int normalize(char *p)
{
	char *parts[PATH_MAX / 2];
	size_t n = 0;
	for (char *s = p, *save = NULL, *t; (t = strtok_r(s, "/", &save)); s = NULL) {
		if (!strcmp(t, "."))
			continue;
		if (!strcmp(t, "..")) {
			if (n == 0)
				return -1;
			n--;
			continue;
		}
		if (n == sizeof(parts) / sizeof(parts[0]))
			return -1;
		parts[n++] = t;
	}
	char out[PATH_MAX];
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		size_t len = strlen(parts[i]);
		if (o + len + 2 > sizeof(out))
			return -1;
		if (i)
			out[o++] = '/';
		memcpy(out + o, parts[i], len);
		o += len;
	}
	out[o] = '\0';
	memcpy(p, out, o + 1);
	return 0;
}

/* Check a member's own path and put its normalized form in out. */
static int check_name(char *out, size_t n, const char *name, struct qp_err *err)
{
	if (!name || !name[0])
		return qp_err_set(err, QP_ECORRUPT, "archive member without a name");
	if (strlen(name) >= n)
		return qp_err_set(err, QP_ECORRUPT, "member '%.200s...': path too long", name);
	if (name[0] == '/')
		return qp_err_set(err, QP_EINVAL, "member '%s': absolute path", name);
	for (const char *s = name; *s;) {
		const char *e = strchr(s, '/');
		size_t len = e ? (size_t)(e - s) : strlen(s);
		if (len == 2 && s[0] == '.' && s[1] == '.')
			return qp_err_set(err, QP_EINVAL, "member '%s': path escapes the destination ('..')", name);
		s += len + (e != NULL);
	}
	for (const char *s = name; *s; s++)
		if ((unsigned char)*s < 0x20)
			return qp_err_set(err, QP_EINVAL, "member '%s': control character in path", name);
	snprintf(out, n, "%s", name);
	if (normalize(out) != 0)
		return qp_err_set(err, QP_EINVAL, "member '%s': path escapes the destination", name);
	return 0;
}

/* Where a link member points, relative to dest; -1 if outside. Symlink
 * targets are relative to the member's folder, hardlink targets to the
 * archive root. */
static int link_target(char *out, size_t n, const char *member, const char *target, int sym)
{
	if (!target || !target[0] || target[0] == '/')
		return -1;
	int w;
	const char *slash = strrchr(member, '/');
	if (sym && slash)
		w = snprintf(out, n, "%.*s/%s", (int)(slash - member), member, target);
	else
		w = snprintf(out, n, "%s", target);
	if (w < 0 || (size_t)w >= n)
		return -1;
	return normalize(out) == 0 && out[0] ? 0 : -1;
}

static int selected(const struct qp_archive_opts *o, const char *name)
{
	if (!o->n_members)
		return 1;
	for (size_t i = 0; i < o->n_members; i++) {
		const char *p = o->members[i];
		size_t len = strlen(p);
		if (fnmatch(p, name, 0) == 0)
			return 1;
		if (len && p[len - 1] == '/' && strncmp(p, name, len) == 0)
			return 1;
	}
	return 0;
}

static int list_add(struct qp_archive_list *l, const char *name, struct qp_err *err)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		char **nn = realloc(l->names, cap * sizeof(*nn));
		if (!nn)
			return qp_err_nomem(err);
		l->names = nn;
		l->cap = cap;
	}
	if (!(l->names[l->n] = strdup(name)))
		return qp_err_nomem(err);
	l->n++;
	return 0;
}

static int has(const struct qp_archive_list *l, const char *name)
{
	for (size_t i = 0; i < l->n; i++)
		if (!strcmp(l->names[i], name))
			return 1;
	return 0;
}

/* mkdir -p of the folders in rel under dest (rel's last part excluded
 * unless whole). */
static int make_dirs(const char *dest, const char *rel, int whole, struct qp_err *err)
{
	char path[PATH_MAX];
	int w = snprintf(path, sizeof(path), "%s/%s", dest, rel);
	if (w < 0 || (size_t)w >= sizeof(path))
		return qp_err_set(err, QP_EINVAL, "member '%s': path too long", rel);
	if (!whole) {
		char *s = strrchr(path, '/');
		*s = '\0';
	}
	return qp_os_mkdir_p(path, err);
}

static int open_new(const char *dest, const char *rel, int *fd, struct qp_err *err)
{
	char path[PATH_MAX];
	int w = snprintf(path, sizeof(path), "%s/%s", dest, rel);
	if (w < 0 || (size_t)w >= sizeof(path))
		return qp_err_set(err, QP_EINVAL, "member '%s': path too long", rel);
	*fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (*fd < 0 && errno == EEXIST)
		return qp_err_set(err, QP_EINVAL, "member '%s': appears twice, or collides with a folder", rel);
	if (*fd < 0)
		return qp_err_set(err, QP_EIO, "%s: cannot create:", path);
	return 0;
}

static int write_all(int fd, const void *buf, size_t n)
{
	const char *p = buf;
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int cap_error(struct qp_err *err, const char *name, uint64_t cap)
{
	return qp_err_set(err, QP_ENOMEM, "member '%s': archive expands past the cap of %" PRIu64 " bytes",
	                  name, cap);
}

static int extract_data(struct archive *a, const char *dest, const char *name,
                        struct qp_archive_list *out, const struct qp_archive_opts *o,
                        struct qp_err *err)
{
	int fd, rc = make_dirs(dest, name, 0, err);
	if (rc || (rc = open_new(dest, name, &fd, err)))
		return rc;
	char buf[1 << 16];
	for (;;) {
		la_ssize_t r = archive_read_data(a, buf, sizeof(buf));
		if (r == 0)
			break;
		if (r < 0) {
			rc = qp_err_set(err, QP_ECORRUPT, "member '%s': %s", name, archive_error_string(a));
			break;
		}
		if ((uint64_t)r > o->max_bytes - out->bytes) {
			rc = cap_error(err, name, o->max_bytes);
			break;
		}
		out->bytes += (uint64_t)r;
		if (write_all(fd, buf, (size_t)r) != 0) {
			rc = qp_err_set(err, QP_EIO, "member '%s': write failed:", name);
			break;
		}
	}
	if (close(fd) != 0 && !rc)
		rc = qp_err_set(err, QP_EIO, "member '%s': close failed:", name);
	if (!rc)
		rc = list_add(out, name, err);
	return rc;
}

/* Copy an extracted file to a link member's name. */
static int copy_link(const char *dest, const struct link *l, struct qp_archive_list *out,
                     const struct qp_archive_opts *o, struct qp_err *err)
{
	if (!has(out, l->target))
		return qp_err_set(err, QP_EINVAL, "member '%s': link target '%s' is not an extracted file",
		                  l->name, l->target);
	char src[PATH_MAX];
	int w = snprintf(src, sizeof(src), "%s/%s", dest, l->target);
	if (w < 0 || (size_t)w >= sizeof(src))
		return qp_err_set(err, QP_EINVAL, "member '%s': path too long", l->name);
	int in = open(src, O_RDONLY | O_NOFOLLOW | O_CLOEXEC), fd;
	if (in < 0)
		return qp_err_set(err, QP_EIO, "%s: cannot open:", src);
	int rc = make_dirs(dest, l->name, 0, err);
	if (rc || (rc = open_new(dest, l->name, &fd, err))) {
		close(in);
		return rc;
	}
	char buf[1 << 16];
	for (;;) {
		ssize_t r = read(in, buf, sizeof(buf));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			if (r < 0)
				rc = qp_err_set(err, QP_EIO, "%s: read failed:", src);
			break;
		}
		if ((uint64_t)r > o->max_bytes - out->bytes) {
			rc = cap_error(err, l->name, o->max_bytes);
			break;
		}
		out->bytes += (uint64_t)r;
		if (write_all(fd, buf, (size_t)r) != 0) {
			rc = qp_err_set(err, QP_EIO, "member '%s': write failed:", l->name);
			break;
		}
	}
	close(in);
	if (close(fd) != 0 && !rc)
		rc = qp_err_set(err, QP_EIO, "member '%s': close failed:", l->name);
	return rc ? rc : list_add(out, l->name, err);
}

int qp_archive_extract(struct qp_archive_list *out, const char *path, const void *mem, size_t len,
                       const char *dest, const struct qp_archive_opts *o, struct qp_err *err)
{
	memset(out, 0, sizeof(*out));
	int lrc = qp_dl_archive(err);
	if (lrc)
		return lrc;
	struct archive *a = archive_read_new();
	if (!a)
		return qp_err_nomem(err);
	archive_read_support_filter_all(a);
	archive_read_support_format_zip(a);
	archive_read_support_format_tar(a);
	archive_read_support_format_gnutar(a);
	int r = path ? archive_read_open_filename(a, path, 1 << 16)
	             : archive_read_open_memory(a, mem, len);
	const char *what = path ? path : "archive";
	if (r != ARCHIVE_OK) {
		int rc = qp_err_set(err, QP_ECORRUPT, "%s: not a readable archive: %s", what,
		                    archive_error_string(a));
		archive_read_free(a);
		return rc;
	}
	struct link *links = NULL;
	size_t nlinks = 0, entries = 0;
	uint64_t declared = 0;
	int rc = 0;
	struct archive_entry *e;
	for (;;) {
		r = archive_read_next_header(a, &e);
		if (r == ARCHIVE_EOF)
			break;
		if (r < ARCHIVE_WARN) {
			rc = qp_err_set(err, QP_ECORRUPT, "%s: after %zu member(s): %s", what, entries,
			                archive_error_string(a));
			break;
		}
		if (++entries > QP_ARCHIVE_MAX_ENTRIES) {
			rc = qp_err_set(err, QP_ENOMEM, "%s: more than %d members", what, QP_ARCHIVE_MAX_ENTRIES);
			break;
		}
		const char *raw = archive_entry_pathname(e);
		char name[PATH_MAX];
		if ((rc = check_name(name, sizeof(name), raw, err)))
			break;
		mode_t type = archive_entry_filetype(e);
		const char *hard = archive_entry_hardlink(e);
		const char *sym = type == AE_IFLNK ? archive_entry_symlink(e) : NULL;
		char target[PATH_MAX] = "";
		if (hard && link_target(target, sizeof(target), raw, hard, 0) != 0) {
			rc = qp_err_set(err, QP_EINVAL, "member '%s': hardlink to '%s' points outside the destination",
			                raw, hard);
			break;
		}
		if (type == AE_IFLNK && link_target(target, sizeof(target), name, sym, 1) != 0) {
			rc = qp_err_set(err, QP_EINVAL, "member '%s': symlink to '%s' points outside the destination",
			                raw, sym ? sym : "");
			break;
		}
		if (!hard && type != AE_IFREG && type != AE_IFDIR && type != AE_IFLNK) {
			rc = qp_err_set(err, QP_EINVAL, "member '%s': device, fifo or socket (refused)", raw);
			break;
		}
		if (archive_entry_size_is_set(e) && type == AE_IFREG && !hard) {
			int64_t sz = archive_entry_size(e);
			if (sz < 0 || (uint64_t)sz > o->max_bytes - declared) {
				rc = cap_error(err, raw, o->max_bytes);
				break;
			}
			declared += (uint64_t)sz;
		}
		if (!name[0] || !selected(o, name))
			continue;
		if (type == AE_IFDIR) {
			if ((rc = make_dirs(dest, name, 1, err)))
				break;
		} else if (hard || type == AE_IFLNK) {
			struct link *nl = realloc(links, (nlinks + 1) * sizeof(*nl));
			if (!nl) {
				rc = qp_err_nomem(err);
				break;
			}
			links = nl;
			links[nlinks].name = strdup(name);
			links[nlinks].target = strdup(target);
			if (!links[nlinks].name || !links[nlinks].target) {
				free(links[nlinks].name);
				free(links[nlinks].target);
				rc = qp_err_nomem(err);
				break;
			}
			nlinks++;
		} else if ((rc = extract_data(a, dest, name, out, o, err))) {
			break;
		}
	}
	for (size_t i = 0; i < nlinks; i++) {
		if (!rc)
			rc = copy_link(dest, &links[i], out, o, err);
		free(links[i].name);
		free(links[i].target);
	}
	free(links);
	archive_read_free(a);
	if (rc)
		qp_archive_list_free(out);
	return rc;
}

void qp_archive_list_free(struct qp_archive_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->names[i]);
	free(l->names);
	memset(l, 0, sizeof(*l));
}
