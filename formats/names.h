/* Name index shared by the format readers: tensor and key names sorted once,
 * so duplicate detection and lookup are O(n log n) and O(log n) even for
 * files with tens of thousands of tensors. Internal to formats/. */
#ifndef QP_FORMATS_NAMES_H
#define QP_FORMATS_NAMES_H

#include <stddef.h>

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

#endif
