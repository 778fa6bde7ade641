/* "Did you mean ...": the nearest name by edit distance (git's help.c). */
#ifndef QP_SUGGEST_H
#define QP_SUGGEST_H

#include <stddef.h>

/* Damerau-Levenshtein distance with unit costs (transposition counts 1),
 * ignoring case: 'Q4_0' is a plain slip for 'q4_0'. */
size_t qp_edit_distance(const char *a, const char *b);

/* The candidate nearest to word, if close enough to be a plausible typo
 * (distance <= max(1, len/3)); NULL otherwise. candidates is NULL-terminated. */
const char *qp_suggest(const char *word, const char *const *candidates);

#endif
