/* SentencePiece model files (tokenizer.model): the protobuf ModelProto.
 *
 * Only what a GGUF exporter and a tokenizer need is decoded: the pieces
 * (field 1: piece, score, type), trainer_spec's model_type, byte_fallback
 * and special ids, normalizer_spec's add_dummy_prefix,
 * remove_extra_whitespaces and whether it has a precompiled charsmap. Unknown fields are
 * skipped by wire type; every length is bounds-checked. */
#ifndef QP_SPM_H
#define QP_SPM_H

#include <stdbool.h>
#include <stddef.h>

#include "common/err.h"

/* Piece types, as SentencePiece numbers them (also GGUF's token_type). */
enum qp_spm_type {
	QP_SPM_NORMAL = 1, QP_SPM_UNKNOWN = 2, QP_SPM_CONTROL = 3,
	QP_SPM_USER_DEFINED = 4, QP_SPM_UNUSED = 5, QP_SPM_BYTE = 6,
};

struct qp_spm_piece {
	char *piece;        /* UTF-8, NUL-terminated */
	float score;
	int type;           /* enum qp_spm_type; NORMAL if absent */
};

struct qp_spm {
	size_t n_pieces;
	struct qp_spm_piece *pieces;
	int model_type;         /* 1 unigram, 2 bpe, 3 word, 4 char (trainer_spec) */
	bool byte_fallback;
	bool add_dummy_prefix;  /* default true */
	/* normalizer_spec: drop leading and trailing spaces and collapse runs
	 * of spaces (default true; Llama's own tokenizer sets it false) */
	bool remove_extra_whitespaces;
	bool has_charsmap;      /* a non-empty precompiled_charsmap (NFKC ...) */
	int unk_id, bos_id, eos_id, pad_id;  /* defaults 0, 1, 2, -1 */
};

/* Parse the file at path into *out (caller frees with qp_spm_free). */
int qp_spm_read(struct qp_spm **out, const char *path, struct qp_err *err);
/* Parse from memory; name is used in error messages. */
int qp_spm_parse(struct qp_spm **out, const void *data, size_t len, const char *name,
                 struct qp_err *err);
void qp_spm_free(struct qp_spm *s);

#endif
