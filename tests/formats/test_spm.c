/* formats/spm: both shared tokenizer.model files, and hand-built protobuf
 * that must fail with a message naming the offset (or parse, for unknown
 * fields, which protobuf readers skip). */
#include <math.h>

#include "common/os.h"
#include "formats/spm.h"
#include "tf.h"

static struct qp_err err;

/* ---- a protobuf builder ---- */

struct pbw {
	unsigned char b[4096];
	size_t n;
};

static void w_varint(struct pbw *w, uint64_t v)
{
	do {
		unsigned char c = v & 0x7f;
		v >>= 7;
		w->b[w->n++] = c | (v ? 0x80 : 0);
	} while (v);
}

static void w_tag(struct pbw *w, unsigned field, unsigned wire)
{
	w_varint(w, (uint64_t)field << 3 | wire);
}

static void w_bytes(struct pbw *w, unsigned field, const void *d, size_t n)
{
	w_tag(w, field, 2);
	w_varint(w, n);
	memcpy(w->b + w->n, d, n);
	w->n += n;
}

static void w_msg(struct pbw *w, unsigned field, const struct pbw *sub)
{
	w_bytes(w, field, sub->b, sub->n);
}

/* SentencePiece {piece, score, type}. */
static void w_piece(struct pbw *w, const char *piece, float score, int type)
{
	struct pbw p = {.n = 0};
	w_bytes(&p, 1, piece, strlen(piece));
	w_tag(&p, 2, 5);
	memcpy(p.b + p.n, &score, 4);
	p.n += 4;
	if (type) {
		w_tag(&p, 3, 0);
		w_varint(&p, (uint64_t)type);
	}
	w_msg(w, 1, &p);
}

static int parse(const struct pbw *w)
{
	struct qp_spm *s = NULL;
	int rc = qp_spm_parse(&s, w->b, w->n, "t.model", &err);
	qp_spm_free(s);
	return rc;
}

/* ---- tests ---- */

static void spm__reads_stories260k_with_512_pieces(void)
{
	struct qp_spm *s;
	CHECK_OK(qp_spm_read(&s, tf_shared("data/models/stories260K/tokenizer.model"), &err));
	CHECK_EQ_INT(s->n_pieces, 512);
	CHECK_EQ_STR(s->pieces[0].piece, "<unk>");
	CHECK_EQ_INT(s->pieces[0].type, QP_SPM_UNKNOWN);
	CHECK_EQ_STR(s->pieces[1].piece, "<s>");
	CHECK_EQ_INT(s->pieces[1].type, QP_SPM_CONTROL);
	CHECK_EQ_STR(s->pieces[2].piece, "</s>");
	CHECK_EQ_INT(s->pieces[2].type, QP_SPM_CONTROL);
	for (int i = 3; i < 259; i++) {
		char want[8];
		snprintf(want, sizeof(want), "<0x%02X>", i - 3);
		CHECK_EQ_STR(s->pieces[i].piece, want);
		CHECK_EQ_INT(s->pieces[i].type, QP_SPM_BYTE);
	}
	CHECK_EQ_STR(s->pieces[259].piece, "\xe2\x96\x81t");
	CHECK_EQ_INT(s->pieces[259].type, QP_SPM_NORMAL);
	CHECK_EQ_STR(s->pieces[511].piece, "\xe2\x80\x8a");
	CHECK(s->pieces[511].score == -252.0f);
	CHECK_EQ_INT(s->model_type, 2);
	CHECK(s->byte_fallback);
	CHECK(s->add_dummy_prefix);
	CHECK_EQ_INT(s->unk_id, 0);
	CHECK_EQ_INT(s->bos_id, 1);
	CHECK_EQ_INT(s->eos_id, 2);
	CHECK_EQ_INT(s->pad_id, -1);
	qp_spm_free(s);
}

static void spm__reads_llama_docs_27m_with_8192_pieces(void)
{
	struct qp_spm *s;
	CHECK_OK(qp_spm_read(&s, tf_shared("data/models/llama-docs-27m/tokenizer.model"), &err));
	CHECK_EQ_INT(s->n_pieces, 8192);
	CHECK_EQ_STR(s->pieces[3].piece, "<0x00>");
	CHECK_EQ_STR(s->pieces[259].piece, "\xe2\x96\x81\xe2\x96\x81");
	CHECK_EQ_STR(s->pieces[8191].piece, "\xe8\xba\x81");
	CHECK(s->pieces[8191].score == -7932.0f);
	CHECK_EQ_INT(s->model_type, 2);
	CHECK(s->byte_fallback && s->add_dummy_prefix);
	CHECK(s->unk_id == 0 && s->bos_id == 1 && s->eos_id == 2 && s->pad_id == -1);
	qp_spm_free(s);
}

/* A cut at a field boundary is a valid (shorter) message; anywhere else it
 * must fail, and nothing may crash. Inside the first piece it always fails. */
static void spm__truncated_model_fails_cleanly(void)
{
	struct qp_map map;
	CHECK_OK(qp_os_map(&map, tf_shared("data/models/stories260K/tokenizer.model"), &err));
	int corrupt = 0;
	for (size_t cut = 0; cut < map.size; cut++) {
		struct qp_spm *s = NULL;
		qp_err_clear(&err);
		int rc = qp_spm_parse(&s, map.data, cut, "tokenizer.model", &err);
		qp_spm_free(s);
		if (rc != 0 && rc != QP_ECORRUPT) {
			tf_fail(__FILE__, __LINE__, "cut at %zu: rc %d", cut, rc);
			break;
		}
		if (cut > 0 && cut < 11)  /* 0a 09 0a 05 "<unk>" 15 ... */
			CHECK_EQ_INT(rc, QP_ECORRUPT);
		corrupt += rc == QP_ECORRUPT;
	}
	CHECK(corrupt > (int)map.size / 2);
	struct qp_spm *s = NULL;
	CHECK_ERR(qp_spm_parse(&s, map.data, 100, "tokenizer.model", &err), QP_ECORRUPT,
	          "tokenizer.model: at offset 97: length 15 runs past end of message (which ends at "
	          "offset 100)");
	qp_os_unmap(&map);
}

static void spm__bad_wire_data_fails_with_pinned_messages(void)
{
	struct pbw w = {.n = 0};
	CHECK_ERR(parse(&w), QP_ECORRUPT, "t.model: model has no pieces");
	w.n = 0;
	w_tag(&w, 1, 2);
	w_varint(&w, 5);
	w.b[w.n++] = 'a';
	w.b[w.n++] = 'b';
	CHECK_ERR(parse(&w), QP_ECORRUPT,
	          "t.model: at offset 1: length 5 runs past end of message (which ends at offset 4)");
	w.n = 0;
	for (int i = 0; i < 11; i++)
		w.b[w.n++] = 0xff;
	CHECK_ERR(parse(&w), QP_ECORRUPT, "t.model: at offset 0: varint is longer than 10 bytes");
	w.n = 0;
	w_tag(&w, 5, 3);
	CHECK_ERR(parse(&w), QP_ECORRUPT,
	          "t.model: at offset 0: field 5: groups (wire type 3) are not supported");
	w.n = 0;
	w_tag(&w, 5, 7);
	CHECK_ERR(parse(&w), QP_ECORRUPT, "t.model: at offset 0: field 5: invalid wire type 7");
	w.n = 0;
	w_tag(&w, 0, 0);
	CHECK_ERR(parse(&w), QP_ECORRUPT, "t.model: at offset 0: invalid field number 0");
	w.n = 0;
	w_tag(&w, 1, 0);
	w_varint(&w, 1);
	CHECK_ERR(parse(&w), QP_ECORRUPT,
	          "t.model: at offset 0: pieces (field 1) has wire type 0, expected 2");
	w.n = 0;
	w_piece(&w, "<unk>", 0, 2);
	w_piece(&w, "x", 0, 9);
	CHECK_ERR(parse(&w), QP_ECORRUPT, "t.model: piece #1 at offset 26: unknown piece type 9");
	w.n = 0;
	w_piece(&w, "<unk>", 0, 2);
	w_bytes(&w, 1, "\x0a\x03" "a\0b", 5);
	CHECK_ERR(parse(&w), QP_ECORRUPT, "t.model: piece #1 at offset 18: piece contains a NUL byte");
	w.n = 0;
	w_piece(&w, "<unk>", 0, 2);
	w.b[w.n++] = 0x0a;
	w.b[w.n++] = 0x02;
	w.b[w.n++] = 0x15;  /* score, wire 5, with 1 of its 4 bytes */
	w.b[w.n++] = 0x00;
	CHECK_ERR(parse(&w), QP_ECORRUPT,
	          "t.model: piece #1 at offset 19: 4-byte value runs past end of message (which ends "
	          "at offset 20)");
}

static void spm__trainer_and_normalizer_specs_and_unknown_fields(void)
{
	struct pbw w = {.n = 0};
	w_piece(&w, "<unk>", 0, 2);
	w_piece(&w, "<s>", 0, 3);
	w_piece(&w, "</s>", 0, 3);
	w_piece(&w, "a", -1.5f, 0);
	struct pbw t = {.n = 0};
	w_tag(&t, 3, 0);
	w_varint(&t, 1);
	w_tag(&t, 35, 0);
	w_varint(&t, 1);
	w_tag(&t, 40, 0);
	w_varint(&t, 3);
	w_tag(&t, 41, 0);
	w_varint(&t, UINT64_MAX);  /* -1, sign-extended as protobuf writes int32 */
	w_tag(&t, 42, 0);
	w_varint(&t, 2);
	w_tag(&t, 43, 0);
	w_varint(&t, 0);
	w_bytes(&t, 1, "corpus.txt", 10);  /* unknown to us: skipped */
	w_tag(&t, 10, 5);
	t.b[t.n++] = 0, t.b[t.n++] = 0, t.b[t.n++] = 0x80, t.b[t.n++] = 0x3f;
	w_msg(&w, 2, &t);
	struct pbw nz = {.n = 0};
	w_bytes(&nz, 1, "identity", 8);
	w_tag(&nz, 3, 0);
	w_varint(&nz, 0);
	w_tag(&nz, 99, 1);
	memset(nz.b + nz.n, 0, 8);
	nz.n += 8;
	w_msg(&w, 3, &nz);
	w_tag(&w, 4, 2);  /* self_test_data: skipped */
	w_varint(&w, 0);
	w_tag(&w, 200, 0);
	w_varint(&w, 12345);

	struct qp_spm *s;
	CHECK_OK(qp_spm_parse(&s, w.b, w.n, "t.model", &err));
	CHECK_EQ_INT(s->n_pieces, 4);
	CHECK_EQ_STR(s->pieces[3].piece, "a");
	CHECK(s->pieces[3].score == -1.5f);
	CHECK_EQ_INT(s->pieces[3].type, QP_SPM_NORMAL);
	CHECK_EQ_INT(s->model_type, 1);
	CHECK(s->byte_fallback);
	CHECK(!s->add_dummy_prefix);
	CHECK_EQ_INT(s->unk_id, 3);
	CHECK_EQ_INT(s->bos_id, -1);
	CHECK_EQ_INT(s->eos_id, 2);
	CHECK_EQ_INT(s->pad_id, 0);
	qp_spm_free(s);

	struct pbw bad = {.n = 0};
	w_piece(&bad, "<unk>", 0, 2);
	struct pbw bt = {.n = 0};
	w_tag(&bt, 41, 0);
	w_varint(&bt, 5);
	w_msg(&bad, 2, &bt);
	CHECK_ERR(parse(&bad), QP_ECORRUPT, "t.model: trainer_spec: bos_id 5 is out of range (1 pieces)");
	bad.n = 0;
	w_piece(&bad, "<unk>", 0, 2);
	bt.n = 0;
	w_tag(&bt, 3, 0);
	w_varint(&bt, 7);
	w_msg(&bad, 2, &bt);
	CHECK_ERR(parse(&bad), QP_ECORRUPT,
	          "t.model: trainer_spec at offset 18: model_type 7 is not 1 (unigram), 2 (bpe), 3 "
	          "(word) or 4 (char)");
}

static void spm__missing_file_is_not_found(void)
{
	struct qp_spm *s = NULL;
	char path[4096];
	tf_path(path, sizeof(path), "absent.model");
	qp_err_clear(&err);
	CHECK_EQ_INT(qp_spm_read(&s, path, &err), QP_ENOTFOUND);
	CHECK(s == NULL);
}

int main(int argc, char **argv)
{
	static const struct tf_test tests[] = {
		TF_TEST(spm__reads_stories260k_with_512_pieces),
		TF_TEST(spm__reads_llama_docs_27m_with_8192_pieces),
		TF_TEST(spm__truncated_model_fails_cleanly),
		TF_TEST(spm__bad_wire_data_fails_with_pinned_messages),
		TF_TEST(spm__trainer_and_normalizer_specs_and_unknown_fields),
		TF_TEST(spm__missing_file_is_not_found),
	};
	return tf_main(argc, argv, tests, sizeof(tests) / sizeof(tests[0]));
}
