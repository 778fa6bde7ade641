/* Binary heaps of one element type, generated per type (as klib's are) so
 * that the ordering inlines into the sift loops: the BPE encoders pop a
 * pair for every merge of every word they tokenize.
 *
 *   static bool bigram_before(const struct bigram *a, const struct bigram *b);
 *   QP_HEAP_DEFINE(bigram_heap, struct bigram, bigram_before)
 *
 * defines struct bigram_heap {a, n, cap} (zero-initialized is empty; the
 * owner frees .a), bigram_heap_push(h, v) -> 0 or -1 (out of memory, the
 * heap unchanged) and bigram_heap_pop(h) -> the first element by `before`
 * (h->n must be > 0). `before` must be a strict order; among elements it
 * does not order, which comes out first is unspecified, so callers whose
 * results must not depend on it break ties themselves. */
#ifndef QP_COMMON_HEAP_H
#define QP_COMMON_HEAP_H

#include <stdint.h>
#include <stdlib.h>

#define QP_HEAP_DEFINE(name, type, before)                                                   \
	struct name {                                                                            \
		type *a;                                                                             \
		size_t n, cap;                                                                       \
	};                                                                                       \
                                                                                             \
	static inline int name##_push(struct name *h, type v)                                    \
	{                                                                                        \
		if (h->n == h->cap) {                                                                \
			const size_t nc = h->cap ? h->cap * 2 : 64;                                      \
			if (nc > SIZE_MAX / sizeof(type))                                                \
				return -1;                                                                   \
			type *na = realloc(h->a, nc * sizeof(type));                                     \
			if (!na)                                                                         \
				return -1;                                                                   \
			h->a = na;                                                                       \
			h->cap = nc;                                                                     \
		}                                                                                    \
		size_t i = h->n++;                                                                   \
		while (i > 0 && before(&v, &h->a[(i - 1) / 2])) {                                    \
			h->a[i] = h->a[(i - 1) / 2];                                                     \
			i = (i - 1) / 2;                                                                 \
		}                                                                                    \
		h->a[i] = v;                                                                         \
		return 0;                                                                            \
	}                                                                                        \
                                                                                             \
	static inline type name##_pop(struct name *h)                                            \
	{                                                                                        \
		const type top = h->a[0], last = h->a[--h->n];                                       \
		size_t i = 0;                                                                        \
		for (;;) {                                                                           \
			size_t c = 2 * i + 1;                                                            \
			if (c >= h->n)                                                                   \
				break;                                                                       \
			if (c + 1 < h->n && before(&h->a[c + 1], &h->a[c]))                              \
				c++;                                                                         \
			if (!before(&h->a[c], &last))                                                    \
				break;                                                                       \
			h->a[i] = h->a[c];                                                               \
			i = c;                                                                           \
		}                                                                                    \
		if (h->n)                                                                            \
			h->a[i] = last;                                                                  \
		return top;                                                                          \
	}

#endif
