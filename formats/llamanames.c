#include "formats/llamanames.h"

#include <stdio.h>
#include <string.h>

/* Whole-model tensors, then the tensors of each layer (suffixes after
 * "model.layers.N." and "blk.N."). */
static const struct { const char *hf, *gg; } global[] = {
	{"model.embed_tokens.weight", "token_embd.weight"},
	{"model.norm.weight", "output_norm.weight"},
	{"lm_head.weight", "output.weight"},
};

static const struct { const char *hf, *gg; } layer[] = {
	{"input_layernorm.weight", "attn_norm.weight"},
	{"self_attn.q_proj.weight", "attn_q.weight"},
	{"self_attn.k_proj.weight", "attn_k.weight"},
	{"self_attn.v_proj.weight", "attn_v.weight"},
	{"self_attn.o_proj.weight", "attn_output.weight"},
	{"post_attention_layernorm.weight", "ffn_norm.weight"},
	{"mlp.gate_proj.weight", "ffn_gate.weight"},
	{"mlp.up_proj.weight", "ffn_up.weight"},
	{"mlp.down_proj.weight", "ffn_down.weight"},
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static int put(char *out, size_t n, const char *s)
{
	size_t len = strlen(s);
	if (len >= n)
		return -1;
	memcpy(out, s, len + 1);
	return 0;
}

static int put_layer(char *out, size_t n, const char *prefix, unsigned no, const char *s)
{
	int len = snprintf(out, n, "%s%u.%s", prefix, no, s);
	return len < 0 || (size_t)len >= n ? -1 : 0;
}

/* Layer number of name under prefix ("model.layers.", "blk."): the rest
 * after "N." at *rest; -1 if name is not of that form. */
static int layer_of(const char *name, const char *prefix, unsigned *no, const char **rest)
{
	size_t pl = strlen(prefix);
	if (strncmp(name, prefix, pl) != 0)
		return -1;
	const char *p = name + pl;
	unsigned v = 0;
	int digits = 0;
	for (; *p >= '0' && *p <= '9' && digits < 9; p++, digits++)
		v = v * 10 + (unsigned)(*p - '0');
	if (!digits || *p != '.' || (digits > 1 && name[pl] == '0'))
		return -1;
	*no = v;
	*rest = p + 1;
	return 0;
}

int qp_llamanames_to_gguf(const char *hf, char *out, size_t n)
{
	for (size_t i = 0; i < COUNT(global); i++)
		if (!strcmp(hf, global[i].hf))
			return put(out, n, global[i].gg);
	unsigned no;
	const char *rest;
	if (layer_of(hf, "model.layers.", &no, &rest) == 0)
		for (size_t i = 0; i < COUNT(layer); i++)
			if (!strcmp(rest, layer[i].hf))
				return put_layer(out, n, "blk.", no, layer[i].gg);
	return -1;
}

int qp_llamanames_to_hf(const char *gg, char *out, size_t n)
{
	for (size_t i = 0; i < COUNT(global); i++)
		if (!strcmp(gg, global[i].gg))
			return put(out, n, global[i].hf);
	unsigned no;
	const char *rest;
	if (layer_of(gg, "blk.", &no, &rest) == 0)
		for (size_t i = 0; i < COUNT(layer); i++)
			if (!strcmp(rest, layer[i].gg))
				return put_layer(out, n, "model.layers.", no, layer[i].hf);
	return -1;
}

void qp_llamanames_rope_rows(uint8_t *dst, const uint8_t *src, int64_t rows, size_t row_bytes, int64_t heads)
{
	int64_t hd = rows / heads, half = hd / 2;
	for (int64_t h = 0; h < heads; h++)
		for (int64_t j = 0; j < half; j++)
			for (int64_t p = 0; p < 2; p++)
				memcpy(dst + (size_t)(h * hd + 2 * j + p) * row_bytes,
				       src + (size_t)(h * hd + p * half + j) * row_bytes, row_bytes);
}
