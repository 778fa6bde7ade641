/* llama.cpp's quantization mixtures ("presets": Q4_K_M, Q3_K_M ...) for a
 * Llama model, chosen per tensor the way llama-quantize chooses them, from
 * the tensor's role, its layer and the model's shape. */
#ifndef QP_PRESET_H
#define QP_PRESET_H

#include <stdbool.h>
#include <stdint.h>

/* The preset names a recipe may use, NULL-terminated ("" first: none). */
extern const char *const qp_preset_names[];

/* What the choice depends on beyond the tensor itself. */
struct qp_preset_model {
	int n_layer;      /* config num_hidden_layers (llama.cpp's n_ffn_down) */
	int n_attn_v;     /* v_proj tensors in the model (llama.cpp's n_attention_wv) */
	int n_head;       /* attention heads */
	int n_head_kv;    /* key/value heads; n_head / n_head_kv is n_gqa */
	bool tied;        /* no lm_head.weight: embed_tokens is also the output */
};

/* llama.cpp's llama_ftype number for preset name (general.file_type); -1 if
 * name is no preset. */
int qp_preset_ftype(const char *name);

/* Type (a qp_type) llama.cpp gives the 2-D Hugging Face tensor hf_name with
 * rows of cols elements under preset name (F16 where its rows fit neither
 * the type's blocks nor its fallback's); -1 if name is no preset. */
int qp_preset_tensor_type(const char *name, const struct qp_preset_model *m, const char *hf_name,
                          int64_t cols);

#endif
