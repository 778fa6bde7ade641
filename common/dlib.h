/* Shared libraries opened at run time, for the dependencies only a few
 * commands need (libcurl, libarchive, OpenBLAS): linked, each would cost
 * every qpipe invocation its loading and relocation. The modules that
 * forward to them (stages/download/dl_*.c, kernels/blas.c) keep their own
 * tables of function pointers; this resolves them. */
#ifndef QP_DLIB_H
#define QP_DLIB_H

#include <stddef.h>

/* One symbol: its name, and the function pointer variable it goes into. */
struct qp_dlsym {
	const char *name;
	void *slot;
};

/* dlopen soname and resolve every symbol into its slot. On success the
 * handle stays open for the life of the process; on failure (-1) why gets
 * dlerror's text or "SONAME: no symbol 'NAME'" and the handle is closed. */
int qp_dlib_load(const char *soname, const struct qp_dlsym *syms, size_t n, char *why, size_t why_len);

#endif
