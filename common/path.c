#include "common/path.h"

#include <stdio.h>

int qp_path_join(char *out, size_t n, const char *dir, const char *name, struct qp_err *err)
{
	int w = snprintf(out, n, "%s/%s", dir, name);
	if (w < 0 || (size_t)w >= n)
		return qp_err_set(err, QP_EINVAL, "%s/%s: path too long", dir, name);
	return 0;
}
