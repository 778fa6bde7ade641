/* model/tokenizer: pinned ids on both shared tokenizer.model files (values
 * from the sentencepiece package), the same ids through a GGUF file's
 * tokenizer.ggml.* keys, merge order on a hand-made vocabulary, byte
 * fallback of invalid UTF-8, decode, and refusals. */
#include "formats/gguf.h"
#include "formats/spm.h"
#include "model/tokenizer.h"
#include "../formats/tf.h"

static struct qp_err err;

static struct qp_tokenizer *load_dir(const char *model)
{
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s", tf_shared(model));
	struct qp_tokenizer *t = NULL;
	if (qp_tokenizer_from_dir(&t, dir, &err) != 0)
		fprintf(stderr, "    %s\n", err.msg);
	return t;
}

static int same_ids(const struct qp_tokenizer *t, const char *text, bool special,
                    const int32_t *want, size_t n_want)
{
	int32_t *ids;
	size_t n;
	if (qp_tokenizer_encode(t, text, strlen(text), special, &ids, &n, &err) != 0)
		return 0;
	int ok = n == n_want && (n == 0 || memcmp(ids, want, n * sizeof(int32_t)) == 0);
	if (!ok) {
		fprintf(stderr, "    '%s':", text);
		for (size_t i = 0; i < n; i++)
			fprintf(stderr, " %d", ids[i]);
		fputc('\n', stderr);
	}
	free(ids);
	return ok;
}

#define N(a) (sizeof(a) / sizeof((a)[0]))

static void tokenizer__stories260k_ids_equal_sentencepiece(void)
{
	struct qp_tokenizer *t = load_dir("data/models/stories260K");
	CHECK(t);
	static const int32_t once[] = {1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426};
	static const int32_t tab[] = {291, 409, 285, 416, 411, 421, 300, 419, 12, 479, 477, 479, 484, 268, 425, 428, 419, 13};
	static const int32_t uni[] = {270, 485, 306, 414, 410, 243, 162, 155, 131, 410, 231, 187, 153, 234, 152, 143};
	/* remove_extra_whitespaces is on in tok512: leading, trailing and
	 * repeated spaces go, as sentencepiece drops them */
	static const int32_t spaces[] = {261, 268};
	CHECK(same_ids(t, "Once upon a time, there was a little girl named Lily.", true, once, N(once)));
	CHECK(same_ids(t, "The kernel  has\t2024 bugs\n", false, tab, N(tab)));
	CHECK(same_ids(t, "h\xc3\xa9llo \xf0\x9f\x98\x80 \xe4\xb8\x96\xe7\x95\x8c", false, uni, N(uni)));
	CHECK(same_ids(t, "  a  b  ", false, spaces, N(spaces)));
	CHECK(same_ids(t, "", false, NULL, 0));
	static const int32_t bos[] = {1};
	CHECK(same_ids(t, "", true, bos, 1));
	qp_tokenizer_free(t);
}

static void tokenizer__llama_docs_ids_equal_sentencepiece(void)
{
	struct qp_tokenizer *t = load_dir("data/models/llama-docs-27m");
	CHECK(t);
	static const int32_t tab[] = {388, 556, 259, 5081, 12, 6008, 5995, 6008, 6020, 5477, 13};
	static const int32_t spaces[] = {259, 266, 259, 5985, 259};
	CHECK(same_ids(t, "The kernel  has\t2024 bugs\n", false, tab, N(tab)));
	CHECK(same_ids(t, "  a  b  ", false, spaces, N(spaces)));
	qp_tokenizer_free(t);
}

/* A vocabulary where "ab" outranks "bc": "abc" must become ab + c, and
 * with equal scores the leftmost pair wins. */
static struct qp_tokenizer *tiny(float s_ab, float s_bc)
{
	static char p[8][16] = {"<unk>", "<s>", "</s>", "a", "b", "c", "ab", "bc"};
	struct qp_spm_piece pieces[8 + 256];
	char bytes[256][8];
	int n = 0;
	for (int i = 0; i < 8; i++)
		pieces[n++] = (struct qp_spm_piece){p[i], i >= 6 ? (i == 6 ? s_ab : s_bc) : -10.0f,
		                                    i == 0 ? QP_SPM_UNKNOWN : i < 3 ? QP_SPM_CONTROL : QP_SPM_NORMAL};
	for (int b = 0; b < 256; b++) {
		snprintf(bytes[b], sizeof(bytes[b]), "<0x%02X>", b);
		pieces[n++] = (struct qp_spm_piece){bytes[b], 0.0f, QP_SPM_BYTE};
	}
	struct qp_spm spm = {.n_pieces = (size_t)n, .pieces = pieces, .model_type = 2,
	                     .byte_fallback = true, .add_dummy_prefix = false,
	                     .unk_id = 0, .bos_id = 1, .eos_id = 2, .pad_id = -1};
	struct qp_tokenizer_rules rules = {.add_bos = true, .add_eos = true};
	struct qp_tokenizer *t = NULL;
	if (qp_tokenizer_from_spm(&t, &spm, &rules, &err) != 0)
		fprintf(stderr, "    %s\n", err.msg);
	return t;
}

static void tokenizer__merges_by_score_then_leftmost(void)
{
	struct qp_tokenizer *t = tiny(-1.0f, -2.0f);
	CHECK(t);
	static const int32_t ab_c[] = {6, 5};
	CHECK(same_ids(t, "abc", false, ab_c, 2));
	qp_tokenizer_free(t);
	t = tiny(-2.0f, -1.0f);
	CHECK(t);
	static const int32_t a_bc[] = {3, 7};
	CHECK(same_ids(t, "abc", false, a_bc, 2));
	qp_tokenizer_free(t);
	t = tiny(-1.0f, -1.0f);
	CHECK(t);
	CHECK(same_ids(t, "abc", false, ab_c, 2));
	static const int32_t special[] = {1, 6, 2};
	CHECK(same_ids(t, "ab", true, special, 3));
	qp_tokenizer_free(t);
}

static void tokenizer__invalid_utf8_falls_back_to_bytes_and_round_trips(void)
{
	struct qp_tokenizer *t = tiny(-1.0f, -2.0f);
	CHECK(t);
	/* 0xC3 claims two bytes: it swallows the 'a' as llama.cpp does */
	static const int32_t want[] = {0xC3 + 8, 'a' + 8, 6, 0xFF + 8};
	CHECK(same_ids(t, "\xc3" "aab\xff", false, want, N(want)));
	char *text;
	size_t len;
	CHECK_OK(qp_tokenizer_decode(t, want, N(want), &text, &len, &err));
	CHECK_EQ_INT(len, 5);
	CHECK(memcmp(text, "\xc3" "aab\xff", 5) == 0);
	free(text);
	qp_tokenizer_free(t);
}

static void tokenizer__decode_drops_control_and_dummy_prefix(void)
{
	struct qp_tokenizer *t = load_dir("data/models/stories260K");
	CHECK(t);
	int32_t *ids;
	size_t n;
	const char *s = "Once upon a time, there was a little girl named Lily.";
	CHECK_OK(qp_tokenizer_encode(t, s, strlen(s), true, &ids, &n, &err));
	char *text;
	size_t len;
	CHECK_OK(qp_tokenizer_decode(t, ids, n, &text, &len, &err));
	CHECK_EQ_STR(text, s);
	free(text);
	ids[1] = 99999;
	CHECK_ERR(qp_tokenizer_decode(t, ids, n, &text, &len, &err), QP_EINVAL,
	          "token 1: id 99999 is out of range (512 pieces)");
	free(ids);
	qp_tokenizer_free(t);
}

/* The GGUF keys export.gguf writes give the ids of tokenizer.model (less
 * its remove_extra_whitespaces, which GGUF cannot say: llama.cpp keeps
 * every space). */
static void tokenizer__gguf_keys_give_the_ids_of_tokenizer_model(void)
{
	struct qp_spm *spm;
	char path[4096];
	snprintf(path, sizeof(path), "%s", tf_shared("data/models/llama-docs-27m/tokenizer.model"));
	CHECK_OK(qp_spm_read(&spm, path, &err));
	struct qp_gguf_writer *w;
	CHECK_OK(qp_gguf_writer_new(&w, &err));
	size_t n = spm->n_pieces;
	const char **tok = calloc(n, sizeof(char *));
	float *sc = calloc(n, sizeof(float));
	int32_t *ty = calloc(n, sizeof(int32_t));
	for (size_t i = 0; i < n; i++) {
		tok[i] = spm->pieces[i].piece;
		sc[i] = spm->pieces[i].score;
		ty[i] = spm->pieces[i].type;
	}
	CHECK_OK(qp_gguf_set_str(w, "tokenizer.ggml.model", "llama", &err));
	CHECK_OK(qp_gguf_set_arr_str(w, "tokenizer.ggml.tokens", tok, n, &err));
	CHECK_OK(qp_gguf_set_arr(w, "tokenizer.ggml.scores", QP_GGUF_FLOAT32, sc, n, &err));
	CHECK_OK(qp_gguf_set_arr(w, "tokenizer.ggml.token_type", QP_GGUF_INT32, ty, n, &err));
	CHECK_OK(qp_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", 1, &err));
	CHECK_OK(qp_gguf_set_bool(w, "tokenizer.ggml.add_bos_token", true, &err));
	char gpath[4096];
	tf_path(gpath, sizeof(gpath), "tok.gguf");
	CHECK_OK(qp_gguf_writer_write(w, gpath, &err));
	qp_gguf_writer_free(w);
	free(tok);
	free(sc);
	free(ty);
	qp_spm_free(spm);
	struct qp_gguf_file *f;
	CHECK_OK(qp_gguf_open(&f, gpath, &err));
	struct qp_tokenizer *t;
	CHECK_OK(qp_tokenizer_from_gguf(&t, f, &err));
	qp_gguf_close(f);
	static const int32_t tab[] = {1, 388, 556, 259, 5081, 12, 6008, 5995, 6008, 6020, 5477, 13};
	CHECK(same_ids(t, "The kernel  has\t2024 bugs\n", true, tab, N(tab)));
	CHECK_EQ_INT(qp_tokenizer_n_vocab(t), 8192);
	CHECK_EQ_INT(qp_tokenizer_bos(t), 1);
	qp_tokenizer_free(t);
}

static void tokenizer__refuses_other_gguf_tokenizers_naming_the_supported(void)
{
	struct qp_gguf_writer *w;
	CHECK_OK(qp_gguf_writer_new(&w, &err));
	CHECK_OK(qp_gguf_set_str(w, "tokenizer.ggml.model", "gpt2", &err));
	char gpath[4096];
	tf_path(gpath, sizeof(gpath), "gpt2.gguf");
	CHECK_OK(qp_gguf_writer_write(w, gpath, &err));
	qp_gguf_writer_free(w);
	struct qp_gguf_file *f;
	CHECK_OK(qp_gguf_open(&f, gpath, &err));
	struct qp_tokenizer *t;
	CHECK_ERR(qp_tokenizer_from_gguf(&t, f, &err), QP_EINVAL,
	          "gguf: tokenizer.ggml.model 'gpt2' is not supported (supported: llama)");
	qp_gguf_close(f);
	CHECK(t == NULL);
}

int main(int argc, char **argv)
{
	static const struct tf_test tests[] = {
		TF_TEST(tokenizer__stories260k_ids_equal_sentencepiece),
		TF_TEST(tokenizer__llama_docs_ids_equal_sentencepiece),
		TF_TEST(tokenizer__merges_by_score_then_leftmost),
		TF_TEST(tokenizer__invalid_utf8_falls_back_to_bytes_and_round_trips),
		TF_TEST(tokenizer__decode_drops_control_and_dummy_prefix),
		TF_TEST(tokenizer__gguf_keys_give_the_ids_of_tokenizer_model),
		TF_TEST(tokenizer__refuses_other_gguf_tokenizers_naming_the_supported),
	};
	return tf_main(argc, argv, tests, sizeof(tests) / sizeof(tests[0]));
}
