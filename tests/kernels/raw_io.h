/* File helpers shared by the raw-file test drivers (qp_gptq_raw,
 * qp_w8a8_raw): a message-and-fail, integer arguments, exact-size reads
 * and whole-file writes. Define RAW_PROG (the program name for messages)
 * before including. Header-only: each driver is one file plus this. */
#ifndef QP_TESTS_RAW_IO_H
#define QP_TESTS_RAW_IO_H

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Print "RAW_PROG: message" on stderr; returns 1, the failure status. */
__attribute__((format(printf, 1, 2)))
static int die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs(RAW_PROG ": ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	return 1;
}

/* A whole decimal integer argument; -1 if s is not one. */
static int parse_int(const char *s, long long *out)
{
	char *end;
	errno = 0;
	*out = strtoll(s, &end, 10);
	return errno || end == s || *end ? -1 : 0;
}

/* Exactly n bytes of path into a new buffer, or NULL after a message. */
static void *read_exact(const char *path, size_t n)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		die("%s: %s", path, strerror(errno));
		return NULL;
	}
	void *buf = malloc(n ? n : 1);
	size_t got = buf ? fread(buf, 1, n, f) : 0;
	int extra = fgetc(f);
	fclose(f);
	if (!buf || got != n || extra != EOF) {
		die("%s: expected exactly %zu bytes", path, n);
		free(buf);
		return NULL;
	}
	return buf;
}

/* n bytes of data into PREFIX.EXT; 0, or 1 after a message. */
static int write_file(const char *prefix, const char *ext, const void *data, size_t n)
{
	char path[4096];
	if (snprintf(path, sizeof(path), "%s.%s", prefix, ext) >= (int)sizeof(path))
		return die("%s.%s: path too long", prefix, ext);
	FILE *f = fopen(path, "wb");
	if (!f)
		return die("%s: %s", path, strerror(errno));
	const int bad = fwrite(data, 1, n, f) != n;
	if (fclose(f) != 0 || bad)
		return die("%s: %s", path, strerror(errno));
	return 0;
}

#endif
