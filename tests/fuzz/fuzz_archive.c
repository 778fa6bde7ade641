/* libFuzzer target: archive extraction (stages/download/archive.c) on
 * arbitrary bytes, into a fresh folder per input. Beyond memory errors it
 * checks the promise of archive.h: whatever is accepted lands inside the
 * folder as plain files (no links), within the byte cap. */
#include <dirent.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/os.h"
#include "stages/download/archive.h"

#define CAP (4u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Trap on anything under dir that is not a plain file or folder. */
static void check_tree(const char *dir, int depth)
{
	if (depth > 64)
		__builtin_trap();
	DIR *d = opendir(dir);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		char p[8192];
		snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
		struct stat st;
		if (lstat(p, &st) != 0)
			continue;
		if (S_ISDIR(st.st_mode))
			check_tree(p, depth + 1);
		else if (!S_ISREG(st.st_mode))
			__builtin_trap();
	}
	closedir(d);
}

/* Does a '/'-separated name have a ".." component? ("..bin" is a name.) */
static int has_dotdot(const char *name)
{
	for (const char *p = name; *p;) {
		size_t n = strcspn(p, "/");
		if (n == 2 && p[0] == '.' && p[1] == '.')
			return 1;
		p += n;
		while (*p == '/')
			p++;
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char dir[4096];
	struct qp_err err;
	const char *tmp = getenv("TMPDIR");
	if (qp_os_mkdtemp(dir, sizeof(dir), tmp && tmp[0] ? tmp : "/tmp", &err) != 0)
		return 0;
	struct qp_archive_opts o = {.max_bytes = CAP};
	struct qp_archive_list l;
	if (qp_archive_extract(&l, NULL, data, size, dir, &o, &err) == 0) {
		if (l.bytes > CAP)
			__builtin_trap();
		for (size_t i = 0; i < l.n; i++)
			if (l.names[i][0] == '/' || has_dotdot(l.names[i]))
				__builtin_trap();
		qp_archive_list_free(&l);
	}
	check_tree(dir, 0);
	qp_os_remove_tree(dir);
	return 0;
}
