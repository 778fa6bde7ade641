/* formats/llamanames: Hugging Face and llama.cpp names of every Llama
 * tensor, both ways, and names that are no Llama tensor refused. */
#include "formats/llamanames.h"
#include "tf.h"

static void llamanames__map_both_ways(void)
{
	static const char *const pairs[][2] = {
		{"model.embed_tokens.weight", "token_embd.weight"},
		{"model.norm.weight", "output_norm.weight"},
		{"lm_head.weight", "output.weight"},
		{"model.layers.0.input_layernorm.weight", "blk.0.attn_norm.weight"},
		{"model.layers.3.self_attn.q_proj.weight", "blk.3.attn_q.weight"},
		{"model.layers.12.self_attn.k_proj.weight", "blk.12.attn_k.weight"},
		{"model.layers.4.self_attn.v_proj.weight", "blk.4.attn_v.weight"},
		{"model.layers.5.self_attn.o_proj.weight", "blk.5.attn_output.weight"},
		{"model.layers.6.post_attention_layernorm.weight", "blk.6.ffn_norm.weight"},
		{"model.layers.7.mlp.gate_proj.weight", "blk.7.ffn_gate.weight"},
		{"model.layers.8.mlp.up_proj.weight", "blk.8.ffn_up.weight"},
		{"model.layers.99.mlp.down_proj.weight", "blk.99.ffn_down.weight"},
	};
	char buf[128];
	for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
		CHECK_EQ_INT(qp_llamanames_to_gguf(pairs[i][0], buf, sizeof(buf)), 0);
		CHECK_EQ_STR(buf, pairs[i][1]);
		CHECK_EQ_INT(qp_llamanames_to_hf(pairs[i][1], buf, sizeof(buf)), 0);
		CHECK_EQ_STR(buf, pairs[i][0]);
	}
}

static void llamanames__refuse_other_names_and_short_buffers(void)
{
	static const char *const bad[] = {
		"", "model.layers.x.mlp.up_proj.weight", "model.layers.1.mlp.up_proj", "model.layers..mlp.up_proj.weight",
		"model.layers.01.mlp.up_proj.weight", "model.layers.1.mlp.up_proj.weight.in_sum2",
		"blk.1.attn_q.bias", "blk.-1.attn_q.weight", "blk.1234567890.attn_q.weight", "output.weight2",
	};
	char buf[128];
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CHECK_EQ_INT(qp_llamanames_to_gguf(bad[i], buf, sizeof(buf)), -1);
		CHECK_EQ_INT(qp_llamanames_to_hf(bad[i], buf, sizeof(buf)), -1);
	}
	char small[20];
	CHECK_EQ_INT(qp_llamanames_to_gguf("model.layers.10.mlp.up_proj.weight", small, sizeof(small)), -1);
	CHECK_EQ_INT(qp_llamanames_to_gguf("model.layers.1.mlp.up_proj.weight", small, sizeof(small)), 0);
	CHECK_EQ_STR(small, "blk.1.ffn_up.weight");
	CHECK_EQ_INT(qp_llamanames_to_hf("token_embd.weight", small, sizeof(small)), -1);
}

int main(int argc, char **argv)
{
	static const struct tf_test tests[] = {
		TF_TEST(llamanames__map_both_ways),
		TF_TEST(llamanames__refuse_other_names_and_short_buffers),
	};
	return tf_main(argc, argv, tests, sizeof(tests) / sizeof(tests[0]));
}
