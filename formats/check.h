/* Validation helpers shared by the format readers (internal to formats/).
 *
 * Tensor and key names are sorted once, so duplicate detection and lookup
 * are O(n log n) and O(log n) even for files with tens of thousands of
 * tensors; byte ranges are sorted once to find tensors sharing bytes. */
#ifndef QP_FORMATS_CHECK_H
#define QP_FORMATS_CHECK_H

#include <stddef.h>
#include <stdint.h>

struct qp_name_ref {
	const char *name;  /* borrowed from the owner of the names */
	size_t idx;        /* position of the named thing in its owner's list */
};

/* Sort refs by name, ties by idx. Returns the position i of the first
 * duplicate (refs[i - 1] and refs[i] share a name, refs[i].idx is the
 * later one), or n if all names are distinct. */
size_t qp_names_sort(struct qp_name_ref *refs, size_t n);

/* The ref named name in sorted refs, or NULL. */
const struct qp_name_ref *qp_names_find(const struct qp_name_ref *refs, size_t n,
                                        const char *name);

/* The bytes of one tensor: [begin, end), in any one coordinate system. */
struct qp_span {
	uint64_t begin, end;  /* bytes, end exclusive; leave out empty spans */
	size_t idx;           /* position of the tensor in its owner's list */
};

/* Sort spans by begin. Returns the first i whose span starts before
 * spans[i - 1] ends, or n if no two overlap. */
size_t qp_spans_overlap(struct qp_span *spans, size_t n);

/* The n-byte (n <= 8) little-endian unsigned integer at p. */
uint64_t qp_le(const uint8_t *p, size_t n);

#endif
