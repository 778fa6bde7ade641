/* A small TAP harness: one binary per module, one function per behaviour.
 *
 * A test is `static int name(const char *dir)`: dir is a fresh empty
 * directory, removed afterwards. It returns 0 (pass), 1 (fail) or SKIP.
 * `./test_store name...` runs only the named tests. Output is TAP, which
 * meson reads (protocol: 'tap'), so each behaviour shows up in the log. */
#ifndef QP_TESTS_CHECK_H
#define QP_TESTS_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/os.h"

#define SKIP 77

struct test {
	const char *name;
	int (*fn)(const char *dir);
};

#define TEST(fn) {#fn, fn}

#define CHECK(cond)                                                                   \
	do {                                                                              \
		if (!(cond)) {                                                                \
			printf("# %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);        \
			return 1;                                                                 \
		}                                                                             \
	} while (0)

/* expr returns a QP status; err is the struct qp_err it filled. */
#define CHECK_OK(expr, err)                                                           \
	do {                                                                              \
		int rc_ = (expr);                                                             \
		if (rc_ != 0) {                                                               \
			printf("# %s:%d: %s returned %d: %s\n", __FILE__, __LINE__, #expr, rc_,  \
			       (err).msg);                                                        \
			return 1;                                                                 \
		}                                                                             \
	} while (0)

#define CHECK_STR(got, want)                                                          \
	do {                                                                              \
		const char *g_ = (got), *w_ = (want);                                         \
		if (strcmp(g_, w_) != 0) {                                                    \
			printf("# %s:%d: got  '%s'\n#   want '%s'\n", __FILE__, __LINE__, g_, w_); \
			return 1;                                                                 \
		}                                                                             \
	} while (0)

static inline int run_tests(const struct test *tests, size_t n, int argc, char **argv)
{
	const char *base = getenv("TMPDIR");
	char root[4096];
	snprintf(root, sizeof(root), "%s/qp-test-XXXXXX", base && base[0] ? base : "/tmp");
	if (!mkdtemp(root)) {
		printf("Bail out! cannot create %s\n", root);
		return 1;
	}
	size_t planned = 0;
	for (size_t i = 0; i < n; i++) {
		int want = argc <= 1;
		for (int a = 1; a < argc; a++)
			want |= strcmp(argv[a], tests[i].name) == 0;
		planned += (size_t)want;
	}
	printf("1..%zu\n", planned);
	int failed = 0;
	size_t num = 0;
	for (size_t i = 0; i < n; i++) {
		int want = argc <= 1;
		for (int a = 1; a < argc; a++)
			want |= strcmp(argv[a], tests[i].name) == 0;
		if (!want)
			continue;
		char dir[4096 + 16];
		snprintf(dir, sizeof(dir), "%s/%zu", root, i);
		struct qp_err err = {0};
		if (qp_os_mkdir_p(dir, &err) != 0) {
			printf("Bail out! %s\n", err.msg);
			return 1;
		}
		fflush(stdout);
		int rc = tests[i].fn(dir);
		num++;
		if (rc == SKIP)
			printf("ok %zu - %s # SKIP\n", num, tests[i].name);
		else if (rc == 0)
			printf("ok %zu - %s\n", num, tests[i].name);
		else
			printf("not ok %zu - %s\n", num, tests[i].name);
		fflush(stdout);
		failed |= rc != 0 && rc != SKIP;
		qp_os_remove_tree(dir);
	}
	qp_os_remove_tree(root);
	return failed;
}

#endif
