/* model/tokenizer_json: tokenizer.json files written by the test. Merge
 * order, both merges forms, invalid UTF-8 as U+FFFD then byte fallback,
 * the BOS/EOS rules of tokenizer_config.json against the template, decode,
 * and the messages for malformed or unsupported files (file and JSON path).
 * Ids against HF tokenizers itself: tests/model/test_tokenizer_json.py. */
#include "model/tokenizer.h"
#include "../formats/tf.h"

static struct qp_err err;

#define VOCAB                                                                            \
	"{\"<unk>\": 0, \"<s>\": 1, \"</s>\": 2, \"a\": 3, \"b\": 4, \"c\": 5, \"ab\": 6, " \
	"\"bc\": 7, \"abc\": 8, \"\\u2581\": 9, \"<0xEF>\": 10, \"<0xBF>\": 11, "          \
	"\"<0xBD>\": 12, \"<0xFF>\": 13, \"<0x20>\": 14}"
#define MERGES "[[\"a\", \"b\"], [\"b\", \"c\"], [\"ab\", \"c\"]]"
#define ADDED                                                                                  \
	"[{\"id\": 0, \"content\": \"<unk>\", \"special\": true, \"normalized\": false},"          \
	" {\"id\": 1, \"content\": \"<s>\", \"special\": true, \"normalized\": false},"            \
	" {\"id\": 2, \"content\": \"</s>\", \"special\": true, \"normalized\": false}]"
#define TEMPLATE                                                                        \
	"{\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"<s>\", " \
	"\"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}], "                 \
	"\"special_tokens\": {\"<s>\": {\"id\": \"<s>\", \"ids\": [1], \"tokens\": [\"<s>\"]}}}"
#define DECODER                                                                           \
	"{\"type\": \"Sequence\", \"decoders\": [{\"type\": \"Replace\", \"pattern\": "        \
	"{\"String\": \"\\u2581\"}, \"content\": \" \"}, {\"type\": \"ByteFallback\"}, "       \
	"{\"type\": \"Fuse\"}, {\"type\": \"Strip\", \"content\": \" \", \"start\": 1, \"stop\": 0}]}"

/* A tokenizer.json; each NULL argument takes the default above. */
static const char *tj(const char *type, const char *vocab, const char *merges, const char *added,
                      const char *norm, const char *pre, const char *post, const char *dec)
{
	static char buf[8192];
	snprintf(buf, sizeof(buf),
	         "{\"version\": \"1.0\", \"truncation\": null, \"padding\": null, \"added_tokens\": %s,"
	         " \"normalizer\": %s, \"pre_tokenizer\": %s, \"post_processor\": %s, \"decoder\": %s,"
	         " \"model\": {\"type\": \"%s\", \"dropout\": null, \"unk_token\": \"<unk>\","
	         " \"fuse_unk\": true, \"byte_fallback\": true, \"vocab\": %s, \"merges\": %s}}",
	         added ? added : ADDED, norm ? norm : "null", pre ? pre : "null",
	         post ? post : TEMPLATE, dec ? dec : DECODER, type ? type : "BPE",
	         vocab ? vocab : VOCAB, merges ? merges : MERGES);
	return buf;
}

static int load(struct qp_tokenizer **t, const char *json, const char *cfg)
{
	return qp_tokenizer_from_json_mem(t, json, strlen(json), "t.json", cfg, cfg ? strlen(cfg) : 0,
	                                  "tokenizer_config.json", &err);
}

static int same_ids(const struct qp_tokenizer *t, const char *text, size_t len, bool special,
                    const int32_t *want, size_t n_want)
{
	int32_t *ids;
	size_t n;
	if (qp_tokenizer_encode(t, text, len, special, &ids, &n, &err) != 0)
		return 0;
	int ok = n == n_want && (n == 0 || memcmp(ids, want, n * sizeof(int32_t)) == 0);
	if (!ok) {
		fprintf(stderr, "    '%.*s':", (int)len, text);
		for (size_t i = 0; i < n; i++)
			fprintf(stderr, " %d", ids[i]);
		fputc('\n', stderr);
	}
	free(ids);
	return ok;
}

#define SAME(t, s, special, ...)                                                       \
	do {                                                                               \
		static const int32_t want_[] = {__VA_ARGS__};                                  \
		CHECK(same_ids(t, s, sizeof(s) - 1, special, want_, sizeof(want_) / 4));       \
	} while (0)

static void tokjson__merges_lowest_rank_first_in_both_forms(void)
{
	struct qp_tokenizer *t;
	CHECK_OK(load(&t, tj(NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL), NULL));
	SAME(t, "abc", false, 8);
	SAME(t, "abc", true, 1, 8);
	SAME(t, "cab<s>bc", false, 5, 6, 1, 7);
	qp_tokenizer_free(t);
	/* bc outranks ab: a + bc, which no merge joins */
	CHECK_OK(load(&t, tj(NULL, NULL, "[\"b c\", \"a b\", \"ab c\"]", NULL, NULL, NULL, NULL, NULL),
	              NULL));
	SAME(t, "abc", false, 3, 7);
	qp_tokenizer_free(t);
}

static void tokjson__invalid_utf8_becomes_u_fffd_then_bytes(void)
{
	struct qp_tokenizer *t;
	CHECK_OK(load(&t, tj(NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL), NULL));
	/* 0xFF is not UTF-8: it becomes U+FFFD (EF BF BD), as Python's
	 * decode(errors="replace") gives HF, and not the byte token <0xFF> */
	SAME(t, "a\xff" "b", false, 3, 10, 11, 12, 4);
	/* "xy" are in neither the vocab nor the byte tokens: one fused unk */
	SAME(t, "axyb", false, 3, 0, 4);
	char *text;
	size_t len;
	/* decode: bytes that are not UTF-8 give one U+FFFD each, specials go */
	static const int32_t ids[] = {1, 9, 3, 13, 13, 4, 10, 11, 12, 2};
	CHECK_OK(qp_tokenizer_decode(t, ids, 10, &text, &len, &err));
	CHECK_EQ_STR(text, "a\xef\xbf\xbd\xef\xbf\xbd" "b\xef\xbf\xbd");
	free(text);
	static const int32_t bad[] = {3, 15};
	CHECK_ERR(qp_tokenizer_decode(t, bad, 2, &text, &len, &err), QP_EINVAL,
	          "token 1: id 15 is out of range (15 ids)");
	qp_tokenizer_free(t);
}

static void tokjson__config_sides_override_the_template(void)
{
	struct qp_tokenizer *t;
	const char *json = tj(NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
	CHECK_OK(load(&t, json, "{\"eos_token\": \"</s>\"}")); /* silent: the template */
	SAME(t, "ab", true, 1, 6);
	CHECK_EQ_INT(qp_tokenizer_bos(t), 1);
	CHECK_EQ_INT(qp_tokenizer_eos(t), 2);
	qp_tokenizer_free(t);
	CHECK_OK(load(&t, json, "{\"add_bos_token\": false, \"add_eos_token\": true, \"eos_token\": "
	                        "{\"content\": \"</s>\"}}"));
	SAME(t, "ab", true, 6, 2);
	SAME(t, "ab", false, 6);
	qp_tokenizer_free(t);
	CHECK_ERR(load(&t, json, "{\"add_eos_token\": true}"), QP_ECORRUPT,
	          "tokenizer_config.json: add_eos_token: is true but no eos_token is named");
	CHECK_ERR(load(&t, json, "{\"add_bos_token\": \"yes\"}"), QP_ECORRUPT,
	          "tokenizer_config.json: add_bos_token: expected true or false");
	CHECK_ERR(load(&t, json, "{\"bos_token\": \"<bos>\"}"), QP_ECORRUPT,
	          "tokenizer_config.json: bos_token: \"<bos>\" is neither an added token nor in the "
	          "vocabulary");
}

/* Each malformed or unsupported element is named by its JSON path. */
static void tokjson__errors_name_the_json_path(void)
{
	struct qp_tokenizer *t = NULL;
	CHECK_ERR(load(&t, tj(NULL, NULL, "[\"a b\", 12]", NULL, NULL, NULL, NULL, NULL), NULL),
	          QP_ECORRUPT, "t.json: model.merges[1]: expected a string \"a b\" or a pair");
	CHECK_ERR(load(&t, tj(NULL, NULL, "[\"ab\"]", NULL, NULL, NULL, NULL, NULL), NULL),
	          QP_ECORRUPT, "t.json: model.merges[0]: expected a string \"a b\" or a pair");
	CHECK_ERR(load(&t, tj(NULL, NULL, "[[\"a\", \"b\", \"c\"]]", NULL, NULL, NULL, NULL, NULL), NULL),
	          QP_ECORRUPT, "t.json: model.merges[0]: expected a string \"a b\" or a pair");
	CHECK_ERR(load(&t, tj(NULL, NULL, "[[\"a\", \"q\"]]", NULL, NULL, NULL, NULL, NULL), NULL),
	          QP_ECORRUPT, "t.json: model.merges[0]: \"q\" is not in model.vocab");
	CHECK_ERR(load(&t, tj(NULL, NULL, "[[\"c\", \"a\"]]", NULL, NULL, NULL, NULL, NULL), NULL),
	          QP_ECORRUPT, "t.json: model.merges[0]: \"ca\" is not in model.vocab");
	CHECK_ERR(load(&t, tj("Unigram", NULL, NULL, NULL, NULL, NULL, NULL, NULL), NULL), QP_EINVAL,
	          "t.json: model.type: \"Unigram\" is not supported (supported: BPE)");
	CHECK_ERR(load(&t, tj("WordPiece", NULL, NULL, NULL, NULL, NULL, NULL, NULL), NULL), QP_EINVAL,
	          "t.json: model.type: \"WordPiece\" is not supported (supported: BPE)");
	CHECK_ERR(load(&t, tj(NULL, "{\"a\": -1}", NULL, NULL, NULL, NULL, NULL, NULL), NULL),
	          QP_ECORRUPT, "t.json: model.vocab[\"a\"]: expected an id from 0 to 16777215");
	CHECK_ERR(load(&t, tj(NULL, "{\"a\": 0, \"b\": 0}", "[]", "[]", NULL, NULL, "null", NULL), NULL),
	          QP_ECORRUPT, "t.json: model.vocab[\"b\"]: id 0 is already given to \"a\"");
	CHECK_ERR(load(&t, tj(NULL, NULL, NULL, "[{\"id\": 1}]", NULL, NULL, NULL, NULL), NULL),
	          QP_ECORRUPT, "t.json: added_tokens[0].content: is missing");
	CHECK_ERR(load(&t, tj(NULL, NULL, NULL, NULL,
	                      "{\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"Prepend\", "
	                      "\"prepend\": \"x\"}, {\"type\": \"NFKC\"}]}",
	                      NULL, NULL, NULL),
	               NULL),
	          QP_EINVAL, "t.json: normalizer.normalizers[1].type: normalizer \"NFKC\" is not "
	                     "supported (supported: Sequence, Prepend, Replace, NFC)");
	CHECK_ERR(load(&t, tj(NULL, NULL, NULL, NULL,
	                      "{\"type\": \"Replace\", \"pattern\": {\"Regex\": \" {2,}\"}, "
	                      "\"content\": \" \"}",
	                      NULL, NULL, NULL),
	               NULL),
	          QP_EINVAL, "t.json: normalizer.pattern.Regex: regex pattern \" {2,}\" is not "
	                     "supported (string patterns only)");
	CHECK_ERR(load(&t, tj(NULL, NULL, NULL, NULL, NULL,
	                      "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", "
	                      "\"pattern\": {\"Regex\": \"\\\\w+\"}, \"behavior\": \"Isolated\", "
	                      "\"invert\": false}]}",
	                      NULL, NULL),
	               NULL),
	          QP_EINVAL, "t.json: pre_tokenizer.pretokenizers[0].pattern.Regex: regex \"\\w+\" is "
	                     "not supported (known: the GPT-2, Llama-3 and Qwen2 patterns)");
	CHECK_ERR(load(&t, tj(NULL, NULL, NULL, NULL, NULL, "{\"type\": \"Whitespace\"}", NULL, NULL),
	               NULL),
	          QP_EINVAL, "t.json: pre_tokenizer.type: pre-tokenizer \"Whitespace\" is not supported "
	                     "(supported: Sequence, Metaspace, ByteLevel, Split, Digits)");
	CHECK_ERR(load(&t, tj(NULL, NULL, NULL, NULL, NULL,
	                      "{\"type\": \"Metaspace\", \"replacement\": \"ab\"}", NULL, NULL),
	               NULL),
	          QP_ECORRUPT, "t.json: pre_tokenizer.replacement: expected a single character");
	/* the pre-0.14 form; the fuzzer found the flag read before the check */
	CHECK_ERR(load(&t, tj(NULL, NULL, NULL, NULL, NULL,
	                      "{\"type\": \"Metaspace\", \"replacement\": \"_\", "
	                      "\"add_prefix_space\": 1}", NULL, NULL),
	               NULL),
	          QP_ECORRUPT, "t.json: pre_tokenizer.add_prefix_space: expected true or false");
	CHECK_ERR(load(&t, tj(NULL, NULL, NULL, NULL, NULL, NULL, NULL,
	                      "{\"type\": \"Sequence\", \"decoders\": [{\"type\": \"Fuse\"}, "
	                      "{\"type\": \"WordPiece\"}]}"),
	               NULL),
	          QP_EINVAL, "t.json: decoder.decoders[1].type: decoder \"WordPiece\" is not supported "
	                     "(supported: Sequence, Replace, ByteFallback, Fuse, Strip, ByteLevel, "
	                     "Metaspace)");
	CHECK_ERR(load(&t, tj(NULL, NULL, NULL, NULL, NULL, NULL,
	                      "{\"type\": \"RobertaProcessing\"}", NULL),
	               NULL),
	          QP_EINVAL, "t.json: post_processor.type: post-processor \"RobertaProcessing\" is not "
	                     "supported (supported: Sequence, ByteLevel, TemplateProcessing)");
	CHECK_ERR(load(&t, "[1, 2]", NULL), QP_ECORRUPT, "t.json: not a JSON object");
	CHECK_ERR(load(&t, "{\"model\": ", NULL), QP_ECORRUPT,
	          "t.json:1:10: unexpected token near end of file");
	CHECK(t == NULL);
}

/* qp_tokenizer_from_dir prefers tokenizer.json and names the file. */
static void tokjson__from_dir_prefers_json_and_names_the_file(void)
{
	char dir[2048], path[4096];
	tf_path(dir, sizeof(dir), "m");
	CHECK(mkdir(dir, 0700) == 0);
	snprintf(path, sizeof(path), "%s/tokenizer.json", dir);
	const char *json = tj(NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
	tf_spit(path, json, strlen(json));
	struct qp_tokenizer *t;
	CHECK_OK(qp_tokenizer_from_dir(&t, dir, &err));
	CHECK_EQ_STR(qp_tokenizer_describe(t), "bpe (byte fallback), 15 ids, from tokenizer.json");
	CHECK_EQ_STR(qp_tokenizer_piece(t, 6), "ab");
	CHECK_EQ_INT(qp_tokenizer_n_vocab(t), 15);
	qp_tokenizer_free(t);
	json = tj(NULL, NULL, "[[\"a\", \"b\"], {\"x\": 1}]", NULL, NULL, NULL, NULL, NULL);
	tf_spit(path, json, strlen(json));
	char want[4200];
	snprintf(want, sizeof(want), "%s: model.merges[1]: expected a string \"a b\" or a pair", path);
	CHECK_ERR(qp_tokenizer_from_dir(&t, dir, &err), QP_ECORRUPT, want);
	remove(path);
	CHECK_ERR(qp_tokenizer_from_dir(&t, dir, &err), QP_ENOTFOUND, (snprintf(want, sizeof(want),
	          "%s: no tokenizer.json or tokenizer.model", dir), want));
}

int main(int argc, char **argv)
{
	static const struct tf_test tests[] = {
		TF_TEST(tokjson__merges_lowest_rank_first_in_both_forms),
		TF_TEST(tokjson__invalid_utf8_becomes_u_fffd_then_bytes),
		TF_TEST(tokjson__config_sides_override_the_template),
		TF_TEST(tokjson__errors_name_the_json_path),
		TF_TEST(tokjson__from_dir_prefers_json_and_names_the_file),
	};
	return tf_main(argc, argv, tests, sizeof(tests) / sizeof(tests[0]));
}
