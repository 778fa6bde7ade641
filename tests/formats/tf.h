/* A small test harness for the formats tests: named tests, each a function
 * that stops at its first failed check; `test_x NAME` runs one test.
 * Header-only so each test binary stays one file plus this. */
#ifndef QP_TESTS_FORMATS_TF_H
#define QP_TESTS_FORMATS_TF_H

#include <ftw.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/err.h"

struct tf_test {
	const char *name;
	void (*fn)(void);
};

/* Set by a failed check; the runner reports and clears it. */
static int tf_failed;

static void tf_fail(const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void tf_fail(const char *file, int line, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "    %s:%d: ", file, line);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	tf_failed = 1;
}

#define CHECK(c)                                                         \
	do {                                                                 \
		if (!(c)) {                                                      \
			tf_fail(__FILE__, __LINE__, "check failed: %s", #c);         \
			return;                                                      \
		}                                                                \
	} while (0)

/* expr returns 0 or a QP_E* code and fills the struct qp_err err. */
#define CHECK_OK(expr)                                                              \
	do {                                                                            \
		int tf_rc_ = (expr);                                                        \
		if (tf_rc_ != 0) {                                                          \
			tf_fail(__FILE__, __LINE__, "%s returned %d: %s", #expr, tf_rc_, err.msg); \
			return;                                                                 \
		}                                                                           \
	} while (0)

#define CHECK_EQ_INT(a, b)                                                              \
	do {                                                                                \
		long long tf_a_ = (long long)(a), tf_b_ = (long long)(b);                       \
		if (tf_a_ != tf_b_) {                                                           \
			tf_fail(__FILE__, __LINE__, "%s == %lld, expected %lld", #a, tf_a_, tf_b_); \
			return;                                                                     \
		}                                                                               \
	} while (0)

#define CHECK_EQ_STR(a, b)                                                                 \
	do {                                                                                   \
		const char *tf_a_ = (a), *tf_b_ = (b);                                             \
		if (!tf_a_ || strcmp(tf_a_, tf_b_) != 0) {                                         \
			tf_fail(__FILE__, __LINE__, "%s\n      got:      '%s'\n      expected: '%s'", \
			        #a, tf_a_ ? tf_a_ : "(null)", tf_b_);                                  \
			return;                                                                        \
		}                                                                                  \
	} while (0)

/* expr must fail with code and exactly the message text. */
#define CHECK_ERR(expr, code, text)                \
	do {                                           \
		qp_err_clear(&err);                        \
		int tf_rc_ = (expr);                       \
		CHECK_EQ_STR(err.msg, text);               \
		CHECK_EQ_INT(tf_rc_, code);                \
	} while (0)

/* Data that tests read in place: ../shared/data, from QP_SHARED_DIR. */
__attribute__((unused)) static const char *tf_shared(const char *rel)
{
	static char buf[4096];
	const char *dir = getenv("QP_SHARED_DIR");
	if (snprintf(buf, sizeof(buf), "%s/%s", dir ? dir : "../shared", rel) >= (int)sizeof(buf))
		exit(1);
	return buf;
}

/* A fresh temporary directory for this process, removed at exit. */
static char tf_tmp[4096];

static int tf_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void tf_tmp_cleanup(void)
{
	if (tf_tmp[0] && !getenv("QP_KEEP_TMP"))
		nftw(tf_tmp, tf_rm, 16, FTW_DEPTH | FTW_PHYS);
}

/* path of name inside the temporary directory. */
__attribute__((unused)) static const char *tf_path(char *buf, size_t cap, const char *name)
{
	if (!tf_tmp[0]) {
		const char *base = getenv("TMPDIR");
		snprintf(tf_tmp, sizeof(tf_tmp), "%s/qp-formats-XXXXXX", base ? base : "/tmp");
		if (!mkdtemp(tf_tmp)) {
			perror("mkdtemp");
			exit(1);
		}
		atexit(tf_tmp_cleanup);
	}
	if (snprintf(buf, cap, "%s/%s", tf_tmp, name) >= (int)cap) {
		fprintf(stderr, "path too long: %s/%s\n", tf_tmp, name);
		exit(1);
	}
	return buf;
}

/* Whole file into a malloc'd buffer (test code: aborts on failure). */
__attribute__((unused)) static unsigned char *tf_slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		perror(path);
		exit(1);
	}
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	unsigned char *buf = malloc((size_t)n + 1);
	if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
		perror(path);
		exit(1);
	}
	fclose(f);
	*len = (size_t)n;
	return buf;
}

__attribute__((unused)) static void tf_spit(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
		perror(path);
		exit(1);
	}
}

__attribute__((unused)) static int tf_main(int argc, char **argv, const struct tf_test *tests, size_t n)
{
	int failures = 0, ran = 0;
	for (size_t i = 0; i < n; i++) {
		if (argc > 1 && strcmp(argv[1], tests[i].name) != 0)
			continue;
		tf_failed = 0;
		tests[i].fn();
		ran++;
		printf("%s %s\n", tf_failed ? "FAIL" : "ok  ", tests[i].name);
		fflush(stdout);
		failures += tf_failed;
	}
	if (ran == 0) {
		fprintf(stderr, "no test named '%s'\n", argc > 1 ? argv[1] : "");
		return 2;
	}
	printf("%d of %d passed\n", ran - failures, ran);
	return failures ? 1 : 0;
}

#define TF_TEST(name) {#name, name}

#endif
