#include "common/err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int qp_err_set(struct qp_err *err, int code, const char *fmt, ...)
{
	int saved = errno;
	if (!err)
		return code;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	size_t len = strlen(err->msg);
	if (n > 0 && len > 0 && err->msg[len - 1] == ':' && len < sizeof(err->msg) - 2)
		snprintf(err->msg + len, sizeof(err->msg) - len, " %s", strerror(saved));
	err->code = code;
	return code;
}

int qp_err_prefix(struct qp_err *err, const char *fmt, ...)
{
	if (!err)
		return QP_EINVAL;
	char prefix[QP_ERR_MSG_MAX];
	char old[QP_ERR_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);
	memcpy(old, err->msg, sizeof(old));
	/* Truncation is acceptable (the message stays one line); assembled by
	 * hand so the compiler need not prove it cannot happen. */
	size_t pl = strnlen(prefix, sizeof(err->msg) - 3);
	memcpy(err->msg, prefix, pl);
	memcpy(err->msg + pl, ": ", 2);
	size_t room = sizeof(err->msg) - pl - 3;
	size_t ol = strnlen(old, room);
	memcpy(err->msg + pl + 2, old, ol);
	err->msg[pl + 2 + ol] = '\0';
	return err->code;
}

void qp_err_clear(struct qp_err *err)
{
	if (!err)
		return;
	err->code = 0;
	err->msg[0] = '\0';
}

int qp_err_nomem(struct qp_err *err)
{
	static const char msg[] = "out of memory";
	if (err) {
		memcpy(err->msg, msg, sizeof(msg));
		err->code = QP_ENOMEM;
	}
	return QP_ENOMEM;
}

const char *qp_status_name(int code)
{
	switch (code) {
	case QP_OK: return "ok";
	case QP_ENOTFOUND: return "not found";
	case QP_EEXISTS: return "exists";
	case QP_ELOCKED: return "locked";
	case QP_EINVAL: return "invalid";
	case QP_ECORRUPT: return "corrupt";
	case QP_EIO: return "io";
	case QP_ENOMEM: return "out of memory";
	case QP_EINTR: return "interrupted";
	}
	return "unknown";
}
