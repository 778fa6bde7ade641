#include "stages/download/http.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "common/os.h"
#include "stages/download/dl.h"
#include "qp_config.h"

#define BODY_KEEP 512     /* bytes of an error reply kept for the message */

static double backoff_s(int attempt)
{
	double d = 0.25;
	for (int i = 1; i < attempt && d < 8; i++)
		d *= 2;
	return d < 8 ? d : 8;
}

static void sleep_s(double s)
{
	struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
	}
}

static int retryable_curl(CURLcode c)
{
	switch (c) {
	case CURLE_PARTIAL_FILE:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_GOT_NOTHING:
	case CURLE_COULDNT_CONNECT:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
		return 1;
	default:
		return 0;
	}
}

static int retryable_status(long code)
{
	return code == 429 || (code >= 500 && code <= 599);
}

static CURL *easy_new(const struct qp_http_opts *o, const char *url, struct curl_slist **hdrs,
                      char *errbuf)
{
	CURL *h = curl_easy_init();
	if (!h)
		return NULL;
	*hdrs = NULL;
	if (o->token && o->token[0]) {
		char auth[1200];
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s", o->token);
		*hdrs = curl_slist_append(NULL, auth);
	}
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(h, CURLOPT_MAXREDIRS, 10L);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https,file");
	curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_USERAGENT, "qpipe/" QP_VERSION);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 30L);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	/* curl sends a custom Authorization header to the first host only, so
	 * the token never follows a redirect to a CDN. */
	if (*hdrs)
		curl_easy_setopt(h, CURLOPT_HTTPHEADER, *hdrs);
	errbuf[0] = '\0';
	return h;
}

static int is_file_url(const char *url)
{
	return strncmp(url, "file:", 5) == 0;
}

/* Status line for a failure: HTTP code, else curl's words. */
static void describe(char *out, size_t n, CURLcode res, long code, const char *errbuf)
{
	if (res == CURLE_OK)
		snprintf(out, n, "HTTP %ld", code);
	else
		snprintf(out, n, "%s", errbuf[0] ? errbuf : curl_easy_strerror(res));
}

/* ---- JSON ---- */

struct membuf {
	char *p;
	size_t n, cap;
	int too_big;
};

static size_t mem_write(char *data, size_t sz, size_t nm, void *ud)
{
	struct membuf *m = ud;
	size_t n = sz * nm;
	if (m->n + n + 1 > QP_HTTP_JSON_MAX) {
		m->too_big = 1;
		return 0;
	}
	if (m->n + n + 1 > m->cap) {
		size_t cap = m->cap ? m->cap : 4096;
		while (cap < m->n + n + 1)
			cap *= 2;
		char *np = realloc(m->p, cap);
		if (!np)
			return 0;
		m->p = np;
		m->cap = cap;
	}
	memcpy(m->p + m->n, data, n);
	m->n += n;
	m->p[m->n] = '\0';
	return n;
}

int qp_http_get_json(json_t **out, long *status, const struct qp_http_opts *o, const char *url,
                     struct qp_err *err)
{
	*out = NULL;
	*status = 0;
	int rc = qp_dl_curl(err);
	if (rc)
		return rc;
	for (int attempt = 1;; attempt++) {
		char errbuf[CURL_ERROR_SIZE];
		struct curl_slist *hdrs;
		CURL *h = easy_new(o, url, &hdrs, errbuf);
		if (!h)
			return qp_err_nomem(err);
		struct membuf m = {0};
		curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, mem_write);
		curl_easy_setopt(h, CURLOPT_WRITEDATA, &m);
		curl_easy_setopt(h, CURLOPT_TIMEOUT, 60L);
		CURLcode res = curl_easy_perform(h);
		long code = 0;
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
		char why[CURL_ERROR_SIZE + 32];
		describe(why, sizeof(why), res, code, errbuf);
		curl_easy_cleanup(h);
		curl_slist_free_all(hdrs);
		*status = code;
		if (m.too_big) {
			free(m.p);
			return qp_err_set(err, QP_ENOMEM, "%s: reply larger than %u bytes", url,
			                  QP_HTTP_JSON_MAX);
		}
		if (res == CURLE_OK && code == 200) {
			json_error_t je;
			*out = json_loadb(m.p ? m.p : "", m.n, 0, &je);
			free(m.p);
			if (!*out)
				return qp_err_set(err, QP_ECORRUPT, "%s: reply is not JSON: %s", url, je.text);
			return 0;
		}
		free(m.p);
		int again = res == CURLE_OK ? retryable_status(code) : retryable_curl(res);
		if (!again || attempt >= QP_HTTP_ATTEMPTS) {
			int c = res != CURLE_OK ? QP_EIO
			        : code == 401 || code == 403 ? QP_HTTP_EAUTH
			        : code == 404 ? QP_ENOTFOUND : QP_EIO;
			if (again)
				return qp_err_set(err, c, "%s: %s (gave up after %d attempts)", url, why, attempt);
			return qp_err_set(err, c, "%s: %s", url, why);
		}
		sleep_s(backoff_s(attempt));
	}
}

/* ---- files ---- */

enum { X_WAIT, X_RUN, X_DONE };

struct xfer {
	struct qp_http_file *f;
	int state;
	double not_before;       /* X_WAIT: monotonic time of the next try */
	CURL *h;
	struct curl_slist *hdrs;
	int fd;
	int64_t start;           /* offset the current request resumes from */
	int64_t got;             /* body bytes written by the current request */
	int checked;             /* the status of the current reply was looked at */
	long code;
	int too_long;
	int werr;                /* errno of a failed write */
	char errbuf[CURL_ERROR_SIZE];
	char last[CURL_ERROR_SIZE + 64];   /* why the last try failed */
};

static int64_t file_len(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? (int64_t)st.st_size : -1;
}

static int truncate_part(struct xfer *x)
{
	if (x->fd >= 0)
		return ftruncate(x->fd, 0) == 0 && lseek(x->fd, 0, SEEK_SET) == 0 ? 0 : -1;
	return truncate(x->f->part, 0) == 0 || errno == ENOENT ? 0 : -1;
}

static size_t file_write(char *data, size_t sz, size_t nm, void *ud)
{
	struct xfer *x = ud;
	size_t n = sz * nm;
	if (!x->checked) {
		x->checked = 1;
		curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &x->code);
		if (x->code == 200 && x->start > 0) {
			/* The server ignored our Range: start over. */
			if (truncate_part(x) != 0) {
				x->werr = errno;
				return 0;
			}
			x->start = 0;
		}
	}
	if (x->code != 0 && x->code != 200 && x->code != 206)
		return n;   /* an error page: not part of the file */
	if (x->f->size >= 0 && x->start + x->got + (int64_t)n > x->f->size) {
		x->too_long = 1;
		return 0;
	}
	for (size_t o = 0; o < n;) {
		ssize_t w = write(x->fd, data + o, n - o);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			x->werr = errno;
			return 0;
		}
		o += (size_t)w;
	}
	x->got += (int64_t)n;
	return n;
}

static void xfer_close(CURLM *m, struct xfer *x)
{
	if (x->h) {
		curl_multi_remove_handle(m, x->h);
		curl_easy_cleanup(x->h);
		x->h = NULL;
	}
	curl_slist_free_all(x->hdrs);
	x->hdrs = NULL;
	if (x->fd >= 0)
		close(x->fd);
	x->fd = -1;
}

/* Verify a complete part; 0 done, 1 retry (x->last says why), <0 final. */
static int finish(struct xfer *x, struct qp_err *err)
{
	if (!x->f->verify)
		return 0;
	struct qp_err verr = {0};
	int rc = x->f->verify(x->f->verify_arg, x->f->part, &verr);
	if (rc == QP_ECORRUPT) {
		snprintf(x->last, sizeof(x->last), "%.*s", (int)sizeof(x->last) - 1, verr.msg);
		if (truncate(x->f->part, 0) != 0 && errno != ENOENT)
			return qp_err_set(err, QP_EIO, "%s: cannot truncate:", x->f->part);
		return 1;
	}
	if (rc) {
		*err = verr;
		return rc;
	}
	return 0;
}

/* Start x: 0 running or done, 1 retry later, <0 final. */
static int start(CURLM *m, struct xfer *x, const struct qp_http_opts *o, struct qp_err *err)
{
	struct qp_http_file *f = x->f;
	int64_t have = file_len(f->part);
	if (have > 0 && f->size >= 0 && have > f->size) {
		if (truncate(f->part, 0) != 0)
			return qp_err_set(err, QP_EIO, "%s: cannot truncate:", f->part);
		have = 0;
	}
	if (have > 0 && have == f->size) {
		/* Complete from an earlier run: verify without a request. */
		int rc = finish(x, err);
		if (rc == 0)
			x->state = X_DONE;
		return rc == 1 ? start(m, x, o, err) : rc;
	}
	x->fd = open(f->part, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	if (x->fd < 0)
		return qp_err_set(err, QP_EIO, "%s: cannot open:", f->part);
	x->start = have > 0 ? have : 0;
	if (lseek(x->fd, x->start, SEEK_SET) < 0) {
		xfer_close(m, x);
		return qp_err_set(err, QP_EIO, "%s: cannot seek:", f->part);
	}
	x->got = 0;
	x->checked = 0;
	x->code = 0;
	x->too_long = 0;
	x->werr = 0;
	x->h = easy_new(o, f->url, &x->hdrs, x->errbuf);
	if (!x->h) {
		xfer_close(m, x);
		return qp_err_nomem(err);
	}
	curl_easy_setopt(x->h, CURLOPT_WRITEFUNCTION, file_write);
	curl_easy_setopt(x->h, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(x->h, CURLOPT_PRIVATE, x);
	if (x->start > 0) {
		curl_easy_setopt(x->h, CURLOPT_RESUME_FROM_LARGE, (curl_off_t)x->start);
		f->resumed++;
	}
	f->attempts++;
	if (curl_multi_add_handle(m, x->h) != CURLM_OK) {
		xfer_close(m, x);
		return qp_err_set(err, QP_EIO, "%s: cannot start transfer", f->name);
	}
	x->state = X_RUN;
	return 0;
}

/* A request of x ended with res: 0 done, 1 retry, <0 final. */
static int ended(CURLM *m, struct xfer *x, CURLcode res, struct qp_err *err)
{
	struct qp_http_file *f = x->f;
	long code = 0;
	curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &code);
	int file = is_file_url(f->url);
	int64_t total = x->start + x->got;
	char errbuf[CURL_ERROR_SIZE];
	snprintf(errbuf, sizeof(errbuf), "%s", x->errbuf);
	int too_long = x->too_long, werr = x->werr;
	if (fsync(x->fd) != 0 && !werr)
		werr = errno;
	xfer_close(m, x);
	if (werr) {
		errno = werr;
		return qp_err_set(err, QP_EIO, "%s: write failed:", f->part);
	}
	if (too_long) {
		snprintf(x->last, sizeof(x->last), "body longer than the expected %lld bytes",
		         (long long)f->size);
		return truncate(f->part, 0) == 0 ? 1 : qp_err_set(err, QP_EIO, "%s: cannot truncate:", f->part);
	}
	if (res == CURLE_OK && (code == 200 || code == 206 || (file && code == 0))) {
		if (f->size >= 0 && total != f->size) {
			snprintf(x->last, sizeof(x->last), "body ends at byte %lld of %lld", (long long)total,
			         (long long)f->size);
			return 1;
		}
		return finish(x, err);
	}
	if (res == CURLE_OK && code == 416) {
		snprintf(x->last, sizeof(x->last), "HTTP 416 for a resumed range");
		return truncate(f->part, 0) == 0 ? 1 : qp_err_set(err, QP_EIO, "%s: cannot truncate:", f->part);
	}
	describe(x->last, sizeof(x->last), res, code, errbuf);
	if (res == CURLE_OK && (code == 401 || code == 403))
		return qp_err_set(err, QP_HTTP_EAUTH, "%s: %s", f->name, x->last);
	if (res == CURLE_OK && code == 404)
		return qp_err_set(err, QP_ENOTFOUND, "%s: %s", f->name, x->last);
	if (res == CURLE_OK ? retryable_status(code) : retryable_curl(res))
		return 1;
	return qp_err_set(err, QP_EIO, "%s: %s", f->name, x->last);
}

static void report(struct xfer *xs, size_t n, int64_t *done, int64_t *total)
{
	*done = *total = 0;
	for (size_t i = 0; i < n; i++) {
		int64_t have = xs[i].state == X_RUN ? xs[i].start + xs[i].got
		               : xs[i].state == X_DONE ? (xs[i].f->size >= 0 ? xs[i].f->size : 0) : 0;
		*done += have;
		*total += xs[i].f->size >= 0 ? xs[i].f->size : have;
	}
}

int qp_http_fetch(struct qp_http_file *files, size_t n, const struct qp_http_opts *o,
                  struct qp_err *err)
{
	if (n == 0)
		return 0;
	int lrc = qp_dl_curl(err);
	if (lrc)
		return lrc;
	struct xfer *xs = calloc(n, sizeof(*xs));
	CURLM *m = curl_multi_init();
	if (!xs || !m) {
		free(xs);
		if (m)
			curl_multi_cleanup(m);
		return qp_err_nomem(err);
	}
	for (size_t i = 0; i < n; i++) {
		xs[i].f = &files[i];
		xs[i].fd = -1;
		files[i].attempts = files[i].resumed = 0;
	}
	int parallel = o->parallel > 0 ? o->parallel : 1;
	int rc = 0;
	double last_report = 0;
	for (;;) {
		size_t running = 0, left = 0;
		double now = qp_os_now();
		for (size_t i = 0; i < n; i++)
			running += xs[i].state == X_RUN;
		for (size_t i = 0; i < n && !rc; i++) {
			if (xs[i].state != X_WAIT)
				continue;
			left++;
			if ((int)running >= parallel || xs[i].not_before > now)
				continue;
			int r = start(m, &xs[i], o, err);
			if (r == 1) {
				xs[i].not_before = now + backoff_s(xs[i].f->attempts);
			} else if (r < 0) {
				rc = r;
			} else if (xs[i].state == X_RUN) {
				running++;
			}
		}
		if (rc)
			break;
		if (running == 0 && left == 0)
			break;
		int still = 0;
		curl_multi_perform(m, &still);
		CURLMsg *msg;
		int q;
		while (!rc && (msg = curl_multi_info_read(m, &q))) {
			if (msg->msg != CURLMSG_DONE)
				continue;
			struct xfer *x = NULL;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
			int r = ended(m, x, msg->data.result, err);
			if (r == 0) {
				x->state = X_DONE;
			} else if (r == 1) {
				x->state = X_WAIT;
				if (x->f->attempts >= QP_HTTP_ATTEMPTS)
					rc = qp_err_set(err, QP_EIO, "%s: %s (gave up after %d attempts)", x->f->name,
					                x->last, x->f->attempts);
				x->not_before = qp_os_now() + backoff_s(x->f->attempts);
			} else {
				rc = r;
			}
		}
		if (rc)
			break;
		now = qp_os_now();
		if (o->progress && now - last_report >= 0.2) {
			int64_t d, t;
			report(xs, n, &d, &t);
			last_report = now;
			if ((rc = o->progress(o->progress_arg, d, t, err)))
				break;
		}
		curl_multi_poll(m, NULL, 0, running ? 100 : 50, NULL);
	}
	for (size_t i = 0; i < n; i++)
		xfer_close(m, &xs[i]);
	curl_multi_cleanup(m);
	free(xs);
	return rc;
}
