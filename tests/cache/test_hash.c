/* Tests for cache/hash.c.
 *
 * The known-answer values were computed once with Python's `xxhash` package
 * (4.1.0, bundling xxHash 0.8.4), an implementation independent of the
 * libxxhash we link:
 *
 *   import xxhash, struct
 *   gen = lambda n: bytes((i * 31 + 7) & 0xff for i in range(n))
 *   xxhash.xxh3_128_hexdigest(gen(n))
 *   lp = lambda *ps: b"".join(struct.pack("<Q", len(p)) + p for p in ps)
 *   xxhash.xxh3_128_hexdigest(lp(b"ab", b"c"))
 *
 * They must not be changed: every stage key and object name depends on
 * them. The lengths walk through XXH3's size classes (0, 1-3, 4-8, 9-16,
 * 17-128, 129-240, over 240) and across its 1024-byte stripe blocks. */
#include <fcntl.h>
#include <stdint.h>
#include <unistd.h>

#include "cache/hash.h"
#include "check.h"

static void gen(uint8_t *buf, size_t n)
{
	for (size_t i = 0; i < n; i++)
		buf[i] = (uint8_t)(i * 31 + 7);
}

static const struct {
	size_t len;
	const char *hex;
} vectors[] = {
	{0, "99aa06d3014798d86001c324468d497f"},
	{1, "495b62073ef70ca44c5cca45d0f4811f"},
	{3, "46f66cb93538156515f7093b173d005c"},
	{4, "7fefeeffb4d0eab3b987ca5d9241572a"},
	{8, "803c675a846cc6c256bb836ceb6d4baa"},
	{9, "d46556872d230f224376673580310154"},
	{16, "650fe308c566747df853dd94614dfa07"},
	{17, "18217300b5132d5a78c349fe81b2f26c"},
	{128, "b4f87b99d2db8a511e04fad9f0cacb4d"},
	{129, "6881633650cd8924c51bc887976aef63"},
	{240, "de57aab31e77a2ff93e173833f75ab66"},
	{241, "92b991a7192f3f080b3b630948ce4a00"},
	{1024, "4c17271c906df79223bc880ebf0d29c6"},
	{1025, "70a4eb1b9691d77fc09fdfbc398c7d82"},
	{4109, "a2a4fad3b74bf188c97b08c83ccba052"},
};

/* Three 1 MiB read chunks of hash.c plus a ragged tail. */
#define BIG_LEN ((size_t)3 * 1024 * 1024 + 13)
#define BIG_HEX "2b2423ae1eb44fcec2d0167376549f53"

static int hash__buf_matches_python_xxhash_vectors(const char *dir)
{
	(void)dir;
	uint8_t buf[4109];
	gen(buf, sizeof(buf));
	for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
		struct qp_hash h;
		char hex[QP_HASH_HEX_LEN + 1];
		qp_hash_buf(&h, buf, vectors[i].len);
		qp_hash_hex(&h, hex);
		printf("# len %zu\n", vectors[i].len);
		CHECK_STR(hex, vectors[i].hex);
	}
	struct qp_hash h;
	char hex[QP_HASH_HEX_LEN + 1];
	qp_hash_buf(&h, "abc", 3);
	qp_hash_hex(&h, hex);
	CHECK_STR(hex, "06b05ab6733a618578af5f94892f3950");
	return 0;
}

static int hash__hasher_fed_in_pieces_equals_one_shot(const char *dir)
{
	(void)dir;
	uint8_t buf[4109];
	gen(buf, sizeof(buf));
	static const size_t pieces[] = {1, 7, 64, 240, 1000, 4109};
	for (size_t p = 0; p < sizeof(pieces) / sizeof(pieces[0]); p++) {
		struct qp_err err = {0};
		struct qp_hasher *h;
		CHECK_OK(qp_hasher_new(&h, &err), err);
		for (size_t off = 0; off < sizeof(buf); off += pieces[p]) {
			size_t n = sizeof(buf) - off < pieces[p] ? sizeof(buf) - off : pieces[p];
			qp_hasher_update(h, buf + off, n);
		}
		qp_hasher_update(h, NULL, 0);
		struct qp_hash got;
		char hex[QP_HASH_HEX_LEN + 1];
		qp_hasher_digest(h, &got);
		qp_hasher_free(h);
		qp_hash_hex(&got, hex);
		printf("# pieces of %zu\n", pieces[p]);
		CHECK_STR(hex, "a2a4fad3b74bf188c97b08c83ccba052");
	}
	qp_hasher_free(NULL);
	return 0;
}

static int str_hash(char hex[QP_HASH_HEX_LEN + 1], const char *a, const char *b)
{
	struct qp_err err = {0};
	struct qp_hasher *h;
	if (qp_hasher_new(&h, &err) != 0)
		return -1;
	qp_hasher_str(h, a);
	if (b)
		qp_hasher_str(h, b);
	struct qp_hash out;
	qp_hasher_digest(h, &out);
	qp_hasher_free(h);
	qp_hash_hex(&out, hex);
	return 0;
}

static int hash__str_is_length_prefixed_so_split_points_differ(const char *dir)
{
	(void)dir;
	char ab_c[QP_HASH_HEX_LEN + 1], a_bc[QP_HASH_HEX_LEN + 1], empty[QP_HASH_HEX_LEN + 1];
	CHECK(str_hash(ab_c, "ab", "c") == 0);
	CHECK(str_hash(a_bc, "a", "bc") == 0);
	CHECK(str_hash(empty, "", NULL) == 0);
	CHECK(strcmp(ab_c, a_bc) != 0);
	/* Pinned: the encoding is part of every stage key. */
	CHECK_STR(ab_c, "f2eda2708bcfd51cc05c0ee4c9f60440");
	CHECK_STR(a_bc, "f310f4d71be93bc46456c91685adede6");
	CHECK_STR(empty, "2c0a8a99dc147d5445c3b49d035665b2");
	return 0;
}

static int write_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		return -1;
	ssize_t w = write(fd, data, len);
	close(fd);
	return w == (ssize_t)len ? 0 : -1;
}

static int hash__file_equals_buffer_hash_across_read_chunks(const char *dir)
{
	uint8_t *buf = malloc(BIG_LEN);
	CHECK(buf);
	gen(buf, BIG_LEN);
	char path[4200];
	snprintf(path, sizeof(path), "%s/big", dir);
	int ok = write_file(path, buf, BIG_LEN) == 0;
	struct qp_hash want, got;
	qp_hash_buf(&want, buf, BIG_LEN);
	free(buf);
	CHECK(ok);
	struct qp_err err = {0};
	CHECK_OK(qp_hash_file(&got, path, &err), err);
	char hex[QP_HASH_HEX_LEN + 1], whex[QP_HASH_HEX_LEN + 1];
	qp_hash_hex(&got, hex);
	qp_hash_hex(&want, whex);
	CHECK_STR(hex, whex);
	CHECK_STR(hex, BIG_HEX);

	snprintf(path, sizeof(path), "%s/empty", dir);
	CHECK(write_file(path, "", 0) == 0);
	CHECK_OK(qp_hash_file(&got, path, &err), err);
	qp_hash_hex(&got, hex);
	CHECK_STR(hex, "99aa06d3014798d86001c324468d497f");
	return 0;
}

static int hash__missing_file_is_notfound_and_names_the_path(const char *dir)
{
	char path[4200], want[4400];
	snprintf(path, sizeof(path), "%s/nope", dir);
	struct qp_err err = {0};
	struct qp_hash h;
	CHECK(qp_hash_file(&h, path, &err) == QP_ENOTFOUND);
	snprintf(want, sizeof(want), "%s: cannot open: No such file or directory", path);
	CHECK_STR(err.msg, want);
	CHECK(qp_hash_file(&h, dir, &err) == QP_EIO);
	return 0;
}

static int hash__hex_round_trips_and_malformed_hex_is_refused(const char *dir)
{
	(void)dir;
	struct qp_hash h, back;
	qp_hash_buf(&h, "abc", 3);
	char hex[QP_HASH_HEX_LEN + 1];
	qp_hash_hex(&h, hex);
	CHECK(qp_hash_from_hex(&back, hex) == 0);
	CHECK(memcmp(h.b, back.b, sizeof(h.b)) == 0);
	CHECK(qp_hash_from_hex(&back, "06B05AB6733A618578AF5F94892F3950") == 0);
	CHECK(memcmp(h.b, back.b, sizeof(h.b)) == 0);
	CHECK(qp_hash_from_hex(&back, "06b05ab6733a618578af5f94892f395") == -1);
	CHECK(qp_hash_from_hex(&back, "") == -1);
	CHECK(qp_hash_from_hex(&back, "g6b05ab6733a618578af5f94892f3950") == -1);
	CHECK(qp_hash_from_hex(&back, "06b05ab6733a618578af5f94892f395 ") == -1);
	/* The big-endian canonical form: the first byte prints first. */
	CHECK(h.b[0] == 0x06 && h.b[15] == 0x50);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct test tests[] = {
		TEST(hash__buf_matches_python_xxhash_vectors),
		TEST(hash__hasher_fed_in_pieces_equals_one_shot),
		TEST(hash__str_is_length_prefixed_so_split_points_differ),
		TEST(hash__file_equals_buffer_hash_across_read_chunks),
		TEST(hash__missing_file_is_notfound_and_names_the_path),
		TEST(hash__hex_round_trips_and_malformed_hex_is_refused),
	};
	return run_tests(tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
