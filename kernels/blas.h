/* OpenBLAS and LAPACKE, loaded at run time by the code that needs them.
 *
 * Linked into qpipe, libopenblas, liblapacke, liblapack and libgfortran
 * cost every invocation some 3 ms of loading and relocation (and OpenBLAS
 * starts its thread pool in a constructor): most of a no-op rerun's
 * budget, for the few stages (GPTQ, AWQ) that do dense linear algebra.
 * So qpipe links neither: blas.c defines the CBLAS and LAPACKE functions
 * the kernels call, each forwarding to the real one found with
 * dlopen/dlsym on first use, as stages/download/dl.h does for libcurl.
 *
 * Call qp_blas_load before the first of them, for a clear error when the
 * libraries are not installed; a forwarding function called without them
 * does nothing (LAPACKE ones return -1). */
#ifndef QP_BLAS_H
#define QP_BLAS_H

#include "common/err.h"

/* Load libopenblas.so.0 and liblapacke.so.3 once (thread-safe);
 * QP_ENOTFOUND with dlerror's text. */
int qp_blas_load(struct qp_err *err);

#endif
