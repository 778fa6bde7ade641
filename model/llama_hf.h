/* A Hugging Face Llama checkpoint as the forward pass reads it: config.json
 * for the hyperparameters and RoPE, the safetensors weights (one file or
 * a sharded index) mapped and presented as GGUF tensor views under
 * llama.cpp's names (formats/llamanames), so model/llama.c runs the same
 * code over either source. F32, F16 and BF16 weights are used in place
 * (the kernel table has a dot product for each): nothing is copied. q and
 * k keep Hugging Face's row order; RoPE runs in the rotate_half layout
 * instead (hparams.rope.neox). */
#ifndef QP_LLAMA_HF_H
#define QP_LLAMA_HF_H

#include <stdint.h>

#include "common/err.h"

struct qp_llama_hparams;
struct qp_gguf_tensor;
struct qp_llama_hf;

/* Architectures (config.json architectures[0]) accepted, for messages. */
extern const char qp_llama_hf_supported[];

/* Open config_path and weights_path (model.safetensors or its
 * model.safetensors.index.json) and fill *hp. Refuses other architectures
 * naming the supported ones, unknown RoPE types naming theirs, dtypes
 * without a dot product, tensors the pass does not compute (biases ...)
 * and missing ones, naming the file and the tensor. n_ctx: the context
 * the model will run (Mistral's sliding window must cover it). */
int qp_llama_hf_open(struct qp_llama_hf **out, const char *config_path, const char *weights_path,
                     int64_t n_ctx, struct qp_llama_hparams *hp, struct qp_err *err);
/* The folder form: dir/config.json and dir's weights (the index wins). */
int qp_llama_hf_open_dir(struct qp_llama_hf **out, const char *dir, int64_t n_ctx,
                         struct qp_llama_hparams *hp, struct qp_err *err);
void qp_llama_hf_close(struct qp_llama_hf *h);

/* The tensor of llama.cpp name gguf_name ("blk.0.attn_q.weight"), NULL if
 * absent; valid until close. lm_head is absent when embeddings are tied. */
const struct qp_gguf_tensor *qp_llama_hf_find(const struct qp_llama_hf *h, const char *gguf_name);

#endif
