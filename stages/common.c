#include "stages/common.h"

#include <errno.h>
#include <stdlib.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <unistd.h>

const char *const qp_model_side_files[] = {
	"config.json", "generation_config.json", "tokenizer.model", "tokenizer.json",
	"tokenizer_config.json", "special_tokens_map.json", NULL,
};

int qp_stage_need_file(const struct qp_artifact *a, const char *name, const char **out,
                       struct qp_err *err)
{
	*out = qp_artifact_file(a, name);
	if (!*out)
		return qp_err_set(err, QP_ENOTFOUND, "input '%s' has no file '%s'", a->instance, name);
	return 0;
}

int qp_stage_weights_path(const struct qp_artifact *a, const char **out, struct qp_err *err)
{
	*out = qp_artifact_file(a, "model.safetensors.index.json");
	if (*out)
		return 0;
	*out = qp_artifact_file(a, "model.safetensors");
	if (*out)
		return 0;
	return qp_err_set(err, QP_ENOTFOUND,
	                  "input '%s' has neither model.safetensors nor model.safetensors.index.json",
	                  a->instance);
}

int qp_stage_copy_output(struct qp_stage_ctx *ctx, const char *src, const char *name,
                         struct qp_err *err)
{
	char dst[PATH_MAX];
	snprintf(dst, sizeof(dst), "%s/%s", qp_ctx_out_dir(ctx), name);
	int in = open(src, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return qp_err_set(err, QP_EIO, "%s: cannot open:", src);
	int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (out < 0) {
		close(in);
		return qp_err_set(err, QP_EIO, "%s: cannot create:", dst);
	}
	char buf[1 << 16];
	int rc = 0;
	for (;;) {
		ssize_t r = read(in, buf, sizeof(buf));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = qp_err_set(err, QP_EIO, "%s: read failed:", src);
			break;
		}
		if (r == 0)
			break;
		for (ssize_t o = 0; o < r;) {
			ssize_t w = write(out, buf + o, (size_t)(r - o));
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0) {
				rc = qp_err_set(err, QP_EIO, "%s: write failed:", dst);
				break;
			}
			o += w;
		}
		if (rc)
			break;
	}
	close(in);
	if (close(out) != 0 && !rc)
		rc = qp_err_set(err, QP_EIO, "%s: close failed:", dst);
	if (rc)
		return rc;
	return qp_ctx_add_output(ctx, name, err);
}

int qp_type_of_st_dtype(enum qp_st_dtype d)
{
	switch (d) {
	case QP_ST_F32: return QP_TYPE_F32;
	case QP_ST_F16: return QP_TYPE_F16;
	case QP_ST_BF16: return QP_TYPE_BF16;
	default: return -1;
	}
}
