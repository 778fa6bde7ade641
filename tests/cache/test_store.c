/* Tests for cache/store.c (and the parts of common/os.c it stands on).
 *
 * Crash tests fork a writer that _exit()s at one step of the commit
 * protocol (qp_store_set_step_hook), which leaves on disk exactly what a
 * writer killed there leaves; steps inside one os.c call (between the link
 * and the unlink of the temporary) are built by hand. After each, the store
 * must hold no half object, answer lookups sensibly and accept the write
 * again. */
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cache/store.h"
#include "check.h"

#define PATH 4400

static void gen(uint8_t *buf, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		buf[i] = (uint8_t)(i * 31 + 7 + seed * 101 + (i >> 11));
}

static int write_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		return -1;
	ssize_t w = len ? write(fd, data, len) : 0;
	close(fd);
	return w == (ssize_t)len ? 0 : -1;
}

static int is_temp(const char *name)
{
	return strncmp(name, ".tmp-", 5) == 0;
}

static int all_hex(const char *s, size_t n)
{
	if (strlen(s) != n)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!strchr("0123456789abcdef", s[i]))
			return 0;
	return 1;
}

/* Every visible object is whole: its content hashes to its name, and it is
 * read-only. With records set, every visible record is a hit. *temps
 * counts the stray temporaries. Returns 0 when all is well. */
static int verify_store(struct qp_store *s, int records, int *temps)
{
	static const char *const areas[] = {"objects", "actions"};
	*temps = 0;
	for (int a = 0; a < 2; a++) {
		char top[PATH];
		snprintf(top, sizeof(top), "%s/%s", qp_store_dir(s), areas[a]);
		DIR *d = opendir(top);
		if (!d) {
			printf("# cannot open %s\n", top);
			return 1;
		}
		struct dirent *e;
		while ((e = readdir(d))) {
			if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
				continue;
			if (is_temp(e->d_name)) {
				++*temps;
				continue;
			}
			if (!all_hex(e->d_name, 2)) {
				printf("# stray entry %s/%s\n", top, e->d_name);
				closedir(d);
				return 1;
			}
			char fan[PATH + 300];
			snprintf(fan, sizeof(fan), "%s/%s", top, e->d_name);
			DIR *f = opendir(fan);
			struct dirent *g;
			while (f && (g = readdir(f))) {
				if (strcmp(g->d_name, ".") == 0 || strcmp(g->d_name, "..") == 0)
					continue;
				if (is_temp(g->d_name)) {
					++*temps;
					continue;
				}
				char path[PATH + 600], hex[QP_HASH_HEX_LEN + 1];
				snprintf(path, sizeof(path), "%s/%s", fan, g->d_name);
				snprintf(hex, sizeof(hex), "%.2s%.30s", e->d_name, g->d_name);
				struct qp_hash h;
				if (!all_hex(g->d_name, 30) || qp_hash_from_hex(&h, hex) != 0) {
					printf("# misnamed %s\n", path);
					closedir(f);
					closedir(d);
					return 1;
				}
				int bad = 0;
				if (a == 0) {
					struct qp_err err = {0};
					struct qp_hash got;
					struct stat st;
					char ghex[QP_HASH_HEX_LEN + 1];
					if (qp_hash_file(&got, path, &err) != 0 || stat(path, &st) != 0)
						bad = 1;
					qp_hash_hex(&got, ghex);
					if (!bad && strcmp(ghex, hex) != 0) {
						printf("# half or wrong object %s (content hashes to %s)\n", path, ghex);
						bad = 1;
					}
					if (!bad && (st.st_mode & 0222)) {
						printf("# writable object %s\n", path);
						bad = 1;
					}
				} else if (records) {
					json_t *rec;
					struct qp_miss miss;
					struct qp_err err = {0};
					qp_store_get_action_ex(s, &h, &rec, &miss, &err);
					if (!rec) {
						printf("# record miss: %s\n", miss.why);
						bad = 1;
					}
					json_decref(rec);
				}
				if (bad) {
					closedir(f);
					closedir(d);
					return 1;
				}
			}
			if (f)
				closedir(f);
		}
		closedir(d);
	}
	return 0;
}

static int open_store(struct qp_store **s, const char *dir, const char *sub)
{
	char path[PATH];
	struct qp_err err = {0};
	snprintf(path, sizeof(path), "%s/%s", dir, sub);
	if (qp_store_open(s, path, &err) != 0) {
		printf("# %s\n", err.msg);
		return -1;
	}
	return 0;
}

static void object_hex(struct qp_store *s, const struct qp_hash *h, char *path, char *hex)
{
	qp_store_object_path(s, h, path, PATH);
	qp_hash_hex(h, hex);
}

/* ---- layout ---- */

static int store__open_creates_layout_and_marker(const char *dir)
{
	struct qp_store *s;
	CHECK(open_store(&s, dir, "st") == 0);
	char path[PATH], *text;
	struct qp_err err = {0};
	static const char *const sub[] = {"objects", "actions", "tmp"};
	for (int i = 0; i < 3; i++) {
		struct stat st;
		snprintf(path, sizeof(path), "%s/%s", qp_store_dir(s), sub[i]);
		CHECK(stat(path, &st) == 0 && S_ISDIR(st.st_mode));
	}
	snprintf(path, sizeof(path), "%s/format", qp_store_dir(s));
	CHECK_OK(qp_os_read_file(&text, NULL, path, 100, &err), err);
	CHECK_STR(text, "qpipe-store 1\n");
	free(text);
	qp_store_free(s);
	/* Reopening an existing store is fine. */
	CHECK(open_store(&s, dir, "st") == 0);
	qp_store_free(s);
	qp_store_free(NULL);
	return 0;
}

static int store__open_refuses_another_layout_version(const char *dir)
{
	struct qp_store *s;
	CHECK(open_store(&s, dir, "st") == 0);
	char path[PATH], want[PATH + 100];
	snprintf(path, sizeof(path), "%s/format", qp_store_dir(s));
	qp_store_free(s);
	unlink(path);
	CHECK(write_file(path, "qpipe-store 2\n", 14) == 0);
	struct qp_err err = {0};
	snprintf(want, sizeof(want), "%s/st", dir);
	CHECK(qp_store_open(&s, want, &err) == QP_EINVAL && s == NULL);
	snprintf(want, sizeof(want), "%s: store layout version 2, this qpipe reads 1", path);
	CHECK_STR(err.msg, want);
	unlink(path);
	CHECK(write_file(path, "hello\n", 6) == 0);
	snprintf(want, sizeof(want), "%s/st", dir);
	CHECK(qp_store_open(&s, want, &err) == QP_ECORRUPT);
	snprintf(want, sizeof(want), "%s: not a qpipe store marker", path);
	CHECK_STR(err.msg, want);
	return 0;
}

static int store__dir_is_absolute_even_when_opened_by_relative_path(const char *dir)
{
	char cwd[PATH];
	CHECK(getcwd(cwd, sizeof(cwd)));
	CHECK(chdir(dir) == 0);
	struct qp_store *s;
	struct qp_err err = {0};
	int rc = qp_store_open(&s, "rel/store", &err);
	int chdir_back = chdir(cwd);
	CHECK_OK(rc, err);
	CHECK(chdir_back == 0);
	char want[PATH];
	char *real = realpath(dir, NULL);
	snprintf(want, sizeof(want), "%s/rel/store", real);
	free(real);
	CHECK_STR(qp_store_dir(s), want);
	qp_store_free(s);
	return 0;
}

static int store__object_path_is_two_then_thirty_hex_digits(const char *dir)
{
	struct qp_store *s;
	CHECK(open_store(&s, dir, "st") == 0);
	struct qp_hash h;
	qp_hash_buf(&h, "abc", 3);
	char path[PATH], want[PATH];
	qp_store_object_path(s, &h, path, sizeof(path));
	snprintf(want, sizeof(want), "%s/objects/06/b05ab6733a618578af5f94892f3950", qp_store_dir(s));
	CHECK_STR(path, want);
	qp_store_free(s);
	return 0;
}

/* ---- objects ---- */

static int store__put_buf_stores_a_read_only_object_named_by_its_hash(const char *dir)
{
	struct qp_store *s;
	CHECK(open_store(&s, dir, "st") == 0);
	struct qp_err err = {0};
	struct qp_hash h, want;
	qp_hash_buf(&want, "abc", 3);
	CHECK(!qp_store_has_object(s, &want));
	CHECK_OK(qp_store_put_buf(s, "abc", 3, &h, &err), err);
	CHECK(memcmp(h.b, want.b, 16) == 0);
	CHECK(qp_store_has_object(s, &h));
	char path[PATH], hex[QP_HASH_HEX_LEN + 1], *text;
	object_hex(s, &h, path, hex);
	CHECK_OK(qp_os_read_file(&text, NULL, path, 100, &err), err);
	CHECK_STR(text, "abc");
	free(text);
	struct stat st;
	CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0444);
	/* Read-only means read-only to the writer too. */
	CHECK(geteuid() == 0 || open(path, O_WRONLY) < 0);

	CHECK_OK(qp_store_put_buf(s, "", 0, &h, &err), err);
	CHECK(qp_store_has_object(s, &h));
	int temps;
	CHECK(verify_store(s, 1, &temps) == 0 && temps == 0);
	qp_store_free(s);
	return 0;
}

static int store__second_put_of_same_content_succeeds_and_keeps_the_first(const char *dir)
{
	struct qp_store *s;
	CHECK(open_store(&s, dir, "st") == 0);
	struct qp_err err = {0};
	struct qp_hash h, h2;
	uint8_t buf[5000];
	gen(buf, sizeof(buf), 1);
	CHECK_OK(qp_store_put_buf(s, buf, sizeof(buf), &h, &err), err);
	char path[PATH], hex[QP_HASH_HEX_LEN + 1], src[PATH];
	object_hex(s, &h, path, hex);
	struct stat first, again;
	CHECK(stat(path, &first) == 0);
	CHECK_OK(qp_store_put_buf(s, buf, sizeof(buf), &h2, &err), err);
	CHECK(memcmp(h.b, h2.b, 16) == 0);
	/* put_file always reaches the link, so this is the EEXIST path. */
	snprintf(src, sizeof(src), "%s/src", dir);
	CHECK(write_file(src, buf, sizeof(buf)) == 0);
	CHECK_OK(qp_store_put_file(s, src, &h2, &err), err);
	CHECK(memcmp(h.b, h2.b, 16) == 0);
	CHECK(!qp_os_exists(src));
	CHECK(stat(path, &again) == 0 && again.st_ino == first.st_ino);
	int temps;
	CHECK(verify_store(s, 1, &temps) == 0 && temps == 0);
	qp_store_free(s);
	return 0;
}

static int store__damaged_object_of_another_size_is_replaced(const char *dir)
{
	struct qp_store *s;
	CHECK(open_store(&s, dir, "st") == 0);
	struct qp_err err = {0};
	struct qp_hash h;
	uint8_t buf[5000];
	gen(buf, sizeof(buf), 2);
	CHECK_OK(qp_store_put_buf(s, buf, sizeof(buf), &h, &err), err);
	char path[PATH], hex[QP_HASH_HEX_LEN + 1];
	object_hex(s, &h, path, hex);
	CHECK(chmod(path, 0644) == 0 && truncate(path, 100) == 0);
	CHECK_OK(qp_store_put_buf(s, buf, sizeof(buf), &h, &err), err);
	int temps;
	CHECK(verify_store(s, 1, &temps) == 0 && temps == 0);
	uint64_t size;
	CHECK(qp_os_file_size(path, &size) && size == sizeof(buf));
	qp_store_free(s);
	return 0;
}

static int store__put_file_moves_a_source_on_the_same_filesystem(const char *dir)
{
	struct qp_store *s;
	CHECK(open_store(&s, dir, "st") == 0);
	struct qp_err err = {0};
	char scratch[PATH], src[PATH + 10], path[PATH], hex[QP_HASH_HEX_LEN + 1];
	CHECK_OK(qp_store_scratch_dir(s, scratch, sizeof(scratch), &err), err);
	snprintf(src, sizeof(src), "%s/out", scratch);
	uint8_t buf[70000];
	gen(buf, sizeof(buf), 3);
	CHECK(write_file(src, buf, sizeof(buf)) == 0);
	struct stat before, after;
	CHECK(stat(src, &before) == 0);
	struct qp_hash h, want;
	CHECK_OK(qp_store_put_file(s, src, &h, &err), err);
	qp_hash_buf(&want, buf, sizeof(buf));
	CHECK(memcmp(h.b, want.b, 16) == 0);
	CHECK(!qp_os_exists(src));
	object_hex(s, &h, path, hex);
	/* Moved, not copied: the same inode now has the object's name. */
	CHECK(stat(path, &after) == 0 && after.st_ino == before.st_ino);
	CHECK((after.st_mode & 0777) == 0444);
	int temps;
	CHECK(verify_store(s, 1, &temps) == 0 && temps == 0);
	qp_store_scratch_remove(scratch);
	qp_store_free(s);
	return 0;
}

static int store__put_file_copies_a_source_on_another_filesystem(const char *dir)
{
	struct stat a, b;
	if (stat("/dev/shm", &b) != 0 || stat(dir, &a) != 0 || a.st_dev == b.st_dev) {
		printf("# no second filesystem at /dev/shm\n");
		return SKIP;
	}
	char other[64] = "/dev/shm/qp-test-XXXXXX";
	CHECK(mkdtemp(other));
	char src[128];
	snprintf(src, sizeof(src), "%s/out", other);
	/* Over one copy chunk of os.c, so hashing across chunks is exercised. */
	size_t len = (1u << 20) + 4321;
	uint8_t *buf = malloc(len);
	CHECK(buf);
	gen(buf, len, 4);
	int wrote = write_file(src, buf, len);
	struct qp_hash h, want;
	qp_hash_buf(&want, buf, len);
	free(buf);
	struct qp_store *s;
	struct qp_err err = {0};
	int rc = wrote == 0 && open_store(&s, dir, "st") == 0 ? 0 : -1;
	if (rc == 0)
		rc = qp_store_put_file(s, src, &h, &err);
	int src_left = qp_os_exists(src);
	qp_os_remove_tree(other);
	CHECK_OK(rc, err);
	CHECK(memcmp(h.b, want.b, 16) == 0);
	CHECK(!src_left);
	int temps;
	CHECK(verify_store(s, 1, &temps) == 0 && temps == 0);
	qp_store_free(s);
	return 0;
}

static int store__put_file_copies_a_hard_linked_source_and_spares_the_other_link(const char *dir)
{
	struct qp_store *s;
	CHECK(open_store(&s, dir, "st") == 0);
	struct qp_err err = {0};
	char src[PATH], other[PATH], path[PATH], hex[QP_HASH_HEX_LEN + 1];
	snprintf(src, sizeof(src), "%s/src", dir);
	snprintf(other, sizeof(other), "%s/other", dir);
	uint8_t buf[3000];
	gen(buf, sizeof(buf), 5);
	CHECK(write_file(other, buf, sizeof(buf)) == 0);
	CHECK(link(other, src) == 0);
	struct qp_hash h;
	CHECK_OK(qp_store_put_file(s, src, &h, &err), err);
	CHECK(!qp_os_exists(src));
	struct stat o, obj;
	object_hex(s, &h, path, hex);
	CHECK(stat(other, &o) == 0 && stat(path, &obj) == 0);
	/* Sharing the inode would let a write through 'other' change an object. */
	CHECK(o.st_ino != obj.st_ino);
	CHECK((o.st_mode & 0777) == 0644 && o.st_nlink == 1);
	int temps;
	CHECK(verify_store(s, 1, &temps) == 0 && temps == 0);
	qp_store_free(s);
	return 0;
}

static int store__put_file_of_a_symlink_stores_the_target_content(const char *dir)
{
	struct qp_store *s;
	CHECK(open_store(&s, dir, "st") == 0);
	struct qp_err err = {0};
	char src[PATH], target[PATH];
	snprintf(src, sizeof(src), "%s/link", dir);
	snprintf(target, sizeof(target), "%s/target", dir);
	CHECK(write_file(target, "payload", 7) == 0);
	CHECK(symlink(target, src) == 0);
	struct qp_hash h, want;
	CHECK_OK(qp_store_put_file(s, src, &h, &err), err);
	qp_hash_buf(&want, "payload", 7);
	CHECK(memcmp(h.b, want.b, 16) == 0);
	struct stat st;
	CHECK(lstat(src, &st) != 0);
	CHECK(stat(target, &st) == 0 && (st.st_mode & 0777) == 0644);
	int temps;
	CHECK(verify_store(s, 1, &temps) == 0 && temps == 0);
	qp_store_free(s);
	return 0;
}

static int store__put_file_of_a_missing_or_odd_source_fails_and_leaves_no_temporary(const char *dir)
{
	struct qp_store *s;
	CHECK(open_store(&s, dir, "st") == 0);
	struct qp_err err = {0};
	char src[PATH], want[PATH + 100];
	snprintf(src, sizeof(src), "%s/nope", dir);
	struct qp_hash h;
	CHECK(qp_store_put_file(s, src, &h, &err) == QP_ENOTFOUND);
	snprintf(want, sizeof(want), "%s: cannot open: No such file or directory", src);
	CHECK_STR(err.msg, want);
	CHECK(qp_store_put_file(s, dir, &h, &err) == QP_EINVAL);
	snprintf(want, sizeof(want), "%s: not a regular file", dir);
	CHECK_STR(err.msg, want);
	int temps;
	CHECK(verify_store(s, 1, &temps) == 0 && temps == 0);
	qp_store_free(s);
	return 0;
}

/* ---- action records ---- */

static int put_object(struct qp_store *s, const char *text, char hex[QP_HASH_HEX_LEN + 1])
{
	struct qp_err err = {0};
	struct qp_hash h;
	if (qp_store_put_buf(s, text, strlen(text), &h, &err) != 0) {
		printf("# %s\n", err.msg);
		return -1;
	}
	qp_hash_hex(&h, hex);
	return 0;
}

static json_t *record_with(const char *name, const char *hex, double metric)
{
	return json_pack("{s:{s:s}, s:{s:f}}", "outputs", name, hex, "metrics", "ppl", metric);
}

static void action_path(struct qp_store *s, const struct qp_hash *key, char *path)
{
	char hex[QP_HASH_HEX_LEN + 1];
	qp_hash_hex(key, hex);
	snprintf(path, PATH, "%s/actions/%.2s/%s", qp_store_dir(s), hex, hex + 2);
}

static int store__action_round_trips_with_format_version_and_key(const char *dir)
{
	struct qp_store *s;
	CHECK(open_store(&s, dir, "st") == 0);
	char hex[QP_HASH_HEX_LEN + 1], khex[QP_HASH_HEX_LEN + 1], path[PATH], want[200];
	CHECK(put_object(s, "model bytes", hex) == 0);
	struct qp_hash key;
	qp_hash_buf(&key, "stage key", 9);
	qp_hash_hex(&key, khex);
	json_t *rec = record_with("model", hex, 5.25);
	/* The store owns these three; the caller's values are overridden. */
	json_object_set_new(rec, "format", json_string("bogus"));
	json_object_set_new(rec, "version", json_integer(7));
	struct qp_err err = {0};
	CHECK_OK(qp_store_put_action(s, &key, rec, &err), err);
	CHECK_STR(json_string_value(json_object_get(rec, "format")), "bogus");
	json_decref(rec);

	char *text;
	action_path(s, &key, path);
	CHECK_OK(qp_os_read_file(&text, NULL, path, 1 << 20, &err), err);
	snprintf(want, sizeof(want), "{\"format\":\"qpipe-action\",\"version\":1,\"key\":\"%s\",", khex);
	int starts = strncmp(text, want, strlen(want)) == 0;
	int ends = text[strlen(text) - 1] == '\n';
	free(text);
	CHECK(starts && ends);
	struct stat st;
	CHECK(stat(path, &st) == 0 && (st.st_mode & 0222) == 0);

	json_t *got;
	struct qp_miss miss;
	CHECK_OK(qp_store_get_action_ex(s, &key, &got, &miss, &err), err);
	CHECK(got != NULL && miss.kind == QP_MISS_NONE && miss.why[0] == '\0');
	CHECK_STR(json_string_value(json_object_get(json_object_get(got, "outputs"), "model")), hex);
	CHECK(json_real_value(json_object_get(json_object_get(got, "metrics"), "ppl")) == 5.25);
	CHECK(json_integer_value(json_object_get(got, "version")) == 1);
	json_decref(got);

	/* Rewriting a record replaces it; the plain lookup agrees. */
	rec = json_pack("{s:i}", "n", 2);
	CHECK_OK(qp_store_put_action(s, &key, rec, &err), err);
	json_decref(rec);
	CHECK_OK(qp_store_get_action(s, &key, &got, &err), err);
	CHECK(got && json_integer_value(json_object_get(got, "n")) == 2);
	CHECK(json_object_get(got, "outputs") == NULL);
	json_decref(got);
	qp_store_free(s);
	return 0;
}

static int store__absent_action_is_a_quiet_miss(const char *dir)
{
	struct qp_store *s;
	CHECK(open_store(&s, dir, "st") == 0);
	struct qp_hash key;
	qp_hash_buf(&key, "never run", 9);
	json_t *got = (json_t *)1;
	struct qp_miss miss;
	struct qp_err err = {0};
	CHECK(qp_store_get_action_ex(s, &key, &got, &miss, &err) == 0);
	CHECK(got == NULL && miss.kind == QP_MISS_ABSENT);
	got = (json_t *)1;
	CHECK(qp_store_get_action(s, &key, &got, &err) == 0 && got == NULL);
	qp_store_free(s);
	return 0;
}

static int store__action_whose_object_is_gone_is_a_miss_that_names_it(const char *dir)
{
	struct qp_store *s;
	CHECK(open_store(&s, dir, "st") == 0);
	char hex[QP_HASH_HEX_LEN + 1], opath[PATH], apath[PATH], want[PATH + 200];
	CHECK(put_object(s, "weights", hex) == 0);
	struct qp_hash key, h;
	qp_hash_buf(&key, "k", 1);
	json_t *rec = record_with("model", hex, 1);
	struct qp_err err = {0};
	CHECK_OK(qp_store_put_action(s, &key, rec, &err), err);
	json_decref(rec);
	qp_hash_from_hex(&h, hex);
	qp_store_object_path(s, &h, opath, sizeof(opath));
	CHECK(unlink(opath) == 0);

	json_t *got;
	struct qp_miss miss;
	CHECK(qp_store_get_action_ex(s, &key, &got, &miss, &err) == 0);
	CHECK(got == NULL && miss.kind == QP_MISS_OBJECT);
	action_path(s, &key, apath);
	snprintf(want, sizeof(want), "%s: output 'model': object %s is missing", apath, hex);
	CHECK_STR(miss.why, want);
	qp_store_free(s);
	return 0;
}

static int store__put_action_refuses_outputs_not_in_the_store(const char *dir)
{
	struct qp_store *s;
	CHECK(open_store(&s, dir, "st") == 0);
	struct qp_hash key, nothere;
	char khex[QP_HASH_HEX_LEN + 1], nhex[QP_HASH_HEX_LEN + 1], want[300], path[PATH];
	qp_hash_buf(&key, "k", 1);
	qp_hash_hex(&key, khex);
	qp_hash_buf(&nothere, "never stored", 12);
	qp_hash_hex(&nothere, nhex);
	struct qp_err err = {0};

	json_t *rec = record_with("model", nhex, 1);
	CHECK(qp_store_put_action(s, &key, rec, &err) == QP_EINVAL);
	json_decref(rec);
	snprintf(want, sizeof(want), "action %s: output 'model': object %s is not in the store", khex,
	         nhex);
	CHECK_STR(err.msg, want);

	/* Uppercase is not the canonical spelling; a record must use it. */
	for (char *p = nhex; *p; p++)
		if (*p >= 'a' && *p <= 'f')
			*p = (char)(*p - 'a' + 'A');
	rec = record_with("m", nhex, 1);
	CHECK(qp_store_put_action(s, &key, rec, &err) == QP_EINVAL);
	json_decref(rec);
	snprintf(want, sizeof(want), "action %s: output 'm': not a 32-digit lowercase hex hash", khex);
	CHECK_STR(err.msg, want);

	rec = json_pack("{s:[]}", "outputs");
	CHECK(qp_store_put_action(s, &key, rec, &err) == QP_EINVAL);
	json_decref(rec);
	snprintf(want, sizeof(want), "action %s: 'outputs' is not a JSON object", khex);
	CHECK_STR(err.msg, want);

	rec = json_array();
	CHECK(qp_store_put_action(s, &key, rec, &err) == QP_EINVAL);
	json_decref(rec);

	action_path(s, &key, path);
	CHECK(!qp_os_exists(path));
	qp_store_free(s);
	return 0;
}

/* Put text as key's record behind the store's back. */
static int plant_record(struct qp_store *s, const struct qp_hash *key, const char *text,
                        size_t len)
{
	char path[PATH], fan[PATH];
	action_path(s, key, path);
	snprintf(fan, sizeof(fan), "%s", path);
	*strrchr(fan, '/') = '\0';
	struct qp_err err = {0};
	if (qp_os_mkdir_p(fan, &err) != 0)
		return -1;
	unlink(path);
	return write_file(path, text, len);
}

static int expect_miss(struct qp_store *s, const struct qp_hash *key, enum qp_miss_kind kind,
                       struct qp_miss *miss)
{
	json_t *got = (json_t *)1;
	struct qp_err err = {0};
	int rc = qp_store_get_action_ex(s, key, &got, miss, &err);
	if (rc != 0 || got != NULL || miss->kind != kind) {
		printf("# rc %d, got %p, kind %d (want %d): %s\n", rc, (void *)got, miss->kind, kind,
		       miss->why);
		json_decref(got);
		return -1;
	}
	printf("# miss: %s\n", miss->why);
	return 0;
}

static int store__corrupt_action_is_a_miss_that_says_why(const char *dir)
{
	struct qp_store *s;
	CHECK(open_store(&s, dir, "st") == 0);
	struct qp_hash key, other;
	char khex[QP_HASH_HEX_LEN + 1], ohex[QP_HASH_HEX_LEN + 1], path[PATH], want[PATH + 200];
	qp_hash_buf(&key, "k", 1);
	qp_hash_hex(&key, khex);
	qp_hash_buf(&other, "other", 5);
	qp_hash_hex(&other, ohex);
	action_path(s, &key, path);
	char bad[8][300];
	snprintf(bad[0], 300, "%s", "");
	snprintf(bad[1], 300, "{\"format\":\"qpipe-action\",\"vers");
	snprintf(bad[2], 300, "{\"format\":\"elsewhere\",\"version\":1,\"key\":\"%s\"}", khex);
	snprintf(bad[3], 300, "{\"format\":\"qpipe-action\",\"version\":\"1\",\"key\":\"%s\"}", khex);
	snprintf(bad[4], 300, "{\"format\":\"qpipe-action\",\"version\":1,\"key\":\"%s\"}", ohex);
	snprintf(bad[5], 300, "{\"format\":\"qpipe-action\",\"version\":1,\"key\":\"%s\","
	         "\"outputs\":{\"m\":\"zz\"}}", khex);
	snprintf(bad[6], 300, "{\"format\":\"qpipe-action\",\"version\":1,\"version\":1,"
	         "\"key\":\"%s\"}", khex);
	snprintf(bad[7], 300, "{\"format\":\"qpipe-action\",\"version\":1,\"key\":\"%s\"} x", khex);
	struct qp_miss miss;
	for (int i = 0; i < 8; i++) {
		printf("# case %d\n", i);
		CHECK(plant_record(s, &key, bad[i], strlen(bad[i])) == 0);
		CHECK(expect_miss(s, &key, QP_MISS_CORRUPT, &miss) == 0);
		CHECK(strncmp(miss.why, path, strlen(path)) == 0);
	}
	/* Binary junk with NULs, as a torn write on some filesystems leaves. */
	static const char junk[] = "\0\0\0\x7f\x45LF\0{";
	CHECK(plant_record(s, &key, junk, sizeof(junk)) == 0);
	CHECK(expect_miss(s, &key, QP_MISS_CORRUPT, &miss) == 0);

	CHECK(plant_record(s, &key, "[1,2]", 5) == 0);
	CHECK(expect_miss(s, &key, QP_MISS_CORRUPT, &miss) == 0);
	snprintf(want, sizeof(want), "%s: not a JSON object", path);
	CHECK_STR(miss.why, want);

	CHECK(plant_record(s, &key, bad[4], strlen(bad[4])) == 0);
	CHECK(expect_miss(s, &key, QP_MISS_CORRUPT, &miss) == 0);
	snprintf(want, sizeof(want), "%s: record is for key '%s'", path, ohex);
	CHECK_STR(miss.why, want);

	/* Jansson's own position and text, behind the record's path. */
	CHECK(plant_record(s, &key, "{\"a\":", 5) == 0);
	CHECK(expect_miss(s, &key, QP_MISS_CORRUPT, &miss) == 0);
	snprintf(want, sizeof(want), "%s:1:5: unexpected token near end of file", path);
	CHECK_STR(miss.why, want);

	/* A rerun rewrites the record, and then it is a hit. */
	json_t *rec = json_pack("{s:i}", "n", 1), *got;
	struct qp_err err = {0};
	CHECK_OK(qp_store_put_action(s, &key, rec, &err), err);
	json_decref(rec);
	CHECK_OK(qp_store_get_action(s, &key, &got, &err), err);
	CHECK(got != NULL);
	json_decref(got);
	qp_store_free(s);
	return 0;
}

static int store__action_of_another_version_is_a_miss(const char *dir)
{
	struct qp_store *s;
	CHECK(open_store(&s, dir, "st") == 0);
	struct qp_hash key;
	char khex[QP_HASH_HEX_LEN + 1], path[PATH], text[300], want[PATH + 100];
	qp_hash_buf(&key, "k", 1);
	qp_hash_hex(&key, khex);
	action_path(s, &key, path);
	struct qp_miss miss;
	snprintf(text, sizeof(text), "{\"format\":\"qpipe-action\",\"version\":2,\"key\":\"%s\"}", khex);
	CHECK(plant_record(s, &key, text, strlen(text)) == 0);
	CHECK(expect_miss(s, &key, QP_MISS_VERSION, &miss) == 0);
	snprintf(want, sizeof(want), "%s: record version 2, this qpipe reads 1", path);
	CHECK_STR(miss.why, want);
	snprintf(text, sizeof(text), "{\"format\":\"qpipe-action\",\"version\":0,\"key\":\"%s\"}", khex);
	CHECK(plant_record(s, &key, text, strlen(text)) == 0);
	CHECK(expect_miss(s, &key, QP_MISS_VERSION, &miss) == 0);
	qp_store_free(s);
	return 0;
}

static int store__unreadable_or_oversized_action_is_a_miss(const char *dir)
{
	struct qp_store *s;
	CHECK(open_store(&s, dir, "st") == 0);
	struct qp_hash key;
	char path[PATH];
	qp_hash_buf(&key, "k", 1);
	CHECK(plant_record(s, &key, "", 0) == 0);
	action_path(s, &key, path);
	struct qp_miss miss;
	/* A directory where the record should be: the read fails. */
	CHECK(unlink(path) == 0 && mkdir(path, 0755) == 0);
	CHECK(expect_miss(s, &key, QP_MISS_UNREADABLE, &miss) == 0);
	CHECK(rmdir(path) == 0);
	/* Sparse, so the test costs no disk. */
	CHECK(write_file(path, "", 0) == 0 && truncate(path, ((off_t)64 << 20) + 1) == 0);
	CHECK(expect_miss(s, &key, QP_MISS_UNREADABLE, &miss) == 0);
	CHECK(strstr(miss.why, "larger than") != NULL);
	qp_store_free(s);
	return 0;
}

/* ---- crashes and concurrency ---- */

static void die_at(void *arg, const char *step)
{
	if (strcmp(step, (const char *)arg) == 0)
		_exit(42);
}

struct op {
	int (*fn)(struct qp_store *s, struct op *op, struct qp_err *err);
	const void *data;
	size_t len;
	const char *src;
	const struct qp_hash *key;
	json_t *rec;
};

static int op_put_buf(struct qp_store *s, struct op *op, struct qp_err *err)
{
	struct qp_hash h;
	return qp_store_put_buf(s, op->data, op->len, &h, err);
}

static int op_put_file(struct qp_store *s, struct op *op, struct qp_err *err)
{
	struct qp_hash h;
	if (!qp_os_exists(op->src) && write_file(op->src, op->data, op->len) != 0)
		return qp_err_set(err, QP_EIO, "%s: cannot write test source:", op->src);
	return qp_store_put_file(s, op->src, &h, err);
}

static int op_put_action(struct qp_store *s, struct op *op, struct qp_err *err)
{
	return qp_store_put_action(s, op->key, op->rec, err);
}

/* Run op in a child that dies at step; 0 if it got there and died. */
static int kill_at(struct qp_store *s, struct op *op, const char *step)
{
	fflush(stdout);
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		struct qp_err err = {0};
		qp_store_set_step_hook(s, die_at, (void *)step);
		op->fn(s, op, &err);
		_exit(1);
	}
	int status;
	if (waitpid(pid, &status, 0) != pid)
		return -1;
	return WIFEXITED(status) && WEXITSTATUS(status) == 42 ? 0 : -1;
}

static int store__crash_at_each_object_step_leaves_no_half_object(const char *dir)
{
	static const char *const steps[] = {"tmp-open", "tmp-half", "tmp-full", "placed"};
	size_t len = 300000;
	uint8_t *buf = malloc(len);
	CHECK(buf);
	gen(buf, len, 6);
	struct qp_hash want;
	qp_hash_buf(&want, buf, len);
	int failed = 0;
	for (int kind = 0; kind < 2 && !failed; kind++) {
		for (size_t i = 0; i < 4 && !failed; i++) {
			if (kind == 1 && strcmp(steps[i], "tmp-half") == 0)
				continue; /* put_file moves or copies in one call */
			char sub[64], src[PATH];
			snprintf(sub, sizeof(sub), "%s-%s", kind ? "file" : "buf", steps[i]);
			snprintf(src, sizeof(src), "%s/src-%s", dir, sub);
			printf("# %s\n", sub);
			struct qp_store *s;
			if (open_store(&s, dir, sub) != 0) {
				failed = 1;
				break;
			}
			struct op op = {kind ? op_put_file : op_put_buf, buf, len, src, NULL, NULL};
			int placed = strcmp(steps[i], "placed") == 0, temps = -1;
			struct qp_err err = {0};
			failed = kill_at(s, &op, steps[i]) != 0 ||
			         qp_store_has_object(s, &want) != placed ||
			         verify_store(s, 1, &temps) != 0 || temps != !placed;
			if (failed)
				printf("# after the kill: has %d, temps %d\n", qp_store_has_object(s, &want),
				       temps);
			/* The writer's retry must succeed over whatever was left. */
			if (!failed && op.fn(s, &op, &err) != 0) {
				printf("# retry: %s\n", err.msg);
				failed = 1;
			}
			failed = failed || !qp_store_has_object(s, &want) ||
			         verify_store(s, 1, &temps) != 0 || temps != !placed;
			qp_store_free(s);
		}
	}
	free(buf);
	return failed;
}

static int store__crash_at_each_record_step_leaves_old_or_new_record(const char *dir)
{
	static const char *const steps[] = {"tmp-open", "tmp-half", "tmp-full", "placed"};
	for (size_t i = 0; i < 4; i++) {
		char sub[64], hex[QP_HASH_HEX_LEN + 1];
		snprintf(sub, sizeof(sub), "rec-%s", steps[i]);
		printf("# %s\n", sub);
		struct qp_store *s;
		CHECK(open_store(&s, dir, sub) == 0);
		CHECK(put_object(s, "output", hex) == 0);
		struct qp_hash key;
		qp_hash_buf(&key, "k", 1);
		struct qp_err err = {0};
		json_t *old = record_with("o", hex, 1.0), *new = record_with("o", hex, 2.0), *got;
		CHECK_OK(qp_store_put_action(s, &key, old, &err), err);
		struct op op = {op_put_action, NULL, 0, NULL, &key, new};
		CHECK(kill_at(s, &op, steps[i]) == 0);
		int temps, placed = strcmp(steps[i], "placed") == 0;
		CHECK(verify_store(s, 1, &temps) == 0 && temps == !placed);
		CHECK_OK(qp_store_get_action(s, &key, &got, &err), err);
		CHECK(got != NULL);
		double ppl = json_real_value(json_object_get(json_object_get(got, "metrics"), "ppl"));
		json_decref(got);
		CHECK(ppl == (placed ? 2.0 : 1.0));
		CHECK_OK(qp_store_put_action(s, &key, new, &err), err);
		CHECK_OK(qp_store_get_action(s, &key, &got, &err), err);
		CHECK(got && json_real_value(json_object_get(json_object_get(got, "metrics"), "ppl")) == 2.0);
		json_decref(got);
		json_decref(old);
		json_decref(new);
		qp_store_free(s);
	}
	return 0;
}

/* What no step hook can reach, because it happens inside one os.c call or
 * between two syscalls: a temporary already linked but not yet unlinked,
 * and torn temporaries in every place a writer makes them. */
static int store__stray_temporaries_of_killed_writers_are_ignored(const char *dir)
{
	struct qp_store *s;
	CHECK(open_store(&s, dir, "st") == 0);
	struct qp_err err = {0};
	uint8_t x[4000], y[4000];
	gen(x, sizeof(x), 7);
	gen(y, sizeof(y), 8);
	struct qp_hash hx, hy, key;
	CHECK_OK(qp_store_put_buf(s, x, sizeof(x), &hx, &err), err);
	qp_hash_buf(&hy, y, sizeof(y));
	qp_hash_buf(&key, "k", 1);
	char xpath[PATH], ypath[PATH], apath[PATH], t[PATH + 20];
	qp_store_object_path(s, &hx, xpath, sizeof(xpath));
	qp_store_object_path(s, &hy, ypath, sizeof(ypath));
	action_path(s, &key, apath);

	/* Linked into place, killed before the unlink. */
	snprintf(t, sizeof(t), "%.*s/.tmp-AAAAAA", (int)(strrchr(xpath, '/') - xpath), xpath);
	CHECK(link(xpath, t) == 0);
	/* Half written beside y's name, which does not exist. */
	*strrchr(ypath, '/') = '\0';
	CHECK(qp_os_mkdir_p(ypath, &err) == 0);
	snprintf(t, sizeof(t), "%s/.tmp-BBBBBB", ypath);
	CHECK(write_file(t, y, sizeof(y) / 2) == 0);
	/* put_file's temporary, empty and half copied. */
	snprintf(t, sizeof(t), "%s/objects/.tmp-CCCCCC", qp_store_dir(s));
	CHECK(write_file(t, "", 0) == 0);
	snprintf(t, sizeof(t), "%s/objects/.tmp-DDDDDD", qp_store_dir(s));
	CHECK(write_file(t, y, 100) == 0);
	/* A torn record. */
	*strrchr(apath, '/') = '\0';
	CHECK(qp_os_mkdir_p(apath, &err) == 0);
	snprintf(t, sizeof(t), "%s/.tmp-EEEEEE", apath);
	CHECK(write_file(t, "{\"format\":\"qpipe-act", 20) == 0);

	int temps;
	CHECK(verify_store(s, 1, &temps) == 0 && temps == 5);
	CHECK(qp_store_has_object(s, &hx));
	CHECK(!qp_store_has_object(s, &hy));
	struct qp_miss miss;
	CHECK(expect_miss(s, &key, QP_MISS_ABSENT, &miss) == 0);

	struct qp_hash h;
	CHECK_OK(qp_store_put_buf(s, y, sizeof(y), &h, &err), err);
	char hex[QP_HASH_HEX_LEN + 1];
	qp_hash_hex(&hy, hex);
	json_t *rec = record_with("y", hex, 3), *got;
	CHECK_OK(qp_store_put_action(s, &key, rec, &err), err);
	json_decref(rec);
	CHECK_OK(qp_store_get_action(s, &key, &got, &err), err);
	CHECK(got != NULL);
	json_decref(got);
	CHECK(verify_store(s, 1, &temps) == 0 && temps == 5);
	qp_store_free(s);
	return 0;
}

#define WRITERS 4
#define ROUNDS 10
#define OBJ_LEN ((size_t)200000)

/* One of the racing writers: the same objects and records as its peers. */
static int race(const char *root, int id, int start_fd)
{
	char c;
	/* Blocks until the parent closes its end, so all start together. */
	if (read(start_fd, &c, 1) < 0)
		return 1;
	struct qp_store *s;
	struct qp_err err = {0};
	/* Opening concurrently is part of the test: the layout marker races. */
	if (qp_store_open(&s, root, &err) != 0) {
		printf("# writer %d: %s\n", id, err.msg);
		return 1;
	}
	uint8_t *buf = malloc(OBJ_LEN);
	char scratch[PATH], src[PATH + 20];
	int rc = buf ? qp_store_scratch_dir(s, scratch, sizeof(scratch), &err) : -1;
	for (int r = 0; r < ROUNDS && rc == 0; r++) {
		struct qp_hash hb, hf, key;
		char bhex[QP_HASH_HEX_LEN + 1], fhex[QP_HASH_HEX_LEN + 1];
		gen(buf, OBJ_LEN, 100 + (unsigned)r);
		rc = qp_store_put_buf(s, buf, OBJ_LEN, &hb, &err);
		gen(buf, OBJ_LEN, 200 + (unsigned)r);
		snprintf(src, sizeof(src), "%s/out%d", scratch, r);
		if (rc == 0 && write_file(src, buf, OBJ_LEN) != 0)
			rc = qp_err_set(&err, QP_EIO, "%s: cannot write:", src);
		if (rc == 0)
			rc = qp_store_put_file(s, src, &hf, &err);
		if (rc)
			break;
		qp_hash_hex(&hb, bhex);
		qp_hash_hex(&hf, fhex);
		qp_hash_buf(&key, &r, sizeof(r));
		json_t *rec = json_pack("{s:{s:s,s:s},s:i}", "outputs", "b", bhex, "f", fhex,
		                        "writer", id);
		rc = qp_store_put_action(s, &key, rec, &err);
		json_decref(rec);
	}
	if (rc)
		printf("# writer %d: %s\n", id, err.msg);
	free(buf);
	qp_store_free(s);
	return rc != 0;
}

static int store__concurrent_writers_of_same_objects_and_records_all_succeed(const char *dir)
{
	char root[PATH];
	snprintf(root, sizeof(root), "%s/shared", dir);
	int fds[2];
	CHECK(pipe(fds) == 0);
	fflush(stdout);
	pid_t pids[WRITERS];
	for (int i = 0; i < WRITERS; i++) {
		pids[i] = fork();
		if (pids[i] == 0) {
			close(fds[1]);
			int rc = race(root, i, fds[0]);
			fflush(stdout);
			_exit(rc);
		}
	}
	close(fds[0]);
	close(fds[1]);
	int failed = 0;
	for (int i = 0; i < WRITERS; i++) {
		int status;
		if (pids[i] < 0 || waitpid(pids[i], &status, 0) != pids[i] || !WIFEXITED(status) ||
		    WEXITSTATUS(status) != 0)
			failed = 1;
	}
	CHECK(!failed);
	struct qp_store *s;
	CHECK(open_store(&s, dir, "shared") == 0);
	int temps;
	CHECK(verify_store(s, 1, &temps) == 0 && temps == 0);
	uint8_t *buf = malloc(OBJ_LEN);
	CHECK(buf);
	for (int r = 0; r < ROUNDS && !failed; r++) {
		struct qp_hash h, key;
		gen(buf, OBJ_LEN, 100 + (unsigned)r);
		qp_hash_buf(&h, buf, OBJ_LEN);
		failed |= !qp_store_has_object(s, &h);
		gen(buf, OBJ_LEN, 200 + (unsigned)r);
		qp_hash_buf(&h, buf, OBJ_LEN);
		failed |= !qp_store_has_object(s, &h);
		qp_hash_buf(&key, &r, sizeof(r));
		json_t *got;
		struct qp_err err = {0};
		qp_store_get_action(s, &key, &got, &err);
		failed |= got == NULL;
		json_decref(got);
	}
	free(buf);
	qp_store_free(s);
	CHECK(!failed);
	return 0;
}

/* ---- scratch ---- */

static int store__scratch_dirs_are_fresh_and_removed_with_all_inside(const char *dir)
{
	struct qp_store *s;
	CHECK(open_store(&s, dir, "st") == 0);
	struct qp_err err = {0};
	char a[PATH], b[PATH], p[PATH + 100], outside[PATH], prefix[PATH + 10];
	CHECK_OK(qp_store_scratch_dir(s, a, sizeof(a), &err), err);
	CHECK_OK(qp_store_scratch_dir(s, b, sizeof(b), &err), err);
	CHECK(strcmp(a, b) != 0);
	snprintf(prefix, sizeof(prefix), "%s/tmp/", qp_store_dir(s));
	CHECK(strncmp(a, prefix, strlen(prefix)) == 0);
	struct stat st;
	CHECK(stat(a, &st) == 0 && S_ISDIR(st.st_mode));

	snprintf(p, sizeof(p), "%s/x/y/z", a);
	CHECK(qp_os_mkdir_p(p, &err) == 0);
	snprintf(p, sizeof(p), "%s/x/y/z/f", a);
	CHECK(write_file(p, "data", 4) == 0);
	snprintf(p, sizeof(p), "%s/ro", a);
	CHECK(mkdir(p, 0755) == 0);
	snprintf(p, sizeof(p), "%s/ro/f", a);
	CHECK(write_file(p, "data", 4) == 0 && chmod(p, 0444) == 0);
	snprintf(p, sizeof(p), "%s/ro", a);
	CHECK(chmod(p, 0555) == 0);
	/* A link out of the scratch dir must be removed, not followed. */
	snprintf(outside, sizeof(outside), "%s/keep", dir);
	CHECK(write_file(outside, "keep", 4) == 0);
	snprintf(p, sizeof(p), "%s/link", a);
	CHECK(symlink(dir, p) == 0);

	qp_store_scratch_remove(a);
	CHECK(!qp_os_exists(a));
	CHECK(qp_os_exists(outside));
	CHECK(qp_os_exists(b));
	qp_store_scratch_remove(b);
	CHECK(!qp_os_exists(b));

	char small[8];
	CHECK(qp_store_scratch_dir(s, small, sizeof(small), &err) == QP_EINVAL);
	qp_store_free(s);
	return 0;
}

/* ---- common/os.c fixes the store depends on ---- */

static int os__read_file_accepts_a_file_of_exactly_max_bytes(const char *dir)
{
	char path[PATH], *text;
	snprintf(path, sizeof(path), "%s/f", dir);
	uint8_t buf[4095];
	gen(buf, sizeof(buf), 9);
	CHECK(write_file(path, buf, sizeof(buf)) == 0);
	struct qp_err err = {0};
	size_t len;
	CHECK_OK(qp_os_read_file(&text, &len, path, sizeof(buf), &err), err);
	CHECK(len == sizeof(buf) && memcmp(text, buf, len) == 0);
	free(text);
	CHECK(qp_os_read_file(&text, &len, path, sizeof(buf) - 1, &err) == QP_ENOMEM);
	CHECK(text == NULL);
	return 0;
}

static int os__abort_after_a_failed_atomic_open_touches_nothing(const char *dir)
{
	char dst[PATH];
	snprintf(dst, sizeof(dst), "%s/no/such/dir/file", dir);
	struct qp_atomic_file f;
	memset(&f, 'x', sizeof(f));
	struct qp_err err = {0};
	CHECK(qp_os_atomic_open(&f, dst, &err) == QP_EIO);
	CHECK(f.fd == -1 && f.tmp_path[0] == '\0');
	qp_os_atomic_abort(&f);
	/* After a commit the temporary's name may be another writer's. */
	snprintf(dst, sizeof(dst), "%s/file", dir);
	CHECK_OK(qp_os_atomic_open(&f, dst, &err), err);
	CHECK_OK(qp_os_atomic_commit(&f, &err), err);
	CHECK(f.tmp_path[0] == '\0');
	return 0;
}

static int os__mkdir_p_refuses_a_file_in_the_way(const char *dir)
{
	char path[PATH], want[PATH + 100];
	snprintf(path, sizeof(path), "%s/file", dir);
	CHECK(write_file(path, "", 0) == 0);
	struct qp_err err = {0};
	snprintf(path, sizeof(path), "%s/file/sub", dir);
	CHECK(qp_os_mkdir_p(path, &err) == QP_EIO);
	snprintf(path, sizeof(path), "%s/file", dir);
	snprintf(want, sizeof(want), "%s: exists and is not a directory", path);
	CHECK_STR(err.msg, want);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct test tests[] = {
		TEST(store__open_creates_layout_and_marker),
		TEST(store__open_refuses_another_layout_version),
		TEST(store__dir_is_absolute_even_when_opened_by_relative_path),
		TEST(store__object_path_is_two_then_thirty_hex_digits),
		TEST(store__put_buf_stores_a_read_only_object_named_by_its_hash),
		TEST(store__second_put_of_same_content_succeeds_and_keeps_the_first),
		TEST(store__damaged_object_of_another_size_is_replaced),
		TEST(store__put_file_moves_a_source_on_the_same_filesystem),
		TEST(store__put_file_copies_a_source_on_another_filesystem),
		TEST(store__put_file_copies_a_hard_linked_source_and_spares_the_other_link),
		TEST(store__put_file_of_a_symlink_stores_the_target_content),
		TEST(store__put_file_of_a_missing_or_odd_source_fails_and_leaves_no_temporary),
		TEST(store__action_round_trips_with_format_version_and_key),
		TEST(store__absent_action_is_a_quiet_miss),
		TEST(store__action_whose_object_is_gone_is_a_miss_that_names_it),
		TEST(store__put_action_refuses_outputs_not_in_the_store),
		TEST(store__corrupt_action_is_a_miss_that_says_why),
		TEST(store__action_of_another_version_is_a_miss),
		TEST(store__unreadable_or_oversized_action_is_a_miss),
		TEST(store__crash_at_each_object_step_leaves_no_half_object),
		TEST(store__crash_at_each_record_step_leaves_old_or_new_record),
		TEST(store__stray_temporaries_of_killed_writers_are_ignored),
		TEST(store__concurrent_writers_of_same_objects_and_records_all_succeed),
		TEST(store__scratch_dirs_are_fresh_and_removed_with_all_inside),
		TEST(os__read_file_accepts_a_file_of_exactly_max_bytes),
		TEST(os__abort_after_a_failed_atomic_open_touches_nothing),
		TEST(os__mkdir_p_refuses_a_file_in_the_way),
	};
	return run_tests(tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
