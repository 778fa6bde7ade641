#include "stages/quantize/imatrix.h"

#include <stdlib.h>
#include <string.h>

#include "formats/gguf.h"
#include "formats/imatrix.h"
#include "formats/llamanames.h"
#include "kernels/convert.h"
#include "kernels/kernels.h"
#include "stages/common.h"

struct qp_quant_imatrix {
	struct qp_imatrix *f;
	const char *instance;   /* the calibrate stage; borrowed from its artifact */
	int64_t weighted;       /* tensors fitted with importances */
	json_t *unused;         /* names of tensors whose type could not use theirs */
};

int qp_quant_imatrix_open(struct qp_quant_imatrix **out, const struct qp_artifact *a,
                          struct qp_err *err)
{
	*out = NULL;
	if (!a)
		return 0;
	const char *path;
	int rc = qp_stage_need_file(a, "imatrix.gguf", &path, err);
	if (rc)
		return rc;
	struct qp_quant_imatrix *im = calloc(1, sizeof(*im));
	if (!im || !(im->unused = json_array())) {
		free(im);
		return qp_err_nomem(err);
	}
	im->instance = a->instance;
	if ((rc = qp_imatrix_open(&im->f, path, err))) {
		qp_quant_imatrix_free(im);
		return rc;
	}
	*out = im;
	return 0;
}

void qp_quant_imatrix_free(struct qp_quant_imatrix *im)
{
	if (!im)
		return;
	qp_imatrix_close(im->f);
	json_decref(im->unused);
	free(im);
}

int qp_quant_imatrix_convert(struct qp_quant_imatrix *im, const char *hf_name, enum qp_type dt,
                             void *dst, enum qp_type st, const void *src, int64_t rows,
                             int64_t cols, int threads, struct qp_err *err)
{
	char gg[256];
	if (!im || qp_llamanames_to_gguf(hf_name, gg, sizeof(gg)) != 0)
		return qp_convert_rows(dt, dst, st, src, rows, cols, threads, err);
	float *w = malloc((size_t)(cols > 0 ? cols : 1) * sizeof(float));
	if (!w)
		return qp_err_nomem(err);
	int rc = qp_imatrix_weights(im->f, gg, cols, w, err);
	if (rc == QP_ENOTFOUND) {
		free(w);
		qp_err_clear(err);
		return qp_convert_rows(dt, dst, st, src, rows, cols, threads, err);
	}
	if (rc) {
		free(w);
		return qp_err_prefix(err, "imatrix from '%s'", im->instance);
	}
	const struct qp_kernel_ops *ops = qp_kernels_get(dt);
	if (ops && ops->quantize_row_imat) {
		rc = qp_convert_rows_imat(dt, dst, st, src, rows, cols, w, threads, err);
		im->weighted += rc == 0;
	} else {
		if (qp_type_traits(dt)->quantized)
			json_array_append_new(im->unused, json_string(hf_name));
		rc = qp_convert_rows(dt, dst, st, src, rows, cols, threads, err);
	}
	free(w);
	return rc;
}

int qp_quant_imatrix_record(const struct qp_quant_imatrix *im, struct qp_gguf_writer *w,
                            json_t *met, struct qp_err *err)
{
	if (!im)
		return 0;
	int rc = w ? qp_gguf_set_str(w, "qpipe.imatrix", im->instance, err) : 0;
	if (rc)
		return rc;
	json_object_set_new(met, "imatrix", json_string(im->instance));
	json_object_set_new(met, "imatrix_tensors", json_integer(im->weighted));
	json_object_set(met, "imatrix_unused", im->unused);
	return 0;
}
