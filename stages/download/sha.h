/* SHA-256 and SHA-1, streamed: the digests the Hugging Face Hub names its
 * files by (an LFS file's ETag is the SHA-256 of its content; a plain git
 * file's ETag is its git blob id, SHA-1 of "blob <size>\0" + content). */
#ifndef QP_DL_SHA_H
#define QP_DL_SHA_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

struct qp_sha256 {
	uint32_t s[8];
	uint64_t len;        /* bytes hashed so far */
	uint8_t buf[64];
};

struct qp_sha1 {
	uint32_t s[5];
	uint64_t len;        /* bytes hashed so far */
	uint8_t buf[64];
};

void qp_sha256_init(struct qp_sha256 *c);
void qp_sha256_update(struct qp_sha256 *c, const void *data, size_t len);
/* 64 lowercase hex digits + NUL. */
void qp_sha256_hex(struct qp_sha256 *c, char hex[65]);

void qp_sha1_init(struct qp_sha1 *c);
void qp_sha1_update(struct qp_sha1 *c, const void *data, size_t len);
/* 40 lowercase hex digits + NUL. */
void qp_sha1_hex(struct qp_sha1 *c, char hex[41]);

/* SHA-256 of a file's content into hex[65]. */
int qp_sha256_file(const char *path, char hex[65], struct qp_err *err);
/* git blob id (SHA-1 of "blob <size>\0" + content) of a file into hex[41]. */
int qp_git_blob_sha1_file(const char *path, char hex[41], struct qp_err *err);

#endif
