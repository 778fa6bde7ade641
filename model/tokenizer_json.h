/* Private to model/: the tokenizer.json loader (Hugging Face `tokenizers`
 * serialization) behind the qp_tokenizer_* calls of model/tokenizer.h. */
#ifndef QP_TOKENIZER_JSON_H
#define QP_TOKENIZER_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

struct qp_tokjson;

/* Parse tokenizer.json bytes (name is used in messages) and, if cfg is
 * not NULL, tokenizer_config.json bytes (cfg_name in messages). */
int qp_tokjson_parse(struct qp_tokjson **out, const void *json, size_t len, const char *name,
                     const void *cfg, size_t cfg_len, const char *cfg_name, struct qp_err *err);
void qp_tokjson_free(struct qp_tokjson *t);

int qp_tokjson_encode(const struct qp_tokjson *t, const char *text, size_t len, bool add_special,
                      int32_t **ids, size_t *n, struct qp_err *err);
int qp_tokjson_decode(const struct qp_tokjson *t, const int32_t *ids, size_t n, char **text,
                      size_t *len, struct qp_err *err);

int32_t qp_tokjson_n_vocab(const struct qp_tokjson *t);
int32_t qp_tokjson_bos(const struct qp_tokjson *t);
int32_t qp_tokjson_eos(const struct qp_tokjson *t);
const char *qp_tokjson_piece(const struct qp_tokjson *t, int32_t id);
const char *qp_tokjson_describe(const struct qp_tokjson *t);

#endif
