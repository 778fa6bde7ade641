/* The Llama forward pass over a GGUF file as qpipe's export.gguf (and
 * llama.cpp's converter) writes it: llama.cpp's tensor names, q/k rows in
 * the interleaved RoPE layout ("normal" RoPE), 2-D weights of any type
 * the kernel table can take a dot product with, tied output when the file
 * has no output.weight. Or over a Hugging Face checkpoint (llama_hf.h):
 * its tensors in place, q/k in their own order with rotate_half RoPE.
 * RoPE scaling (model/rope.h) from either. Grouped-query attention,
 * RMSNorm, SwiGLU, a KV cache of n_ctx positions, and matrix products
 * split over threads. */
#ifndef QP_LLAMA_H
#define QP_LLAMA_H

#include <stdint.h>

#include "common/err.h"
#include "model/rope.h"

struct qp_llama;
struct qp_gguf_file;

struct qp_llama_hparams {
	int64_t n_vocab, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff;
	int64_t n_rot;          /* RoPE dimensions per head (<= head_dim) */
	int64_t n_ctx_train;    /* llama.context_length */
	float eps;              /* RMSNorm epsilon */
	float rope_base;        /* llama.rope.freq_base (rope.theta as a float) */
	struct qp_rope rope;    /* layout, base and scaling of RoPE */
};

/* Architectures qp_llama_open accepts, for messages: "llama". */
extern const char qp_llama_supported[];

/* Map the GGUF at path, or the Hugging Face folder at path, and check
 * every tensor the pass needs (name, shape, type has a dot product); a KV
 * cache of n_ctx positions; up to threads threads. Fails naming the file
 * and tensor or key; an architecture other than llama (LlamaForCausalLM,
 * MistralForCausalLM for a folder) is refused with the list of supported
 * ones. */
int qp_llama_open(struct qp_llama **out, const char *path, int64_t n_ctx, int threads,
                  struct qp_err *err);
/* A Hugging Face Llama checkpoint (model/llama_hf.h): path a folder with
 * config.json and model.safetensors (or its sharded index) also works in
 * qp_llama_open; this form takes the two files where they are not in one
 * folder (a stage's input artifact). Messages name weights_path. */
int qp_llama_open_hf(struct qp_llama **out, const char *config_path, const char *weights_path,
                     int64_t n_ctx, int threads, struct qp_err *err);
void qp_llama_free(struct qp_llama *m);

/* W8A8 from now on (SmoothQuant's setting): every linear of the layers is
 * quantized to int8 per output row (s = max |w| / 127) and each product
 * quantizes its input per token to int8 (kernels/w8a8.h), accumulating
 * int8 x int8 in int32. Embeddings and the output projection stay as they
 * are. */
int qp_llama_set_w8a8(struct qp_llama *m, struct qp_err *err);

const struct qp_llama_hparams *qp_llama_hparams(const struct qp_llama *m);
/* The threads given to qp_llama_open (at least 1). */
int qp_llama_threads(const struct qp_llama *m);
/* The mapped GGUF (borrowed until free), e.g. for its tokenizer; NULL for
 * a Hugging Face checkpoint (its tokenizer is in its folder). */
const struct qp_gguf_file *qp_llama_gguf(const struct qp_llama *m);

/* Run n tokens at positions pos .. pos + n - 1 in one batch, after the
 * pos positions already in the KV cache, and write logits for every one
 * of them to logits[n][n_vocab]. pos + n must not exceed n_ctx. logits
 * may be NULL: the output projection is then skipped (calibration needs
 * only the layers' activations). */
int qp_llama_eval(struct qp_llama *m, const int32_t *tokens, int64_t n, int64_t pos, float *logits,
                  struct qp_err *err);

/* Layer by layer, for calibration through already-quantized layers
 * (GPTQ's true-sequential mode): qp_llama_embed writes the embeddings of
 * n tokens to x[n][n_embd]; qp_llama_layer runs decoder layer il over
 * x's n tokens in place, as tokens at positions pos .. pos + n - 1 after
 * the pos already in that layer's KV cache. Embedding, then every layer
 * in order, gives the hidden states qp_llama_eval computes, bit for bit. */
int qp_llama_embed(struct qp_llama *m, const int32_t *tokens, int64_t n, float *x, struct qp_err *err);
int qp_llama_layer(struct qp_llama *m, int64_t il, float *x, int64_t n, int64_t pos, struct qp_err *err);

/* From now on, the 2-D weight name (llama.cpp's name) holds data: f32,
 * row after row in the tensor's shape; the model keeps its own copy.
 * Refused in w8a8 mode. QP_ENOTFOUND when the pass has no such weight. */
int qp_llama_set_weight_f32(struct qp_llama *m, const char *name, const float *data, struct qp_err *err);

/* Sees the input of a product with 2-D weights before it is computed:
 * x holds n rows (one per token of the batch) of k floats, borrowed for
 * the call. names[0 .. n_names) are the llama.cpp names of the weights
 * that multiply this same input (blk.N.attn_q/attn_k/attn_v.weight in
 * one call, ffn_gate/ffn_up in one), so shared statistics are computed
 * once. A non-zero return (a QP_E* code, err filled) stops qp_llama_eval
 * with that code. */
typedef int (*qp_llama_observer)(void *user, const char *const *names, int n_names, const float *x,
                                 int64_t n, int64_t k, struct qp_err *err);

/* Install fn (NULL: none, the default) to be called by every later
 * qp_llama_eval, with user passed through. */
void qp_llama_set_observer(struct qp_llama *m, qp_llama_observer fn, void *user);

#endif
