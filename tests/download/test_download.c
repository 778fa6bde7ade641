/* Tests for stages/download's building blocks: the digests the Hub names
 * blobs by, the checks on names that come from the Hub, and the cache
 * layout's links and refs. (Transfers and archives are tested end to end
 * by the Python tests against the mock Hub.) */
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "stages/download/hub.h"
#include "stages/download/sha.h"
#include "tests/cache/check.h"

static int sha__known_vectors(const char *dir)
{
	(void)dir;
	char hex[65];
	struct qp_sha256 c;
	qp_sha256_init(&c);
	qp_sha256_hex(&c, hex);
	CHECK_STR(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	qp_sha256_init(&c);
	qp_sha256_update(&c, "abc", 3);
	qp_sha256_hex(&c, hex);
	CHECK_STR(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	/* 56 bytes: the padding spills into a second block. */
	const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
	qp_sha256_init(&c);
	for (const char *p = m; *p; p++)
		qp_sha256_update(&c, p, 1);
	qp_sha256_hex(&c, hex);
	CHECK_STR(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
	char h1[41];
	struct qp_sha1 s;
	qp_sha1_init(&s);
	qp_sha1_update(&s, "abc", 3);
	qp_sha1_hex(&s, h1);
	CHECK_STR(h1, "a9993e364706816aba3e25717850c26c9cd0d89d");
	return 0;
}

static int sha__git_blob_id_matches_git(const char *dir)
{
	char path[PATH_MAX], hex[41];
	snprintf(path, sizeof(path), "%s/hello", dir);
	struct qp_err err = {0};
	CHECK_OK(qp_os_write_file_atomic(path, "hello\n", 6, &err), err);
	CHECK_OK(qp_git_blob_sha1_file(path, hex, &err), err);
	/* `echo hello | git hash-object --stdin` */
	CHECK_STR(hex, "ce013625030ba8dba906f756967f9e9ca394464a");
	return 0;
}

static int hub__untrusted_names_are_checked(const char *dir)
{
	(void)dir;
	struct qp_err err = {0};
	CHECK(qp_hf_check_repo("TinyLlama/TinyLlama-1.1B-Chat-v1.0", &err) == 0);
	CHECK(qp_hf_check_repo("gpt2", &err) == 0);
	CHECK(qp_hf_check_repo("../x", &err) == QP_EINVAL);
	CHECK(qp_hf_check_repo("a/b/c", &err) == QP_EINVAL);
	CHECK(qp_hf_check_repo("a--b/c", &err) == QP_EINVAL);
	CHECK_STR(err.msg, "repo id 'a--b/c' is not of the form 'org/name' (letters, digits, '-', '_', '.')");
	CHECK(qp_hf_check_revision("refs/pr/1", &err) == 0);
	CHECK(qp_hf_check_revision("../main", &err) == QP_EINVAL);
	CHECK(qp_hf_check_path("sub/dir/model.safetensors", &err) == 0);
	CHECK(qp_hf_check_path("/etc/passwd", &err) == QP_ECORRUPT);
	CHECK(qp_hf_check_path("a/../../b", &err) == QP_ECORRUPT);
	CHECK(qp_hf_check_path("a//b", &err) == QP_ECORRUPT);
	CHECK_STR(err.msg, "the Hub lists file 'a//b', which is not a safe relative path");
	CHECK(qp_hf_check_etag("ce013625030ba8dba906f756967f9e9ca394464a", &err) == 0);
	CHECK(qp_hf_check_etag("../../x", &err) == QP_ECORRUPT);
	CHECK(qp_hf_is_commit("ce013625030ba8dba906f756967f9e9ca394464a"));
	CHECK(!qp_hf_is_commit("main"));
	return 0;
}

static int hub__env_follows_huggingface_hub(const char *dir)
{
	char tok[PATH_MAX];
	snprintf(tok, sizeof(tok), "%s/token", dir);
	struct qp_err err = {0};
	CHECK_OK(qp_os_write_file_atomic(tok, " hf_abc\n", 8, &err), err);
	setenv("HF_HOME", dir, 1);
	setenv("HF_ENDPOINT", "http://127.0.0.1:1/", 1);
	unsetenv("HF_HUB_CACHE");
	unsetenv("HUGGINGFACE_HUB_CACHE");
	unsetenv("HF_TOKEN");
	unsetenv("HF_TOKEN_PATH");
	setenv("HF_HUB_OFFLINE", "yes", 1);
	struct qp_hf_env e;
	CHECK_OK(qp_hf_env_load(&e, &err), err);
	CHECK_STR(e.endpoint, "http://127.0.0.1:1");
	CHECK_STR(e.token, "hf_abc");
	CHECK(e.offline == 1);
	char want[PATH_MAX], got[PATH_MAX];
	snprintf(want, sizeof(want), "%s/hub", dir);
	CHECK_STR(e.cache, want);
	CHECK_OK(qp_hf_repo_dir(got, sizeof(got), &e, "dataset", "org/name", &err), err);
	snprintf(want, sizeof(want), "%s/hub/datasets--org--name", dir);
	CHECK_STR(got, want);
	setenv("HF_TOKEN", "hf_env", 1);
	setenv("HF_HUB_OFFLINE", "0", 1);
	CHECK_OK(qp_hf_env_load(&e, &err), err);
	CHECK_STR(e.token, "hf_env");
	CHECK(e.offline == 0);
	return 0;
}

static int hub__snapshot_links_are_relative_and_refs_round_trip(const char *dir)
{
	struct qp_err err = {0};
	const char *sha = "0123456789abcdef0123456789abcdef01234567";
	CHECK_OK(qp_hf_snapshot_link(dir, sha, "a/b/f.bin", "ce013625030ba8dba906f756967f9e9ca394464a", &err),
	         err);
	char link[PATH_MAX], target[PATH_MAX];
	snprintf(link, sizeof(link), "%s/snapshots/%s/a/b/f.bin", dir, sha);
	ssize_t n = readlink(link, target, sizeof(target) - 1);
	CHECK(n > 0);
	target[n] = '\0';
	CHECK_STR(target, "../../../../blobs/ce013625030ba8dba906f756967f9e9ca394464a");
	char got[41];
	CHECK(qp_hf_ref_read(got, dir, "refs/pr/1", &err) == QP_ENOTFOUND);
	CHECK_OK(qp_hf_ref_write(dir, "refs/pr/1", sha, &err), err);
	CHECK_OK(qp_hf_ref_read(got, dir, "refs/pr/1", &err), err);
	CHECK_STR(got, sha);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct test tests[] = {
		TEST(sha__known_vectors),
		TEST(sha__git_blob_id_matches_git),
		TEST(hub__untrusted_names_are_checked),
		TEST(hub__env_follows_huggingface_hub),
		TEST(hub__snapshot_links_are_relative_and_refs_round_trip),
	};
	return run_tests(tests, sizeof(tests) / sizeof(tests[0]), argc, argv);
}
