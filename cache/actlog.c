/* The action log (actlog.h), D/meta/actlog, version 1: text, appended to.
 *
 *   qpipe-actlog 1 <record version>\n
 *   <key>\t<ino>\t<size>\t<mtime_ns>\t<ctime_ns>\t<n>{\t<o|x>\t<name>\t<value>}*n\t<check>\n
 *   <key>\t-\t<check>\n
 *
 * <record version> is the action record version (store.c) the entries
 * vouch for; another one makes the whole log empty. The first line form
 * says key's record file had that inode, size, mtime and ctime (ns) when it
 * was found usable, and lists n files: 'o' an object by its hash, 'x' an
 * external file by its absolute path. The second form forgets key. Later
 * lines win. <check> is the first 16 hex digits of the XXH3-128 of the line
 * before "\t<check>", so a line torn by a crash, or a stray byte, is
 * skipped like any malformed one: a miss, never an error.
 *
 * Writers append whole lines with one write(2) on O_APPEND, so processes
 * sharing a store may append at once. When more than COMPACT_MIN lines
 * hold more than COMPACT_RATIO lines per live entry, the log is rewritten
 * (temporary file, rename) with one line per entry whose record still
 * stats the same; lines another process appends meanwhile may be lost,
 * which costs only a full read of those records (samurai's log.c). */
#include "cache/actlog.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/arena.h"
#include "common/os.h"

#define MAGIC "qpipe-actlog 1"
#define NAME "actlog"
#define LOG_MAX ((size_t)256 << 20)
#define COMPACT_MIN 1000
#define COMPACT_RATIO 3
#define CHECK_LEN 16

struct ent {
	struct qp_hash key;
	char *body;           /* the line after the key, until parsed */
	int parsed;           /* body parsed into the fields below */
	int forgotten;        /* a forget line, or a body that did not parse */
	long long ino, size, mtime_ns, ctime_ns;   /* the record file when it was checked */
	struct qp_actlog_entry pub;
};

struct qp_actlog {
	struct qp_store *store;
	struct qp_arena *arena;   /* entries, their file arrays and strings */
	struct ent **slots;       /* open addressing by key; NULL: empty */
	size_t cap;               /* slots, a power of two */
	size_t n;                 /* distinct keys */
	size_t lines;             /* entry lines in the file, as read plus as appended */
	size_t bad;               /* lines dropped at load */
	int exists;               /* the file was there with our header */
	char *text;               /* the file as read; entries' strings point into it */
	char **fields;            /* scratch for parse_body: MAX_FIELDS + 1 */
	char *pending;            /* lines to append */
	size_t plen, pcap;
	char path[PATH_MAX];
};

static long long ns(const struct timespec *t)
{
	return (long long)t->tv_sec * 1000000000LL + t->tv_nsec;
}

static size_t slot_of(const struct qp_actlog *l, const struct qp_hash *key)
{
	uint64_t h;
	memcpy(&h, key->b, sizeof(h)); /* a key is already a hash */
	size_t i = (size_t)h & (l->cap - 1);
	while (l->slots[i] && memcmp(l->slots[i]->key.b, key->b, sizeof(key->b)))
		i = (i + 1) & (l->cap - 1);
	return i;
}

static int grow(struct qp_actlog *l)
{
	size_t nc = l->cap ? l->cap * 2 : 1024;
	struct ent **old = l->slots;
	size_t oc = l->cap;
	l->slots = calloc(nc, sizeof(*l->slots));
	if (!l->slots) {
		l->slots = old;
		return -1;
	}
	l->cap = nc;
	for (size_t i = 0; i < oc; i++)
		if (old[i])
			l->slots[slot_of(l, &old[i]->key)] = old[i];
	free(old);
	return 0;
}

/* Put e in the table, replacing any entry for its key. */
static void insert(struct qp_actlog *l, struct ent *e)
{
	if ((l->n + 1) * 2 > l->cap && grow(l))
		return; /* out of memory: forgetting is safe */
	size_t i = slot_of(l, &e->key);
	if (!l->slots[i])
		l->n++;
	l->slots[i] = e;
}

static void check_hex(const char *line, size_t len, char out[CHECK_LEN + 1])
{
	struct qp_hash h;
	char hex[QP_HASH_HEX_LEN + 1];
	qp_hash_buf(&h, line, len);
	qp_hash_hex(&h, hex);
	memcpy(out, hex, CHECK_LEN);
	out[CHECK_LEN] = '\0';
}

/* Split line (NUL-terminated, no newline) at tabs into at most max fields. */
static size_t split(char *line, char **f, size_t max)
{
	size_t n = 0;
	for (char *p = line;;) {
		if (n == max)
			return max + 1;
		f[n++] = p;
		char *t = strchr(p, '\t');
		if (!t)
			return n;
		*t = '\0';
		p = t + 1;
	}
}

static int parse_ll(const char *s, long long *out)
{
	char *end;
	errno = 0;
	*out = strtoll(s, &end, 10);
	return errno || end == s || *end ? -1 : 0;
}

#define MAX_FILES 4096
#define MAX_FIELDS (7 + 3 * MAX_FILES)

/* Check one line and put it in the table under its key; -1 if it fails
 * its check. The rest is parsed on first lookup (parse_body): most lines of
 * a log are never looked up, or superseded by later ones. The line is cut
 * up in place, and the entry's strings point into it: it must live as
 * long as l. */
static int parse_line(struct qp_actlog *l, char *line, size_t len)
{
	char *tab = memrchr(line, '\t', len);
	if (!tab || (size_t)(line + len - tab - 1) != CHECK_LEN)
		return -1;
	char want[CHECK_LEN + 1];
	check_hex(line, (size_t)(tab - line), want);
	if (memcmp(want, tab + 1, CHECK_LEN))
		return -1;
	*tab = '\0';
	struct qp_hash key;
	if ((size_t)(tab - line) < QP_HASH_HEX_LEN + 2 || line[QP_HASH_HEX_LEN] != '\t' ||
	    qp_hash_from_hex(&key, line))
		return -1;
	struct ent *e = qp_arena_alloc(l->arena, sizeof(*e));
	if (!e)
		return -1;
	e->key = key;
	e->body = line + QP_HASH_HEX_LEN + 1;
	e->forgotten = !strcmp(e->body, "-");
	insert(l, e);
	return 0;
}

/* Parse what follows an entry's key; a malformed one is forgotten. */
static int parse_body(struct qp_actlog *l, struct ent *e)
{
	if (e->parsed || e->forgotten)
		return e->forgotten ? -1 : 0;
	char **f = l->fields;
	size_t nf = split(e->body, f, MAX_FIELDS);
	long long n;
	struct qp_actlog_file *files = NULL;
	if (nf < 5 || parse_ll(f[0], &e->ino) || parse_ll(f[1], &e->size) ||
	    parse_ll(f[2], &e->mtime_ns) || parse_ll(f[3], &e->ctime_ns) || parse_ll(f[4], &n) ||
	    n < 0 || n > MAX_FILES || nf != 5 + 3 * (size_t)n ||
	    !(files = qp_arena_calloc(l->arena, (size_t)n + 1, sizeof(*files))))
		goto bad;
	for (size_t i = 0; i < (size_t)n; i++) {
		char **g = f + 5 + 3 * i;
		if (strcmp(g[0], "o") && strcmp(g[0], "x"))
			goto bad;
		struct qp_hash oh;
		int ext = g[0][0] == 'x';
		if (!g[1][0] || (ext ? g[2][0] != '/' : strlen(g[2]) != QP_HASH_HEX_LEN ||
		                                         qp_hash_from_hex(&oh, g[2])))
			goto bad;
		files[i].name = g[1];
		files[i].value = g[2];
		files[i].external = ext;
	}
	e->pub.n_files = (size_t)n;
	e->pub.files = files;
	e->pub.mtime_ns = e->mtime_ns;
	e->parsed = 1;
	return 0;
bad:
	l->bad++;
	e->forgotten = 1;
	return -1;
}

static void load(struct qp_actlog *l)
{
	char *text = NULL;
	size_t len = 0;
	struct qp_err e = {0};
	if (qp_os_read_file(&text, &len, l->path, LOG_MAX, &e))
		return;
	char header[64];
	int hl = snprintf(header, sizeof(header), "%s %d\n", MAGIC, qp_store_record_version());
	if (len < (size_t)hl || memcmp(text, header, (size_t)hl)) {
		free(text);
		return; /* another version: start afresh, rewriting it at the first flush */
	}
	l->exists = 1;
	l->text = text;
	for (char *p = text + hl; p < text + len;) {
		char *nl = memchr(p, '\n', (size_t)(text + len - p));
		if (!nl) {
			l->bad++; /* a line torn by a crash, or being appended right now */
			break;
		}
		*nl = '\0';
		l->lines++;
		if (parse_line(l, p, (size_t)(nl - p)))
			l->bad++;
		p = nl + 1;
	}
}

int qp_actlog_open(struct qp_actlog **out, struct qp_store *s, struct qp_err *err)
{
	*out = NULL;
	struct qp_actlog *l = calloc(1, sizeof(*l));
	if (!l || !(l->arena = qp_arena_new()) || grow(l) ||
	    !(l->fields = malloc((MAX_FIELDS + 1) * sizeof(*l->fields)))) {
		qp_actlog_free(l);
		return qp_err_nomem(err);
	}
	l->store = s;
	int w = snprintf(l->path, sizeof(l->path), "%s/meta/%s", qp_store_dir(s), NAME);
	if (w < 0 || (size_t)w >= sizeof(l->path)) {
		qp_actlog_free(l);
		return qp_err_set(err, QP_EINVAL, "%s/meta/%s: path too long", qp_store_dir(s), NAME);
	}
	load(l);
	*out = l;
	return 0;
}

void qp_actlog_free(struct qp_actlog *l)
{
	if (!l)
		return;
	qp_arena_free(l->arena);
	free(l->text);
	free(l->fields);
	free(l->slots);
	free(l->pending);
	free(l);
}

size_t qp_actlog_bad_lines(const struct qp_actlog *l)
{
	return l->bad;
}

static int same_file(const struct ent *e, const struct stat *st)
{
	return e->ino == (long long)st->st_ino && e->size == (long long)st->st_size &&
	       e->mtime_ns == ns(&st->st_mtim) && e->ctime_ns == ns(&st->st_ctim);
}

static int stat_record(const struct qp_actlog *l, const struct qp_hash *key, struct stat *st)
{
	return qp_store_stat_action(l->store, key, st);
}

const struct qp_actlog_entry *qp_actlog_lookup(struct qp_actlog *l, const struct qp_hash *key)
{
	struct ent *e = l->slots[slot_of(l, key)];
	struct stat st;
	if (!e || parse_body(l, e) || stat_record(l, key, &st) || !same_file(e, &st))
		return NULL;
	return &e->pub;
}

/* Append len bytes of text to the growable buffer *buf (NUL-terminated). */
static int buf_add(char **buf, size_t *len, size_t *cap, const char *text, size_t n)
{
	if (*len + n + 1 > *cap) {
		size_t nc = (*len + n + 1) * 2;
		char *nb = realloc(*buf, nc);
		if (!nb)
			return -1;
		*buf = nb;
		*cap = nc;
	}
	memcpy(*buf + *len, text, n);
	*len += n;
	(*buf)[*len] = '\0';
	return 0;
}

/* Add "\t<check>\n" to line[len] (size cap) and queue it, then read it back
 * into the table, so what is kept is exactly what the file will say. */
static void add_line(struct qp_actlog *l, char *line, size_t len, size_t cap)
{
	char check[CHECK_LEN + 1];
	check_hex(line, len, check);
	int w = snprintf(line + len, cap - len, "\t%s\n", check);
	if (w < 0 || (size_t)w >= cap - len || buf_add(&l->pending, &l->plen, &l->pcap, line, len + (size_t)w))
		return;
	char *copy = qp_arena_strndup(l->arena, line, len + (size_t)w - 1);
	if (copy)
		parse_line(l, copy, len + (size_t)w - 1);
	l->lines++;
}

/* The text of an entry line without its check, or NULL if one of its
 * strings cannot be written; malloc'd with room for the check. */
static char *format(const struct qp_hash *key, const struct stat *st,
                    const struct qp_actlog_file *files, size_t n, size_t *len, size_t *cap)
{
	size_t need = 160 + CHECK_LEN;
	for (size_t i = 0; i < n; i++) {
		if (!files[i].name[0] || strpbrk(files[i].name, "\t\n") || strpbrk(files[i].value, "\t\n"))
			return NULL;
		need += strlen(files[i].name) + strlen(files[i].value) + 8;
	}
	if (n > MAX_FILES)
		return NULL;
	char *line = malloc(need);
	if (!line)
		return NULL;
	char hex[QP_HASH_HEX_LEN + 1];
	qp_hash_hex(key, hex);
	size_t at = (size_t)snprintf(line, need, "%s\t%lld\t%lld\t%lld\t%lld\t%zu", hex,
	                             (long long)st->st_ino, (long long)st->st_size, ns(&st->st_mtim),
	                             ns(&st->st_ctim), n);
	for (size_t i = 0; i < n; i++)
		at += (size_t)snprintf(line + at, need - at, "\t%c\t%s\t%s", files[i].external ? 'x' : 'o',
		                       files[i].name, files[i].value);
	*len = at;
	*cap = need;
	return line;
}

void qp_actlog_note(struct qp_actlog *l, const struct qp_hash *key,
                    const struct qp_actlog_file *files, size_t n_files)
{
	struct stat st;
	if (stat_record(l, key, &st))
		return;
	size_t len, cap;
	char *line = format(key, &st, files, n_files, &len, &cap);
	if (!line) {
		qp_actlog_forget(l, key); /* an older entry must not outlive this record */
		return;
	}
	add_line(l, line, len, cap);
	free(line);
}

void qp_actlog_forget(struct qp_actlog *l, const struct qp_hash *key)
{
	struct ent *e = l->slots[slot_of(l, key)];
	if (!e || e->forgotten)
		return;
	char line[QP_HASH_HEX_LEN + 8 + CHECK_LEN];
	qp_hash_hex(key, line);
	memcpy(line + QP_HASH_HEX_LEN, "\t-", 3);
	add_line(l, line, QP_HASH_HEX_LEN + 2, sizeof(line));
}

/* Write one line per entry whose record still stats the same. */
static int compact(struct qp_actlog *l, struct qp_err *err)
{
	char *text = NULL;
	size_t len = 0, cap = 0, kept = 0;
	char header[64];
	int hl = snprintf(header, sizeof(header), "%s %d\n", MAGIC, qp_store_record_version());
	int rc = 0;
	if (buf_add(&text, &len, &cap, header, (size_t)hl))
		return qp_err_nomem(err);
	for (size_t i = 0; i < l->cap; i++) {
		struct ent *e = l->slots[i];
		struct stat st;
		if (!e || parse_body(l, e) || stat_record(l, &e->key, &st) || !same_file(e, &st))
			continue;
		size_t ll, lc;
		char *line = format(&e->key, &st, e->pub.files, e->pub.n_files, &ll, &lc);
		if (!line)
			continue;
		char check[CHECK_LEN + 1];
		check_hex(line, ll, check);
		int bad = buf_add(&text, &len, &cap, line, ll) || buf_add(&text, &len, &cap, "\t", 1) ||
		          buf_add(&text, &len, &cap, check, CHECK_LEN) || buf_add(&text, &len, &cap, "\n", 1);
		free(line);
		if (bad) {
			free(text);
			return qp_err_nomem(err);
		}
		kept++;
	}
	rc = qp_store_put_meta(l->store, NAME, text, err);
	free(text);
	if (rc == 0) {
		/* put_meta leaves files read-only, and this one is appended to; an
		 * append in the moment between is lost, which only costs speed */
		chmod(l->path, 0644);
		l->lines = kept;
		l->exists = 1;
	}
	return rc;
}

int qp_actlog_flush(struct qp_actlog *l, struct qp_err *err)
{
	if (!l->plen)
		return 0;
	int rc = 0;
	if (!l->exists || (l->lines > COMPACT_MIN && l->lines > COMPACT_RATIO * l->n)) {
		rc = compact(l, err);
	} else {
		int fd = open(l->path, O_WRONLY | O_APPEND | O_CLOEXEC);
		if (fd < 0)
			return qp_err_set(err, QP_EIO, "%s: cannot open:", l->path);
		ssize_t w = write(fd, l->pending, l->plen);
		if (w < 0 || (size_t)w != l->plen)
			rc = qp_err_set(err, QP_EIO, "%s: cannot append:", l->path);
		close(fd);
	}
	l->plen = 0;
	return rc;
}
