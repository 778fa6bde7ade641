/* libFuzzer target: the GGUF reader on arbitrary bytes. Everything the
 * reader hands out is touched, so ASan sees any pointer it got wrong. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "formats/gguf.h"

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
	struct qp_gguf_file *f;
	if (qp_gguf_parse(&f, data, size, "fuzz.gguf", &err) != 0)
		return 0;
	volatile uint8_t sink = 0;
	for (size_t i = 0; i < qp_gguf_kv_count(f); i++) {
		const struct qp_gguf_kv *kv = qp_gguf_kv_at(f, i);
		sink ^= touch(kv->key, strlen(kv->key) + 1);
		if (qp_gguf_find_kv(f, kv->key) == NULL)
			__builtin_trap();
		if (kv->type == QP_GGUF_STRING)
			sink ^= touch(kv->v.str.data, (size_t)kv->v.str.len);
		if (kv->type != QP_GGUF_ARRAY)
			continue;
		if (kv->arr_type == QP_GGUF_STRING) {
			for (uint64_t k = 0; k < kv->arr_n; k++)
				sink ^= touch(kv->arr_str[k].data, (size_t)kv->arr_str[k].len);
		} else {
			sink ^= touch(kv->arr_data, (size_t)kv->arr_n * qp_gguf_vtype_size(kv->arr_type));
		}
	}
	for (size_t i = 0; i < qp_gguf_tensor_count(f); i++) {
		const struct qp_gguf_tensor *t = qp_gguf_tensor_at(f, i);
		sink ^= touch(t->name, strlen(t->name) + 1);
		sink ^= touch(t->data, t->nbytes);
		if (qp_gguf_find_tensor(f, t->name) != t)
			__builtin_trap();
	}
	(void)sink;
	qp_gguf_close(f);
	return 0;
}
