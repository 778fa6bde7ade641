/* Content hashes and stage keys: XXH3-128, as in hash.h.
 *
 * A hash is stored and printed in xxHash's canonical form (big-endian), so
 * the hex digits match `xxh128sum` and Python's xxh3_128_hexdigest.
 *
 * qp_hasher_str feeds the string's byte length as a little-endian uint64,
 * then its bytes (no NUL). The prefix keeps field boundaries in the key:
 * without it ("ab","c") and ("a","bc") would hash alike. Changing this
 * encoding changes every stage key, so it is pinned by tests/cache. */
#include "cache/hash.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>

/* Big enough that syscall overhead vanishes next to the disk, small enough
 * to allocate per call from worker threads. */
#define READ_CHUNK (1u << 20)

struct qp_hasher {
	XXH3_state_t *st; /* xxHash allocates it: the state needs 64-byte alignment */
};

int qp_hasher_new(struct qp_hasher **out, struct qp_err *err)
{
	*out = NULL;
	struct qp_hasher *h = malloc(sizeof(*h));
	if (!h)
		return qp_err_nomem(err);
	h->st = XXH3_createState();
	if (!h->st) {
		free(h);
		return qp_err_nomem(err);
	}
	XXH3_128bits_reset(h->st);
	*out = h;
	return 0;
}

void qp_hasher_free(struct qp_hasher *h)
{
	if (!h)
		return;
	XXH3_freeState(h->st);
	free(h);
}

void qp_hasher_update(struct qp_hasher *h, const void *data, size_t len)
{
	if (len == 0)
		return;
	XXH3_128bits_update(h->st, data, len);
}

void qp_hasher_str(struct qp_hasher *h, const char *s)
{
	assert(s);
	size_t n = strlen(s);
	uint64_t len = n;
	uint8_t le[8];
	for (int i = 0; i < 8; i++)
		le[i] = (uint8_t)(len >> (8 * i));
	qp_hasher_update(h, le, sizeof(le));
	qp_hasher_update(h, s, n);
}

static void to_hash(struct qp_hash *out, XXH128_hash_t v)
{
	XXH128_canonical_t c;
	XXH128_canonicalFromHash(&c, v);
	static_assert(sizeof(c.digest) == sizeof(out->b), "XXH128 canonical form is 16 bytes");
	memcpy(out->b, c.digest, sizeof(out->b));
}

void qp_hasher_digest(const struct qp_hasher *h, struct qp_hash *out)
{
	to_hash(out, XXH3_128bits_digest(h->st));
}

void qp_hash_buf(struct qp_hash *out, const void *data, size_t len)
{
	/* XXH3 reads nothing at len 0, but the one-shot API still wants a pointer. */
	static const uint8_t none[1];
	to_hash(out, XXH3_128bits(len ? data : none, len));
}

int qp_hash_file(struct qp_hash *out, const char *path, struct qp_err *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return qp_err_set(err, errno == ENOENT ? QP_ENOTFOUND : QP_EIO, "%s: cannot open:", path);
	/* Multi-GB models are read once, front to back: ask for larger read-ahead. */
	posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	struct qp_hasher *h;
	int rc = qp_hasher_new(&h, err);
	/* A regular file is hashed through a mapping: no copy into a buffer,
	 * which read(2) would cost (hashing runs at about twice memcpy speed). */
	struct stat st;
	if (rc == 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0) {
		void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
		if (p != MAP_FAILED) {
			madvise(p, (size_t)st.st_size, MADV_SEQUENTIAL);
			for (size_t off = 0; off < (size_t)st.st_size; off += READ_CHUNK) {
				size_t len = (size_t)st.st_size - off < READ_CHUNK ? (size_t)st.st_size - off
				                                                   : READ_CHUNK;
				qp_hasher_update(h, (const uint8_t *)p + off, len);
			}
			munmap(p, (size_t)st.st_size);
			qp_hasher_digest(h, out);
			qp_hasher_free(h);
			close(fd);
			return 0;
		}
	}
	uint8_t *buf = NULL;
	if (rc == 0) {
		buf = malloc(READ_CHUNK);
		if (!buf)
			rc = qp_err_nomem(err);
	}
	while (rc == 0) {
		ssize_t r = read(fd, buf, READ_CHUNK);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			rc = qp_err_set(err, QP_EIO, "%s: read failed:", path);
			break;
		}
		if (r == 0)
			break;
		qp_hasher_update(h, buf, (size_t)r);
	}
	if (rc == 0)
		qp_hasher_digest(h, out);
	free(buf);
	qp_hasher_free(h);
	close(fd);
	return rc;
}

void qp_hash_hex(const struct qp_hash *h, char hex[QP_HASH_HEX_LEN + 1])
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < sizeof(h->b); i++) {
		hex[2 * i] = digits[h->b[i] >> 4];
		hex[2 * i + 1] = digits[h->b[i] & 0xf];
	}
	hex[QP_HASH_HEX_LEN] = '\0';
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int qp_hash_from_hex(struct qp_hash *out, const char *hex)
{
	struct qp_hash h;
	/* A NUL before the 32nd digit fails hexval, so short strings are safe. */
	for (size_t i = 0; i < sizeof(h.b); i++) {
		int hi = hexval(hex[2 * i]);
		if (hi < 0)
			return -1;
		int lo = hexval(hex[2 * i + 1]);
		if (lo < 0)
			return -1;
		h.b[i] = (uint8_t)(hi << 4 | lo);
	}
	*out = h;
	return 0;
}
