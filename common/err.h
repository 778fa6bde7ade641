/* Errors: a status code plus one human line, carried explicitly.
 *
 * Every fallible function returns 0 or a negative QP_E* code and fills a
 * caller-owned struct qp_err. The message names the location first (file,
 * line:col, tensor, offset), then what failed, lowercase, no full stop.
 * Callers propagate without rewording; they add context only where the
 * callee could not know it (qp_err_prefix). */
#ifndef QP_ERR_H
#define QP_ERR_H

#include <stddef.h>

enum qp_status {
	QP_OK = 0,
	QP_ENOTFOUND = -1, /* a named thing does not exist */
	QP_EEXISTS = -2,   /* already there (an object already stored) */
	QP_ELOCKED = -3,   /* another process holds the lock */
	QP_EINVAL = -4,    /* bad input: recipe, parameter, argument */
	QP_ECORRUPT = -5,  /* a file's content is malformed or truncated */
	QP_EIO = -6,       /* the OS failed a read, write, rename ... */
	QP_ENOMEM = -7,    /* allocation failed or a size cap was hit */
	QP_EINTR = -8,     /* interrupted by a signal */
};

#define QP_ERR_MSG_MAX 1024

struct qp_err {
	int code;                  /* last code set, 0 if none */
	char msg[QP_ERR_MSG_MAX];  /* one line, NUL-terminated */
};

/* Set code and message; returns code so callers can `return qp_err_set(...)`.
 * err may be NULL. A format ending in ':' appends strerror(errno). */
int qp_err_set(struct qp_err *err, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Prepend "context: " to the message already in err; returns err->code. */
int qp_err_prefix(struct qp_err *err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Reset err to no error. */
void qp_err_clear(struct qp_err *err);

/* The out-of-memory error; never allocates. Returns QP_ENOMEM. */
int qp_err_nomem(struct qp_err *err);

/* Short name of a status code ("corrupt", "io" ...). */
const char *qp_status_name(int code);

#endif
