/* SHA-256 (FIPS 180-4) and SHA-1, written from the standard. */
#include "stages/download/sha.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static uint32_t ror(uint32_t x, int n)
{
	return (x >> n) | (x << (32 - n));
}

static uint32_t rol(uint32_t x, int n)
{
	return (x << n) | (x >> (32 - n));
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void hex_of(const uint32_t *s, int n, char *hex)
{
	for (int i = 0; i < n; i++)
		snprintf(hex + 8 * i, 9, "%08" PRIx32, s[i]);
}

static const uint32_t K256[64] = {
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
	0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
	0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
	0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
	0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
	0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
	0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
	0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static void sha256_block(uint32_t *s, const uint8_t *p)
{
	uint32_t w[64];
	for (int i = 0; i < 16; i++)
		w[i] = be32(p + 4 * i);
	for (int i = 16; i < 64; i++) {
		uint32_t s0 = ror(w[i - 15], 7) ^ ror(w[i - 15], 18) ^ (w[i - 15] >> 3);
		uint32_t s1 = ror(w[i - 2], 17) ^ ror(w[i - 2], 19) ^ (w[i - 2] >> 10);
		w[i] = w[i - 16] + s0 + w[i - 7] + s1;
	}
	uint32_t a = s[0], b = s[1], c = s[2], d = s[3], e = s[4], f = s[5], g = s[6], h = s[7];
	for (int i = 0; i < 64; i++) {
		uint32_t t1 = h + (ror(e, 6) ^ ror(e, 11) ^ ror(e, 25)) + ((e & f) ^ (~e & g)) + K256[i] + w[i];
		uint32_t t2 = (ror(a, 2) ^ ror(a, 13) ^ ror(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
		h = g;
		g = f;
		f = e;
		e = d + t1;
		d = c;
		c = b;
		b = a;
		a = t1 + t2;
	}
	s[0] += a, s[1] += b, s[2] += c, s[3] += d, s[4] += e, s[5] += f, s[6] += g, s[7] += h;
}

static void sha1_block(uint32_t *s, const uint8_t *p)
{
	uint32_t w[80];
	for (int i = 0; i < 16; i++)
		w[i] = be32(p + 4 * i);
	for (int i = 16; i < 80; i++)
		w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
	uint32_t a = s[0], b = s[1], c = s[2], d = s[3], e = s[4];
	for (int i = 0; i < 80; i++) {
		uint32_t f, k;
		if (i < 20)
			f = (b & c) | (~b & d), k = 0x5a827999;
		else if (i < 40)
			f = b ^ c ^ d, k = 0x6ed9eba1;
		else if (i < 60)
			f = (b & c) | (b & d) | (c & d), k = 0x8f1bbcdc;
		else
			f = b ^ c ^ d, k = 0xca62c1d6;
		uint32_t t = rol(a, 5) + f + e + k + w[i];
		e = d;
		d = c;
		c = rol(b, 30);
		b = a;
		a = t;
	}
	s[0] += a, s[1] += b, s[2] += c, s[3] += d, s[4] += e;
}

/* Both hashes share the Merkle–Damgård padding: 0x80, zeros, bit length. */
static void md_update(uint32_t *s, uint64_t *len, uint8_t *buf, const void *data, size_t n,
                      void (*block)(uint32_t *, const uint8_t *))
{
	const uint8_t *p = data;
	size_t have = (size_t)(*len % 64);
	*len += n;
	if (have) {
		size_t take = 64 - have < n ? 64 - have : n;
		memcpy(buf + have, p, take);
		p += take;
		n -= take;
		if (have + take < 64)
			return;
		block(s, buf);
	}
	for (; n >= 64; p += 64, n -= 64)
		block(s, p);
	if (n)
		memcpy(buf, p, n);
}

static void md_final(uint32_t *s, uint64_t *len, uint8_t *buf,
                     void (*block)(uint32_t *, const uint8_t *))
{
	uint64_t bits = *len * 8;
	uint8_t pad[72] = {0x80};
	size_t have = (size_t)(*len % 64);
	size_t padlen = have < 56 ? 56 - have : 120 - have;
	for (int i = 0; i < 8; i++)
		pad[padlen + (size_t)i] = (uint8_t)(bits >> (56 - 8 * i));
	md_update(s, len, buf, pad, padlen + 8, block);
}

void qp_sha256_init(struct qp_sha256 *c)
{
	static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
	                               0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
	memcpy(c->s, iv, sizeof(iv));
	c->len = 0;
}

void qp_sha256_update(struct qp_sha256 *c, const void *data, size_t len)
{
	md_update(c->s, &c->len, c->buf, data, len, sha256_block);
}

void qp_sha256_hex(struct qp_sha256 *c, char hex[65])
{
	md_final(c->s, &c->len, c->buf, sha256_block);
	hex_of(c->s, 8, hex);
}

void qp_sha1_init(struct qp_sha1 *c)
{
	static const uint32_t iv[5] = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0};
	memcpy(c->s, iv, sizeof(iv));
	c->len = 0;
}

void qp_sha1_update(struct qp_sha1 *c, const void *data, size_t len)
{
	md_update(c->s, &c->len, c->buf, data, len, sha1_block);
}

void qp_sha1_hex(struct qp_sha1 *c, char hex[41])
{
	md_final(c->s, &c->len, c->buf, sha1_block);
	hex_of(c->s, 5, hex);
}

/* Stream path's content to fn. */
static int each_chunk(const char *path, void (*fn)(void *, const void *, size_t), void *arg,
                      struct qp_err *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return qp_err_set(err, QP_EIO, "%s: cannot open:", path);
	uint8_t buf[1 << 16];
	for (;;) {
		ssize_t r = read(fd, buf, sizeof(buf));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int rc = qp_err_set(err, QP_EIO, "%s: read failed:", path);
			close(fd);
			return rc;
		}
		if (r == 0)
			break;
		fn(arg, buf, (size_t)r);
	}
	close(fd);
	return 0;
}

static void feed256(void *c, const void *p, size_t n)
{
	qp_sha256_update(c, p, n);
}

static void feed1(void *c, const void *p, size_t n)
{
	qp_sha1_update(c, p, n);
}

int qp_sha256_file(const char *path, char hex[65], struct qp_err *err)
{
	struct qp_sha256 c;
	qp_sha256_init(&c);
	int rc = each_chunk(path, feed256, &c, err);
	if (!rc)
		qp_sha256_hex(&c, hex);
	return rc;
}

int qp_git_blob_sha1_file(const char *path, char hex[41], struct qp_err *err)
{
	struct stat st;
	if (stat(path, &st) != 0)
		return qp_err_set(err, QP_EIO, "%s: cannot stat:", path);
	char head[48];
	int n = snprintf(head, sizeof(head), "blob %lld", (long long)st.st_size);
	struct qp_sha1 c;
	qp_sha1_init(&c);
	qp_sha1_update(&c, head, (size_t)n + 1);
	int rc = each_chunk(path, feed1, &c, err);
	if (!rc)
		qp_sha1_hex(&c, hex);
	return rc;
}
