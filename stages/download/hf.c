/* hf.download: a Hugging Face repo (model or dataset) at a revision, into
 * huggingface_hub's own cache (layout in hub.h), so either tool reuses what
 * the other fetched.
 *
 * Plan time (hash_extra): the revision is resolved to a commit sha, which
 * goes into the key and is pinned for the run: a branch that moves makes a
 * new key, and the run fetches only the blobs the cache lacks. A sha needs
 * no request; offline (HF_HUB_OFFLINE=1) the cache's refs/<revision> says;
 * online the Hub's API does (GET /api/<type>s/<repo>/revision/<rev>), with
 * refs/ as the fallback when the Hub cannot be reached. A revision that
 * cannot be resolved defers the instance: `plan` shows why and `run` fails
 * it at once.
 *
 * Run: the file list with etags and sizes comes from the same API with
 * ?blobs=true. A file whose snapshot link resolves is reused without a
 * request; a blob already in blobs/ is linked; the rest is downloaded
 * (http.h: parallel, resumed, retried) into blobs/<etag>.incomplete under
 * huggingface_hub's lock file, verified (an LFS file against the sha256 in
 * its etag, any other against its git blob sha1, and its size), and only
 * then renamed to blobs/<etag> and linked from snapshots/. The outputs are
 * the snapshot paths, as external files named by their path in the repo,
 * so a quantize stage takes an hf.download as it takes a model.local. */
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <dirent.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/os.h"
#include "common/path.h"
#include "stages/download/http.h"
#include "stages/download/hub.h"
#include "stages/download/sha.h"
#include "stages/stage.h"

#define MAX_FILES 100000
#define PARALLEL 4

static const char *const repo_types[] = {"model", "dataset", NULL};

static const struct qp_param_decl params[] = {
	{.name = "repo", .type = QP_P_STRING, .doc = "repo id on the Hub, 'org/name'"},
	{.name = "repo_type", .type = QP_P_ENUM, .def = "model", .choices = repo_types,
	 .doc = "model or dataset"},
	{.name = "revision", .type = QP_P_STRING, .def = "main",
	 .doc = "branch, tag or commit sha; resolved to a commit at plan time"},
	{.name = "include", .type = QP_P_LIST, .def = "",
	 .doc = "fetch only files matching one of these globs (default: all)"},
	{.name = "exclude", .type = QP_P_LIST, .def = "",
	 .doc = "skip files matching any of these globs"},
	{0},
};

/* snprintf into a path buffer; QP_EINVAL naming the start if it does not fit. */
__attribute__((format(printf, 4, 5)))
static int pathf(char *out, size_t n, struct qp_err *err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int w = vsnprintf(out, n, fmt, ap);
	va_end(ap);
	if (w < 0 || (size_t)w >= n)
		return qp_err_set(err, QP_EINVAL, "%.200s...: path too long", out);
	return 0;
}

/* Percent-encode s into out; '/' kept when keep_slash. */
static int escape(char *out, size_t n, const char *s, int keep_slash)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		int plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		            (*p >= '0' && *p <= '9') || strchr("-._~", *p) || (keep_slash && *p == '/');
		if (o + 4 >= n)
			return -1;
		if (plain) {
			out[o++] = (char)*p;
		} else {
			out[o++] = '%';
			out[o++] = hex[*p >> 4];
			out[o++] = hex[*p & 15];
		}
	}
	out[o] = '\0';
	return 0;
}

/* The Hub's web page for the repo, for messages. */
static void repo_page(char *out, size_t n, const struct qp_hf_env *e, const char *type,
                      const char *repo)
{
	snprintf(out, n, "%s/%s%s", e->endpoint, strcmp(type, "dataset") ? "" : "datasets/", repo);
}

static int auth_error(struct qp_err *err, const struct qp_hf_env *e, const char *type,
                      const char *repo, const char *detail)
{
	char page[1200];
	repo_page(page, sizeof(page), e, type, repo);
	return qp_err_set(err, QP_EINVAL,
	                  "'%s': access denied (%s): set HF_TOKEN to a token that can read it "
	                  "(or store one with `hf auth login`) and accept the %s's license at %s",
	                  repo, detail, type, page);
}

/* GET the revision's info; *out is the JSON object (caller decrefs). */
static int api_revision(json_t **out, const struct qp_hf_env *e, const char *type,
                        const char *repo, const char *rev, int blobs, struct qp_err *err)
{
	char erev[800], url[2400];
	if (escape(erev, sizeof(erev), rev, 0) != 0)
		return qp_err_set(err, QP_EINVAL, "revision '%s' is too long", rev);
	snprintf(url, sizeof(url), "%s/api/%ss/%s/revision/%s%s", e->endpoint, type, repo, erev,
	         blobs ? "?blobs=true" : "");
	struct qp_http_opts o = {.token = e->token, .parallel = 1};
	long status = 0;
	struct qp_err herr = {0};
	int rc = qp_http_get_json(out, &status, &o, url, &herr);
	if (rc == QP_HTTP_EAUTH) {
		char detail[64];
		snprintf(detail, sizeof(detail), "HTTP %ld%s", status, e->token[0] ? "" : ", no token");
		return auth_error(err, e, type, repo, detail);
	}
	if (rc == QP_ENOTFOUND)
		return qp_err_set(err, QP_ENOTFOUND, "'%s': no %s with revision '%s' at %s (HTTP 404)", repo,
		                  type, rev, e->endpoint);
	if (rc) {
		*err = herr;
		return rc;
	}
	if (!json_is_object(*out)) {
		json_decref(*out);
		*out = NULL;
		return qp_err_set(err, QP_ECORRUPT, "%s: reply is not a JSON object", url);
	}
	return 0;
}

static int hash_extra(const struct qp_stage_ctx *ctx, struct qp_hasher *h, struct qp_err *err)
{
	const char *repo = qp_ctx_param(ctx, "repo")->s;
	const char *type = qp_ctx_param(ctx, "repo_type")->s;
	const char *rev = qp_ctx_param(ctx, "revision")->s;
	struct qp_hf_env e;
	char dir[PATH_MAX], sha[41] = "";
	int rc;
	if ((rc = qp_hf_check_repo(repo, err)) || (rc = qp_hf_check_revision(rev, err)) ||
	    (rc = qp_hf_env_load(&e, err)) || (rc = qp_hf_repo_dir(dir, sizeof(dir), &e, type, repo, err)))
		return rc;
	struct qp_err why = {0};
	if (qp_hf_is_commit(rev)) {
		snprintf(sha, sizeof(sha), "%s", rev);
	} else if (e.offline) {
		rc = qp_hf_ref_read(sha, dir, rev, &why);
		if (rc == QP_ENOTFOUND)
			qp_err_set(&why, rc, "'%s' revision '%s' is not in the Hugging Face cache (%s) and "
			           "HF_HUB_OFFLINE=1 forbids fetching it", repo, rev, e.cache);
	} else {
		json_t *info = NULL;
		rc = api_revision(&info, &e, type, repo, rev, 0, &why);
		if (!rc) {
			const char *s = json_string_value(json_object_get(info, "sha"));
			if (s && qp_hf_is_commit(s))
				snprintf(sha, sizeof(sha), "%s", s);
			else
				rc = qp_err_set(&why, QP_ECORRUPT, "'%s': the Hub's reply for revision '%s' has no commit sha",
				                repo, rev);
			json_decref(info);
		} else if (rc == QP_EIO) {
			/* The Hub is unreachable: a ref cached earlier still says where
			 * the revision was, as huggingface_hub falls back to it. */
			struct qp_err ignore;
			if (qp_hf_ref_read(sha, dir, rev, &ignore) == 0)
				rc = 0;
		}
	}
	if (rc) {
		qp_hasher_str(h, "unresolved");
		return qp_ctx_defer(ctx, why.msg, err);
	}
	qp_hasher_str(h, sha);
	return qp_ctx_pin(ctx, sha, err);
}

static int selected(const struct qp_stage_ctx *ctx, const char *path)
{
	const struct qp_value *inc = qp_ctx_param(ctx, "include");
	const struct qp_value *exc = qp_ctx_param(ctx, "exclude");
	int in = inc->n == 0;
	for (size_t i = 0; i < inc->n && !in; i++)
		in = fnmatch(inc->list[i], path, 0) == 0;
	for (size_t i = 0; i < exc->n && in; i++)
		in = fnmatch(exc->list[i], path, 0) != 0;
	return in;
}

struct file {
	const char *path;     /* in the repo (borrowed from the API reply) */
	char etag[65];
	int64_t size;
	int fetch;            /* index into the download list + 1, or 0 */
};

struct verify_arg {
	const char *name;
	const char *etag;
	int64_t size;
};

static int verify_blob(void *arg, const char *part, struct qp_err *err)
{
	const struct verify_arg *v = arg;
	uint64_t size = 0;
	if (!qp_os_file_size(part, &size))
		return qp_err_set(err, QP_EIO, "%s: cannot stat:", part);
	if ((int64_t)size != v->size)
		return qp_err_set(err, QP_ECORRUPT, "%s: %llu bytes, expected %lld", v->name,
		                  (unsigned long long)size, (long long)v->size);
	char got[65];
	int rc = strlen(v->etag) == 64 ? qp_sha256_file(part, got, err)
	                               : qp_git_blob_sha1_file(part, got, err);
	if (rc)
		return rc;
	if (strcmp(got, v->etag) != 0)
		return qp_err_set(err, QP_ECORRUPT, "%s: content has %s %s, expected %s", v->name,
		                  strlen(v->etag) == 64 ? "sha256" : "git blob sha1", got, v->etag);
	return 0;
}

static int progress(void *arg, int64_t done, int64_t total, struct qp_err *err)
{
	return qp_ctx_progress(arg, "download", done, total, err);
}

/* Is path a usable file (symlinks followed)? */
static int usable(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Take huggingface_hub's lock for one blob (flock, as its filelock does). */
static int lock_blob(int *fd, const char *locks, const char *etag, struct qp_err *err)
{
	char path[PATH_MAX];
	int rc = qp_os_mkdir_p(locks, err);
	if (rc || (rc = snprintf(path, sizeof(path), "%s/%s.lock", locks, etag) >= (int)sizeof(path)
	                ? qp_err_set(err, QP_EINVAL, "%s: path too long", locks) : 0))
		return rc;
	*fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (*fd < 0)
		return qp_err_set(err, QP_EIO, "%s: cannot open:", path);
	while (flock(*fd, LOCK_EX) != 0) {
		if (errno != EINTR) {
			rc = qp_err_set(err, QP_EIO, "%s: cannot lock:", path);
			close(*fd);
			*fd = -1;
			return rc;
		}
	}
	return 0;
}

/* Offline run: what the snapshot folder holds, filtered. */
static int walk_snapshot(struct qp_stage_ctx *ctx, const char *root, const char *rel, size_t *n,
                         struct qp_err *err)
{
	char dir[PATH_MAX];
	int rc = rel[0] ? qp_path_join(dir, sizeof(dir), root, rel, err)
	                : (snprintf(dir, sizeof(dir), "%s", root), 0);
	if (rc)
		return rc;
	DIR *d = opendir(dir);
	if (!d)
		return qp_err_set(err, QP_EIO, "%s: cannot open directory:", dir);
	struct dirent *de;
	while (!rc && (de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") || !strncmp(de->d_name, ".tmp-", 5))
			continue;
		char sub[PATH_MAX], full[PATH_MAX];
		if (rel[0])
			rc = qp_path_join(sub, sizeof(sub), rel, de->d_name, err);
		else
			snprintf(sub, sizeof(sub), "%s", de->d_name);
		if (rc || (rc = qp_path_join(full, sizeof(full), root, sub, err)))
			break;
		struct stat st;
		if (stat(full, &st) != 0)
			continue;   /* a link to a blob that is gone: not there */
		if (S_ISDIR(st.st_mode)) {
			rc = walk_snapshot(ctx, root, sub, n, err);
		} else if (S_ISREG(st.st_mode) && selected(ctx, sub)) {
			if (++*n > MAX_FILES)
				rc = qp_err_set(err, QP_EINVAL, "%s: more than %d files", root, MAX_FILES);
			else
				rc = qp_ctx_add_external(ctx, sub, full, err);
		}
	}
	closedir(d);
	return rc;
}

static int run_offline(struct qp_stage_ctx *ctx, const char *dir, const char *sha,
                       struct qp_err *err)
{
	char snap[PATH_MAX];
	if (snprintf(snap, sizeof(snap), "%s/snapshots/%s", dir, sha) >= (int)sizeof(snap))
		return qp_err_set(err, QP_EINVAL, "%s: path too long", dir);
	if (!qp_os_exists(snap))
		return qp_err_set(err, QP_ENOTFOUND, "%s: not in the Hugging Face cache and HF_HUB_OFFLINE=1 "
		                  "forbids fetching it", snap);
	size_t n = 0;
	int rc = walk_snapshot(ctx, snap, "", &n, err);
	if (!rc && n == 0)
		rc = qp_err_set(err, QP_ENOTFOUND, "%s: no cached file matches include/exclude", snap);
	json_object_set_new(qp_ctx_metrics(ctx), "files", json_integer((json_int_t)n));
	json_object_set_new(qp_ctx_metrics(ctx), "downloaded_files", json_integer(0));
	return rc;
}

/* Read the API's file list into files[]; *n of them are selected. */
static int list_files(struct file **out, size_t *n, struct qp_stage_ctx *ctx, json_t *info,
                      struct qp_err *err)
{
	json_t *sib = json_object_get(info, "siblings");
	if (!json_is_array(sib))
		return qp_err_set(err, QP_ECORRUPT, "the Hub's reply has no file list ('siblings')");
	if (json_array_size(sib) > MAX_FILES)
		return qp_err_set(err, QP_ENOMEM, "the repo has more than %d files", MAX_FILES);
	struct file *fs = calloc(json_array_size(sib) + 1, sizeof(*fs));
	if (!fs)
		return qp_err_nomem(err);
	size_t k = 0, i;
	json_t *s;
	int rc = 0;
	json_array_foreach(sib, i, s) {
		const char *path = json_string_value(json_object_get(s, "rfilename"));
		if (!path) {
			rc = qp_err_set(err, QP_ECORRUPT, "the Hub's file list has an entry without 'rfilename'");
			break;
		}
		if ((rc = qp_hf_check_path(path, err)))
			break;
		if (!selected(ctx, path))
			continue;
		json_t *lfs = json_object_get(s, "lfs");
		const char *etag = json_is_object(lfs) ? json_string_value(json_object_get(lfs, "sha256"))
		                                       : json_string_value(json_object_get(s, "blobId"));
		json_t *size = json_is_object(lfs) ? json_object_get(lfs, "size") : json_object_get(s, "size");
		if (!etag || !json_is_integer(size) || json_integer_value(size) < 0) {
			rc = qp_err_set(err, QP_ECORRUPT, "%s: the Hub gives no blob id or size for it", path);
			break;
		}
		if ((rc = qp_hf_check_etag(etag, err))) {
			qp_err_prefix(err, "%s", path);
			break;
		}
		fs[k].path = path;
		snprintf(fs[k].etag, sizeof(fs[k].etag), "%s", etag);
		fs[k].size = (int64_t)json_integer_value(size);
		k++;
	}
	if (rc) {
		free(fs);
		return rc;
	}
	*out = fs;
	*n = k;
	return 0;
}

static int run(struct qp_stage_ctx *ctx, struct qp_err *err)
{
	const char *repo = qp_ctx_param(ctx, "repo")->s;
	const char *type = qp_ctx_param(ctx, "repo_type")->s;
	const char *rev = qp_ctx_param(ctx, "revision")->s;
	const char *sha = qp_ctx_pinned(ctx);
	struct qp_hf_env e;
	char dir[PATH_MAX];
	int rc;
	if ((rc = qp_hf_env_load(&e, err)) || (rc = qp_hf_repo_dir(dir, sizeof(dir), &e, type, repo, err)))
		return rc;
	if (!sha)
		return qp_err_set(err, QP_EINVAL, "revision '%s' of '%s' was not resolved at plan time", rev, repo);
	json_t *met = qp_ctx_metrics(ctx);
	json_object_set_new(met, "repo", json_string(repo));
	json_object_set_new(met, "revision", json_string(rev));
	json_object_set_new(met, "commit", json_string(sha));
	json_object_set_new(met, "path", json_string(dir));
	if (e.offline)
		return run_offline(ctx, dir, sha, err);

	json_t *info = NULL;
	if ((rc = api_revision(&info, &e, type, repo, sha, 1, err)))
		return rc;
	struct file *fs = NULL;
	size_t n = 0;
	if ((rc = list_files(&fs, &n, ctx, info, err))) {
		json_decref(info);
		return rc;
	}
	if (n == 0) {
		free(fs);
		json_decref(info);
		return qp_err_set(err, QP_ENOTFOUND, "'%s' at %.12s: no file matches include/exclude", repo, sha);
	}
	char blobs[PATH_MAX], locks[PATH_MAX], folder[PATH_MAX];
	snprintf(folder, sizeof(folder), "%s", strrchr(dir, '/') + 1);
	if (!(rc = pathf(blobs, sizeof(blobs), err, "%s/blobs", dir)) &&
	    !(rc = pathf(locks, sizeof(locks), err, "%s/.locks/%s", e.cache, folder)))
		rc = qp_os_mkdir_p(blobs, err);

	/* What must be fetched: one transfer per missing blob. */
	struct qp_http_file *dl = calloc(n, sizeof(*dl));
	struct verify_arg *va = calloc(n, sizeof(*va));
	char (*urls)[3200] = calloc(n, sizeof(*urls));
	char (*parts)[PATH_MAX] = calloc(n, sizeof(*parts));
	int *lockfd = calloc(n, sizeof(*lockfd));
	size_t ndl = 0, reused = 0;
	int64_t dl_bytes = 0;
	if (!rc && (!dl || !va || !urls || !parts || !lockfd))
		rc = qp_err_nomem(err);
	char prefix[16];
	snprintf(prefix, sizeof(prefix), "%s", strcmp(type, "dataset") ? "" : "datasets/");
	for (size_t i = 0; i < n && !rc; i++) {
		char pointer[PATH_MAX], blob[PATH_MAX];
		if ((rc = pathf(pointer, sizeof(pointer), err, "%s/snapshots/%s/%s", dir, sha, fs[i].path)) ||
		    (rc = pathf(blob, sizeof(blob), err, "%s/%s", blobs, fs[i].etag)))
			break;
		if (usable(pointer)) {
			reused++;
			continue;
		}
		if (usable(blob)) {
			reused++;
			rc = qp_hf_snapshot_link(dir, sha, fs[i].path, fs[i].etag, err);
			continue;
		}
		size_t j = 0;
		while (j < ndl && strcmp(va[j].etag, fs[i].etag) != 0)
			j++;
		fs[i].fetch = (int)j + 1;
		if (j < ndl)
			continue;   /* the same content under another name */
		char epath[2400], erev[128];
		if (escape(epath, sizeof(epath), fs[i].path, 1) || escape(erev, sizeof(erev), sha, 0)) {
			rc = qp_err_set(err, QP_EINVAL, "%s: path too long", fs[i].path);
			break;
		}
		if ((rc = pathf(urls[j], sizeof(urls[j]), err, "%s/%s%s/resolve/%s/%s", e.endpoint, prefix,
		                repo, erev, epath)) ||
		    (rc = pathf(parts[j], sizeof(parts[j]), err, "%s.incomplete", blob)))
			break;
		va[j] = (struct verify_arg){.name = fs[i].path, .etag = fs[i].etag, .size = fs[i].size};
		dl[j] = (struct qp_http_file){.url = urls[j], .part = parts[j], .name = fs[i].path,
		                              .size = fs[i].size, .verify = verify_blob, .verify_arg = &va[j]};
		lockfd[j] = -1;
		ndl++;
		dl_bytes += fs[i].size;
	}
	for (size_t j = 0; j < ndl && !rc; j++)
		rc = lock_blob(&lockfd[j], locks, va[j].etag, err);
	if (!rc && ndl) {
		struct qp_http_opts o = {.token = e.token, .parallel = PARALLEL, .progress = progress,
		                         .progress_arg = ctx};
		rc = qp_http_fetch(dl, ndl, &o, err);
		if (rc == QP_HTTP_EAUTH) {
			char detail[QP_ERR_MSG_MAX];
			snprintf(detail, sizeof(detail), "%s", err->msg);
			rc = auth_error(err, &e, type, repo, detail);
		}
	}
	/* Verified: rename each into blobs/ (huggingface_hub makes blobs 0644). */
	for (size_t j = 0; j < ndl && !rc; j++) {
		char blob[PATH_MAX];
		if ((rc = pathf(blob, sizeof(blob), err, "%s/%s", blobs, va[j].etag)))
			break;
		chmod(parts[j], 0644);
		if (rename(parts[j], blob) != 0)
			rc = qp_err_set(err, QP_EIO, "%s: cannot rename into place:", blob);
	}
	for (size_t i = 0; i < n && !rc; i++)
		if (fs[i].fetch)
			rc = qp_hf_snapshot_link(dir, sha, fs[i].path, fs[i].etag, err);
	for (size_t j = 0; lockfd && j < ndl; j++)
		if (lockfd[j] >= 0)
			close(lockfd[j]);
	if (!rc)
		rc = qp_hf_ref_write(dir, rev, sha, err);
	int64_t total = 0;
	for (size_t i = 0; i < n && !rc; i++) {
		char pointer[PATH_MAX];
		total += fs[i].size;
		if (!(rc = pathf(pointer, sizeof(pointer), err, "%s/snapshots/%s/%s", dir, sha, fs[i].path)))
			rc = qp_ctx_add_external(ctx, fs[i].path, pointer, err);
	}
	if (!rc) {
		json_object_set_new(met, "files", json_integer((json_int_t)n));
		json_object_set_new(met, "bytes", json_integer(total));
		json_object_set_new(met, "downloaded_files", json_integer((json_int_t)ndl));
		json_object_set_new(met, "downloaded_bytes", json_integer(dl_bytes));
		json_object_set_new(met, "reused_files", json_integer((json_int_t)reused));
	}
	free(dl);
	free(va);
	free(urls);
	free(parts);
	free(lockfd);
	free(fs);
	json_decref(info);
	return rc;
}

const struct qp_stage_kind qp_kind_hf_download = {
	.name = "hf.download",
	.version = 1,
	.summary = "a Hugging Face model or dataset repo, fetched into huggingface_hub's cache",
	.params = params,
	.hash_extra = hash_extra,
	.run = run,
};
