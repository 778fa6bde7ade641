/* Methods still being written: each refuses until its own file lands. */
#include "kernels/qmethod_int.h"

#define PENDING(fn, what)                                                                        \
	int fn(const struct qp_qspec *s, const float *w, struct qp_qtensor *out, int threads,        \
	       struct qp_err *err)                                                                   \
	{                                                                                            \
		(void)s, (void)w, (void)out, (void)threads;                                              \
		return qp_err_set(err, QP_EINVAL, "%s: not implemented yet", what);                      \
	}
#define PENDING_DQ(fn, what)                                                                     \
	int fn(const struct qp_qspec *s, const struct qp_qtensor *q, float *out, struct qp_err *err) \
	{                                                                                            \
		(void)s, (void)q, (void)out;                                                             \
		return qp_err_set(err, QP_EINVAL, "%s: not implemented yet", what);                      \
	}
PENDING(qm_sign_quantize, "binary/ternary")
PENDING_DQ(qm_sign_dequantize, "binary/ternary")
PENDING(qm_nf4_quantize, "nf4")
PENDING_DQ(qm_nf4_dequantize, "nf4")
PENDING(qm_fp8_quantize, "fp8")
PENDING_DQ(qm_fp8_dequantize, "fp8")
PENDING(qm_kmeans_quantize, "kmeans")
PENDING_DQ(qm_kmeans_dequantize, "kmeans")
