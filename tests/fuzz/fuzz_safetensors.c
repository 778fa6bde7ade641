/* libFuzzer target: the safetensors header parser and offset checks on
 * arbitrary bytes. Every tensor's bytes are touched, so ASan sees any
 * pointer the reader got wrong. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "formats/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t touch(const void *p, size_t n)
{
	const volatile uint8_t *b = p;
	uint8_t x = 0;
	for (size_t i = 0; i < n; i++)
		x ^= b[i];
	return x;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct qp_err err;
	struct qp_st_model *m;
	if (qp_st_parse(&m, data, size, "fuzz.safetensors", &err) != 0)
		return 0;
	volatile uint8_t sink = 0;
	for (size_t i = 0; i < qp_st_count(m); i++) {
		const struct qp_st_tensor *t = qp_st_at(m, i);
		sink ^= touch(t->name, strlen(t->name) + 1);
		sink ^= touch(t->data, t->nbytes);
		if ((size_t)t->nelem * qp_st_dtype_size(t->dtype) != t->nbytes ||
		    qp_st_find(m, t->name) != t)
			__builtin_trap();
	}
	const char *fmt = qp_st_metadata(m, "format");
	if (fmt)
		sink ^= touch(fmt, strlen(fmt));
	(void)sink;
	qp_st_close(m);
	return 0;
}
