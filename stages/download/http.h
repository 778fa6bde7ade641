/* HTTP for the download stages, over libcurl: small JSON GETs and
 * parallel file transfers that resume, retry and verify.
 *
 * Retry policy (as huggingface_hub's http_backoff): a transfer that fails
 * with a 5xx or 429 status, a timeout, a refused or reset connection or a
 * body cut short is tried again, up to QP_HTTP_ATTEMPTS times, after
 * 0.25 s, 0.5 s, 1 s ... (capped at 8 s). A file transfer resumes where
 * its partial file ends with a Range request; a server that ignores the
 * range (200) or rejects it (416) makes it start over. 401, 403 and 404
 * are final at once. A body that fails verification is discarded and
 * fetched again, within the same attempt budget. */
#ifndef QP_DL_HTTP_H
#define QP_DL_HTTP_H

#include <stdint.h>

#include <jansson.h>

#include "common/err.h"

#define QP_HTTP_ATTEMPTS 5
#define QP_HTTP_JSON_MAX (64u << 20)   /* bytes: cap on a JSON reply */

/* Status codes a caller acts on are mapped: 401/403 -> QP_HTTP_EAUTH. */
#define QP_HTTP_EAUTH (-100)

struct qp_http_opts {
	const char *token;        /* bearer token for the first host, or NULL */
	int parallel;             /* transfers at once (>= 1) */
	/* Called about 5 times a second with bytes received so far of the
	 * total expected; a non-zero return stops every transfer (partial
	 * files are kept for resume) and is returned. */
	int (*progress)(void *arg, int64_t done, int64_t total, struct qp_err *err);
	void *progress_arg;
};

/* One file to fetch into part (an ".incomplete" file kept across runs). */
struct qp_http_file {
	const char *url;
	const char *part;         /* partial file: appended to, resumed from */
	const char *name;         /* for messages */
	int64_t size;             /* expected bytes, or -1 if unknown */
	/* Called on part once the body is complete; QP_ECORRUPT (err set)
	 * discards part and retries, another error is final. NULL: none. */
	int (*verify)(void *arg, const char *part, struct qp_err *err);
	void *verify_arg;
	int attempts;             /* out: requests made */
	int resumed;              /* out: requests that resumed a partial file */
};

/* GET url and parse its JSON body into *out (caller decrefs). *status gets
 * the final HTTP status (0 if none). Fails on any status but 200. */
int qp_http_get_json(json_t **out, long *status, const struct qp_http_opts *o, const char *url,
                     struct qp_err *err);

/* Fetch every file; on the first final failure stop all (partial files
 * stay) and return it. */
int qp_http_fetch(struct qp_http_file *files, size_t n, const struct qp_http_opts *o,
                  struct qp_err *err);

#endif
