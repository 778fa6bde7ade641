/* Building paths into fixed buffers without silent truncation. */
#ifndef QP_PATH_H
#define QP_PATH_H

#include <stddef.h>

#include "common/err.h"

/* out = dir + "/" + name; QP_EINVAL naming both if it does not fit in n. */
int qp_path_join(char *out, size_t n, const char *dir, const char *name, struct qp_err *err);

#endif
