/* libcurl through dlopen (dl.h says why).
 *
 * Each function below has libcurl's own prototype (curl.h is included, so
 * the compiler checks them) and forwards to the symbol of that name in
 * libcurl.so.4, the soname libcurl has kept since 7.16. The function table
 * is written once, under pthread_once, and only read after; it is, with
 * the kernel dispatch table, one of qpipe's write-once globals. */
#define CURL_DISABLE_TYPECHECK /* the gcc type-check macros would rename our definitions */
#include <curl/curl.h>

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/dlib.h"
#include "stages/download/dl.h"

#define SONAME "libcurl.so.4"

/* X(return type, name, (parameters), (arguments), value when not loaded) */
#define CURL_FUNCTIONS(X) \
	X(CURL *, curl_easy_init, (void), (), NULL) \
	X(CURLcode, curl_easy_perform, (CURL *h), (h), CURLE_FAILED_INIT) \
	X(const char *, curl_easy_strerror, (CURLcode c), (c), "libcurl is not loaded") \
	X(CURLM *, curl_multi_init, (void), (), NULL) \
	X(CURLMcode, curl_multi_add_handle, (CURLM *m, CURL *h), (m, h), CURLM_INTERNAL_ERROR) \
	X(CURLMcode, curl_multi_remove_handle, (CURLM *m, CURL *h), (m, h), CURLM_INTERNAL_ERROR) \
	X(CURLMcode, curl_multi_perform, (CURLM *m, int *running), (m, running), CURLM_INTERNAL_ERROR) \
	X(CURLMcode, curl_multi_poll, (CURLM *m, struct curl_waitfd *fds, unsigned int nfds, \
	                               int timeout_ms, int *numfds), \
	  (m, fds, nfds, timeout_ms, numfds), CURLM_INTERNAL_ERROR) \
	X(CURLMsg *, curl_multi_info_read, (CURLM *m, int *left), (m, left), NULL) \
	X(CURLMcode, curl_multi_cleanup, (CURLM *m), (m), CURLM_INTERNAL_ERROR) \
	X(struct curl_slist *, curl_slist_append, (struct curl_slist *l, const char *s), (l, s), NULL)

#define FIELD(ret, name, params, args, fail) ret (*name) params;

static struct {
	pthread_once_t once;
	char why[512];     /* dlopen's or dlsym's complaint; "" once loaded */
	int ok;
	CURL_FUNCTIONS(FIELD)
	void (*curl_easy_cleanup)(CURL *h);
	void (*curl_slist_free_all)(struct curl_slist *l);
	CURLcode (*curl_easy_setopt)(CURL *h, CURLoption opt, ...);
	CURLcode (*curl_easy_getinfo)(CURL *h, CURLINFO info, ...);
} lib = {.once = PTHREAD_ONCE_INIT};

static void load(void)
{
#define SYM(ret, name, params, args, fail) {#name, &lib.name},
	const struct qp_dlsym syms[] = {
		CURL_FUNCTIONS(SYM)
		{"curl_easy_cleanup", &lib.curl_easy_cleanup},
		{"curl_slist_free_all", &lib.curl_slist_free_all},
		{"curl_easy_setopt", &lib.curl_easy_setopt},
		{"curl_easy_getinfo", &lib.curl_easy_getinfo},
	};
	lib.ok = qp_dlib_load(SONAME, syms, sizeof(syms) / sizeof(syms[0]), lib.why, sizeof(lib.why)) == 0;
}

int qp_dl_curl(struct qp_err *err)
{
	pthread_once(&lib.once, load);
	if (lib.ok)
		return 0;
	return qp_err_set(err, QP_ENOTFOUND, "cannot load libcurl (needed for downloads): %s", lib.why);
}

#define FORWARD(ret, name, params, args, fail) \
	ret name params \
	{ \
		pthread_once(&lib.once, load); \
		return lib.ok ? lib.name args : fail; \
	}
CURL_FUNCTIONS(FORWARD)

void curl_easy_cleanup(CURL *h)
{
	pthread_once(&lib.once, load);
	if (lib.ok)
		lib.curl_easy_cleanup(h);
}

void curl_slist_free_all(struct curl_slist *l)
{
	pthread_once(&lib.once, load);
	if (lib.ok)
		lib.curl_slist_free_all(l);
}

/* The option's number says the type of its one argument (curl.h's
 * CURLOPTTYPE_* ranges), which is how libcurl itself reads it. */
CURLcode curl_easy_setopt(CURL *h, CURLoption opt, ...)
{
	pthread_once(&lib.once, load);
	if (!lib.ok)
		return CURLE_FAILED_INIT;
	va_list ap;
	va_start(ap, opt);
	CURLcode rc;
	if (opt < CURLOPTTYPE_OBJECTPOINT) {
		long v = va_arg(ap, long);
		rc = lib.curl_easy_setopt(h, opt, v);
	} else if (opt < CURLOPTTYPE_FUNCTIONPOINT) {
		void *v = va_arg(ap, void *);
		rc = lib.curl_easy_setopt(h, opt, v);
	} else if (opt < CURLOPTTYPE_OFF_T) {
		void (*v)(void) = va_arg(ap, void (*)(void));
		rc = lib.curl_easy_setopt(h, opt, v);
	} else if (opt < CURLOPTTYPE_BLOB) {
		curl_off_t v = va_arg(ap, curl_off_t);
		rc = lib.curl_easy_setopt(h, opt, v);
	} else {
		void *v = va_arg(ap, void *);
		rc = lib.curl_easy_setopt(h, opt, v);
	}
	va_end(ap);
	return rc;
}

/* Every CURLINFO_* takes one pointer to where the answer goes. */
CURLcode curl_easy_getinfo(CURL *h, CURLINFO info, ...)
{
	pthread_once(&lib.once, load);
	if (!lib.ok)
		return CURLE_FAILED_INIT;
	va_list ap;
	va_start(ap, info);
	void *p = va_arg(ap, void *);
	va_end(ap);
	return lib.curl_easy_getinfo(h, info, p);
}
