/* The text form of a quantization method's spec (kernels/qmethod.h), as
 * recipes write it and as qpipe's safetensors layout records it:
 *
 *   METHOD[:KEY=VALUE|:FLAG]...
 *
 * METHOD is rtn, binary, ternary, nf4, fp8 or kmeans; unset keys take the
 * method's defaults (qp_qspec_default). Keys:
 *   bits=N            RTN, KMEANS: 2..8
 *   group=N           RTN, BINARY, TERNARY: elements per group (sets gran=group);
 *                     NF4: block size; KMEANS: rows per LUT (sets gran=group)
 *   gran=tensor|channel|group
 *   sym, asym         RTN (also sym=true|false)
 *   scale=f16|f32     RTN, BINARY, TERNARY: scale storage
 *   rule=threshold|absmean, threshold=F   TERNARY
 *   format=e4m3|e5m2  FP8
 *   dq=true|false     NF4: double quantization of the absmax constants
 *   channel_scale=true|false  KMEANS
 *   seed=N, iters=N   KMEANS
 * e.g. "rtn:bits=3:group=64:sym", "ternary:rule=absmean", "fp8:format=e5m2".
 * ':' separates items (',' would split a recipe list item).
 *
 * The canonical form lists every key the method uses, in the order above,
 * so equal specs print equal. */
#ifndef QP_QSPEC_H
#define QP_QSPEC_H

#include <stdbool.h>
#include <stddef.h>

#include "common/err.h"
#include "kernels/qmethod.h"

/* Parse text into s. Fails naming the item and the allowed values. Does
 * not check against a tensor shape (qp_qspec_check does). */
int qp_qspec_parse(struct qp_qspec *s, const char *text, struct qp_err *err);

/* Canonical text into buf (always NUL-terminated); returns the length it
 * needed, as snprintf does. */
int qp_qspec_format(const struct qp_qspec *s, char *buf, size_t n);

/* Is text a method spec at all (starts with a method name)? */
bool qp_qspec_is_method(const char *text);

#endif
