/* A growing text buffer for the report renderers (internal to
 * stages/report). An allocation failure sets bad and drops further text,
 * so a renderer checks once at the end. */
#ifndef QP_REPORT_SBUF_H
#define QP_REPORT_SBUF_H

#include <stddef.h>

#include "common/err.h"

struct qp_sbuf {
	char *p;      /* NUL-terminated when len > 0 or after qp_sbuf_printf */
	size_t len;   /* bytes, the NUL not counted */
	size_t cap;
	int bad;      /* an allocation failed */
};

/* Append formatted text. */
void qp_sbuf_printf(struct qp_sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Append a double with a format checked by qp_table_format_ok. */
void qp_sbuf_num(struct qp_sbuf *b, const char *fmt, double v);
/* Append s with XML's five special characters escaped. */
void qp_sbuf_xml(struct qp_sbuf *b, const char *s);
/* Hand the text to the caller (*out, *len) or fail with QP_ENOMEM. */
int qp_sbuf_finish(struct qp_sbuf *b, char **out, size_t *len, struct qp_err *err);

#endif
