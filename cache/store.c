/* The content-addressed store and its action records.
 *
 * On-disk layout, version 1, under the store directory D:
 *
 *   D/format                     "qpipe-store 1\n": the layout version
 *   D/objects/<h0h1>/<h2..h31>   an object: exactly the stored bytes, named
 *                                by the lowercase hex of their XXH3-128
 *                                (hash.c); mode 0444, never written again
 *   D/actions/<k0k1>/<k2..k31>   the action record of stage key k (below)
 *   D/tmp/<random>/              scratch directories lent to stages
 *   D/partial/<key>/             finished pieces of a stage that has not
 *                                completed yet (qp_store_partial_dir)
 *   .tmp-XXXXXX                  in objects/, objects/<h0h1>/ or actions/<k0k1>/:
 *                                a writer's temporary, still being written
 *                                or left by a crash; never read, only gc'd
 *
 * Committing an object (git's finalize_object_file):
 *   1. "tmp-open"  create a .tmp-XXXXXX: beside the final name when the hash
 *                  is known first (a buffer), else in objects/ (a file, hashed
 *                  while it is moved or copied in)
 *   2. "tmp-half", "tmp-full"  write the content, or rename the source over
 *                  the temporary (same filesystem, one link, a regular file)
 *   3. fsync, chmod 0444, link(2) to objects/<h0h1>/<h2..h31>, fsync the
 *      directory, unlink the temporary; then "placed"
 * The quoted names are the steps qp_store_set_step_hook reports. A crash
 * before the link leaves only a temporary; from the link on, the object is
 * whole. A name already taken (EEXIST) means the object is already stored:
 * a file of the same size is kept and ours dropped, so a second writer of
 * the same object succeeds; one of another size is damaged and ours
 * replaces it by rename. Sizes, not content, are compared: a 128-bit
 * collision is not a practical concern, but a truncated copy is.
 *
 * An action record is one UTF-8 JSON object, committed with the rename
 * protocol of os.h, so a reader sees a whole record or none; of two writers
 * of one key the last wins, and both succeed:
 *
 *   {"format":  "qpipe-action",   required, exactly this string (the magic)
 *    "version": 1,                required integer; this code reads only 1
 *    "key":     "<32 hex>",       the stage key, as in the file's name
 *    "outputs": {"<name>": "<32 lowercase hex>", ...}
 *                                 optional; every hash names an object that
 *                                 must be in the store
 *    ...}                         any other members are the caller's
 *                                 (metrics, timings), kept as given
 *
 * put_action sets format, version and key itself, whatever the caller's
 * record held, and refuses (QP_EINVAL) outputs that are malformed or name
 * objects not in the store. get_action treats every defect as a miss, never
 * an error, and says which (enum qp_miss_kind): no file; unreadable or over
 * RECORD_MAX bytes; not JSON, not an object, wrong format or key, malformed
 * outputs (corrupt); another version; an output object gone (gc, or a
 * damaged store). A miss only costs a rerun, which rewrites the record.
 *
 * Bump STORE_VERSION when the layout changes and RECORD_VERSION when the
 * record's meaning changes. */
#include "cache/store.h"

#include <dirent.h>
#include <unistd.h>
#include <time.h>
#include <sys/stat.h>
#include <sys/file.h>
#include <fcntl.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/os.h"
#include "common/path.h"

#define STORE_MAGIC "qpipe-store"
#define STORE_VERSION 1
#define RECORD_FORMAT "qpipe-action"
#define RECORD_VERSION 1
/* Records hold names, hashes and metrics; anything bigger is not ours. */
#define RECORD_MAX ((size_t)64 << 20)
/* Every path the store builds is D plus at most this many bytes
 * ("/objects/ab/" + 30 digits, or "/objects/.tmp-XXXXXX"). */
#define SUFFIX_MAX 64
#define PATH_BUF 4096

struct qp_store {
	char *dir; /* absolute, so scratch paths stay valid after a stage's chdir */
	int actions_fd; /* D/actions (O_PATH): a record's stat walks two names, not all of D's */
	void (*step_fn)(void *arg, const char *step);
	void *step_arg;
};

static void step(const struct qp_store *s, const char *name)
{
	if (s->step_fn)
		s->step_fn(s->step_arg, name);
}

/* dst[PATH_BUF] = D/<area>/<h0h1>/<h2..h31>; open() checked D's length. */
static void hashed_path(const struct qp_store *s, const char *area, const struct qp_hash *h,
                        char *dst)
{
	char hex[QP_HASH_HEX_LEN + 1];
	qp_hash_hex(h, hex);
	/* by hand, not snprintf: a plan builds one for every cached output */
	size_t d = strlen(s->dir), a = strlen(area);
	char *p = dst;
	memcpy(p, s->dir, d);
	p += d;
	*p++ = '/';
	memcpy(p, area, a);
	p += a;
	*p++ = '/';
	memcpy(p, hex, 2);
	p += 2;
	*p++ = '/';
	memcpy(p, hex + 2, QP_HASH_HEX_LEN - 2 + 1);
}

/* The <h0h1> fan-out directory is made on demand (as git does) rather than
 * all 256 at open; gc may remove empty ones. */
static int make_fanout(const struct qp_store *s, const char *area, const struct qp_hash *h,
                       struct qp_err *err)
{
	char hex[QP_HASH_HEX_LEN + 1], dir[PATH_BUF];
	qp_hash_hex(h, hex);
	snprintf(dir, sizeof(dir), "%s/%s/%.2s", s->dir, area, hex);
	return qp_os_mkdir_p(dir, err);
}

/* D/format is read before anything else is trusted: a store laid out by a
 * newer qpipe must be refused, not half understood. */
static int check_layout(const char *dir, struct qp_err *err)
{
	char path[PATH_BUF];
	snprintf(path, sizeof(path), "%s/format", dir);
	char *text;
	int rc = qp_os_read_file(&text, NULL, path, 256, err);
	if (rc == QP_ENOTFOUND) {
		/* A fresh store. Two processes creating it at once write the same
		 * bytes, and the rename lets either win. */
		char magic[32];
		int n = snprintf(magic, sizeof(magic), "%s %d\n", STORE_MAGIC, STORE_VERSION);
		qp_err_clear(err);
		return qp_os_write_file_atomic(path, magic, (size_t)n, err);
	}
	if (rc)
		return rc;
	int version, end = 0;
	if (sscanf(text, STORE_MAGIC " %d\n%n", &version, &end) != 1 || text[end] != '\0')
		rc = qp_err_set(err, QP_ECORRUPT, "%s: not a qpipe store marker", path);
	else if (version != STORE_VERSION)
		rc = qp_err_set(err, QP_EINVAL, "%s: store layout version %d, this qpipe reads %d", path,
		                version, STORE_VERSION);
	free(text);
	return rc;
}

int qp_store_open(struct qp_store **out, const char *dir, struct qp_err *err)
{
	*out = NULL;
	int rc = qp_os_mkdir_p(dir, err);
	if (rc)
		return rc;
	char *abs = realpath(dir, NULL);
	if (!abs)
		return qp_err_set(err, QP_EIO, "%s: cannot resolve:", dir);
	if (strlen(abs) + SUFFIX_MAX >= PATH_BUF) {
		rc = qp_err_set(err, QP_EINVAL, "%s: store path too long", abs);
		free(abs);
		return rc;
	}
	static const char *const areas[] = {"objects", "actions", "tmp"};
	for (size_t i = 0; i < sizeof(areas) / sizeof(areas[0]) && rc == 0; i++) {
		char path[PATH_BUF];
		snprintf(path, sizeof(path), "%s/%s", abs, areas[i]);
		rc = qp_os_mkdir_p(path, err);
	}
	if (rc == 0)
		rc = check_layout(abs, err);
	if (rc) {
		free(abs);
		return rc;
	}
	struct qp_store *s = calloc(1, sizeof(*s));
	if (!s) {
		free(abs);
		return qp_err_nomem(err);
	}
	s->dir = abs;
	char actions[PATH_BUF];
	snprintf(actions, sizeof(actions), "%s/actions", abs);
	s->actions_fd = open(actions, O_PATH | O_DIRECTORY | O_CLOEXEC);
	*out = s;
	return 0;
}

void qp_store_free(struct qp_store *s)
{
	if (!s)
		return;
	if (s->actions_fd >= 0)
		close(s->actions_fd);
	free(s->dir);
	free(s);
}

const char *qp_store_dir(const struct qp_store *s)
{
	return s->dir;
}

void qp_store_set_step_hook(struct qp_store *s, void (*fn)(void *arg, const char *step),
                            void *arg)
{
	s->step_fn = fn;
	s->step_arg = arg;
}

void qp_store_object_path(const struct qp_store *s, const struct qp_hash *h, char *buf, size_t n)
{
	char path[PATH_BUF];
	hashed_path(s, "objects", h, path);
	snprintf(buf, n, "%s", path);
}

int qp_store_stat_action(const struct qp_store *s, const struct qp_hash *key, struct stat *st)
{
	char hex[QP_HASH_HEX_LEN + 1], rel[QP_HASH_HEX_LEN + 2];
	qp_hash_hex(key, hex);
	memcpy(rel, hex, 2);
	rel[2] = '/';
	memcpy(rel + 3, hex + 2, QP_HASH_HEX_LEN - 2 + 1);
	if (s->actions_fd >= 0)
		return fstatat(s->actions_fd, rel, st, 0) == 0 ? 0 : -1;
	char path[PATH_BUF];
	hashed_path(s, "actions", key, path);
	return stat(path, st) == 0 ? 0 : -1;
}

int qp_store_record_version(void)
{
	return RECORD_VERSION;
}

int qp_store_has_object(const struct qp_store *s, const struct qp_hash *h)
{
	char path[PATH_BUF];
	uint64_t size;
	hashed_path(s, "objects", h, path);
	return qp_os_file_size(path, &size);
}

/* Step 3 of the object protocol, and what EEXIST means for us. size is the
 * byte count of f's content. */
static int place_object(const struct qp_store *s, struct qp_atomic_file *f, const char *dst,
                        uint64_t size, struct qp_err *err)
{
	int rc = qp_os_atomic_link(f, dst, err);
	if (rc == QP_EEXISTS) {
		uint64_t have;
		if (qp_os_file_size(f->dst_path, &have) && have == size) {
			qp_os_atomic_abort(f);
			rc = 0;
		} else {
			rc = qp_os_atomic_commit(f, err);
		}
	}
	if (rc == 0)
		step(s, "placed");
	return rc;
}

int qp_store_put_buf(struct qp_store *s, const void *data, size_t len, struct qp_hash *out,
                     struct qp_err *err)
{
	struct qp_hash h;
	qp_hash_buf(&h, data, len);
	char path[PATH_BUF];
	hashed_path(s, "objects", &h, path);
	uint64_t have;
	/* The common case for deterministic stages: already stored, write nothing. */
	if (qp_os_file_size(path, &have) && have == len) {
		*out = h;
		return 0;
	}
	int rc = make_fanout(s, "objects", &h, err);
	if (rc)
		return rc;
	struct qp_atomic_file f;
	rc = qp_os_atomic_open(&f, path, err);
	if (rc)
		return rc;
	step(s, "tmp-open");
	size_t half = len / 2;
	rc = qp_os_atomic_write(&f, data, half, err);
	if (rc == 0) {
		step(s, "tmp-half");
		rc = qp_os_atomic_write(&f, (const char *)data + half, len - half, err);
	}
	if (rc) {
		qp_os_atomic_abort(&f);
		return rc;
	}
	step(s, "tmp-full");
	rc = place_object(s, &f, NULL, len, err);
	if (rc == 0)
		*out = h;
	return rc;
}

struct copy_hash {
	struct qp_hasher *h;
	uint64_t bytes;
};

static void copy_chunk(void *arg, const void *chunk, size_t len)
{
	struct copy_hash *c = arg;
	qp_hasher_update(c->h, chunk, len);
	c->bytes += len;
}

int qp_store_put_file(struct qp_store *s, const char *src, struct qp_hash *out,
                      struct qp_err *err)
{
	/* The hash, hence the final name, is known only once the content has
	 * been read, so the temporary waits in objects/ (same filesystem as
	 * every fan-out directory) and is linked across when named. */
	char incoming[PATH_BUF], path[PATH_BUF];
	snprintf(incoming, sizeof(incoming), "%s/objects/incoming", s->dir);
	struct qp_atomic_file f;
	int rc = qp_os_atomic_open(&f, incoming, err);
	if (rc)
		return rc;
	step(s, "tmp-open");

	struct qp_hash h;
	uint64_t size = 0;
	struct qp_err adopt_err;
	int copied = 0;
	rc = qp_os_atomic_adopt(&f, src, &adopt_err);
	if (rc == 0) {
		/* Hash after the move: the same-filesystem case reads the data once. */
		rc = qp_hash_file(&h, f.tmp_path, err);
		if (rc == 0 && !qp_os_file_size(f.tmp_path, &size))
			rc = qp_err_set(err, QP_EIO, "%s: vanished while being stored", f.tmp_path);
	} else if (rc == QP_EINVAL) {
		/* Another filesystem, a symlink or a shared inode: copy, hashing the
		 * bytes as they pass so the source is still read only once. */
		struct copy_hash c = {NULL, 0};
		rc = qp_hasher_new(&c.h, err);
		if (rc == 0)
			rc = qp_os_atomic_copy(&f, src, copy_chunk, &c, err);
		if (rc == 0)
			qp_hasher_digest(c.h, &h);
		qp_hasher_free(c.h);
		size = c.bytes;
		copied = 1;
	} else if (err) {
		*err = adopt_err;
	}
	if (rc == 0) {
		step(s, "tmp-full");
		rc = make_fanout(s, "objects", &h, err);
	}
	if (rc) {
		qp_os_atomic_abort(&f);
		return rc;
	}
	hashed_path(s, "objects", &h, path);
	rc = place_object(s, &f, path, size, err);
	if (rc == 0 && copied)
		rc = qp_os_remove(src, err);
	if (rc == 0)
		*out = h;
	return rc;
}

int qp_store_scratch_dir(struct qp_store *s, char *buf, size_t n, struct qp_err *err)
{
	char parent[PATH_BUF];
	snprintf(parent, sizeof(parent), "%s/tmp", s->dir);
	/* gc may have removed tmp/ while it was empty. */
	int rc = qp_os_mkdir_p(parent, err);
	if (rc)
		return rc;
	return qp_os_mkdtemp(buf, n, parent, err);
}

void qp_store_scratch_remove(const char *dir)
{
	qp_os_remove_tree(dir);
}

int qp_store_partial_dir(struct qp_store *s, const struct qp_hash *key, char *buf, size_t n, struct qp_err *err)
{
	char hex[QP_HASH_HEX_LEN + 1];
	qp_hash_hex(key, hex);
	if ((size_t)snprintf(buf, n, "%s/partial/%s", s->dir, hex) >= n)
		return qp_err_set(err, QP_EINVAL, "%s/partial: path too long", s->dir);
	return qp_os_mkdir_p(buf, err);
}

void qp_store_partial_remove(const struct qp_store *s, const struct qp_hash *key)
{
	char hex[QP_HASH_HEX_LEN + 1], path[PATH_BUF];
	qp_hash_hex(key, hex);
	snprintf(path, sizeof(path), "%s/partial/%s", s->dir, hex);
	qp_os_remove_tree(path);
}

/* The canonical spelling of a hash: 32 lowercase hex digits and nothing more. */
static int parse_hash(struct qp_hash *out, const char *s)
{
	char again[QP_HASH_HEX_LEN + 1];
	if (strlen(s) != QP_HASH_HEX_LEN || qp_hash_from_hex(out, s) != 0)
		return -1;
	qp_hash_hex(out, again);
	return strcmp(again, s) == 0 ? 0 : -1;
}

int qp_store_put_action(struct qp_store *s, const struct qp_hash *key, json_t *record,
                        struct qp_err *err)
{
	char khex[QP_HASH_HEX_LEN + 1];
	qp_hash_hex(key, khex);
	if (!json_is_object(record))
		return qp_err_set(err, QP_EINVAL, "action %s: record is not a JSON object", khex);
	json_t *outputs = json_object_get(record, "outputs");
	if (outputs && !json_is_object(outputs))
		return qp_err_set(err, QP_EINVAL, "action %s: 'outputs' is not a JSON object", khex);
	const char *name;
	json_t *v;
	json_object_foreach(outputs, name, v) {
		struct qp_hash h;
		if (!json_is_string(v) || parse_hash(&h, json_string_value(v)) != 0)
			return qp_err_set(err, QP_EINVAL,
			                  "action %s: output '%s': not a 32-digit lowercase hex hash",
			                  khex, name);
		if (!qp_store_has_object(s, &h))
			return qp_err_set(err, QP_EINVAL,
			                  "action %s: output '%s': object %s is not in the store", khex,
			                  name, json_string_value(v));
	}

	/* A fresh object, so the caller's record is left as it was, and so the
	 * magic and version lead the file where a person looking will see them. */
	json_t *rec = json_object();
	if (!rec || json_object_set_new(rec, "format", json_string(RECORD_FORMAT)) ||
	    json_object_set_new(rec, "version", json_integer(RECORD_VERSION)) ||
	    json_object_set_new(rec, "key", json_string(khex))) {
		json_decref(rec);
		return qp_err_nomem(err);
	}
	json_object_foreach(record, name, v) {
		if (strcmp(name, "format") == 0 || strcmp(name, "version") == 0 ||
		    strcmp(name, "key") == 0)
			continue;
		if (json_object_set(rec, name, v)) {
			json_decref(rec);
			return qp_err_nomem(err);
		}
	}
	char *text = json_dumps(rec, JSON_COMPACT);
	json_decref(rec);
	if (!text)
		return qp_err_set(err, QP_EINVAL, "action %s: record cannot be written as JSON", khex);
	size_t len = strlen(text);

	char path[PATH_BUF];
	hashed_path(s, "actions", key, path);
	struct qp_atomic_file f;
	int rc = make_fanout(s, "actions", key, err);
	if (rc == 0)
		rc = qp_os_atomic_open(&f, path, err);
	if (rc) {
		free(text);
		return rc;
	}
	step(s, "tmp-open");
	rc = qp_os_atomic_write(&f, text, len / 2, err);
	if (rc == 0) {
		step(s, "tmp-half");
		rc = qp_os_atomic_write(&f, text + len / 2, len - len / 2, err);
	}
	if (rc == 0)
		rc = qp_os_atomic_write(&f, "\n", 1, err);
	free(text);
	if (rc) {
		qp_os_atomic_abort(&f);
		return rc;
	}
	step(s, "tmp-full");
	rc = qp_os_atomic_commit(&f, err);
	if (rc == 0)
		step(s, "placed");
	return rc;
}

static void set_miss(struct qp_miss *miss, enum qp_miss_kind kind, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set_miss(struct qp_miss *miss, enum qp_miss_kind kind, const char *fmt, ...)
{
	if (!miss)
		return;
	miss->kind = kind;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(miss->why, sizeof(miss->why), fmt, ap);
	va_end(ap);
}

/* The checks of the record format, in the order of the header comment;
 * returns QP_MISS_NONE when rec is a usable record for key. */
static enum qp_miss_kind check_record(struct qp_store *s, const char *path, const char *khex,
                                      json_t *rec, struct qp_miss *miss)
{
	if (!json_is_object(rec)) {
		set_miss(miss, QP_MISS_CORRUPT, "%s: not a JSON object", path);
		return QP_MISS_CORRUPT;
	}
	const char *format = json_string_value(json_object_get(rec, "format"));
	if (!format || strcmp(format, RECORD_FORMAT) != 0) {
		set_miss(miss, QP_MISS_CORRUPT, "%s: not a qpipe action record (no \"format\": \"%s\")",
		         path, RECORD_FORMAT);
		return QP_MISS_CORRUPT;
	}
	json_t *version = json_object_get(rec, "version");
	if (!json_is_integer(version)) {
		set_miss(miss, QP_MISS_CORRUPT, "%s: \"version\" is missing or not an integer", path);
		return QP_MISS_CORRUPT;
	}
	if (json_integer_value(version) != RECORD_VERSION) {
		set_miss(miss, QP_MISS_VERSION, "%s: record version %" JSON_INTEGER_FORMAT
		         ", this qpipe reads %d", path, json_integer_value(version), RECORD_VERSION);
		return QP_MISS_VERSION;
	}
	const char *key = json_string_value(json_object_get(rec, "key"));
	if (!key || strcmp(key, khex) != 0) {
		set_miss(miss, QP_MISS_CORRUPT, "%s: record is for key '%s'", path, key ? key : "");
		return QP_MISS_CORRUPT;
	}
	json_t *outputs = json_object_get(rec, "outputs");
	if (outputs && !json_is_object(outputs)) {
		set_miss(miss, QP_MISS_CORRUPT, "%s: \"outputs\" is not a JSON object", path);
		return QP_MISS_CORRUPT;
	}
	const char *name;
	json_t *v;
	json_object_foreach(outputs, name, v) {
		struct qp_hash h;
		if (!json_is_string(v) || parse_hash(&h, json_string_value(v)) != 0) {
			set_miss(miss, QP_MISS_CORRUPT, "%s: output '%s': not a 32-digit lowercase hex hash",
			         path, name);
			return QP_MISS_CORRUPT;
		}
		if (!qp_store_has_object(s, &h)) {
			set_miss(miss, QP_MISS_OBJECT, "%s: output '%s': object %s is missing", path, name,
			         json_string_value(v));
			return QP_MISS_OBJECT;
		}
	}
	return QP_MISS_NONE;
}

int qp_store_get_action_ex(struct qp_store *s, const struct qp_hash *key, json_t **out,
                           struct qp_miss *miss, struct qp_err *err)
{
	(void)err; /* every defect of a record is a miss; nothing here is an error */
	*out = NULL;
	if (miss) {
		miss->kind = QP_MISS_NONE;
		miss->why[0] = '\0';
	}
	char khex[QP_HASH_HEX_LEN + 1], path[PATH_BUF];
	qp_hash_hex(key, khex);
	hashed_path(s, "actions", key, path);

	char *text;
	size_t len;
	struct qp_err e;
	int rc = qp_os_read_file(&text, &len, path, RECORD_MAX, &e);
	if (rc == QP_ENOTFOUND) {
		set_miss(miss, QP_MISS_ABSENT, "%s: no record", path);
		return 0;
	}
	if (rc) {
		/* e.msg already names the path. */
		set_miss(miss, QP_MISS_UNREADABLE, "%s", e.msg);
		return 0;
	}
	json_error_t jerr;
	json_t *rec = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	free(text);
	if (!rec) {
		set_miss(miss, QP_MISS_CORRUPT, "%s:%d:%d: %s", path, jerr.line, jerr.column, jerr.text);
		return 0;
	}
	if (check_record(s, path, khex, rec, miss) != QP_MISS_NONE) {
		json_decref(rec);
		return 0;
	}
	*out = rec;
	return 0;
}

int qp_store_get_action(struct qp_store *s, const struct qp_hash *key, json_t **out,
                        struct qp_err *err)
{
	return qp_store_get_action_ex(s, key, out, NULL, err);
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void free_names(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

/* The 32-hex names stored under D/<area>/<2>/<30>, sorted; *ntmp counts the
 * writers' temporaries met on the way (may be NULL). Collected first, so
 * entries written meanwhile cannot confuse a walk. */
static int collect(struct qp_store *s, const char *area, char ***out, size_t *nout, size_t *ntmp,
                   struct qp_err *err)
{
	char dir[PATH_BUF];
	snprintf(dir, sizeof(dir), "%s/%s", s->dir, area);
	char **keys = NULL;
	size_t n = 0, cap = 0;
	int rc = 0;
	*out = NULL;
	*nout = 0;
	DIR *top = opendir(dir);
	if (!top)
		return errno == ENOENT ? 0 : qp_err_set(err, QP_EIO, "%s: cannot open:", dir);
	struct dirent *a;
	while (!rc && (a = readdir(top))) {
		if (ntmp && !strncmp(a->d_name, ".tmp-", 5))
			(*ntmp)++;
		if (strlen(a->d_name) != 2 || a->d_name[0] == '.')
			continue;
		char sub[PATH_BUF];
		if (qp_path_join(sub, sizeof(sub), dir, a->d_name, err)) {
			rc = QP_EINVAL;
			break;
		}
		DIR *d = opendir(sub);
		if (!d)
			continue;
		struct dirent *b;
		while (!rc && (b = readdir(d))) {
			if (ntmp && !strncmp(b->d_name, ".tmp-", 5))
				(*ntmp)++;
			if (strlen(b->d_name) != QP_HASH_HEX_LEN - 2 || b->d_name[0] == '.')
				continue;
			if (n == cap) {
				cap = cap ? cap * 2 : 64;
				char **nk = realloc(keys, cap * sizeof(*nk));
				if (!nk) {
					rc = qp_err_nomem(err);
					break;
				}
				keys = nk;
			}
			keys[n] = malloc(QP_HASH_HEX_LEN + 1);
			if (!keys[n]) {
				rc = qp_err_nomem(err);
				break;
			}
			snprintf(keys[n], QP_HASH_HEX_LEN + 1, "%s%s", a->d_name, b->d_name);
			n++;
		}
		closedir(d);
	}
	closedir(top);
	if (rc) {
		free_names(keys, n);
		return rc;
	}
	if (n)
		qsort(keys, n, sizeof(*keys), cmp_name);
	*out = keys;
	*nout = n;
	return 0;
}

int qp_store_list_actions(struct qp_store *s, int (*fn)(void *ud, const char *key_hex, json_t *rec),
                          void *ud, struct qp_err *err)
{
	char **keys;
	size_t n;
	int rc = collect(s, "actions", &keys, &n, NULL, err);
	for (size_t i = 0; i < n && !rc; i++) {
		struct qp_hash h;
		json_t *rec = NULL;
		if (qp_hash_from_hex(&h, keys[i]) != 0)
			continue;
		if ((rc = qp_store_get_action(s, &h, &rec, err)) || !rec)
			continue;
		rc = fn(ud, keys[i], rec);
		json_decref(rec);
	}
	free_names(keys, n);
	return rc;
}

int qp_store_verify(struct qp_store *s, struct qp_verify *out,
                    void (*problem)(void *ud, const char *what), void *ud, struct qp_err *err)
{
	memset(out, 0, sizeof(*out));
	char **names;
	size_t n;
	char msg[PATH_BUF + 128];
	int rc = collect(s, "objects", &names, &n, &out->temporaries, err);
	for (size_t i = 0; i < n && !rc; i++) {
		struct qp_hash want, got;
		char path[PATH_BUF];
		out->objects++;
		if (qp_hash_from_hex(&want, names[i]) != 0)
			continue;
		hashed_path(s, "objects", &want, path);
		struct qp_err herr = {0};
		if (qp_hash_file(&got, path, &herr) != 0) {
			snprintf(msg, sizeof(msg), "%s", herr.msg);
		} else if (memcmp(want.b, got.b, sizeof(want.b)) != 0) {
			char hex[QP_HASH_HEX_LEN + 1];
			qp_hash_hex(&got, hex);
			snprintf(msg, sizeof(msg), "%s: content hashes to %s", path, hex);
		} else {
			continue;
		}
		out->bad_objects++;
		if (problem)
			problem(ud, msg);
	}
	free_names(names, n);
	if (rc)
		return rc;
	rc = collect(s, "actions", &names, &n, &out->temporaries, err);
	for (size_t i = 0; i < n && !rc; i++) {
		struct qp_hash key;
		out->records++;
		if (qp_hash_from_hex(&key, names[i]) != 0)
			continue;
		json_t *rec = NULL;
		struct qp_miss miss;
		if ((rc = qp_store_get_action_ex(s, &key, &rec, &miss, err)))
			break;
		if (rec) {
			json_decref(rec);
			continue;
		}
		out->bad_records++;
		if (problem)
			problem(ud, miss.why);
	}
	free_names(names, n);
	return rc;
}

/* D/meta/<name>: small files qpipe keeps beside the store (the per-recipe
 * index of last keys). Written atomically; losing one only costs a less
 * specific plan message. */
static int meta_path(const struct qp_store *s, const char *name, char *buf, size_t n,
                     struct qp_err *err)
{
	if (!name[0] || strchr(name, '/') || name[0] == '.')
		return qp_err_set(err, QP_EINVAL, "bad meta name '%s'", name);
	int w = snprintf(buf, n, "%s/meta/%s", s->dir, name);
	if (w < 0 || (size_t)w >= n)
		return qp_err_set(err, QP_EINVAL, "%s/meta/%s: path too long", s->dir, name);
	return 0;
}

int qp_store_put_meta(struct qp_store *s, const char *name, const char *text, struct qp_err *err)
{
	char path[PATH_BUF], dir[PATH_BUF];
	int rc = meta_path(s, name, path, sizeof(path), err);
	if (rc)
		return rc;
	snprintf(dir, sizeof(dir), "%s/meta", s->dir);
	if ((rc = qp_os_mkdir_p(dir, err)))
		return rc;
	return qp_os_write_file_atomic(path, text, strlen(text), err);
}

int qp_store_get_meta(struct qp_store *s, const char *name, char **text, struct qp_err *err)
{
	char path[PATH_BUF];
	*text = NULL;
	int rc = meta_path(s, name, path, sizeof(path), err);
	if (rc)
		return rc;
	size_t len;
	return qp_os_read_file(text, &len, path, RECORD_MAX, err);
}

/* ---- gc ----
 *
 * LRU by the action record's mtime, which a plan refreshes when it hits a
 * record (qp_store_touch_action), at most every 10 minutes (exec.c's
 * TOUCH_EVERY_NS, well inside the default grace). Nothing younger than the grace period is
 * removed: a qpipe process running now may have stored objects whose record
 * it has not written yet, or be about to read a record it just found. */

int qp_store_touch_action(struct qp_store *s, const struct qp_hash *key)
{
	char path[PATH_BUF];
	hashed_path(s, "actions", key, path);
	return utimensat(AT_FDCWD, path, NULL, 0) == 0 ? 0 : -1;
}

int qp_store_rm_action(struct qp_store *s, const struct qp_hash *key, struct qp_err *err)
{
	char path[PATH_BUF];
	hashed_path(s, "actions", key, path);
	if (unlink(path) != 0)
		return qp_err_set(err, errno == ENOENT ? QP_ENOTFOUND : QP_EIO, "%s: cannot remove:", path);
	return 0;
}

struct gc_record {
	char *key;
	double mtime;
	json_t *outputs;     /* borrowed from rec */
	json_t *rec;
	int removed;
};

static int cmp_age(const void *a, const void *b)
{
	const struct gc_record *x = a, *y = b;
	return x->mtime < y->mtime ? -1 : x->mtime > y->mtime;
}

static double file_mtime(const char *path, long long *size)
{
	struct stat st;
	if (stat(path, &st) != 0)
		return -1;
	if (size)
		*size = (long long)st.st_size;
	return (double)st.st_mtim.tv_sec + (double)st.st_mtim.tv_nsec * 1e-9;
}

/* Remove .tmp-* files, scratch folders and partial results older than the cutoff. */
static void gc_temporaries(struct qp_store *s, double cutoff, struct qp_gc_stats *st)
{
	static const char *const areas[] = {"objects", "actions", "tmp", "meta", "partial", NULL};
	for (size_t a = 0; areas[a]; a++) {
		char dir[PATH_BUF];
		snprintf(dir, sizeof(dir), "%s/%s", s->dir, areas[a]);
		DIR *d = opendir(dir);
		if (!d)
			continue;
		struct dirent *e;
		while ((e = readdir(d))) {
			if (e->d_name[0] == '.' && strncmp(e->d_name, ".tmp-", 5))
				continue;
			char p[PATH_BUF];
			if (qp_path_join(p, sizeof(p), dir, e->d_name, NULL))
				continue;
			double mt = file_mtime(p, NULL);
			int is_tmp = !strncmp(e->d_name, ".tmp-", 5);
			int is_scratch = !strcmp(areas[a], "tmp") || !strcmp(areas[a], "partial");
			if (mt < 0 || mt >= cutoff || (!is_tmp && !is_scratch)) {
				/* fan-out folders hold temporaries too */
				if (!is_scratch && strlen(e->d_name) == 2) {
					DIR *sd = opendir(p);
					struct dirent *f;
					while (sd && (f = readdir(sd))) {
						char q[PATH_BUF];
						if (strncmp(f->d_name, ".tmp-", 5) || qp_path_join(q, sizeof(q), p, f->d_name, NULL))
							continue;
						double qt = file_mtime(q, NULL);
						if (qt >= 0 && qt < cutoff && unlink(q) == 0)
							st->temporaries_removed++;
					}
					if (sd)
						closedir(sd);
				}
				continue;
			}
			if (is_scratch)
				qp_os_remove_tree(p);
			else
				unlink(p);
			st->temporaries_removed++;
		}
		closedir(d);
	}
}

int qp_store_gc(struct qp_store *s, unsigned long long max_bytes, double grace_s,
                struct qp_gc_stats *st, struct qp_err *err)
{
	memset(st, 0, sizeof(*st));
	char lockpath[PATH_BUF];
	snprintf(lockpath, sizeof(lockpath), "%s/gc.lock", s->dir);
	int lock = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
	if (lock < 0)
		return qp_err_set(err, QP_EIO, "%s: cannot open:", lockpath);
	if (flock(lock, LOCK_EX | LOCK_NB) != 0) {
		close(lock);
		return qp_err_set(err, QP_ELOCKED, "%s: another gc is running", lockpath);
	}
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	double cutoff = (double)now.tv_sec + (double)now.tv_nsec * 1e-9 - grace_s;

	char **keys = NULL, **objs = NULL;
	size_t nk = 0, no = 0;
	struct gc_record *recs = NULL;
	size_t nr = 0;
	long long *osize = NULL;
	char *keep = NULL;
	int rc = collect(s, "actions", &keys, &nk, NULL, err);
	if (!rc)
		rc = collect(s, "objects", &objs, &no, NULL, err);
	if (rc)
		goto out;
	recs = calloc(nk + 1, sizeof(*recs));
	osize = calloc(no + 1, sizeof(*osize));
	keep = calloc(no + 1, 1);
	if (!recs || !osize || !keep) {
		rc = qp_err_nomem(err);
		goto out;
	}
	for (size_t i = 0; i < no; i++) {
		char p[PATH_BUF];
		struct qp_hash h;
		qp_hash_from_hex(&h, objs[i]);
		hashed_path(s, "objects", &h, p);
		file_mtime(p, &osize[i]);
		st->bytes_before += (unsigned long long)osize[i];
		/* young objects may belong to a record not written yet */
		if (file_mtime(p, NULL) >= cutoff)
			keep[i] = 1;
	}
	for (size_t i = 0; i < nk; i++) {
		struct qp_hash h;
		json_t *rec = NULL;
		struct qp_miss miss;
		if (qp_hash_from_hex(&h, keys[i]) || qp_store_get_action_ex(s, &h, &rec, &miss, err))
			continue;
		char p[PATH_BUF];
		hashed_path(s, "actions", &h, p);
		if (!rec) {
			/* unusable: it can only cost a rerun, never serve one */
			if (miss.kind != QP_MISS_ABSENT && file_mtime(p, NULL) < cutoff && unlink(p) == 0)
				st->records_removed++;
			continue;
		}
		recs[nr] = (struct gc_record){keys[i], file_mtime(p, NULL), json_object_get(rec, "outputs"),
		                              rec, 0};
		nr++;
	}
	qsort(recs, nr, sizeof(*recs), cmp_age);
	/* bytes referenced by the surviving records, counting each object once */
	for (;;) {
		memset(keep, 0, no);
		for (size_t i = 0; i < no; i++) {
			char p[PATH_BUF];
			struct qp_hash h;
			qp_hash_from_hex(&h, objs[i]);
			hashed_path(s, "objects", &h, p);
			keep[i] = file_mtime(p, NULL) >= cutoff;
		}
		unsigned long long used = 0;
		for (size_t r = 0; r < nr; r++) {
			if (recs[r].removed)
				continue;
			const char *name;
			json_t *v;
			json_object_foreach(recs[r].outputs, name, v) {
				const char *hex = json_string_value(v);
				char **hit = hex ? bsearch(&hex, objs, no, sizeof(*objs), cmp_name) : NULL;
				if (hit)
					keep[hit - objs] = 1;
			}
		}
		for (size_t i = 0; i < no; i++)
			if (keep[i])
				used += (unsigned long long)osize[i];
		size_t victim = nr;
		for (size_t r = 0; r < nr && max_bytes && used > max_bytes; r++)
			if (!recs[r].removed && recs[r].mtime < cutoff) {
				victim = r;
				break;
			}
		if (!max_bytes || used <= max_bytes || victim == nr) {
			st->bytes_after = used;
			break;
		}
		struct qp_hash h;
		qp_hash_from_hex(&h, recs[victim].key);
		if (qp_store_rm_action(s, &h, err) == 0)
			st->records_removed++;
		recs[victim].removed = 1;
	}
	for (size_t i = 0; i < no; i++) {
		if (keep[i])
			continue;
		char p[PATH_BUF];
		struct qp_hash h;
		qp_hash_from_hex(&h, objs[i]);
		hashed_path(s, "objects", &h, p);
		if (unlink(p) == 0) {
			st->objects_removed++;
			st->bytes_freed += (unsigned long long)osize[i];
		}
	}
	gc_temporaries(s, cutoff, st);
	rc = 0;
out:
	for (size_t r = 0; recs && r < nr; r++)
		json_decref(recs[r].rec);
	free(recs);
	free(osize);
	free(keep);
	free_names(keys, nk);
	free_names(objs, no);
	close(lock);
	return rc;
}
