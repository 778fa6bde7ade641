#include "common/arena.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK_MIN (64 * 1024)

struct chunk {
	struct chunk *next;
	size_t size;   /* usable bytes after the header */
	size_t used;
	_Alignas(16) unsigned char data[];
};

struct qp_arena {
	struct chunk *head;
};

struct qp_arena *qp_arena_new(void)
{
	return calloc(1, sizeof(struct qp_arena));
}

void qp_arena_free(struct qp_arena *a)
{
	if (!a)
		return;
	struct chunk *c = a->head;
	while (c) {
		struct chunk *n = c->next;
		free(c);
		c = n;
	}
	free(a);
}

void *qp_arena_alloc(struct qp_arena *a, size_t size)
{
	if (size > SIZE_MAX - 16 - sizeof(struct chunk))
		return NULL;
	size = (size + 15) & ~(size_t)15;
	struct chunk *c = a->head;
	if (!c || c->size - c->used < size) {
		size_t cs = size > CHUNK_MIN ? size : CHUNK_MIN;
		c = malloc(sizeof(struct chunk) + cs);
		if (!c)
			return NULL;
		c->size = cs;
		c->used = 0;
		c->next = a->head;
		a->head = c;
	}
	void *p = c->data + c->used;
	c->used += size;
	memset(p, 0, size);
	return p;
}

void *qp_arena_calloc(struct qp_arena *a, size_t n, size_t size)
{
	if (size && n > SIZE_MAX / size)
		return NULL;
	return qp_arena_alloc(a, n * size);
}

char *qp_arena_strndup(struct qp_arena *a, const char *s, size_t n)
{
	char *p = qp_arena_alloc(a, n + 1);
	if (p) {
		memcpy(p, s, n);
		p[n] = '\0';
	}
	return p;
}

char *qp_arena_strdup(struct qp_arena *a, const char *s)
{
	return qp_arena_strndup(a, s, strlen(s));
}

char *qp_arena_printf(struct qp_arena *a, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return NULL;
	char *p = qp_arena_alloc(a, (size_t)n + 1);
	if (!p)
		return NULL;
	va_start(ap, fmt);
	vsnprintf(p, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return p;
}
