/* Run-time loading of shared libraries; see dlib.h. */
#include "common/dlib.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

int qp_dlib_load(const char *soname, const struct qp_dlsym *syms, size_t n, char *why, size_t why_len)
{
	void *h = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		const char *e = dlerror();
		if (e)
			snprintf(why, why_len, "%s", e);
		else
			snprintf(why, why_len, "%s: cannot load", soname);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		void *p = dlsym(h, syms[i].name);
		if (!p) {
			snprintf(why, why_len, "%s: no symbol '%s'", soname, syms[i].name);
			dlclose(h);
			return -1;
		}
		/* POSIX guarantees that dlsym's pointer converts to a function pointer */
		memcpy(syms[i].slot, &p, sizeof(p));
	}
	return 0;
}
