/* libcurl and libarchive, loaded at run time by the download code only.
 *
 * Linked into qpipe, the two cost every invocation about 10 ms of dynamic
 * loading and relocation (libcurl alone brings some 40 libraries: TLS,
 * Kerberos, LDAP, ICU), which is most of a no-op rerun. Only url.download
 * and hf.download use them, so qpipe links neither: dl_curl.c and
 * dl_archive.c define the functions the download code calls, each
 * forwarding to the real one, found with dlopen/dlsym on first use.
 *
 * Call qp_dl_curl / qp_dl_archive before the first libcurl or libarchive
 * call, for a clear error when the library is not installed; a forwarding
 * function called without a loaded library returns its failure value
 * (NULL, an error code). */
#ifndef QP_DL_H
#define QP_DL_H

#include "common/err.h"

/* Load libcurl.so.4 once (thread-safe); QP_ENOTFOUND with dlerror's text. */
int qp_dl_curl(struct qp_err *err);
/* Load libarchive.so.13 once (thread-safe); QP_ENOTFOUND with dlerror's text. */
int qp_dl_archive(struct qp_err *err);

#endif
