/* libFuzzer target: qpipe's quantized safetensors layout on arbitrary
 * bytes: the safetensors parse, then the layout's metadata, part shapes
 * and value checks, then every entry dequantized, so a check the reader
 * missed shows up as an out-of-bounds read under ASan. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "formats/qlayout.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct qp_err err;
	struct qp_ql_model *m;
	if (qp_ql_parse(&m, data, size, "fuzz.safetensors", &err) != 0)
		return 0;
	for (size_t i = 0; i < qp_ql_count(m); i++) {
		const struct qp_ql_entry *e = qp_ql_at(m, i);
		if (qp_ql_find(m, e->name) != e)
			__builtin_trap();
		/* bounded, so a huge declared shape cannot exhaust memory */
		if (e->nelem > (1 << 20))
			continue;
		float *out = malloc((size_t)(e->nelem ? e->nelem : 1) * sizeof(float));
		if (out && qp_ql_dequantize(m, e, out, 1, &err) == 0) {
			volatile float sink = 0;
			for (int64_t j = 0; j < e->nelem; j++)
				sink += out[j];
			(void)sink;
		}
		free(out);
	}
	qp_ql_close(m);
	return 0;
}
