/* config.json and tokenizer_config.json of a Hugging Face model folder.
 *
 * Both are JSON objects written by transformers. Only the keys that qpipe
 * acts on are read; the rest are ignored. Required keys (the model's
 * geometry) are errors when missing; optional ones get transformers'
 * LlamaConfig defaults. Key names changed across transformers versions, so
 * a few have two spellings: dtype / torch_dtype, rope_theta at the top or
 * under rope_parameters (transformers 5). JSON nesting is bounded by the
 * parser (jansson: 2048 levels) and the file size by HF_JSON_MAX. */
#include "formats/hfconfig.h"

#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/os.h"

/* Real configs are a few KB; tokenizer_config.json can embed a chat
 * template and added tokens, so allow far more. */
#define HF_JSON_MAX ((size_t)64 << 20)

static int load(json_t **out, const void *data, size_t len, const char *name, struct qp_err *err)
{
	json_error_t je;
	json_t *root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &je);
	if (!root)
		return qp_err_set(err, QP_ECORRUPT, "%s:%d:%d: %s", name, je.line, je.column, je.text);
	if (!json_is_object(root)) {
		json_decref(root);
		return qp_err_set(err, QP_ECORRUPT, "%s: not a JSON object", name);
	}
	*out = root;
	return 0;
}

/* An integer key. Absent or null: *out = dflt, or an error when required. */
static int get_int(const json_t *o, const char *key, int *out, int dflt, bool required,
                   int min, const char *name, struct qp_err *err)
{
	json_t *v = json_object_get(o, key);
	if (!v || json_is_null(v)) {
		if (required)
			return qp_err_set(err, QP_ECORRUPT, "%s: required key '%s' is missing", name, key);
		*out = dflt;
		return 0;
	}
	if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > INT_MAX)
		return qp_err_set(err, QP_ECORRUPT, "%s: '%s' must be an integer from %d to %d", name,
		                  key, min, INT_MAX);
	*out = (int)json_integer_value(v);
	return 0;
}

static int get_num(const json_t *o, const char *key, double *out, const char *name,
                   struct qp_err *err)
{
	json_t *v = json_object_get(o, key);
	if (!json_is_number(v) || !isfinite(json_number_value(v)) || json_number_value(v) <= 0)
		return qp_err_set(err, QP_ECORRUPT, "%s: '%s' must be a positive number", name, key);
	*out = json_number_value(v);
	return 0;
}

/* A string key into buf; absent or null leaves buf empty. */
static int get_str(const json_t *o, const char *key, char *buf, size_t cap, const char *name,
                   struct qp_err *err)
{
	json_t *v = json_object_get(o, key);
	buf[0] = '\0';
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v))
		return qp_err_set(err, QP_ECORRUPT, "%s: '%s' must be a string", name, key);
	size_t n = json_string_length(v);
	if (n >= cap || strlen(json_string_value(v)) != n)
		return qp_err_set(err, QP_ECORRUPT, "%s: '%s' is longer than %zu bytes", name, key,
		                  cap - 1);
	memcpy(buf, json_string_value(v), n + 1);
	return 0;
}

static int get_bool(const json_t *o, const char *key, bool *out, bool dflt, const char *name,
                    struct qp_err *err)
{
	json_t *v = json_object_get(o, key);
	*out = dflt;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_boolean(v))
		return qp_err_set(err, QP_ECORRUPT, "%s: '%s' must be true or false", name, key);
	*out = json_is_true(v);
	return 0;
}

/* bos_token_id / eos_token_id: an id, null, or a list whose first is used. */
static int get_token_id(const json_t *o, const char *key, int *out, const char *name,
                        struct qp_err *err)
{
	json_t *v = json_object_get(o, key);
	*out = -1;
	if (json_is_array(v)) {
		if (json_array_size(v) == 0)
			return 0;
		json_t *first = json_array_get(v, 0);
		if (!json_is_integer(first) || json_integer_value(first) < 0 ||
		    json_integer_value(first) > INT_MAX)
			return qp_err_set(err, QP_ECORRUPT, "%s: '%s'[0] must be a token id", name, key);
		*out = (int)json_integer_value(first);
		return 0;
	}
	return get_int(o, key, out, -1, false, 0, name, err);
}

/* An optional number of object o (key at path "where.key" for messages):
 * absent or null leaves *out as it is. */
static int opt_num(const json_t *o, const char *where, const char *key, double *out,
                   const char *name, struct qp_err *err)
{
	json_t *v = json_object_get(o, key);
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_number(v) || !isfinite(json_number_value(v)))
		return qp_err_set(err, QP_ECORRUPT, "%s: '%s%s' must be a number", name, where, key);
	*out = json_number_value(v);
	return 0;
}

/* rope_parameters (transformers 5) or rope_scaling (older): one object for
 * every layer. transformers 5 also allows one object per attention kind;
 * then that of full attention is read, as for rope_theta. */
static int read_rope_scaling(struct qp_hf_config *c, const json_t *o, const char *name,
                             struct qp_err *err)
{
	int rc;
	snprintf(c->rope_type, sizeof(c->rope_type), "default");
	c->rope_truncate = true;
	c->partial_rotary_factor = 1.0;
	const char *where = "rope_parameters.";
	json_t *rp = json_object_get(o, "rope_parameters");
	if (json_is_object(rp) && !json_object_get(rp, "rope_type") &&
	    json_is_object(json_object_get(rp, "full_attention"))) {
		rp = json_object_get(rp, "full_attention");
		where = "rope_parameters.full_attention.";
	}
	if (!json_is_object(rp)) {
		if (rp && !json_is_null(rp))
			return qp_err_set(err, QP_ECORRUPT, "%s: 'rope_parameters' must be an object", name);
		rp = json_object_get(o, "rope_scaling");
		where = "rope_scaling.";
		if (rp && !json_is_null(rp) && !json_is_object(rp))
			return qp_err_set(err, QP_ECORRUPT, "%s: 'rope_scaling' must be an object or null", name);
	}
	double omax = 0, sw = 0;
	if ((rc = opt_num(o, "", "partial_rotary_factor", &c->partial_rotary_factor, name, err)) ||
	    (rc = opt_num(o, "", "original_max_position_embeddings", &omax, name, err)) ||
	    (rc = opt_num(o, "", "sliding_window", &sw, name, err)))
		return rc;
	if (json_is_object(rp)) {
		const char *tkey = json_object_get(rp, "rope_type") ? "rope_type" : "type";
		json_t *t = json_object_get(rp, tkey);
		if (t && !json_is_null(t) &&
		    (rc = get_str(rp, tkey, c->rope_type, sizeof(c->rope_type), name, err)))
			return rc;
		if (!c->rope_type[0])
			snprintf(c->rope_type, sizeof(c->rope_type), "default");
		double rmax = 0;
		if ((rc = opt_num(rp, where, "factor", &c->rope_factor, name, err)) ||
		    (rc = opt_num(rp, where, "low_freq_factor", &c->rope_low_freq_factor, name, err)) ||
		    (rc = opt_num(rp, where, "high_freq_factor", &c->rope_high_freq_factor, name, err)) ||
		    (rc = opt_num(rp, where, "beta_fast", &c->rope_beta_fast, name, err)) ||
		    (rc = opt_num(rp, where, "beta_slow", &c->rope_beta_slow, name, err)) ||
		    (rc = opt_num(rp, where, "attention_factor", &c->rope_attention_factor, name, err)) ||
		    (rc = opt_num(rp, where, "mscale", &c->rope_mscale, name, err)) ||
		    (rc = opt_num(rp, where, "mscale_all_dim", &c->rope_mscale_all_dim, name, err)) ||
		    (rc = opt_num(rp, where, "partial_rotary_factor", &c->partial_rotary_factor, name, err)) ||
		    (rc = opt_num(rp, where, "original_max_position_embeddings", &rmax, name, err)) ||
		    (rc = get_bool(rp, "truncate", &c->rope_truncate, true, name, err)))
			return rc;
		if (!omax)
			omax = rmax;
	}
	if (omax < 0 || omax > INT_MAX || omax != floor(omax) || sw < 0 || sw > INT_MAX || sw != floor(sw))
		return qp_err_set(err, QP_ECORRUPT,
		                  "%s: original_max_position_embeddings and sliding_window must be integers "
		                  "from 0 to %d", name, INT_MAX);
	c->rope_original_max_position_embeddings = (int)omax;
	c->sliding_window = (int)sw;
	return 0;
}

static int read_config(struct qp_hf_config *c, const json_t *o, const char *name,
                       struct qp_err *err)
{
	int rc;
	memset(c, 0, sizeof(*c));

	json_t *arch = json_object_get(o, "architectures");
	if (arch && !json_is_null(arch)) {
		if (!json_is_array(arch) ||
		    (json_array_size(arch) > 0 && !json_is_string(json_array_get(arch, 0))))
			return qp_err_set(err, QP_ECORRUPT, "%s: 'architectures' must be a list of strings",
			                  name);
		json_t *a0 = json_array_get(arch, 0);
		if (a0) {
			size_t n = json_string_length(a0);
			if (n >= sizeof(c->architecture) || strlen(json_string_value(a0)) != n)
				return qp_err_set(err, QP_ECORRUPT,
				                  "%s: 'architectures'[0] is longer than %zu bytes", name,
				                  sizeof(c->architecture) - 1);
			memcpy(c->architecture, json_string_value(a0), n + 1);
		}
	}
	json_t *mt = json_object_get(o, "model_type");
	if (!mt || json_is_null(mt))
		return qp_err_set(err, QP_ECORRUPT, "%s: required key 'model_type' is missing", name);
	if ((rc = get_str(o, "model_type", c->model_type, sizeof(c->model_type), name, err)))
		return rc;
	/* transformers 5 writes "dtype"; older versions "torch_dtype". */
	const char *dkey = json_is_string(json_object_get(o, "dtype")) ? "dtype" : "torch_dtype";
	if ((rc = get_str(o, dkey, c->torch_dtype, sizeof(c->torch_dtype), name, err)))
		return rc;

	if ((rc = get_int(o, "hidden_size", &c->hidden_size, 0, true, 1, name, err)) ||
	    (rc = get_int(o, "intermediate_size", &c->intermediate_size, 0, true, 1, name, err)) ||
	    (rc = get_int(o, "num_hidden_layers", &c->num_hidden_layers, 0, true, 1, name, err)) ||
	    (rc = get_int(o, "num_attention_heads", &c->num_attention_heads, 0, true, 1, name,
	                  err)) ||
	    (rc = get_int(o, "vocab_size", &c->vocab_size, 0, true, 1, name, err)))
		return rc;
	if ((rc = get_int(o, "num_key_value_heads", &c->num_key_value_heads,
	                  c->num_attention_heads, false, 1, name, err)) ||
	    (rc = get_int(o, "head_dim", &c->head_dim, c->hidden_size / c->num_attention_heads,
	                  false, 1, name, err)) ||
	    (rc = get_int(o, "max_position_embeddings", &c->max_position_embeddings, 2048, false, 1,
	                  name, err)))
		return rc;
	if (c->head_dim == 0)
		return qp_err_set(err, QP_ECORRUPT,
		                  "%s: 'hidden_size' %d is smaller than 'num_attention_heads' %d", name,
		                  c->hidden_size, c->num_attention_heads);

	c->rms_norm_eps = 1e-6;
	if (json_object_get(o, "rms_norm_eps") &&
	    (rc = get_num(o, "rms_norm_eps", &c->rms_norm_eps, name, err)))
		return rc;

	/* rope_theta, or transformers 5's rope_parameters.rope_theta, or, for
	 * models with several attention kinds, that of full attention. */
	c->rope_theta = 10000.0;
	json_t *rp = json_object_get(o, "rope_parameters");
	const char *rkey = "rope_parameters.rope_theta";
	if (json_is_object(rp) && !json_object_get(rp, "rope_theta") &&
	    json_is_object(json_object_get(rp, "full_attention"))) {
		rp = json_object_get(rp, "full_attention");
		rkey = "rope_parameters.full_attention.rope_theta";
	}
	if (json_object_get(o, "rope_theta")) {
		if ((rc = get_num(o, "rope_theta", &c->rope_theta, name, err)))
			return rc;
	} else if (json_is_object(rp) && json_object_get(rp, "rope_theta")) {
		json_t *v = json_object_get(rp, "rope_theta");
		if (!json_is_number(v) || !isfinite(json_number_value(v)) || json_number_value(v) <= 0)
			return qp_err_set(err, QP_ECORRUPT, "%s: '%s' must be a positive number", name,
			                  rkey);
		c->rope_theta = json_number_value(v);
	}

	if ((rc = read_rope_scaling(c, o, name, err)) ||
	    (rc = get_str(o, "hidden_act", c->hidden_act, sizeof(c->hidden_act), name, err)))
		return rc;
	if (!c->hidden_act[0])
		snprintf(c->hidden_act, sizeof(c->hidden_act), "silu");

	if ((rc = get_bool(o, "tie_word_embeddings", &c->tie_word_embeddings, false, name, err)) ||
	    (rc = get_token_id(o, "bos_token_id", &c->bos_token_id, name, err)) ||
	    (rc = get_token_id(o, "eos_token_id", &c->eos_token_id, name, err)))
		return rc;
	return 0;
}

int qp_hf_config_parse(struct qp_hf_config *out, const void *data, size_t len, const char *name,
                       struct qp_err *err)
{
	json_t *root;
	int rc = load(&root, data, len, name, err);
	if (rc)
		return rc;
	rc = read_config(out, root, name, err);
	json_decref(root);
	return rc;
}

int qp_hf_config_read(struct qp_hf_config *out, const char *path, struct qp_err *err)
{
	char *text;
	size_t len;
	int rc = qp_os_read_file(&text, &len, path, HF_JSON_MAX, err);
	if (rc)
		return rc;
	rc = qp_hf_config_parse(out, text, len, path, err);
	free(text);
	return rc;
}

int qp_hf_tokenizer_config_parse(struct qp_hf_tokenizer_config *out, const void *data,
                                 size_t len, const char *name, struct qp_err *err)
{
	json_t *root;
	int rc = load(&root, data, len, name, err);
	if (rc)
		return rc;
	if (!(rc = get_bool(root, "add_bos_token", &out->add_bos_token, true, name, err)))
		rc = get_bool(root, "add_eos_token", &out->add_eos_token, false, name, err);
	json_decref(root);
	return rc;
}

int qp_hf_tokenizer_config_read(struct qp_hf_tokenizer_config *out, const char *path,
                                struct qp_err *err)
{
	char *text;
	size_t len;
	int rc = qp_os_read_file(&text, &len, path, HF_JSON_MAX, err);
	if (rc)
		return rc;
	rc = qp_hf_tokenizer_config_parse(out, text, len, path, err);
	free(text);
	return rc;
}
