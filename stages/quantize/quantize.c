/* quantize: every weight tensor of a model to one tensor type.
 *
 * 1-D tensors (norms, biases) stay F32, as llama.cpp keeps them. A tensor
 * whose rows do not divide into the type's blocks (stories260K's 172-wide
 * FFN for 32-element blocks) is stored as the fallback type instead
 * (default f16) and listed in the output's metadata and metrics, so the
 * report can say so; llama-quantize refuses such a model outright.
 *
 * Output: model.gguf holding the tensors under their Hugging Face names and
 * shapes (ne reversed: ne[0] is the row length), plus the model's side
 * files (config.json, tokenizer ...). export.gguf turns it into a file
 * llama.cpp runs. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "kernels/convert.h"
#include "stages/common.h"
#include "stages/stage.h"

static const char *const types[] = {"f32", "f16", "bf16", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0",
                                    "q6_K", "q5_K", "q4_K", "q3_K", "q2_K", "tq2_0", "tq1_0", NULL};
static const char *const fallbacks[] = {"f16", "f32", "bf16", NULL};

static const struct qp_param_decl params[] = {
	{.name = "model", .type = QP_P_INPUT, .doc = "the model stage (model.local)"},
	{.name = "type", .type = QP_P_ENUM, .choices = types,
	 .doc = "tensor type for the 2-D weights"},
	{.name = "fallback", .type = QP_P_ENUM, .def = "f16", .choices = fallbacks,
	 .doc = "type for tensors whose rows do not divide into the type's blocks"},
	{0},
};

struct plan_tensor {
	const struct qp_st_tensor *t;
	enum qp_type src, dst;
	int64_t rows, cols;
	size_t nbytes;
	void *data;
};

static int run(struct qp_stage_ctx *ctx, struct qp_err *err)
{
	const struct qp_artifact *in = qp_ctx_input(ctx, "model");
	enum qp_type want = (enum qp_type)qp_type_from_name(qp_ctx_param(ctx, "type")->s);
	enum qp_type fallback = (enum qp_type)qp_type_from_name(qp_ctx_param(ctx, "fallback")->s);
	const char *wpath;
	int rc = qp_stage_weights_path(in, &wpath, err);
	if (rc)
		return rc;
	struct qp_st_model *m;
	if ((rc = qp_st_open(&m, wpath, err)))
		return rc;
	size_t n = qp_st_count(m);
	struct plan_tensor *pt = calloc(n ? n : 1, sizeof(*pt));
	struct qp_gguf_writer *w = NULL;
	const char **fb_names = calloc(n ? n : 1, sizeof(char *));
	size_t n_fb = 0;
	int64_t total_elems = 0, done_elems = 0;
	if (!pt || !fb_names) {
		rc = qp_err_nomem(err);
		goto out;
	}
	/* Decide every tensor's type first, so bad input fails before any work. */
	for (size_t i = 0; i < n; i++) {
		const struct qp_st_tensor *t = qp_st_at(m, i);
		int src = qp_type_of_st_dtype(t->dtype);
		if (src < 0) {
			rc = qp_err_set(err, QP_EINVAL, "%s: tensor '%s': dtype %s is not a weight type",
			                t->file, t->name, qp_st_dtype_name(t->dtype));
			goto out;
		}
		pt[i].t = t;
		pt[i].src = (enum qp_type)src;
		pt[i].cols = t->ndim ? t->shape[t->ndim - 1] : 1;
		pt[i].rows = pt[i].cols ? t->nelem / pt[i].cols : 0;
		if (t->ndim < 2) {
			pt[i].dst = QP_TYPE_F32;
		} else if (pt[i].cols % qp_type_traits(want)->blck != 0) {
			pt[i].dst = fallback;
			fb_names[n_fb++] = t->name;
		} else {
			pt[i].dst = want;
		}
		size_t row;
		if (qp_type_row_size(pt[i].dst, pt[i].cols, &row) || (pt[i].rows && row > SIZE_MAX / (size_t)pt[i].rows)) {
			rc = qp_err_set(err, QP_EINVAL, "%s: tensor '%s': too large", t->file, t->name);
			goto out;
		}
		pt[i].nbytes = row * (size_t)pt[i].rows;
		total_elems += t->nelem;
	}
	if ((rc = qp_gguf_writer_new(&w, err)))
		goto out;
	for (size_t i = 0; i < n; i++) {
		const struct qp_st_tensor *t = pt[i].t;
		pt[i].data = malloc(pt[i].nbytes ? pt[i].nbytes : 1);
		if (!pt[i].data) {
			rc = qp_err_nomem(err);
			goto out;
		}
		rc = qp_convert_rows(pt[i].dst, pt[i].data, pt[i].src, t->data, pt[i].rows, pt[i].cols,
		                     qp_ctx_threads(ctx), err);
		if (rc) {
			qp_err_prefix(err, "tensor '%s'", t->name);
			goto out;
		}
		int64_t ne[QP_GGUF_MAX_DIMS];
		int nd = t->ndim ? t->ndim : 1;
		if (nd > QP_GGUF_MAX_DIMS) {
			rc = qp_err_set(err, QP_EINVAL, "tensor '%s': %d dimensions (GGUF holds %d)", t->name,
			                nd, QP_GGUF_MAX_DIMS);
			goto out;
		}
		for (int d = 0; d < nd; d++)
			ne[d] = t->ndim ? t->shape[t->ndim - 1 - d] : 1;
		if ((rc = qp_gguf_add_tensor(w, t->name, pt[i].dst, nd, ne, pt[i].data, pt[i].nbytes, err)))
			goto out;
		done_elems += t->nelem;
		if ((rc = qp_ctx_progress(ctx, "tensors", done_elems, total_elems, err)))
			goto out;
	}
	const char *type = qp_ctx_param(ctx, "type")->s;
	if ((rc = qp_gguf_set_str(w, "qpipe.method", type, err)) ||
	    (rc = qp_gguf_set_str(w, "qpipe.fallback_type", qp_ctx_param(ctx, "fallback")->s, err)) ||
	    (rc = qp_gguf_set_arr_str(w, "qpipe.fallback_tensors", fb_names, n_fb, err)) ||
	    (rc = qp_gguf_set_str(w, "qpipe.quantize_key", qp_ctx_key_hex(ctx), err)))
		goto out;
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/model.gguf", qp_ctx_out_dir(ctx));
	if ((rc = qp_gguf_writer_write(w, path, err)) || (rc = qp_ctx_add_output(ctx, "model.gguf", err)))
		goto out;
	for (size_t i = 0; qp_model_side_files[i] && !rc; i++) {
		const char *src = qp_artifact_file(in, qp_model_side_files[i]);
		if (src)
			rc = qp_stage_copy_output(ctx, src, qp_model_side_files[i], err);
	}
	json_t *met = qp_ctx_metrics(ctx);
	json_t *fb = json_array();
	for (size_t i = 0; i < n_fb; i++)
		json_array_append_new(fb, json_string(fb_names[i]));
	json_object_set_new(met, "type", json_string(type));
	json_object_set_new(met, "fallback_type", json_string(qp_ctx_param(ctx, "fallback")->s));
	json_object_set_new(met, "fallback", fb);
out:
	qp_gguf_writer_free(w);
	for (size_t i = 0; pt && i < n; i++)
		free(pt[i].data);
	free(pt);
	free(fb_names);
	qp_st_close(m);
	return rc;
}

const struct qp_stage_kind qp_kind_quantize = {
	.name = "quantize",
	.version = 2,
	.summary = "quantize every weight tensor to one GGUF tensor type (1-D tensors stay f32)",
	.params = params,
	.run = run,
	.mem_inputs = 2.5, /* source + converted copy (+ row buffers) */
	.mem_fixed = 64 << 20,
};
