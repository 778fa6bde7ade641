/* Tensor names of a Llama: Hugging Face's (model.layers.3.mlp.up_proj.weight)
 * against llama.cpp's GGUF names (blk.3.ffn_up.weight), in both directions.
 * export.gguf renames by it; calibrate and quantize use it to match an
 * imatrix (llama.cpp names) with Hugging Face weights. */
#ifndef QP_LLAMANAMES_H
#define QP_LLAMANAMES_H

#include <stddef.h>
#include <stdint.h>

/* llama.cpp's name for Hugging Face name hf, into out[n]; -1 if hf is not
 * a Llama tensor name or out is too small. */
int qp_llamanames_to_gguf(const char *hf, char *out, size_t n);

/* The Hugging Face name for llama.cpp name gg, into out[n]; -1 if gg is
 * not a Llama tensor name or out is too small. */
int qp_llamanames_to_hf(const char *gg, char *out, size_t n);

/* q_proj's and k_proj's rows from Hugging Face's rotate-half RoPE layout
 * to llama.cpp's interleaved one, as its convert script permutes them:
 * within each of heads heads, the row at (half p, index j) goes to row
 * 2j + p. Rows move whole (row_bytes each), so quantized blocks are
 * untouched; rows must split into heads of an even size; dst != src. */
void qp_llamanames_rope_rows(uint8_t *dst, const uint8_t *src, int64_t rows, size_t row_bytes, int64_t heads);

#endif
