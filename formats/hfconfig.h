/* Hugging Face model folder metadata: config.json and tokenizer_config.json. */
#ifndef QP_HFCONFIG_H
#define QP_HFCONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "common/err.h"

struct qp_hf_config {
	char architecture[64];       /* architectures[0], e.g. "LlamaForCausalLM" */
	char model_type[32];         /* "llama" */
	char torch_dtype[16];        /* "float16" ..., "" if absent */
	int hidden_size;
	int intermediate_size;
	int num_hidden_layers;
	int num_attention_heads;
	int num_key_value_heads;     /* defaults to num_attention_heads */
	int head_dim;                /* defaults to hidden_size / heads */
	int vocab_size;
	int max_position_embeddings;
	double rms_norm_eps;
	double rope_theta;           /* rope_theta, or rope_parameters.rope_theta; 10000 if absent */
	/* RoPE scaling, from transformers 5's rope_parameters or the older
	 * rope_scaling object (the first that is present); numbers absent
	 * from the file are 0, and model/rope.c checks which a type needs. */
	char rope_type[24];          /* rope_type (or legacy "type"); "default" if absent */
	double rope_factor;
	double rope_low_freq_factor, rope_high_freq_factor;     /* llama3 */
	double rope_beta_fast, rope_beta_slow;                  /* yarn */
	double rope_attention_factor, rope_mscale, rope_mscale_all_dim; /* yarn */
	bool rope_truncate;          /* yarn: floor/ceil the correction range; default true */
	int rope_original_max_position_embeddings;  /* top level wins, as in transformers */
	double partial_rotary_factor; /* default 1 */
	int sliding_window;          /* Mistral; 0 if absent or null */
	char hidden_act[24];         /* hidden_act; "silu" if absent */
	bool tie_word_embeddings;    /* default false */
	int bos_token_id;            /* -1 if absent */
	int eos_token_id;            /* -1 if absent; first of a list */
};

/* Read config.json at path. Missing required fields are errors naming the
 * file and the field. Required: model_type, hidden_size, intermediate_size,
 * num_hidden_layers, num_attention_heads, vocab_size. Defaults otherwise:
 * architecture "", max_position_embeddings 2048, rms_norm_eps 1e-6 (as
 * transformers' LlamaConfig). */
int qp_hf_config_read(struct qp_hf_config *out, const char *path, struct qp_err *err);
/* The same from memory; name is used in error messages. */
int qp_hf_config_parse(struct qp_hf_config *out, const void *data, size_t len, const char *name,
                       struct qp_err *err);

struct qp_hf_tokenizer_config {
	bool add_bos_token;          /* default true (Llama) */
	bool add_eos_token;          /* default false */
};

/* Read tokenizer_config.json at path; absent keys keep their defaults. */
int qp_hf_tokenizer_config_read(struct qp_hf_tokenizer_config *out, const char *path,
                                struct qp_err *err);
/* The same from memory; name is used in error messages. */
int qp_hf_tokenizer_config_parse(struct qp_hf_tokenizer_config *out, const void *data,
                                 size_t len, const char *name, struct qp_err *err);

#endif
