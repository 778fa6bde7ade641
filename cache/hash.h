/* Content hashes and stage keys: XXH3-128. */
#ifndef QP_HASH_H
#define QP_HASH_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

struct qp_hash {
	uint8_t b[16];   /* canonical (big-endian) XXH128 representation */
};

#define QP_HASH_HEX_LEN 32

/* Incremental hasher; opaque state allocated by qp_hasher_new. */
struct qp_hasher;

int qp_hasher_new(struct qp_hasher **out, struct qp_err *err);
void qp_hasher_free(struct qp_hasher *h);
void qp_hasher_update(struct qp_hasher *h, const void *data, size_t len);
/* Update with a length-prefixed string, so ("ab","c") and ("a","bc") differ. */
void qp_hasher_str(struct qp_hasher *h, const char *s);
void qp_hasher_digest(const struct qp_hasher *h, struct qp_hash *out);

void qp_hash_buf(struct qp_hash *out, const void *data, size_t len);
/* Hash a file's content (streamed). */
int qp_hash_file(struct qp_hash *out, const char *path, struct qp_err *err);

/* 32 lowercase hex digits + NUL into hex[33]. */
void qp_hash_hex(const struct qp_hash *h, char hex[QP_HASH_HEX_LEN + 1]);
/* Parse 32 hex digits (either case); -1 if malformed. Reads exactly 32
 * characters: a caller that needs the string to end there checks that. */
int qp_hash_from_hex(struct qp_hash *out, const char *hex);

#endif
