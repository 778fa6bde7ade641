/* The kernel table as a level runs it, for the kernel tests: a level may
 * leave an operation to the levels below it (dispatch.c fills each from
 * the first level at or below that has one), so a test of "the level's
 * vec_dot" must walk down as the selection does. Header-only. */
#ifndef QP_TESTS_KERNELS_LEVELS_H
#define QP_TESTS_KERNELS_LEVELS_H

#include <stddef.h>

#include "kernels/kernels.h"

/* out = the field of the first level from level down (qp_kernel_level_below)
 * that has one, as the selection must hold it; at = that level (the
 * last one looked at, with out NULL, where none has) */
#define FIRST_BELOW(ty, level, field, out, at)                                                 \
	do {                                                                                   \
		(out) = NULL;                                                                  \
		(at) = -1;                                                                     \
		for (int l_ = (level); l_ >= 0 && !(out); l_ = qp_kernel_level_below(l_)) {   \
			const struct qp_kernel_ops *o_ = qp_kernels_get_level((ty), l_);       \
			(out) = o_ ? o_->field : NULL;                                         \
			(at) = l_;                                                             \
		}                                                                              \
	} while (0)

#endif
