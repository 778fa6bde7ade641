#include "formats/check.h"

#include <stdlib.h>
#include <string.h>

static int cmp_ref(const void *a, const void *b)
{
	const struct qp_name_ref *x = a, *y = b;
	int c = strcmp(x->name, y->name);
	if (c)
		return c;
	return (x->idx > y->idx) - (x->idx < y->idx);
}

size_t qp_names_sort(struct qp_name_ref *refs, size_t n)
{
	if (n > 1)
		qsort(refs, n, sizeof(*refs), cmp_ref);
	for (size_t i = 1; i < n; i++)
		if (strcmp(refs[i - 1].name, refs[i].name) == 0)
			return i;
	return n;
}

const struct qp_name_ref *qp_names_find(const struct qp_name_ref *refs, size_t n,
                                        const char *name)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(refs[mid].name, name);
		if (c == 0)
			return &refs[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static int cmp_span(const void *a, const void *b)
{
	const struct qp_span *x = a, *y = b;
	if (x->begin != y->begin)
		return x->begin < y->begin ? -1 : 1;
	if (x->end != y->end)
		return x->end < y->end ? -1 : 1;
	return (x->idx > y->idx) - (x->idx < y->idx);
}

size_t qp_spans_overlap(struct qp_span *spans, size_t n)
{
	if (n > 1)
		qsort(spans, n, sizeof(*spans), cmp_span);
	for (size_t i = 1; i < n; i++)
		if (spans[i].begin < spans[i - 1].end)
			return i;
	return n;
}

uint64_t qp_le(const uint8_t *p, size_t n)
{
	uint64_t v = 0;
	for (size_t i = n; i-- > 0;)
		v = (v << 8) | p[i];
	return v;
}
