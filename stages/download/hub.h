/* The Hugging Face side of hf.download: environment, names and the cache
 * layout huggingface_hub writes, so that either tool reuses what the other
 * fetched.
 *
 * Environment (as huggingface_hub's constants.py reads it):
 *   HF_ENDPOINT             the Hub, default https://huggingface.co
 *   HF_HOME                 default $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface
 *   HF_HUB_CACHE            default $HUGGINGFACE_HUB_CACHE, else $HF_HOME/hub
 *   HF_TOKEN                the token; else the file $HF_TOKEN_PATH, else $HF_HOME/token
 *   HF_HUB_OFFLINE          1/ON/YES/TRUE: no network (TRANSFORMERS_OFFLINE too)
 *
 * Cache layout, under HF_HUB_CACHE:
 *   models--org--name/            (datasets--org--name/ for a dataset)
 *     blobs/<etag>                file content; etag = sha256 (LFS) or git blob sha1
 *     blobs/<etag>.incomplete     a download in progress (qpipe resumes it)
 *     snapshots/<commit>/<path>   symlink, relative, to ../../blobs/<etag>
 *     refs/<revision>             the commit sha a branch or tag resolved to
 *   .locks/models--org--name/<etag>.lock   flock while a blob is written */
#ifndef QP_DL_HUB_H
#define QP_DL_HUB_H

#include <limits.h>
#include <stddef.h>

#include "common/err.h"

struct qp_hf_env {
	char endpoint[1024];      /* no trailing '/' */
	char home[PATH_MAX];
	char cache[PATH_MAX];     /* HF_HUB_CACHE */
	char token[1024];         /* "" if none */
	int offline;
};

/* Read the environment. */
int qp_hf_env_load(struct qp_hf_env *e, struct qp_err *err);

/* 1 if s is a full 40-hex commit sha. */
int qp_hf_is_commit(const char *s);
/* Check a repo id ("org/name" or "name"). */
int qp_hf_check_repo(const char *repo, struct qp_err *err);
/* Check a revision (a branch, tag or sha; may hold '/' as "refs/pr/1"). */
int qp_hf_check_revision(const char *rev, struct qp_err *err);
/* Check a file path inside a repo (from the Hub, so untrusted): relative,
 * no empty, "." or ".." parts, no backslash or control characters. */
int qp_hf_check_path(const char *path, struct qp_err *err);
/* Check an etag used as a blob name: 40 or 64 lowercase hex digits. */
int qp_hf_check_etag(const char *etag, struct qp_err *err);

/* out = cache/<type>s--org--name. */
int qp_hf_repo_dir(char *out, size_t n, const struct qp_hf_env *e, const char *type,
                   const char *repo, struct qp_err *err);
/* Read refs/<rev> of repo_dir into sha[41]; QP_ENOTFOUND if absent. */
int qp_hf_ref_read(char sha[41], const char *repo_dir, const char *rev, struct qp_err *err);
/* Write refs/<rev> (atomically; left alone if it already says sha). */
int qp_hf_ref_write(const char *repo_dir, const char *rev, const char *sha, struct qp_err *err);
/* Point snapshots/<commit>/<path> at ../../blobs/<etag> (relative, with one
 * more "../" per folder in path), replacing what was there atomically. */
int qp_hf_snapshot_link(const char *repo_dir, const char *commit, const char *path,
                        const char *etag, struct qp_err *err);

#endif
