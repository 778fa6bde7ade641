/* formats/hfconfig: the shared models' config.json and
 * tokenizer_config.json, both spellings of moved keys, and errors that name
 * the file and the key. */
#include <math.h>

#include "formats/hfconfig.h"
#include "tf.h"

static struct qp_err err;

static int cfg(struct qp_hf_config *c, const char *json)
{
	return qp_hf_config_parse(c, json, strlen(json), "config.json", &err);
}

#define BASE                                                                              \
	"\"model_type\": \"llama\", \"hidden_size\": 64, \"intermediate_size\": 172, "           \
	"\"num_hidden_layers\": 5, \"num_attention_heads\": 8, \"vocab_size\": 512"

static void hfconfig__reads_stories260k(void)
{
	struct qp_hf_config c;
	CHECK_OK(qp_hf_config_read(&c, tf_shared("data/models/stories260K/config.json"), &err));
	CHECK_EQ_STR(c.architecture, "LlamaForCausalLM");
	CHECK_EQ_STR(c.model_type, "llama");
	CHECK_EQ_STR(c.torch_dtype, "float32");
	CHECK_EQ_INT(c.hidden_size, 64);
	CHECK_EQ_INT(c.intermediate_size, 172);
	CHECK_EQ_INT(c.num_hidden_layers, 5);
	CHECK_EQ_INT(c.num_attention_heads, 8);
	CHECK_EQ_INT(c.num_key_value_heads, 4);
	CHECK_EQ_INT(c.head_dim, 8);
	CHECK_EQ_INT(c.vocab_size, 512);
	CHECK_EQ_INT(c.max_position_embeddings, 512);
	CHECK(c.rms_norm_eps == 1e-5);
	CHECK(c.rope_theta == 10000.0);
	CHECK(c.tie_word_embeddings);
	CHECK_EQ_INT(c.bos_token_id, 1);
	CHECK_EQ_INT(c.eos_token_id, 2);
}

static void hfconfig__reads_llama_docs_27m(void)
{
	struct qp_hf_config c;
	CHECK_OK(qp_hf_config_read(&c, tf_shared("data/models/llama-docs-27m/config.json"), &err));
	CHECK_EQ_STR(c.architecture, "LlamaForCausalLM");
	CHECK_EQ_STR(c.torch_dtype, "float16");
	CHECK_EQ_INT(c.hidden_size, 512);
	CHECK_EQ_INT(c.intermediate_size, 1536);
	CHECK_EQ_INT(c.num_hidden_layers, 6);
	CHECK_EQ_INT(c.num_attention_heads, 8);
	CHECK_EQ_INT(c.num_key_value_heads, 4);
	CHECK_EQ_INT(c.head_dim, 64);
	CHECK_EQ_INT(c.vocab_size, 8192);
	CHECK_EQ_INT(c.max_position_embeddings, 1024);
	CHECK(c.rope_theta == 10000.0);
	CHECK(!c.tie_word_embeddings);
}

static void hfconfig__reads_both_tokenizer_configs(void)
{
	struct qp_hf_tokenizer_config t;
	CHECK_OK(qp_hf_tokenizer_config_read(
		&t, tf_shared("data/models/stories260K/tokenizer_config.json"), &err));
	CHECK(t.add_bos_token && !t.add_eos_token);
	CHECK_OK(qp_hf_tokenizer_config_read(
		&t, tf_shared("data/models/llama-docs-27m/tokenizer_config.json"), &err));
	CHECK(t.add_bos_token && !t.add_eos_token);
	const char *j = "{\"add_bos_token\": false, \"add_eos_token\": true}";
	CHECK_OK(qp_hf_tokenizer_config_parse(&t, j, strlen(j), "tokenizer_config.json", &err));
	CHECK(!t.add_bos_token && t.add_eos_token);
	j = "{\"add_bos_token\": null}";
	CHECK_OK(qp_hf_tokenizer_config_parse(&t, j, strlen(j), "tokenizer_config.json", &err));
	CHECK(t.add_bos_token && !t.add_eos_token);
	j = "{\"add_eos_token\": 1}";
	CHECK_ERR(qp_hf_tokenizer_config_parse(&t, j, strlen(j), "tokenizer_config.json", &err),
	          QP_ECORRUPT, "tokenizer_config.json: 'add_eos_token' must be true or false");
}

static void hfconfig__defaults_fill_optional_keys(void)
{
	struct qp_hf_config c;
	CHECK_OK(cfg(&c, "{" BASE "}"));
	CHECK_EQ_STR(c.architecture, "");
	CHECK_EQ_STR(c.torch_dtype, "");
	CHECK_EQ_INT(c.num_key_value_heads, 8);
	CHECK_EQ_INT(c.head_dim, 8);
	CHECK_EQ_INT(c.max_position_embeddings, 2048);
	CHECK(c.rms_norm_eps == 1e-6);
	CHECK(c.rope_theta == 10000.0);
	CHECK(!c.tie_word_embeddings);
	CHECK_EQ_INT(c.bos_token_id, -1);
	CHECK_EQ_INT(c.eos_token_id, -1);
	CHECK_OK(cfg(&c, "{" BASE ", \"num_key_value_heads\": null, \"head_dim\": null}"));
	CHECK_EQ_INT(c.num_key_value_heads, 8);
}

static void hfconfig__rope_theta_under_rope_parameters_and_eos_list(void)
{
	struct qp_hf_config c;
	CHECK_OK(cfg(&c, "{" BASE ", \"rope_parameters\": {\"rope_theta\": 500000.0, "
	                 "\"rope_type\": \"default\"}, \"eos_token_id\": [128001, 128008, 128009], "
	                 "\"bos_token_id\": null, \"dtype\": \"bfloat16\", \"torch_dtype\": \"x\"}"));
	CHECK(c.rope_theta == 500000.0);
	CHECK_EQ_INT(c.eos_token_id, 128001);
	CHECK_EQ_INT(c.bos_token_id, -1);
	CHECK_EQ_STR(c.torch_dtype, "bfloat16");
	CHECK_OK(cfg(&c, "{" BASE ", \"rope_theta\": 1000000, \"rope_parameters\": "
	                 "{\"rope_theta\": 5.0}}"));
	CHECK(c.rope_theta == 1000000.0);
	CHECK_OK(cfg(&c, "{" BASE ", \"rope_parameters\": {\"full_attention\": {\"rope_theta\": "
	                 "1000000.0}, \"sliding_attention\": {\"rope_theta\": 10000.0}}}"));
	CHECK(c.rope_theta == 1000000.0);
	CHECK_ERR(cfg(&c, "{" BASE ", \"rope_parameters\": {\"rope_theta\": -1}}"), QP_ECORRUPT,
	          "config.json: 'rope_parameters.rope_theta' must be a positive number");
}

static void hfconfig__errors_name_the_file_and_the_key(void)
{
	struct qp_hf_config c;
	CHECK_ERR(cfg(&c, "{\"model_type\": \"llama\", \"hidden_size\": 64}"), QP_ECORRUPT,
	          "config.json: required key 'intermediate_size' is missing");
	CHECK_ERR(cfg(&c, "{\"hidden_size\": 64}"), QP_ECORRUPT,
	          "config.json: required key 'model_type' is missing");
	CHECK_ERR(cfg(&c, "{" BASE ", \"num_key_value_heads\": \"4\"}"), QP_ECORRUPT,
	          "config.json: 'num_key_value_heads' must be an integer from 1 to 2147483647");
	CHECK_ERR(cfg(&c, "{\"model_type\": \"llama\", \"hidden_size\": -64}"), QP_ECORRUPT,
	          "config.json: 'hidden_size' must be an integer from 1 to 2147483647");
	CHECK_ERR(cfg(&c, "{" BASE ", \"rope_theta\": \"big\"}"), QP_ECORRUPT,
	          "config.json: 'rope_theta' must be a positive number");
	CHECK_ERR(cfg(&c, "{" BASE ", \"eos_token_id\": [\"x\"]}"), QP_ECORRUPT,
	          "config.json: 'eos_token_id'[0] must be a token id");
	CHECK_ERR(cfg(&c, "{" BASE ", \"architectures\": "
	                  "[\"AVeryLongArchitectureNameThatDoesNotFitInSixtyFourBytesAtAllReally\"]}"),
	          QP_ECORRUPT, "config.json: 'architectures'[0] is longer than 63 bytes");
	CHECK_ERR(cfg(&c, "{" BASE ",\n \"x\": }"), QP_ECORRUPT,
	          "config.json:2:7: unexpected token near '}'");
	CHECK_ERR(cfg(&c, "[1, 2]"), QP_ECORRUPT, "config.json: not a JSON object");
	CHECK_ERR(cfg(&c, "{\"a\": 1, \"a\": 2}"), QP_ECORRUPT,
	          "config.json:1:12: duplicate object key near '\"a\"'");
	char path[4096], want[8192];
	tf_path(path, sizeof(path), "missing.json");
	snprintf(want, sizeof(want), "%s: cannot open: No such file or directory", path);
	CHECK_ERR(qp_hf_config_read(&c, path, &err), QP_ENOTFOUND, want);
}

/* Deep nesting is bounded by the parser, not by our stack. */
static void hfconfig__deeply_nested_json_fails_cleanly(void)
{
	size_t n = 100000;
	char *j = malloc(2 * n + 8);
	j[0] = '{';
	memcpy(j + 1, "\"a\":", 4);
	size_t k = 5;
	for (size_t i = 0; i < n; i++)
		j[k++] = '[';
	for (size_t i = 0; i < n; i++)
		j[k++] = ']';
	struct qp_hf_config c;
	qp_err_clear(&err);
	int rc = qp_hf_config_parse(&c, j, k, "config.json", &err);
	free(j);
	CHECK_EQ_INT(rc, QP_ECORRUPT);
	CHECK(strstr(err.msg, "config.json:1:") == err.msg);
}

static void hfconfig__rope_scaling_from_either_object(void)
{
	struct qp_hf_config c;
	CHECK_OK(cfg(&c, "{" BASE "}"));
	CHECK_EQ_STR(c.rope_type, "default");
	CHECK_EQ_STR(c.hidden_act, "silu");
	CHECK(c.rope_factor == 0.0 && c.rope_truncate && c.partial_rotary_factor == 1.0);
	CHECK_EQ_INT(c.rope_original_max_position_embeddings, 0);
	CHECK_OK(cfg(&c, "{" BASE ", \"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0}}"));
	CHECK_EQ_STR(c.rope_type, "linear");
	CHECK(c.rope_factor == 2.0);
	/* transformers 5: rope_parameters wins over a leftover rope_scaling */
	CHECK_OK(cfg(&c, "{" BASE ", \"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0}, "
	                 "\"rope_parameters\": {\"rope_type\": \"llama3\", \"rope_theta\": 500000.0, "
	                 "\"factor\": 8.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, "
	                 "\"original_max_position_embeddings\": 8192}}"));
	CHECK_EQ_STR(c.rope_type, "llama3");
	CHECK(c.rope_factor == 8.0 && c.rope_low_freq_factor == 1.0 && c.rope_high_freq_factor == 4.0);
	CHECK(c.rope_theta == 500000.0);
	CHECK_EQ_INT(c.rope_original_max_position_embeddings, 8192);
	/* yarn's optional keys; the top-level pretraining length wins (Phi-3) */
	CHECK_OK(cfg(&c, "{" BASE ", \"original_max_position_embeddings\": 4096, \"sliding_window\": null, "
	                 "\"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4, \"beta_fast\": 16, "
	                 "\"mscale\": 0.7, \"mscale_all_dim\": 0.5, \"truncate\": false, "
	                 "\"original_max_position_embeddings\": 2048}}"));
	CHECK_EQ_STR(c.rope_type, "yarn");
	CHECK(c.rope_factor == 4.0 && c.rope_beta_fast == 16.0 && c.rope_beta_slow == 0.0);
	CHECK(c.rope_mscale == 0.7 && c.rope_mscale_all_dim == 0.5 && !c.rope_truncate);
	CHECK_EQ_INT(c.rope_original_max_position_embeddings, 4096);
	CHECK_EQ_INT(c.sliding_window, 0);
	CHECK_ERR(cfg(&c, "{" BASE ", \"rope_scaling\": {\"type\": \"linear\", \"factor\": \"2\"}}"),
	          QP_ECORRUPT, "config.json: 'rope_scaling.factor' must be a number");
	CHECK_ERR(cfg(&c, "{" BASE ", \"rope_scaling\": [1]}"), QP_ECORRUPT,
	          "config.json: 'rope_scaling' must be an object or null");
}

int main(int argc, char **argv)
{
	static const struct tf_test tests[] = {
		TF_TEST(hfconfig__reads_stories260k),
		TF_TEST(hfconfig__reads_llama_docs_27m),
		TF_TEST(hfconfig__reads_both_tokenizer_configs),
		TF_TEST(hfconfig__defaults_fill_optional_keys),
		TF_TEST(hfconfig__rope_theta_under_rope_parameters_and_eos_list),
		TF_TEST(hfconfig__errors_name_the_file_and_the_key),
		TF_TEST(hfconfig__rope_scaling_from_either_object),
		TF_TEST(hfconfig__deeply_nested_json_fails_cleanly),
	};
	return tf_main(argc, argv, tests, sizeof(tests) / sizeof(tests[0]));
}
