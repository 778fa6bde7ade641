/* Tokenizers: text to token ids and back, as the model's own tokenizer
 * does it.
 *
 * One opaque type covers every tokenizer algorithm; a loader picks the
 * algorithm from the files it finds:
 *   - SentencePiece BPE (Llama style), from a tokenizer.model or from a
 *     GGUF file's tokenizer.ggml.* keys (tokenizer.ggml.model "llama");
 *   - a Hugging Face tokenizer.json with a BPE model, ids as `tokenizers`
 *     gives them: SentencePiece-style BPE with byte fallback and
 *     byte-level BPE (GPT-2, Llama-3, Qwen2); see model/tokenizer_json.c
 *     for what is supported and refused.
 * Invalid UTF-8: the SentencePiece path follows llama.cpp (stray bytes
 * become byte tokens); the tokenizer.json path first replaces each maximal
 * invalid subsequence by U+FFFD, as Python's decode(errors="replace")
 * does before HF can see the text. */
#ifndef QP_TOKENIZER_H
#define QP_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

struct qp_tokenizer;
struct qp_spm;
struct qp_gguf_file;

/* Special-token rules; a loader fills them from the model's files. */
struct qp_tokenizer_rules {
	bool add_bos;   /* encode puts BOS first (tokenizer_config add_bos_token) */
	bool add_eos;   /* encode puts EOS last (add_eos_token) */
};

/* From a parsed tokenizer.model (only model_type bpe) and its rules;
 * spm is copied, the caller keeps it. Follows sentencepiece, including
 * its normalizer's remove_extra_whitespaces; a model with a precompiled
 * (NFKC ...) charsmap is refused, as qpipe has no Unicode normalizer. */
int qp_tokenizer_from_spm(struct qp_tokenizer **out, const struct qp_spm *spm,
                          const struct qp_tokenizer_rules *rules, struct qp_err *err);
/* From a GGUF file's tokenizer.ggml.* keys (the file may be closed after). */
int qp_tokenizer_from_gguf(struct qp_tokenizer **out, const struct qp_gguf_file *f,
                           struct qp_err *err);
/* From a Hugging Face model folder: tokenizer.json if it has one, else
 * tokenizer.model; either with the tokenizer_config.json beside it. */
int qp_tokenizer_from_dir(struct qp_tokenizer **out, const char *dir, struct qp_err *err);
/* From one file: a path ending in ".json" is a tokenizer.json, anything
 * else a tokenizer.model; a tokenizer_config.json in the same folder is
 * read when present. For tokenizer.model its add_bos_token/add_eos_token
 * apply (defaults: BOS, not EOS); for tokenizer.json see below. */
int qp_tokenizer_from_file(struct qp_tokenizer **out, const char *path, struct qp_err *err);
/* From tokenizer.json bytes and, unless config is NULL, tokenizer_config.json
 * bytes (names are used in messages). BOS/EOS with add_special: a side
 * (add_bos_token / add_eos_token) that the config sets follows the config,
 * with its bos_token / eos_token; a side it is silent on follows the
 * post_processor's TemplateProcessing, as `tokenizers` applies it. */
int qp_tokenizer_from_json_mem(struct qp_tokenizer **out, const void *json, size_t len,
                               const char *name, const void *config, size_t config_len,
                               const char *config_name, struct qp_err *err);
void qp_tokenizer_free(struct qp_tokenizer *t);

/* Encode len bytes of text (any bytes; invalid UTF-8 falls back to byte
 * tokens, as llama.cpp does) into a malloc'd array *ids of *n ids, which
 * the caller frees. add_special applies the BOS/EOS rules. */
int qp_tokenizer_encode(const struct qp_tokenizer *t, const char *text, size_t len,
                        bool add_special, int32_t **ids, size_t *n, struct qp_err *err);
/* Decode n ids into a malloc'd NUL-terminated *text of *len bytes: control
 * tokens are dropped, byte tokens become their byte, and the dummy prefix
 * space of the first piece is removed (tokenizer.json: its decoder, as HF's
 * decode(skip_special_tokens=True)). Fails on an id out of range. */
int qp_tokenizer_decode(const struct qp_tokenizer *t, const int32_t *ids, size_t n, char **text,
                        size_t *len, struct qp_err *err);

/* Vocabulary size; special ids (-1 if the model has none). */
int32_t qp_tokenizer_n_vocab(const struct qp_tokenizer *t);
int32_t qp_tokenizer_bos(const struct qp_tokenizer *t);
int32_t qp_tokenizer_eos(const struct qp_tokenizer *t);
/* The piece text of id (borrowed until free), NULL if out of range. */
const char *qp_tokenizer_piece(const struct qp_tokenizer *t, int32_t id);
/* One line naming the algorithm and source, e.g. "sentencepiece bpe, 8192
 * pieces, from tokenizer.model" (borrowed until free). */
const char *qp_tokenizer_describe(const struct qp_tokenizer *t);

#endif
