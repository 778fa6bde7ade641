/* llama.cpp's preset mixtures, restated for Hugging Face Llama names.
 *
 * llama-quantize starts every 2-D weight at the preset's base type, then
 * moves a few roles up or down (llama_tensor_get_type in its
 * src/llama-quant.cpp): the output matrix (and a tied embedding) to Q6_K,
 * attn_v and ffn_down to more bits in the layers where errors hurt most,
 * attn_output for the small presets. It walks the tensors in layer order
 * and counts attn_v and ffn_down as it goes; for a Llama (one of each per
 * layer, no experts) that count is the layer index, so this file reads the
 * layer from the name. A tensor whose rows do not divide into the chosen
 * type's blocks gets llama.cpp's own fallback type, and F16 when that does
 * not fit either. Only what the listed presets need for a Llama is here:
 * no Falcon, no experts, no 70B rule, no imatrix-only types. */
#include "stages/quantize/preset.h"

#include <stdio.h>
#include <string.h>

#include "kernels/types.h"

const char *const qp_preset_names[] = {"",      "Q2_K", "Q3_K_M", "Q4_K_M", "Q5_K_M",
                                       "Q6_K",  "Q8_0", "TQ1_0",  "TQ2_0",  NULL};

/* llama_ftype numbers (llama.h) */
enum ftype {
	FT_Q8_0 = 7,
	FT_Q2_K = 10,
	FT_Q3_K_M = 12,
	FT_Q4_K_M = 15,
	FT_Q5_K_M = 17,
	FT_Q6_K = 18,
	FT_TQ1_0 = 36,
	FT_TQ2_0 = 37,
};

static const struct preset {
	const char *name;
	enum ftype ftype;
	enum qp_type base;   /* llama_ftype_get_default_type */
} presets[] = {
	{"Q2_K", FT_Q2_K, QP_TYPE_Q2_K},       {"Q3_K_M", FT_Q3_K_M, QP_TYPE_Q3_K},
	{"Q4_K_M", FT_Q4_K_M, QP_TYPE_Q4_K},   {"Q5_K_M", FT_Q5_K_M, QP_TYPE_Q5_K},
	{"Q6_K", FT_Q6_K, QP_TYPE_Q6_K},       {"Q8_0", FT_Q8_0, QP_TYPE_Q8_0},
	{"TQ1_0", FT_TQ1_0, QP_TYPE_TQ1_0},    {"TQ2_0", FT_TQ2_0, QP_TYPE_TQ2_0},
};

enum role { R_OTHER, R_TOKEN_EMBD, R_OUTPUT, R_ATTN_V, R_ATTN_OUT, R_FFN_DOWN };

static const struct preset *find(const char *name)
{
	for (size_t i = 0; i < sizeof(presets) / sizeof(presets[0]); i++)
		if (!strcmp(presets[i].name, name))
			return &presets[i];
	return NULL;
}

int qp_preset_ftype(const char *name)
{
	const struct preset *p = find(name);
	return p ? (int)p->ftype : -1;
}

/* The role llama.cpp's tensor_get_category gives the tensor; *layer is its
 * layer index, -1 outside the layers. */
static enum role role_of(const char *hf, int *layer)
{
	*layer = -1;
	if (!strcmp(hf, "lm_head.weight"))
		return R_OUTPUT;
	if (!strcmp(hf, "model.embed_tokens.weight"))
		return R_TOKEN_EMBD;
	int used = 0;
	if (sscanf(hf, "model.layers.%d.%n", layer, &used) != 1 || used == 0) {
		*layer = -1;
		return R_OTHER;
	}
	const char *rest = hf + used;
	if (!strcmp(rest, "self_attn.v_proj.weight"))
		return R_ATTN_V;
	if (!strcmp(rest, "self_attn.o_proj.weight"))
		return R_ATTN_OUT;
	if (!strcmp(rest, "mlp.down_proj.weight"))
		return R_FFN_DOWN;
	return R_OTHER;
}

/* llama.cpp's "use_more_bits": the first and last eighth of the layers and
 * every third one between them. */
static bool more_bits(int i, int n)
{
	return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

/* llama.cpp's tensor_type_fallback: a type whose blocks fit rows of cols. */
static int fallback(enum qp_type t, int64_t cols)
{
	if (cols % qp_type_traits(t)->blck == 0)
		return (int)t;
	enum qp_type f;
	switch (t) {
	case QP_TYPE_Q2_K:
	case QP_TYPE_Q3_K:
	case QP_TYPE_TQ1_0:
	case QP_TYPE_TQ2_0: f = QP_TYPE_Q4_0; break;
	case QP_TYPE_Q4_K: f = QP_TYPE_Q5_0; break;
	case QP_TYPE_Q5_K: f = QP_TYPE_Q5_1; break;
	case QP_TYPE_Q6_K: f = QP_TYPE_Q8_0; break;
	/* Q8_0 has no fallback of its own: llama.cpp (llama-cpp-python
	 * 0.3.x's) stores F16, as for a fallback that does not fit */
	default: return (int)QP_TYPE_F16;
	}
	return cols % qp_type_traits(f)->blck == 0 ? (int)f : (int)QP_TYPE_F16;
}

int qp_preset_tensor_type(const char *name, const struct qp_preset_model *m, const char *hf_name,
                          int64_t cols)
{
	const struct preset *p = find(name);
	if (!p)
		return -1;
	int layer;
	enum role r = role_of(hf_name, &layer);
	enum qp_type t = p->base;
	int n_gqa = m->n_head_kv > 0 ? m->n_head / m->n_head_kv : 0;
	if (r == R_OUTPUT || (m->tied && r == R_TOKEN_EMBD)) {
		if (cols % qp_type_traits(p->base)->blck != 0)
			t = QP_TYPE_Q8_0;
		else if (t != QP_TYPE_Q8_0)
			t = QP_TYPE_Q6_K;
	} else if (r == R_TOKEN_EMBD) {
		if (p->ftype == FT_TQ1_0 || p->ftype == FT_TQ2_0)
			t = QP_TYPE_Q4_K;
	} else if (r == R_ATTN_V) {
		if (p->ftype == FT_Q2_K)
			t = n_gqa >= 4 ? QP_TYPE_Q4_K : QP_TYPE_Q3_K;
		else if (p->ftype == FT_Q3_K_M)
			t = layer < 2 ? QP_TYPE_Q5_K : QP_TYPE_Q4_K;
		else if ((p->ftype == FT_Q4_K_M || p->ftype == FT_Q5_K_M) && more_bits(layer, m->n_attn_v))
			t = QP_TYPE_Q6_K;
	} else if (r == R_FFN_DOWN) {
		if (p->ftype == FT_Q2_K)
			t = QP_TYPE_Q3_K;
		else if (p->ftype == FT_Q3_K_M)
			t = layer < m->n_layer / 16 ? QP_TYPE_Q5_K : QP_TYPE_Q4_K;
		else if ((p->ftype == FT_Q4_K_M || p->ftype == FT_Q5_K_M) && more_bits(layer, m->n_layer))
			t = QP_TYPE_Q6_K;
	} else if (r == R_ATTN_OUT) {
		if (p->ftype == FT_Q2_K)
			t = QP_TYPE_Q3_K;
		else if (p->ftype == FT_Q3_K_M)
			t = QP_TYPE_Q4_K;
	}
	return fallback(t, cols);
}
