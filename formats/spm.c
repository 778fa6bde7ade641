/* SentencePiece tokenizer.model: a serialized protobuf ModelProto.
 *
 * Protobuf wire format: a message is a sequence of fields, each a varint
 * tag (field number << 3 | wire type) and a value: wire type 0 a varint
 * (at most 10 bytes), 1 eight bytes, 2 a varint length and that many bytes
 * (strings and sub-messages), 5 four bytes; 3 and 4 (groups) are obsolete
 * and refused. Field numbers, from sentencepiece_model.proto:
 *
 *   ModelProto       1 pieces (repeated SentencePiece), 2 trainer_spec,
 *                    3 normalizer_spec
 *   SentencePiece    1 piece (string), 2 score (float), 3 type (enum, 1..6)
 *   TrainerSpec      3 model_type, 35 byte_fallback, 40 unk_id, 41 bos_id,
 *                    42 eos_id, 43 pad_id
 *   NormalizerSpec   2 precompiled_charsmap, 3 add_dummy_prefix,
 *                    4 remove_extra_whitespaces
 *
 * Everything else is skipped by wire type. The file is untrusted: every
 * length is checked against the end of its enclosing message, messages nest
 * at most two deep (no recursion), and the piece table grows by doubling,
 * bounded by the input size. Offsets in messages are absolute. */
#include "formats/spm.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/os.h"
#include "formats/check.h"

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_SGROUP = 3, WT_EGROUP = 4, WT_I32 = 5 };

/* A cursor over one message: bytes [off, end) of the input. */
struct pb {
	const uint8_t *p;     /* the whole input */
	size_t off, end;
	const char *name;     /* for messages */
	const char *subj;     /* "trainer_spec", "piece #3" ... or "" */
	struct qp_err *err;
};

__attribute__((format(printf, 3, 4)))
static int bad(const struct pb *b, size_t off, const char *fmt, ...)
{
	char what[QP_ERR_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	return qp_err_set(b->err, QP_ECORRUPT, "%s: %s%sat offset %zu: %s", b->name, b->subj,
	                  b->subj[0] ? " " : "", off, what);
}

static int rd_varint(struct pb *b, uint64_t *out)
{
	size_t at = b->off;
	uint64_t v = 0;
	*out = 0;
	for (int i = 0; i < 10; i++) {
		if (b->off >= b->end)
			return bad(b, at, "varint runs past end of message (which ends at offset %zu)",
			           b->end);
		uint8_t c = b->p[b->off++];
		v |= (uint64_t)(c & 0x7f) << (7 * i);
		if (!(c & 0x80)) {
			*out = v;
			return 0;
		}
	}
	return bad(b, at, "varint is longer than 10 bytes");
}

static int rd_fixed(struct pb *b, size_t n, uint64_t *out)
{
	*out = 0;
	if (n > b->end - b->off)
		return bad(b, b->off,
		           "%zu-byte value runs past end of message (which ends at offset %zu)", n,
		           b->end);
	*out = qp_le(b->p + b->off, n);
	b->off += n;
	return 0;
}

/* A length-delimited value: its bytes are [*start, *start + *len). */
static int rd_len(struct pb *b, size_t *start, size_t *len)
{
	size_t at = b->off;
	uint64_t n;
	*start = *len = 0;
	int rc = rd_varint(b, &n);
	if (rc)
		return rc;
	if (n > b->end - b->off)
		return bad(b, at, "length %llu runs past end of message (which ends at offset %zu)",
		           (unsigned long long)n, b->end);
	*start = b->off;
	*len = (size_t)n;
	b->off += (size_t)n;
	return 0;
}

struct field {
	uint32_t num;
	int wire;
	size_t at;  /* offset of the tag */
};

static int rd_tag(struct pb *b, struct field *f)
{
	f->at = b->off;
	uint64_t tag;
	int rc = rd_varint(b, &tag);
	if (rc)
		return rc;
	f->num = (uint32_t)(tag >> 3);
	f->wire = (int)(tag & 7);
	if ((tag >> 3) == 0 || (tag >> 3) > 0x1fffffff)
		return bad(b, f->at, "invalid field number %llu", (unsigned long long)(tag >> 3));
	if (f->wire == WT_SGROUP || f->wire == WT_EGROUP)
		return bad(b, f->at, "field %u: groups (wire type %d) are not supported", f->num,
		           f->wire);
	if (f->wire > WT_I32)
		return bad(b, f->at, "field %u: invalid wire type %d", f->num, f->wire);
	return 0;
}

static int skip(struct pb *b, const struct field *f)
{
	uint64_t v;
	size_t s, n;
	switch (f->wire) {
	case WT_VARINT: return rd_varint(b, &v);
	case WT_I64: return rd_fixed(b, 8, &v);
	case WT_I32: return rd_fixed(b, 4, &v);
	default: return rd_len(b, &s, &n);
	}
}

static int want(const struct pb *b, const struct field *f, int wire, const char *what)
{
	if (f->wire != wire)
		return bad(b, f->at, "%s (field %u) has wire type %d, expected %d", what, f->num,
		           f->wire, wire);
	return 0;
}

static int parse_piece(struct pb *b, struct qp_spm_piece *pc)
{
	pc->type = QP_SPM_NORMAL;
	size_t s = 0, n = 0;
	int have_piece = 0;
	while (b->off < b->end) {
		struct field f;
		uint64_t v;
		int rc = rd_tag(b, &f);
		if (rc)
			return rc;
		switch (f.num) {
		case 1:
			if ((rc = want(b, &f, WT_LEN, "piece")) || (rc = rd_len(b, &s, &n)))
				return rc;
			if (memchr(b->p + s, '\0', n))
				return bad(b, f.at, "piece contains a NUL byte");
			have_piece = 1;
			break;
		case 2: {
			if ((rc = want(b, &f, WT_I32, "score")) || (rc = rd_fixed(b, 4, &v)))
				return rc;
			uint32_t u = (uint32_t)v;
			memcpy(&pc->score, &u, sizeof(float));
			break;
		}
		case 3:
			if ((rc = want(b, &f, WT_VARINT, "type")) || (rc = rd_varint(b, &v)))
				return rc;
			if (v < QP_SPM_NORMAL || v > QP_SPM_BYTE)
				return bad(b, f.at, "unknown piece type %llu", (unsigned long long)v);
			pc->type = (int)v;
			break;
		default:
			if ((rc = skip(b, &f)))
				return rc;
		}
	}
	/* A repeated piece field: the last one wins, as protobuf merges scalars. */
	pc->piece = malloc(n + 1);
	if (!pc->piece)
		return qp_err_nomem(b->err);
	if (have_piece)
		memcpy(pc->piece, b->p + s, n);
	pc->piece[have_piece ? n : 0] = '\0';
	return 0;
}

static int parse_trainer(struct pb *b, struct qp_spm *m)
{
	while (b->off < b->end) {
		struct field f;
		uint64_t v;
		int rc = rd_tag(b, &f);
		if (rc)
			return rc;
		const char *what = NULL;
		switch (f.num) {
		case 3: what = "model_type"; break;
		case 35: what = "byte_fallback"; break;
		case 40: what = "unk_id"; break;
		case 41: what = "bos_id"; break;
		case 42: what = "eos_id"; break;
		case 43: what = "pad_id"; break;
		}
		if (!what) {
			if ((rc = skip(b, &f)))
				return rc;
			continue;
		}
		if ((rc = want(b, &f, WT_VARINT, what)) || (rc = rd_varint(b, &v)))
			return rc;
		/* int32 fields: protobuf sign-extends negatives to 64 bits. */
		int32_t i = (int32_t)(uint32_t)v;
		switch (f.num) {
		case 3:
			if (v < 1 || v > 4)
				return bad(b, f.at, "model_type %llu is not 1 (unigram), 2 (bpe), 3 (word) "
				           "or 4 (char)", (unsigned long long)v);
			m->model_type = (int)v;
			break;
		case 35: m->byte_fallback = v != 0; break;
		case 40: m->unk_id = i; break;
		case 41: m->bos_id = i; break;
		case 42: m->eos_id = i; break;
		case 43: m->pad_id = i; break;
		}
	}
	return 0;
}

static int parse_normalizer(struct pb *b, struct qp_spm *m)
{
	while (b->off < b->end) {
		struct field f;
		uint64_t v;
		int rc = rd_tag(b, &f);
		if (rc)
			return rc;
		if (f.num == 3 || f.num == 4) {
			const char *what = f.num == 3 ? "add_dummy_prefix" : "remove_extra_whitespaces";
			if ((rc = want(b, &f, WT_VARINT, what)) || (rc = rd_varint(b, &v)))
				return rc;
			if (f.num == 3)
				m->add_dummy_prefix = v != 0;
			else
				m->remove_extra_whitespaces = v != 0;
		} else if (f.num == 2 && f.wire == WT_LEN) {
			size_t s, n;
			if ((rc = rd_len(b, &s, &n)))
				return rc;
			m->has_charsmap = n > 0;
		} else if ((rc = skip(b, &f))) {
			return rc;
		}
	}
	return 0;
}

static int push_piece(struct qp_spm *m, size_t *cap, struct qp_err *err)
{
	if (m->n_pieces < *cap)
		return 0;
	size_t nc = *cap ? *cap * 2 : 256;
	if (nc > SIZE_MAX / sizeof(*m->pieces))
		return qp_err_nomem(err);
	struct qp_spm_piece *np = realloc(m->pieces, nc * sizeof(*np));
	if (!np)
		return qp_err_nomem(err);
	m->pieces = np;
	*cap = nc;
	return 0;
}

static int check_id(const struct pb *b, const struct qp_spm *m, const char *what, int id,
                    int min)
{
	if (id < min || (id >= 0 && (size_t)id >= m->n_pieces))
		return qp_err_set(b->err, QP_ECORRUPT, "%s: trainer_spec: %s %d is out of range (%zu "
		                  "pieces)", b->name, what, id, m->n_pieces);
	return 0;
}

static int parse_model(struct pb *b, struct qp_spm *m)
{
	size_t cap = 0;
	char subj[48];
	while (b->off < b->end) {
		struct field f;
		int rc = rd_tag(b, &f);
		if (rc)
			return rc;
		if (f.num < 1 || f.num > 3) {
			if ((rc = skip(b, &f)))
				return rc;
			continue;
		}
		static const char *const names[] = {"", "pieces", "trainer_spec", "normalizer_spec"};
		size_t s, n;
		if ((rc = want(b, &f, WT_LEN, names[f.num])) || (rc = rd_len(b, &s, &n)))
			return rc;
		struct pb sub = {.p = b->p, .off = s, .end = s + n, .name = b->name, .err = b->err};
		sub.subj = names[f.num];
		if (f.num == 1) {
			if ((rc = push_piece(m, &cap, b->err)))
				return rc;
			snprintf(subj, sizeof(subj), "piece #%zu", m->n_pieces);
			sub.subj = subj;
			struct qp_spm_piece *pc = &m->pieces[m->n_pieces];
			memset(pc, 0, sizeof(*pc));
			rc = parse_piece(&sub, pc);
			if (rc) {
				free(pc->piece);
				return rc;
			}
			m->n_pieces++;
		} else if (f.num == 2) {
			if ((rc = parse_trainer(&sub, m)))
				return rc;
		} else if ((rc = parse_normalizer(&sub, m))) {
			return rc;
		}
	}
	if (m->n_pieces == 0)
		return qp_err_set(b->err, QP_ECORRUPT, "%s: model has no pieces", b->name);
	int rc;
	if ((rc = check_id(b, m, "unk_id", m->unk_id, 0)) ||
	    (rc = check_id(b, m, "bos_id", m->bos_id, -1)) ||
	    (rc = check_id(b, m, "eos_id", m->eos_id, -1)) ||
	    (rc = check_id(b, m, "pad_id", m->pad_id, -1)))
		return rc;
	return 0;
}

void qp_spm_free(struct qp_spm *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n_pieces; i++)
		free(s->pieces[i].piece);
	free(s->pieces);
	free(s);
}

int qp_spm_parse(struct qp_spm **out, const void *data, size_t len, const char *name,
                 struct qp_err *err)
{
	*out = NULL;
	struct qp_spm *m = calloc(1, sizeof(*m));
	if (!m)
		return qp_err_nomem(err);
	m->model_type = 1;
	m->add_dummy_prefix = true;
	m->remove_extra_whitespaces = true;
	m->unk_id = 0;
	m->bos_id = 1;
	m->eos_id = 2;
	m->pad_id = -1;
	struct pb b = {.p = data, .off = 0, .end = len, .name = name, .subj = "", .err = err};
	int rc = parse_model(&b, m);
	if (rc) {
		qp_spm_free(m);
		return rc;
	}
	*out = m;
	return 0;
}

int qp_spm_read(struct qp_spm **out, const char *path, struct qp_err *err)
{
	*out = NULL;
	struct qp_map map;
	int rc = qp_os_map(&map, path, err);
	if (rc)
		return rc;
	rc = qp_spm_parse(out, map.data, map.size, path, err);
	qp_os_unmap(&map);
	return rc;
}
