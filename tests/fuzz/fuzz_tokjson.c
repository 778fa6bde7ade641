/* libFuzzer target: the tokenizer.json loader on arbitrary bytes; a file
 * that loads encodes a fixed text (unicode, whitespace runs, a special
 * token string, invalid UTF-8) and decodes the ids back. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char text[] = "Hello  world's 12345\t\n\n <s>caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac "
	                           "\xf0\x9f\x98\x80 \xff\xc3 it'S \xe2\x96\x81x  ";
	struct qp_err err;
	struct qp_tokenizer *t;
	if (qp_tokenizer_from_json_mem(&t, data, size, "fuzz.json", NULL, 0, NULL, &err) != 0)
		return 0;
	int32_t *ids;
	size_t n;
	for (int special = 0; special < 2; special++) {
		if (qp_tokenizer_encode(t, text, sizeof(text) - 1, special, &ids, &n, &err) != 0)
			__builtin_trap(); /* only out of memory may fail */
		for (size_t i = 0; i < n; i++)
			if (ids[i] < 0 || ids[i] >= qp_tokenizer_n_vocab(t))
				__builtin_trap();
		char *back;
		size_t len;
		if (qp_tokenizer_decode(t, ids, n, &back, &len, &err) != 0 || strlen(back) > len)
			__builtin_trap();
		free(back);
		free(ids);
	}
	qp_tokenizer_free(t);
	return 0;
}
