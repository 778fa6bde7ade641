/* GPTQ and AWQ checkpoint layouts from RTN tensors; see hfquant.h. */
#include "formats/hfquant.h"

#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"

/* Code of element (r, c) of q. */
static unsigned code_at(const struct qp_qtensor *q, int64_t r, int64_t c, int bits)
{
	return qp_qcode_get(q->codes + (size_t)r * q->row_bytes, c, bits);
}

bool qp_hfq_needs_v2(const struct qp_qtensor *q)
{
	for (int64_t i = 0; q->zeros && i < q->scale_rows * q->scale_cols; i++)
		if (q->zeros[i] == 0)
			return true;
	return false;
}

void qp_hfq_free(struct qp_hfq_tensor *t)
{
	free(t->qweight);
	free(t->qzeros);
	free(t->g_idx);
	free(t->scales);
	memset(t, 0, sizeof(*t));
}

int qp_hfq_from_rtn(enum qp_hfq_format f, const struct qp_qspec *spec, const struct qp_qtensor *q, bool gptq_v2,
                    struct qp_hfq_tensor *out, struct qp_err *err)
{
	memset(out, 0, sizeof(*out));
	const char *fname = f == QP_HFQ_GPTQ ? "GPTQ" : "AWQ";
	int b = spec->bits;
	int64_t out_f = q->rows, in_f = q->cols;
	if (spec->method != QP_QM_RTN || !q->zeros)
		return qp_err_set(err, QP_EINVAL, "%s stores round-to-nearest integer weights only", fname);
	if (f == QP_HFQ_GPTQ ? (b != 2 && b != 4 && b != 8) : b != 4)
		return qp_err_set(err, QP_EINVAL, "%s checkpoints hold %s-bit weights, not %d", fname,
		                  f == QP_HFQ_GPTQ ? "2, 4 or 8" : "4", b);
	if (!spec->scale_f16)
		return qp_err_set(err, QP_EINVAL, "%s checkpoints store f16 scales; quantize with scale=f16", fname);
	if (spec->gran == QP_QG_TENSOR || (f == QP_HFQ_AWQ && spec->gran != QP_QG_GROUP))
		return qp_err_set(err, QP_EINVAL, "%s needs scales per %s, not per %s", fname,
		                  f == QP_HFQ_GPTQ ? "group or channel" : "group",
		                  spec->gran == QP_QG_TENSOR ? "tensor" : "channel");
	if (f == QP_HFQ_AWQ && q->g_idx)
		return qp_err_set(err, QP_EINVAL, "AWQ has no act-order (g_idx); export it as GPTQ");
	int per = 32 / b;
	int64_t groups = q->scale_cols;
	if ((f == QP_HFQ_GPTQ && (in_f % per || out_f % per)) || (f == QP_HFQ_AWQ && out_f % 8))
		return qp_err_set(err, QP_EINVAL, "a %lld x %lld weight does not pack into 32-bit words of %d-bit values",
		                  (long long)out_f, (long long)in_f, b);
	size_t nq = f == QP_HFQ_GPTQ ? (size_t)(in_f / per * out_f) : (size_t)(in_f * out_f / 8);
	size_t nz = f == QP_HFQ_GPTQ ? (size_t)(groups * out_f / per) : (size_t)(groups * out_f / 8);
	out->qweight = calloc(nq, sizeof(int32_t));
	out->qzeros = calloc(nz, sizeof(int32_t));
	out->scales = malloc((size_t)(groups * out_f) * sizeof(uint16_t));
	if (f == QP_HFQ_GPTQ)
		out->g_idx = malloc((size_t)in_f * sizeof(int32_t));
	float *st = malloc((size_t)(groups * out_f) * sizeof(float));
	if (!out->qweight || !out->qzeros || !out->scales || (f == QP_HFQ_GPTQ && !out->g_idx) || !st) {
		free(st);
		qp_hfq_free(out);
		return qp_err_nomem(err);
	}
	/* scales transposed to [groups, out], as f16 (exact: they were rounded to f16) */
	for (int64_t g = 0; g < groups; g++)
		for (int64_t o = 0; o < out_f; o++)
			st[g * out_f + o] = q->scales[o * groups + g];
	qp_kernels_get(QP_TYPE_F16)->quantize_row(st, out->scales, groups * out_f);
	free(st);
	uint32_t mask = (1u << b) - 1;
	uint32_t *qw = (uint32_t *)out->qweight, *qz = (uint32_t *)out->qzeros;
	if (f == QP_HFQ_GPTQ) {
		for (int64_t i = 0; i < in_f; i++)
			for (int64_t o = 0; o < out_f; o++)
				qw[(i / per) * out_f + o] |= (uint32_t)code_at(q, o, i, b) << (b * (i % per));
		for (int64_t g = 0; g < groups; g++)
			for (int64_t o = 0; o < out_f; o++) {
				uint32_t z = q->zeros[o * groups + g];
				z = gptq_v2 ? z : (z - 1) & mask;
				qz[g * (out_f / per) + o / per] |= z << (b * (o % per));
			}
		for (int64_t i = 0; i < in_f; i++)
			out->g_idx[i] = q->g_idx ? q->g_idx[i] : (int32_t)(i * groups / in_f);
		out->qweight_shape[0] = in_f / per, out->qweight_shape[1] = out_f;
		out->qzeros_shape[0] = groups, out->qzeros_shape[1] = out_f / per;
	} else {
		static const int order[8] = {0, 2, 4, 6, 1, 3, 5, 7};
		for (int64_t i = 0; i < in_f; i++)
			for (int64_t k = 0; k < out_f / 8; k++)
				for (int j = 0; j < 8; j++)
					qw[i * (out_f / 8) + k] |= (uint32_t)code_at(q, k * 8 + order[j], i, 4) << (4 * j);
		for (int64_t g = 0; g < groups; g++)
			for (int64_t k = 0; k < out_f / 8; k++)
				for (int j = 0; j < 8; j++)
					qz[g * (out_f / 8) + k] |= (uint32_t)q->zeros[(k * 8 + order[j]) * groups + g] << (4 * j);
		out->qweight_shape[0] = in_f, out->qweight_shape[1] = out_f / 8;
		out->qzeros_shape[0] = groups, out->qzeros_shape[1] = out_f / 8;
	}
	out->scales_shape[0] = groups, out->scales_shape[1] = out_f;
	return 0;
}
