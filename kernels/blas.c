/* OpenBLAS and LAPACKE through dlopen (blas.h says why).
 *
 * Each function has the prototype its library's header gives it (the
 * headers are included, so the compiler checks them) and forwards to the
 * symbol of that name. The table is written once, under pthread_once, and
 * only read after. */
#include <cblas.h>
#include <lapacke.h>

#include <pthread.h>

#include "common/dlib.h"
#include "kernels/blas.h"

#define BLAS_SONAME "libopenblas.so.0"
#define LAPACKE_SONAME "liblapacke.so.3"

static struct {
	pthread_once_t once;
	char why[512];
	int ok;
	void (*sgemm)(const enum CBLAS_ORDER, const enum CBLAS_TRANSPOSE, const enum CBLAS_TRANSPOSE, const blasint,
	              const blasint, const blasint, const float, const float *, const blasint, const float *,
	              const blasint, const float, float *, const blasint);
	void (*dgemm)(const enum CBLAS_ORDER, const enum CBLAS_TRANSPOSE, const enum CBLAS_TRANSPOSE, const blasint,
	              const blasint, const blasint, const double, const double *, const blasint, const double *,
	              const blasint, const double, double *, const blasint);
	void (*sgemv)(const enum CBLAS_ORDER, const enum CBLAS_TRANSPOSE, const blasint, const blasint, const float,
	              const float *, const blasint, const float *, const blasint, const float, float *, const blasint);
	void (*ssyrk)(const enum CBLAS_ORDER, const enum CBLAS_UPLO, const enum CBLAS_TRANSPOSE, const blasint,
	              const blasint, const float, const float *, const blasint, const float, float *, const blasint);
	int (*get_threads)(void);
	void (*set_threads)(int);
	lapack_int (*dpotrf)(int, char, lapack_int, double *, lapack_int);
	lapack_int (*dtrtri)(int, char, char, lapack_int, double *, lapack_int);
} lib = {.once = PTHREAD_ONCE_INIT};

static void load(void)
{
	const struct qp_dlsym blas[] = {
		{"cblas_sgemm", &lib.sgemm},
		{"cblas_dgemm", &lib.dgemm},
		{"cblas_sgemv", &lib.sgemv},
		{"cblas_ssyrk", &lib.ssyrk},
		{"openblas_get_num_threads", &lib.get_threads},
		{"openblas_set_num_threads", &lib.set_threads},
	};
	const struct qp_dlsym lapacke[] = {
		{"LAPACKE_dpotrf_work", &lib.dpotrf},
		{"LAPACKE_dtrtri_work", &lib.dtrtri},
	};
	/* the handles stay open for the life of the process */
	lib.ok = qp_dlib_load(BLAS_SONAME, blas, sizeof(blas) / sizeof(blas[0]), lib.why, sizeof(lib.why)) == 0 &&
	         qp_dlib_load(LAPACKE_SONAME, lapacke, sizeof(lapacke) / sizeof(lapacke[0]), lib.why,
	                      sizeof(lib.why)) == 0;
}

int qp_blas_load(struct qp_err *err)
{
	pthread_once(&lib.once, load);
	if (!lib.ok)
		return qp_err_set(err, QP_ENOTFOUND, "%s (install libopenblas-dev and liblapacke-dev)", lib.why);
	return 0;
}

void cblas_sgemm(OPENBLAS_CONST enum CBLAS_ORDER Order, OPENBLAS_CONST enum CBLAS_TRANSPOSE TransA,
                 OPENBLAS_CONST enum CBLAS_TRANSPOSE TransB, OPENBLAS_CONST blasint M, OPENBLAS_CONST blasint N,
                 OPENBLAS_CONST blasint K, OPENBLAS_CONST float alpha, OPENBLAS_CONST float *A,
                 OPENBLAS_CONST blasint lda, OPENBLAS_CONST float *B, OPENBLAS_CONST blasint ldb,
                 OPENBLAS_CONST float beta, float *C, OPENBLAS_CONST blasint ldc)
{
	if (lib.ok)
		lib.sgemm(Order, TransA, TransB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void cblas_dgemm(OPENBLAS_CONST enum CBLAS_ORDER Order, OPENBLAS_CONST enum CBLAS_TRANSPOSE TransA,
                 OPENBLAS_CONST enum CBLAS_TRANSPOSE TransB, OPENBLAS_CONST blasint M, OPENBLAS_CONST blasint N,
                 OPENBLAS_CONST blasint K, OPENBLAS_CONST double alpha, OPENBLAS_CONST double *A,
                 OPENBLAS_CONST blasint lda, OPENBLAS_CONST double *B, OPENBLAS_CONST blasint ldb,
                 OPENBLAS_CONST double beta, double *C, OPENBLAS_CONST blasint ldc)
{
	if (lib.ok)
		lib.dgemm(Order, TransA, TransB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void cblas_sgemv(OPENBLAS_CONST enum CBLAS_ORDER order, OPENBLAS_CONST enum CBLAS_TRANSPOSE trans,
                 OPENBLAS_CONST blasint m, OPENBLAS_CONST blasint n, OPENBLAS_CONST float alpha,
                 OPENBLAS_CONST float *a, OPENBLAS_CONST blasint lda, OPENBLAS_CONST float *x,
                 OPENBLAS_CONST blasint incx, OPENBLAS_CONST float beta, float *y, OPENBLAS_CONST blasint incy)
{
	if (lib.ok)
		lib.sgemv(order, trans, m, n, alpha, a, lda, x, incx, beta, y, incy);
}

void cblas_ssyrk(OPENBLAS_CONST enum CBLAS_ORDER Order, OPENBLAS_CONST enum CBLAS_UPLO Uplo,
                 OPENBLAS_CONST enum CBLAS_TRANSPOSE Trans, OPENBLAS_CONST blasint N, OPENBLAS_CONST blasint K,
                 OPENBLAS_CONST float alpha, OPENBLAS_CONST float *A, OPENBLAS_CONST blasint lda,
                 OPENBLAS_CONST float beta, float *C, OPENBLAS_CONST blasint ldc)
{
	if (lib.ok)
		lib.ssyrk(Order, Uplo, Trans, N, K, alpha, A, lda, beta, C, ldc);
}

int openblas_get_num_threads(void)
{
	return lib.ok ? lib.get_threads() : 1;
}

void openblas_set_num_threads(int num_threads)
{
	if (lib.ok)
		lib.set_threads(num_threads);
}

lapack_int LAPACKE_dpotrf_work(int matrix_layout, char uplo, lapack_int n, double *a, lapack_int lda)
{
	return lib.ok ? lib.dpotrf(matrix_layout, uplo, n, a, lda) : -1;
}

lapack_int LAPACKE_dtrtri_work(int matrix_layout, char uplo, char diag, lapack_int n, double *a, lapack_int lda)
{
	return lib.ok ? lib.dtrtri(matrix_layout, uplo, diag, n, a, lda) : -1;
}
