/* libarchive through dlopen (dl.h says why).
 *
 * Each function below has libarchive's own prototype (its headers are
 * included, so the compiler checks them) and forwards to the symbol of that
 * name in libarchive.so.13, the soname libarchive has kept since 3.0. The
 * table is written once, under pthread_once, and only read after. */
#include <archive.h>
#include <archive_entry.h>

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "common/dlib.h"
#include "stages/download/dl.h"

#define SONAME "libarchive.so.13"

/* X(return type, name, (parameters), (arguments), value when not loaded) */
#define ARCHIVE_FUNCTIONS(X) \
	X(struct archive *, archive_read_new, (void), (), NULL) \
	X(int, archive_read_support_filter_all, (struct archive *a), (a), ARCHIVE_FATAL) \
	X(int, archive_read_support_format_zip, (struct archive *a), (a), ARCHIVE_FATAL) \
	X(int, archive_read_support_format_tar, (struct archive *a), (a), ARCHIVE_FATAL) \
	X(int, archive_read_support_format_gnutar, (struct archive *a), (a), ARCHIVE_FATAL) \
	X(int, archive_read_open_filename, (struct archive *a, const char *path, size_t block), \
	  (a, path, block), ARCHIVE_FATAL) \
	X(int, archive_read_open_memory, (struct archive *a, const void *buf, size_t len), \
	  (a, buf, len), ARCHIVE_FATAL) \
	X(int, archive_read_next_header, (struct archive *a, struct archive_entry **e), (a, e), \
	  ARCHIVE_FATAL) \
	X(la_ssize_t, archive_read_data, (struct archive *a, void *buf, size_t len), (a, buf, len), \
	  ARCHIVE_FATAL) \
	X(int, archive_read_free, (struct archive *a), (a), ARCHIVE_FATAL) \
	X(const char *, archive_error_string, (struct archive *a), (a), "libarchive is not loaded") \
	X(const char *, archive_entry_pathname, (struct archive_entry *e), (e), NULL) \
	X(mode_t, archive_entry_filetype, (struct archive_entry *e), (e), 0) \
	X(const char *, archive_entry_hardlink, (struct archive_entry *e), (e), NULL) \
	X(la_int64_t, archive_entry_size, (struct archive_entry *e), (e), 0) \
	X(int, archive_entry_size_is_set, (struct archive_entry *e), (e), 0) \
	X(const char *, archive_entry_symlink, (struct archive_entry *e), (e), NULL)

#define FIELD(ret, name, params, args, fail) ret (*name) params;

static struct {
	pthread_once_t once;
	char why[512];     /* dlopen's or dlsym's complaint */
	int ok;
	ARCHIVE_FUNCTIONS(FIELD)
} lib = {.once = PTHREAD_ONCE_INIT};

static void load(void)
{
#define SYM(ret, name, params, args, fail) {#name, &lib.name},
	const struct qp_dlsym syms[] = {ARCHIVE_FUNCTIONS(SYM)};
	lib.ok = qp_dlib_load(SONAME, syms, sizeof(syms) / sizeof(syms[0]), lib.why, sizeof(lib.why)) == 0;
}

int qp_dl_archive(struct qp_err *err)
{
	pthread_once(&lib.once, load);
	if (lib.ok)
		return 0;
	return qp_err_set(err, QP_ENOTFOUND, "cannot load libarchive (needed to unpack archives): %s",
	                  lib.why);
}

#define FORWARD(ret, name, params, args, fail) \
	ret name params \
	{ \
		pthread_once(&lib.once, load); \
		return lib.ok ? lib.name args : fail; \
	}
ARCHIVE_FUNCTIONS(FORWARD)
