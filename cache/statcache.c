/* Format of D/meta/statcache, version 2 (text, one entry per line):
 *
 *   qpipe-statcache 2\n
 *   <32 hex hash>\t<size>\t<mtime_ns>\t<ctime_ns>\t<inode>\t<device>\t<absolute path>\n ...
 *
 * ctime is compared too: a tool that restores mtime after writing (rsync -t,
 * touch -r) cannot restore ctime.
 *
 * Unknown versions and malformed lines are dropped (a miss, never an
 * error). The file's own mtime is the racy-clean reference (statcache.h). */
#include "cache/statcache.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAGIC "qpipe-statcache 2\n"
#define MAX_ENTRIES 1000000

struct entry {
	char *path;
	long long size, mtime_ns, ctime_ns, ino, dev;
	struct qp_hash hash;
};

struct qp_statcache {
	struct qp_store *store;
	struct entry *e;
	size_t n, cap;
	long long written_ns;   /* mtime of the cache file when loaded; 0 if none */
	int dirty;
	unsigned long misses;
	unsigned long long bytes_hashed;
};

static long long mtime_ns(const struct stat *st)
{
	return (long long)st->st_mtim.tv_sec * 1000000000LL + st->st_mtim.tv_nsec;
}

static long long ctime_ns(const struct stat *st)
{
	return (long long)st->st_ctim.tv_sec * 1000000000LL + st->st_ctim.tv_nsec;
}

static struct entry *find(struct qp_statcache *c, const char *path)
{
	for (size_t i = 0; i < c->n; i++)
		if (!strcmp(c->e[i].path, path))
			return &c->e[i];
	return NULL;
}

static struct entry *add(struct qp_statcache *c, const char *path)
{
	if (c->n == c->cap) {
		size_t nc = c->cap ? c->cap * 2 : 64;
		if (nc > MAX_ENTRIES)
			return NULL;
		struct entry *ne = realloc(c->e, nc * sizeof(*ne));
		if (!ne)
			return NULL;
		c->e = ne;
		c->cap = nc;
	}
	struct entry *e = &c->e[c->n];
	memset(e, 0, sizeof(*e));
	e->path = strdup(path);
	if (!e->path)
		return NULL;
	c->n++;
	return e;
}

static void load(struct qp_statcache *c)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/meta/statcache", qp_store_dir(c->store));
	struct stat st;
	if (stat(path, &st) != 0)
		return;
	char *text = NULL;
	struct qp_err e = {0};
	if (qp_store_get_meta(c->store, "statcache", &text, &e))
		return;
	if (strncmp(text, MAGIC, strlen(MAGIC)) != 0) {
		free(text);
		return;
	}
	c->written_ns = mtime_ns(&st);
	char *save = NULL;
	for (char *line = strtok_r(text + strlen(MAGIC), "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		char hex[QP_HASH_HEX_LEN + 1];
		long long size, mt, ct, ino, dev;
		int used = 0;
		if (sscanf(line, "%32s\t%lld\t%lld\t%lld\t%lld\t%lld\t%n", hex, &size, &mt, &ct, &ino, &dev,
		           &used) != 6 ||
		    !used || line[used] != '/')
			continue;
		struct qp_hash h;
		if (qp_hash_from_hex(&h, hex) || find(c, line + used))
			continue;
		struct entry *en = add(c, line + used);
		if (!en)
			break;
		*en = (struct entry){en->path, size, mt, ct, ino, dev, h};
	}
	free(text);
}

int qp_statcache_open(struct qp_statcache **out, struct qp_store *s, struct qp_err *err)
{
	struct qp_statcache *c = calloc(1, sizeof(*c));
	if (!c)
		return qp_err_nomem(err);
	c->store = s;
	load(c);
	*out = c;
	return 0;
}

void qp_statcache_free(struct qp_statcache *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n; i++)
		free(c->e[i].path);
	free(c->e);
	free(c);
}

int qp_statcache_hash_file(struct qp_statcache *c, const char *path, struct qp_hash *out,
                           struct qp_err *err)
{
	struct stat st;
	if (stat(path, &st) != 0)
		return qp_err_set(err, errno == ENOENT ? QP_ENOTFOUND : QP_EIO, "%s: cannot stat:", path);
	struct entry *e = path[0] == '/' ? find(c, path) : NULL;
	if (e && e->size == (long long)st.st_size && e->mtime_ns == mtime_ns(&st) &&
	    e->ctime_ns == ctime_ns(&st) &&
	    e->ino == (long long)st.st_ino && e->dev == (long long)st.st_dev &&
	    mtime_ns(&st) < c->written_ns) {
		*out = e->hash;
		return 0;
	}
	int rc = qp_hash_file(out, path, err);
	if (rc)
		return rc;
	c->misses++;
	c->bytes_hashed += (unsigned long long)st.st_size;
	if (path[0] != '/' || strchr(path, '\n') || strchr(path, '\t'))
		return 0;
	if (!e && !(e = add(c, path)))
		return 0; /* forgetting is safe: the next plan rehashes */
	e->size = (long long)st.st_size;
	e->mtime_ns = mtime_ns(&st);
	e->ctime_ns = ctime_ns(&st);
	e->ino = (long long)st.st_ino;
	e->dev = (long long)st.st_dev;
	e->hash = *out;
	c->dirty = 1;
	return 0;
}

int qp_statcache_save(struct qp_statcache *c, struct qp_err *err)
{
	if (!c->dirty)
		return 0;
	size_t cap = strlen(MAGIC) + 1, len = 0;
	for (size_t i = 0; i < c->n; i++)
		cap += strlen(c->e[i].path) + 128;
	char *text = malloc(cap);
	if (!text)
		return qp_err_nomem(err);
	len += (size_t)snprintf(text, cap, "%s", MAGIC);
	for (size_t i = 0; i < c->n; i++) {
		char hex[QP_HASH_HEX_LEN + 1];
		qp_hash_hex(&c->e[i].hash, hex);
		len += (size_t)snprintf(text + len, cap - len, "%s\t%lld\t%lld\t%lld\t%lld\t%lld\t%s\n",
		                        hex, c->e[i].size, c->e[i].mtime_ns, c->e[i].ctime_ns, c->e[i].ino,
		                        c->e[i].dev, c->e[i].path);
	}
	int rc = qp_store_put_meta(c->store, "statcache", text, err);
	free(text);
	if (!rc)
		c->dirty = 0;
	return rc;
}

unsigned long long qp_statcache_bytes_hashed(const struct qp_statcache *c)
{
	return c->bytes_hashed;
}

unsigned long qp_statcache_misses(const struct qp_statcache *c)
{
	return c->misses;
}
