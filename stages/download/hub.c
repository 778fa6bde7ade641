#include "stages/download/hub.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/os.h"
#include "common/path.h"

static int is_true(const char *v)
{
	return v && (!strcasecmp(v, "1") || !strcasecmp(v, "on") || !strcasecmp(v, "yes") ||
	             !strcasecmp(v, "true"));
}

static int set(char *out, size_t n, struct qp_err *err, const char *what, const char *fmt,
               const char *a, const char *b)
{
	int w = snprintf(out, n, fmt, a, b);
	if (w < 0 || (size_t)w >= n)
		return qp_err_set(err, QP_EINVAL, "%s is too long", what);
	return 0;
}

/* Strip surrounding white space in place (a token file ends in '\n'). */
static void trim(char *s)
{
	size_t n = strlen(s);
	while (n && isspace((unsigned char)s[n - 1]))
		s[--n] = '\0';
	size_t i = 0;
	while (s[i] && isspace((unsigned char)s[i]))
		i++;
	memmove(s, s + i, n - i + 1);
}

int qp_hf_env_load(struct qp_hf_env *e, struct qp_err *err)
{
	memset(e, 0, sizeof(*e));
	const char *v = getenv("HF_ENDPOINT");
	int rc = set(e->endpoint, sizeof(e->endpoint), err, "HF_ENDPOINT", "%s%s",
	             v && v[0] ? v : "https://huggingface.co", "");
	if (rc)
		return rc;
	for (size_t n = strlen(e->endpoint); n && e->endpoint[n - 1] == '/';)
		e->endpoint[--n] = '\0';
	const char *home = getenv("HF_HOME"), *xdg = getenv("XDG_CACHE_HOME"), *uh = getenv("HOME");
	if (home && home[0])
		rc = set(e->home, sizeof(e->home), err, "HF_HOME", "%s%s", home, "");
	else if (xdg && xdg[0])
		rc = set(e->home, sizeof(e->home), err, "XDG_CACHE_HOME", "%s%s", xdg, "/huggingface");
	else
		rc = set(e->home, sizeof(e->home), err, "HOME", "%s%s", uh ? uh : "", "/.cache/huggingface");
	if (rc)
		return rc;
	const char *hc = getenv("HF_HUB_CACHE");
	if (!hc || !hc[0])
		hc = getenv("HUGGINGFACE_HUB_CACHE");
	if (hc && hc[0])
		rc = set(e->cache, sizeof(e->cache), err, "HF_HUB_CACHE", "%s%s", hc, "");
	else
		rc = set(e->cache, sizeof(e->cache), err, "HF_HOME", "%s%s", e->home, "/hub");
	if (rc)
		return rc;
	e->offline = is_true(getenv("HF_HUB_OFFLINE")) || is_true(getenv("TRANSFORMERS_OFFLINE"));
	const char *tok = getenv("HF_TOKEN");
	if (tok && tok[0]) {
		if ((rc = set(e->token, sizeof(e->token), err, "HF_TOKEN", "%s%s", tok, "")))
			return rc;
	} else {
		char path[PATH_MAX];
		const char *tp = getenv("HF_TOKEN_PATH");
		if (tp && tp[0])
			rc = set(path, sizeof(path), err, "HF_TOKEN_PATH", "%s%s", tp, "");
		else
			rc = set(path, sizeof(path), err, "HF_HOME", "%s%s", e->home, "/token");
		if (rc)
			return rc;
		char *text = NULL;
		size_t len = 0;
		struct qp_err ignore;
		if (qp_os_read_file(&text, &len, path, sizeof(e->token) - 1, &ignore) == 0) {
			snprintf(e->token, sizeof(e->token), "%s", text);
			free(text);
		}
	}
	trim(e->token);
	return 0;
}

int qp_hf_is_commit(const char *s)
{
	size_t i = 0;
	for (; s[i]; i++)
		if (!strchr("0123456789abcdef", s[i]))
			return 0;
	return i == 40;
}

static int name_char(char c)
{
	return isalnum((unsigned char)c) || c == '-' || c == '_' || c == '.';
}

int qp_hf_check_repo(const char *repo, struct qp_err *err)
{
	size_t n = strlen(repo), slashes = 0;
	int ok = n > 0 && n <= 96;
	for (size_t i = 0; ok && i < n; i++) {
		if (repo[i] == '/') {
			slashes++;
			ok = i > 0 && i + 1 < n;
		} else {
			ok = name_char(repo[i]);
		}
	}
	if (ok && (slashes > 1 || strstr(repo, "..") || strstr(repo, "--") || repo[0] == '.' ||
	           strstr(repo, "/.")))
		ok = 0;
	if (!ok)
		return qp_err_set(err, QP_EINVAL,
		                  "repo id '%s' is not of the form 'org/name' (letters, digits, '-', '_', '.')",
		                  repo);
	return 0;
}

/* Shared check of a '/'-separated relative path. */
static int rel_path_ok(const char *p, size_t max)
{
	size_t n = strlen(p);
	if (n == 0 || n > max || p[0] == '/')
		return 0;
	for (const char *s = p;;) {
		const char *e = strchr(s, '/');
		size_t len = e ? (size_t)(e - s) : strlen(s);
		if (len == 0 || (len == 1 && s[0] == '.') || (len == 2 && s[0] == '.' && s[1] == '.'))
			return 0;
		if (!e)
			break;
		s = e + 1;
	}
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)p[i] < 0x20 || p[i] == '\\' || p[i] == 0x7f)
			return 0;
	return 1;
}

int qp_hf_check_revision(const char *rev, struct qp_err *err)
{
	if (!rel_path_ok(rev, 255) || strchr(rev, ' ') || strchr(rev, '~') || strchr(rev, ':'))
		return qp_err_set(err, QP_EINVAL, "revision '%s' is not a branch, tag or commit name", rev);
	return 0;
}

int qp_hf_check_path(const char *path, struct qp_err *err)
{
	if (!rel_path_ok(path, 1024))
		return qp_err_set(err, QP_ECORRUPT, "the Hub lists file '%s', which is not a safe relative path",
		                  path);
	return 0;
}

int qp_hf_check_etag(const char *etag, struct qp_err *err)
{
	size_t n = 0;
	for (; etag[n]; n++)
		if (!strchr("0123456789abcdef", etag[n]))
			break;
	if (etag[n] || (n != 40 && n != 64))
		return qp_err_set(err, QP_ECORRUPT, "etag '%.80s' is neither a sha1 nor a sha256", etag);
	return 0;
}

int qp_hf_repo_dir(char *out, size_t n, const struct qp_hf_env *e, const char *type,
                   const char *repo, struct qp_err *err)
{
	char folder[256];
	int w = snprintf(folder, sizeof(folder), "%ss--", type);
	for (const char *p = repo; *p && w < (int)sizeof(folder) - 3; p++) {
		if (*p == '/') {
			folder[w++] = '-';
			folder[w++] = '-';
		} else {
			folder[w++] = *p;
		}
	}
	folder[w] = '\0';
	return qp_path_join(out, n, e->cache, folder, err);
}

int qp_hf_ref_read(char sha[41], const char *repo_dir, const char *rev, struct qp_err *err)
{
	char path[PATH_MAX];
	int rc = snprintf(path, sizeof(path), "%s/refs/%s", repo_dir, rev) >= (int)sizeof(path)
	         ? qp_err_set(err, QP_EINVAL, "%s/refs/%s: path too long", repo_dir, rev) : 0;
	if (rc)
		return rc;
	if (!qp_os_exists(path))
		return qp_err_set(err, QP_ENOTFOUND, "%s: no such ref", path);
	char *text = NULL;
	size_t len = 0;
	if ((rc = qp_os_read_file(&text, &len, path, 256, err)))
		return rc;
	trim(text);
	if (!qp_hf_is_commit(text)) {
		free(text);
		return qp_err_set(err, QP_ECORRUPT, "%s: does not hold a commit sha", path);
	}
	memcpy(sha, text, 41);
	free(text);
	return 0;
}

int qp_hf_ref_write(const char *repo_dir, const char *rev, const char *sha, struct qp_err *err)
{
	if (strcmp(rev, sha) == 0)
		return 0;
	char have[41];
	struct qp_err ignore;
	if (qp_hf_ref_read(have, repo_dir, rev, &ignore) == 0 && strcmp(have, sha) == 0)
		return 0;
	char path[PATH_MAX];
	if (snprintf(path, sizeof(path), "%s/refs/%s", repo_dir, rev) >= (int)sizeof(path))
		return qp_err_set(err, QP_EINVAL, "%s/refs/%s: path too long", repo_dir, rev);
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s", path);
	*strrchr(dir, '/') = '\0';
	int rc = qp_os_mkdir_p(dir, err);
	if (!rc)
		rc = qp_os_write_file_atomic(path, sha, strlen(sha), err);
	/* huggingface_hub leaves refs writable; so do we. */
	if (!rc && chmod(path, 0644) != 0)
		rc = qp_err_set(err, QP_EIO, "%s: cannot chmod:", path);
	return rc;
}

int qp_hf_snapshot_link(const char *repo_dir, const char *commit, const char *path,
                        const char *etag, struct qp_err *err)
{
	char link[PATH_MAX], target[PATH_MAX], dir[PATH_MAX], tmp[PATH_MAX];
	if (snprintf(link, sizeof(link), "%s/snapshots/%s/%s", repo_dir, commit, path) >= (int)sizeof(link))
		return qp_err_set(err, QP_EINVAL, "%s/snapshots/%s/%s: path too long", repo_dir, commit, path);
	size_t o = 0;
	target[0] = '\0';
	for (const char *p = path; (p = strchr(p, '/')); p++)
		o += (size_t)snprintf(target + o, sizeof(target) - o, "../");
	snprintf(target + o, sizeof(target) - o, "../../blobs/%s", etag);
	snprintf(dir, sizeof(dir), "%s", link);
	*strrchr(dir, '/') = '\0';
	int rc = qp_os_mkdir_p(dir, err);
	if (rc)
		return rc;
	if (snprintf(tmp, sizeof(tmp), "%s/.tmp-link-%ld", dir, (long)getpid()) >= (int)sizeof(tmp))
		return qp_err_set(err, QP_EINVAL, "%s: path too long", dir);
	unlink(tmp);
	if (symlink(target, tmp) != 0)
		return qp_err_set(err, QP_EIO, "%s: cannot create symlink:", tmp);
	if (rename(tmp, link) != 0) {
		rc = qp_err_set(err, QP_EIO, "%s: cannot rename symlink into place:", link);
		unlink(tmp);
	}
	return rc;
}
