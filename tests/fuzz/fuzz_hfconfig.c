/* libFuzzer target: config.json and tokenizer_config.json readers on
 * arbitrary bytes (each input goes through both). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "formats/hfconfig.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct qp_err err;
	struct qp_hf_config c;
	if (qp_hf_config_parse(&c, data, size, "config.json", &err) == 0) {
		if (strlen(c.architecture) >= sizeof(c.architecture) ||
		    strlen(c.model_type) >= sizeof(c.model_type) || c.hidden_size < 1 ||
		    c.num_attention_heads < 1 || c.head_dim < 1)
			__builtin_trap();
	}
	struct qp_hf_tokenizer_config t;
	(void)qp_hf_tokenizer_config_parse(&t, data, size, "tokenizer_config.json", &err);
	return 0;
}
