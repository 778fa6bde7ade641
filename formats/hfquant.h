/* The tensor layouts of GPTQ and AWQ checkpoints as transformers (its
 * GPTQ and AWQ quantizers, through optimum/gptqmodel and autoawq) loads
 * them, from an RTN-quantized linear of qpipe's layout (codes q, scales s,
 * zero points z, optional g_idx; value = s * (q - z)).
 *
 * GPTQ ("gptq" checkpoint format, AutoGPTQ's), for out x in weights with
 * b = bits (2, 4 or 8) and G groups:
 *   qweight  I32 [in * b / 32, out]   q[i][o] of 32/b consecutive inputs i
 *                                     per word, input i at bit b * (i % (32/b))
 *   qzeros   I32 [G, out * b / 32]    (z - 1) & (2^b - 1), 32/b outputs per
 *                                     word the same way (AutoGPTQ stores z - 1
 *                                     and adds 1 back when it loads)
 *   scales   F16 [G, out]
 *   g_idx    I32 [in]                 the group of each input
 *   value[o][i] = scales[g][o] * (q - (zeros[g][o] + 1)), g = g_idx[i]
 * A zero point of 0 cannot survive the -1 (it loads as 2^b); such a model
 * is written in the "gptq_v2" format instead, zeros stored as z.
 *
 * AWQ (GEMM version, autoawq's), 4 bits only, no g_idx:
 *   qweight  I32 [in, out / 8]        8 outputs per word in the order
 *                                     0, 2, 4, 6, 1, 3, 5, 7 (word nibble j
 *                                     holds output 8k + order[j])
 *   qzeros   I32 [in / group, out / 8] the same packing of z
 *   scales   F16 [in / group, out]
 *   value[o][i] = scales[i / group][o] * (q - z) */
#ifndef QP_HFQUANT_H
#define QP_HFQUANT_H

#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"
#include "kernels/qmethod.h"

enum qp_hfq_format { QP_HFQ_GPTQ, QP_HFQ_AWQ };

/* One linear in a checkpoint layout; arrays malloc'd, freed with
 * qp_hfq_free. */
struct qp_hfq_tensor {
	int32_t *qweight, *qzeros, *g_idx;
	uint16_t *scales;          /* f16 bit patterns */
	int64_t qweight_shape[2], qzeros_shape[2], scales_shape[2];
};

/* GPTQ: does q hold a zero point of 0, which only "gptq_v2" can store? */
bool qp_hfq_needs_v2(const struct qp_qtensor *q);

/* Convert an RTN tensor (spec, q) to format f. Fails naming what does not
 * fit: bits (GPTQ 2/4/8, AWQ 4), f32 scales, a group granularity other
 * than group or channel, shapes not dividing into words, g_idx with AWQ. */
int qp_hfq_from_rtn(enum qp_hfq_format f, const struct qp_qspec *spec, const struct qp_qtensor *q, bool gptq_v2,
                    struct qp_hfq_tensor *out, struct qp_err *err);
void qp_hfq_free(struct qp_hfq_tensor *t);

#endif
