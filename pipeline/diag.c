#include "pipeline/diag.h"

#include <stdarg.h>
#include <stdio.h>

void qp_diag_add(struct qp_diags *d, const char *fmt, ...)
{
	if (d->n >= QP_DIAG_MAX) {
		d->dropped++;
		return;
	}
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	const char *m = qp_arena_strdup(d->arena, buf);
	d->msgs[d->n++] = m ? m : "out of memory";
}
