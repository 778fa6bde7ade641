#include "formats/names.h"

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
