#include "pipeline/diag.h"

#include <stdarg.h>
#include <stdio.h>

void qp_diag_add(struct qp_diags *d, const char *fmt, ...)
{
	if (d->n >= QP_DIAG_MAX) {
		d->dropped++;
		return;
	}
	char buf[1024], line[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	/* A message is one line, whatever the recipe's strings hold: control
	 * characters from quoted YAML scalars are shown escaped. */
	size_t o = 0;
	for (const unsigned char *p = (const unsigned char *)buf; *p && o + 5 < sizeof(line); p++) {
		if (*p == '\n' || *p == '\r' || *p == '\t') {
			line[o++] = '\\';
			line[o++] = *p == '\n' ? 'n' : *p == '\r' ? 'r' : 't';
		} else if (*p < 0x20 || *p == 0x7f) {
			o += (size_t)snprintf(line + o, sizeof(line) - o, "\\x%02x", *p);
		} else {
			line[o++] = (char)*p;
		}
	}
	line[o] = '\0';
	const char *m = qp_arena_strdup(d->arena, line);
	d->msgs[d->n++] = m ? m : "out of memory";
}
