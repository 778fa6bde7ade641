/* Helpers shared by stage kinds (file plumbing, not compute). */
#ifndef QP_STAGES_COMMON_H
#define QP_STAGES_COMMON_H

#include <stddef.h>

#include "common/err.h"
#include "formats/safetensors.h"
#include "kernels/types.h"
#include "stages/stage.h"

/* The Hugging Face side files a model artifact carries along. */
extern const char *const qp_model_side_files[];

/* Path of the artifact's weights: its model.safetensors.index.json if it
 * has one, else model.safetensors. */
int qp_stage_weights_path(const struct qp_artifact *a, const char **out, struct qp_err *err);

/* Path of a named file of an artifact; fails naming stage and file. */
int qp_stage_need_file(const struct qp_artifact *a, const char *name, const char **out,
                       struct qp_err *err);

/* Copy src to out_dir/name and declare it an output of ctx. */
int qp_stage_copy_output(struct qp_stage_ctx *ctx, const char *src, const char *name,
                         struct qp_err *err);

/* qpipe tensor type of a safetensors dtype that holds weights (F32, F16,
 * BF16); -1 otherwise. */
int qp_type_of_st_dtype(enum qp_st_dtype d);

#endif
