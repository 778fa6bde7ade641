/* libFuzzer target: the SentencePiece ModelProto reader on arbitrary bytes. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "formats/spm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct qp_err err;
	struct qp_spm *s;
	if (qp_spm_parse(&s, data, size, "fuzz.model", &err) != 0)
		return 0;
	volatile size_t sink = 0;
	for (size_t i = 0; i < s->n_pieces; i++) {
		sink += strlen(s->pieces[i].piece);
		if (s->pieces[i].type < QP_SPM_NORMAL || s->pieces[i].type > QP_SPM_BYTE)
			__builtin_trap();
	}
	if (s->unk_id < 0 || (size_t)s->unk_id >= s->n_pieces)
		__builtin_trap();
	(void)sink;
	qp_spm_free(s);
	return 0;
}
