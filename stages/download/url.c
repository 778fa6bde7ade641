/* url.download: one file from a URL (http, https, file), pinned by its
 * sha256, optionally unpacked.
 *
 * The file is fetched into the scratch folder (http.h: resumed within the
 * run, retried, and with a pin, verified: a wrong body is fetched again,
 * then reported). Without extract the output is the file, named by `name`
 * or the URL's last path segment. With extract the archive (zip, tar,
 * tar.gz, tar.xz, tar.zst) is unpacked by archive.h, which refuses
 * members that would land outside the folder and stops at max_bytes; the
 * outputs are the selected members, named by their path in the archive
 * ("wikitext-2-raw/wiki.test.raw"). All go into the store.
 *
 * sha256 is required unless `unpinned: true`: without a pin the key
 * covers only the URL, so the first content fetched stays cached. */
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "common/os.h"
#include "stages/download/archive.h"
#include "stages/download/http.h"
#include "stages/download/sha.h"
#include "stages/stage.h"

static const struct qp_param_decl params[] = {
	{.name = "url", .type = QP_P_STRING, .doc = "http, https or file URL"},
	{.name = "sha256", .type = QP_P_STRING, .def = "", .doc = "expected sha256 of the file, 64 hex digits"},
	{.name = "unpinned", .type = QP_P_BOOL, .def = "false",
	 .doc = "allow a missing sha256 (the first content fetched stays cached)"},
	{.name = "extract", .type = QP_P_LIST, .def = "",
	 .doc = "unpack the archive: members (paths or globs) to keep; '*' for all"},
	{.name = "max_bytes", .type = QP_P_INT, .def = "20000000000", .min = 1, .max = 1e15,
	 .doc = "refuse an archive that unpacks to more than this many bytes"},
	{.name = "name", .type = QP_P_STRING, .def = "",
	 .doc = "output name of the file when not unpacked (default: the URL's last segment)"},
	{0},
};

static int is_hex64(const char *s)
{
	size_t n = 0;
	for (; s[n]; n++)
		if (!strchr("0123456789abcdefABCDEF", s[n]))
			return 0;
	return n == 64;
}

static int hash_extra(const struct qp_stage_ctx *ctx, struct qp_hasher *h, struct qp_err *err)
{
	(void)h;
	const char *url = qp_ctx_param(ctx, "url")->s;
	const char *sha = qp_ctx_param(ctx, "sha256")->s;
	if (strncasecmp(url, "http://", 7) && strncasecmp(url, "https://", 8) && strncasecmp(url, "file:", 5))
		return qp_err_set(err, QP_EINVAL, "parameter 'url' must be an http, https or file URL, not '%s'", url);
	if (!sha[0] && !qp_ctx_param(ctx, "unpinned")->i)
		return qp_err_set(err, QP_EINVAL, "parameter 'sha256' is required unless 'unpinned: true'");
	if (sha[0] && !is_hex64(sha))
		return qp_err_set(err, QP_EINVAL, "parameter 'sha256' must be 64 hex digits, not '%s'", sha);
	return 0;
}

/* The URL's last path segment, without query or fragment. */
static void url_basename(char *out, size_t n, const char *url)
{
	const char *end = url + strcspn(url, "?#");
	const char *s = end;
	while (s > url && s[-1] != '/')
		s--;
	snprintf(out, n, "%.*s", (int)(end - s), s);
}

static int verify_sha(void *arg, const char *part, struct qp_err *err)
{
	const char *want = arg;
	char got[65];
	int rc = qp_sha256_file(part, got, err);
	if (rc)
		return rc;
	if (strcasecmp(got, want) != 0)
		return qp_err_set(err, QP_ECORRUPT, "content has sha256 %s, expected %s", got, want);
	return 0;
}

static int progress(void *arg, int64_t done, int64_t total, struct qp_err *err)
{
	return qp_ctx_progress(arg, "download", done, total, err);
}

static int run(struct qp_stage_ctx *ctx, struct qp_err *err)
{
	const char *url = qp_ctx_param(ctx, "url")->s;
	const char *sha = qp_ctx_param(ctx, "sha256")->s;
	const struct qp_value *ext = qp_ctx_param(ctx, "extract");
	const char *dir = qp_ctx_out_dir(ctx);
	char name[256], part[PATH_MAX];
	if (qp_ctx_param(ctx, "name")->s[0])
		snprintf(name, sizeof(name), "%s", qp_ctx_param(ctx, "name")->s);
	else
		url_basename(name, sizeof(name), url);
	if (!name[0])
		return qp_err_set(err, QP_EINVAL, "'%s': the URL ends in '/': set parameter 'name'", url);
	if (snprintf(part, sizeof(part), "%s/.part", dir) >= (int)sizeof(part))
		return qp_err_set(err, QP_EINVAL, "%s: path too long", dir);
	struct qp_http_file f = {.url = url, .part = part, .name = url, .size = -1,
	                         .verify = sha[0] ? verify_sha : NULL, .verify_arg = (void *)sha};
	struct qp_http_opts o = {.parallel = 1, .progress = progress, .progress_arg = ctx};
	int rc = qp_http_fetch(&f, 1, &o, err);
	if (rc == QP_HTTP_EAUTH)
		rc = QP_EINVAL;
	if (rc)
		return rc;
	char got[65];
	if ((rc = qp_sha256_file(part, got, err)))
		return rc;
	uint64_t size = 0;
	qp_os_file_size(part, &size);
	json_t *met = qp_ctx_metrics(ctx);
	json_object_set_new(met, "url", json_string(url));
	json_object_set_new(met, "sha256", json_string(got));
	json_object_set_new(met, "bytes", json_integer((json_int_t)size));
	if (ext->n == 0) {
		char dst[PATH_MAX];
		if (snprintf(dst, sizeof(dst), "%s/%s", dir, name) >= (int)sizeof(dst))
			return qp_err_set(err, QP_EINVAL, "%s: path too long", name);
		if (strchr(name, '/') || name[0] == '.')
			return qp_err_set(err, QP_EINVAL, "output name '%s' must be a plain file name", name);
		if (rename(part, dst) != 0)
			return qp_err_set(err, QP_EIO, "%s: cannot rename:", dst);
		return qp_ctx_add_output(ctx, name, err);
	}
	struct qp_archive_opts ao = {.members = ext->list, .n_members = ext->n,
	                             .max_bytes = (uint64_t)qp_ctx_param(ctx, "max_bytes")->i};
	if (ext->n == 1 && !strcmp(ext->list[0], "*"))
		ao.n_members = 0;
	struct qp_archive_list l;
	if ((rc = qp_archive_extract(&l, part, NULL, 0, dir, &ao, err))) {
		qp_err_prefix(err, "%s", name);
		return rc;
	}
	struct qp_err ignore;
	qp_os_remove(part, &ignore);
	if (l.n == 0)
		rc = qp_err_set(err, QP_ENOTFOUND, "%s: no member matches 'extract'", name);
	for (size_t i = 0; i < l.n && !rc; i++)
		rc = qp_ctx_add_output(ctx, l.names[i], err);
	json_object_set_new(met, "files", json_integer((json_int_t)l.n));
	json_object_set_new(met, "unpacked_bytes", json_integer((json_int_t)l.bytes));
	qp_archive_list_free(&l);
	return rc;
}

const struct qp_stage_kind qp_kind_url_download = {
	.name = "url.download",
	.version = 1,
	.summary = "a file from a URL, pinned by sha256, optionally unpacked (zip, tar.gz, tar.xz, tar.zst)",
	.params = params,
	.hash_extra = hash_extra,
	.run = run,
};
