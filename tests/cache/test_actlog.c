/* Tests for cache/actlog.c: an entry vouches for a record only while the
 * record file stats as it did when noted; anything odd in the log file is a
 * miss, never a wrong hit. */
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cache/actlog.h"
#include "cache/store.h"
#include "check.h"

#define PATH 4400

/* A record for key listing one object (content text) as 'out.bin'. */
static int put_record(struct qp_store *s, const struct qp_hash *key, const char *text,
                      char hex[QP_HASH_HEX_LEN + 1])
{
	struct qp_err err = {0};
	struct qp_hash h;
	CHECK_OK(qp_store_put_buf(s, text, strlen(text), &h, &err), err);
	qp_hash_hex(&h, hex);
	json_t *rec = json_pack("{s:{s:s}, s:s}", "outputs", "out.bin", hex, "note", text);
	CHECK(rec);
	int rc = qp_store_put_action(s, key, rec, &err);
	json_decref(rec);
	CHECK_OK(rc, err);
	return 0;
}

static void key_of(struct qp_hash *key, const char *name)
{
	qp_hash_buf(key, name, strlen(name));
}

/* Note key's record as listing out.bin = hex and an external file. */
static void note(struct qp_actlog *l, const struct qp_hash *key, const char *hex)
{
	struct qp_actlog_file files[] = {{"out.bin", hex, 0}, {"model", "/data/m.safetensors", 1}};
	qp_actlog_note(l, key, files, 2);
}

static int reopen(struct qp_actlog **l, struct qp_store *s)
{
	struct qp_err err = {0};
	CHECK_OK(qp_actlog_flush(*l, &err), err);
	qp_actlog_free(*l);
	CHECK_OK(qp_actlog_open(l, s, &err), err);
	return 0;
}

static int actlog__noted_record_is_found_after_reopen(const char *dir)
{
	struct qp_err err = {0};
	struct qp_store *s;
	struct qp_actlog *l;
	CHECK_OK(qp_store_open(&s, dir, &err), err);
	CHECK_OK(qp_actlog_open(&l, s, &err), err);
	struct qp_hash k;
	char hex[QP_HASH_HEX_LEN + 1];
	key_of(&k, "a");
	CHECK(put_record(s, &k, "alpha", hex) == 0);
	CHECK(qp_actlog_lookup(l, &k) == NULL);
	note(l, &k, hex);
	CHECK(reopen(&l, s) == 0);
	const struct qp_actlog_entry *e = qp_actlog_lookup(l, &k);
	CHECK(e != NULL);
	CHECK(e->n_files == 2);
	CHECK_STR(e->files[0].name, "out.bin");
	CHECK_STR(e->files[0].value, hex);
	CHECK(!e->files[0].external);
	CHECK_STR(e->files[1].name, "model");
	CHECK_STR(e->files[1].value, "/data/m.safetensors");
	CHECK(e->files[1].external);
	CHECK(qp_actlog_bad_lines(l) == 0);
	qp_actlog_free(l);
	qp_store_free(s);
	return 0;
}

static int actlog__rewritten_touched_or_removed_record_is_not_trusted(const char *dir)
{
	struct qp_err err = {0};
	struct qp_store *s;
	struct qp_actlog *l;
	CHECK_OK(qp_store_open(&s, dir, &err), err);
	CHECK_OK(qp_actlog_open(&l, s, &err), err);
	struct qp_hash a, b, c;
	char hex[QP_HASH_HEX_LEN + 1];
	key_of(&a, "a");
	key_of(&b, "b");
	key_of(&c, "c");
	CHECK(put_record(s, &a, "one", hex) == 0);
	note(l, &a, hex);
	CHECK(put_record(s, &b, "two", hex) == 0);
	note(l, &b, hex);
	CHECK(put_record(s, &c, "six", hex) == 0);
	note(l, &c, hex);
	CHECK(reopen(&l, s) == 0);
	CHECK(qp_actlog_lookup(l, &a) && qp_actlog_lookup(l, &b) && qp_actlog_lookup(l, &c));
	/* a: written again, same size (a rename: another inode) */
	CHECK(put_record(s, &a, "uno", hex) == 0);
	CHECK(qp_actlog_lookup(l, &a) == NULL);
	/* b: its times set back, as a touch or a restore would change them */
	char hb[QP_HASH_HEX_LEN + 1], path[PATH];
	qp_hash_hex(&b, hb);
	snprintf(path, sizeof(path), "%s/actions/%.2s/%s", qp_store_dir(s), hb, hb + 2);
	struct timespec old[2] = {{1000000000, 0}, {1000000000, 0}};
	CHECK(utimensat(AT_FDCWD, path, old, 0) == 0);
	CHECK(qp_actlog_lookup(l, &b) == NULL);
	/* c: removed */
	CHECK_OK(qp_store_rm_action(s, &c, &err), err);
	CHECK(qp_actlog_lookup(l, &c) == NULL);
	/* noting b again trusts it as it is now */
	note(l, &b, "00000000000000000000000000000000");
	CHECK(qp_actlog_lookup(l, &b) != NULL);
	qp_actlog_free(l);
	qp_store_free(s);
	return 0;
}

static int actlog__forgotten_entry_stays_forgotten(const char *dir)
{
	struct qp_err err = {0};
	struct qp_store *s;
	struct qp_actlog *l;
	CHECK_OK(qp_store_open(&s, dir, &err), err);
	CHECK_OK(qp_actlog_open(&l, s, &err), err);
	struct qp_hash k;
	char hex[QP_HASH_HEX_LEN + 1];
	key_of(&k, "a");
	CHECK(put_record(s, &k, "alpha", hex) == 0);
	note(l, &k, hex);
	CHECK(reopen(&l, s) == 0);
	qp_actlog_forget(l, &k);
	CHECK(qp_actlog_lookup(l, &k) == NULL);
	CHECK(reopen(&l, s) == 0);
	CHECK(qp_actlog_lookup(l, &k) == NULL);
	qp_actlog_free(l);
	qp_store_free(s);
	return 0;
}

static int actlog__strings_with_tabs_are_not_remembered(const char *dir)
{
	struct qp_err err = {0};
	struct qp_store *s;
	struct qp_actlog *l;
	CHECK_OK(qp_store_open(&s, dir, &err), err);
	CHECK_OK(qp_actlog_open(&l, s, &err), err);
	struct qp_hash k;
	char hex[QP_HASH_HEX_LEN + 1];
	key_of(&k, "a");
	CHECK(put_record(s, &k, "alpha", hex) == 0);
	note(l, &k, hex);
	CHECK(qp_actlog_lookup(l, &k) != NULL);
	/* a file the log cannot spell must not leave the older entry standing */
	struct qp_actlog_file bad[] = {{"out\tbin", hex, 0}};
	qp_actlog_note(l, &k, bad, 1);
	CHECK(qp_actlog_lookup(l, &k) == NULL);
	CHECK(reopen(&l, s) == 0);
	CHECK(qp_actlog_lookup(l, &k) == NULL);
	CHECK(qp_actlog_bad_lines(l) == 0);
	qp_actlog_free(l);
	qp_store_free(s);
	return 0;
}

static int append(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_APPEND);
	if (fd < 0)
		return -1;
	ssize_t w = write(fd, text, strlen(text));
	close(fd);
	return w == (ssize_t)strlen(text) ? 0 : -1;
}

static int actlog__damaged_lines_are_skipped(const char *dir)
{
	struct qp_err err = {0};
	struct qp_store *s;
	struct qp_actlog *l;
	CHECK_OK(qp_store_open(&s, dir, &err), err);
	CHECK_OK(qp_actlog_open(&l, s, &err), err);
	struct qp_hash a, b;
	char ha[QP_HASH_HEX_LEN + 1], hb[QP_HASH_HEX_LEN + 1];
	key_of(&a, "a");
	key_of(&b, "b");
	CHECK(put_record(s, &a, "one", ha) == 0);
	note(l, &a, ha);
	CHECK(reopen(&l, s) == 0);
	/* b's line, with one digit of its inode changed: its check fails */
	CHECK(put_record(s, &b, "two", hb) == 0);
	note(l, &b, hb);
	CHECK(reopen(&l, s) == 0);
	char path[PATH], *text = NULL;
	size_t len = 0;
	snprintf(path, sizeof(path), "%s/meta/actlog", qp_store_dir(s));
	CHECK_OK(qp_os_read_file(&text, &len, path, 1 << 20, &err), err);
	char kb[QP_HASH_HEX_LEN + 1];
	qp_hash_hex(&b, kb);
	char *line = strstr(text, kb);
	CHECK(line != NULL);
	char *ino = line + QP_HASH_HEX_LEN + 1;
	*ino = *ino == '9' ? '8' : '9';
	CHECK_OK(qp_store_put_meta(s, "actlog", text, &err), err);
	free(text);
	CHECK(chmod(path, 0644) == 0);
	/* a line of garbage, and one torn by a crash (no newline) */
	CHECK(append(path, "not a line\n") == 0);
	CHECK(append(path, kb) == 0);
	qp_actlog_free(l);
	CHECK_OK(qp_actlog_open(&l, s, &err), err);
	CHECK(qp_actlog_bad_lines(l) == 3);
	CHECK(qp_actlog_lookup(l, &a) != NULL);
	CHECK(qp_actlog_lookup(l, &b) == NULL);
	qp_actlog_free(l);
	qp_store_free(s);
	return 0;
}

static int actlog__another_record_version_is_an_empty_log(const char *dir)
{
	struct qp_err err = {0};
	struct qp_store *s;
	struct qp_actlog *l;
	CHECK_OK(qp_store_open(&s, dir, &err), err);
	CHECK_OK(qp_actlog_open(&l, s, &err), err);
	struct qp_hash k;
	char hex[QP_HASH_HEX_LEN + 1];
	key_of(&k, "a");
	CHECK(put_record(s, &k, "alpha", hex) == 0);
	note(l, &k, hex);
	CHECK(reopen(&l, s) == 0);
	CHECK(qp_actlog_lookup(l, &k) != NULL);
	/* the same lines under a header for records this qpipe does not write */
	char path[PATH], *text = NULL;
	size_t len = 0;
	snprintf(path, sizeof(path), "%s/meta/actlog", qp_store_dir(s));
	CHECK_OK(qp_os_read_file(&text, &len, path, 1 << 20, &err), err);
	char *nl = strchr(text, '\n');
	CHECK(nl != NULL);
	char other[1 << 12];
	snprintf(other, sizeof(other), "qpipe-actlog 1 %d%s", qp_store_record_version() + 1, nl);
	free(text);
	CHECK_OK(qp_store_put_meta(s, "actlog", other, &err), err);
	qp_actlog_free(l);
	CHECK_OK(qp_actlog_open(&l, s, &err), err);
	CHECK(qp_actlog_lookup(l, &k) == NULL);
	qp_actlog_free(l);
	qp_store_free(s);
	return 0;
}

static int count_lines(const char *path, size_t *n)
{
	struct qp_err err = {0};
	char *text = NULL;
	size_t len = 0;
	CHECK_OK(qp_os_read_file(&text, &len, path, 64 << 20, &err), err);
	*n = 0;
	for (size_t i = 0; i < len; i++)
		*n += text[i] == '\n';
	free(text);
	return 0;
}

static int actlog__superseded_lines_are_compacted_away(const char *dir)
{
	struct qp_err err = {0};
	struct qp_store *s;
	struct qp_actlog *l;
	CHECK_OK(qp_store_open(&s, dir, &err), err);
	CHECK_OK(qp_actlog_open(&l, s, &err), err);
	struct qp_hash a, b;
	char ha[QP_HASH_HEX_LEN + 1], hb[QP_HASH_HEX_LEN + 1];
	key_of(&a, "a");
	key_of(&b, "b");
	CHECK(put_record(s, &a, "one", ha) == 0);
	CHECK(put_record(s, &b, "two", hb) == 0);
	note(l, &b, hb);
	CHECK(reopen(&l, s) == 0);
	qp_store_rm_action(s, &b, &err); /* b's line is stale now */
	char path[PATH];
	snprintf(path, sizeof(path), "%s/meta/actlog", qp_store_dir(s));
	size_t before, after;
	for (int round = 0; round < 2; round++) { /* the second flush passes COMPACT_MIN */
		for (int i = 0; i < 500; i++)
			note(l, &a, ha);
		CHECK(reopen(&l, s) == 0);
	}
	CHECK(count_lines(path, &after) == 0);
	/* header and a's line: b's record is gone, a's older lines superseded */
	CHECK(after == 2);
	CHECK(qp_actlog_lookup(l, &a) != NULL);
	CHECK(qp_actlog_lookup(l, &b) == NULL);
	/* and the rewritten log can still be appended to */
	struct stat st;
	CHECK(stat(path, &st) == 0 && (st.st_mode & 0200));
	CHECK(put_record(s, &b, "two", hb) == 0);
	note(l, &b, hb);
	CHECK(reopen(&l, s) == 0);
	CHECK(count_lines(path, &before) == 0);
	CHECK(before == 3);
	CHECK(qp_actlog_lookup(l, &b) != NULL);
	qp_actlog_free(l);
	qp_store_free(s);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct test tests[] = {
		TEST(actlog__noted_record_is_found_after_reopen),
		TEST(actlog__rewritten_touched_or_removed_record_is_not_trusted),
		TEST(actlog__forgotten_entry_stays_forgotten),
		TEST(actlog__strings_with_tabs_are_not_remembered),
		TEST(actlog__damaged_lines_are_skipped),
		TEST(actlog__another_record_version_is_an_empty_log),
		TEST(actlog__superseded_lines_are_compacted_away),
	};
	return run_tests(tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
