/* SentencePiece BPE, as sentencepiece's bpe_model.cc and llama.cpp's
 * llm_tokenizer_spm encode it.
 *
 * Encoding, step by step:
 *   1. normalize: with remove_extra_whitespaces (sentencepiece's default,
 *      honoured for tokenizer.model only; GGUF files never set it) leading
 *      and trailing spaces go and runs of spaces become one; every space
 *      becomes U+2581 "▁"; a "▁" is put in front when add_dummy_prefix and
 *      the text is not empty.
 *   2. split into symbols of one UTF-8 character each. A character's
 *      length comes from its first byte alone and is clipped at the end of
 *      the text (llama.cpp's rule), so invalid UTF-8 never fails: a stray
 *      byte becomes its own symbol and, not being a piece, a byte token.
 *      sentencepiece would substitute U+FFFD instead; we follow llama.cpp,
 *      whose tokens decode back to the original bytes.
 *   3. merge: every adjacent pair whose concatenation is a piece (types
 *      normal, user-defined or unused) is a candidate, ranked by that
 *      piece's score, highest first, ties to the leftmost pair. The best
 *      candidate is merged, stale candidates are skipped, and the pairs
 *      around the merged symbol become candidates, until none is left.
 *   4. emit: each symbol that is a normal or user-defined piece gives its
 *      id; an unused piece is split back into the two symbols it was merged
 *      from (sentencepiece's resegmentation); any other symbol gives one
 *      byte token per byte (<0xXX>), or unk where the model has none.
 *
 * The lookup table is an open-addressed hash of piece text to id. */
#include "model/tokenizer.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/heap.h"
#include "common/os.h"
#include "formats/gguf.h"
#include "formats/hfconfig.h"
#include "formats/spm.h"
#include "model/tokenizer_json.h"

#define SPACE_MARK "\xe2\x96\x81" /* U+2581 */
#define SPACE_MARK_LEN 3
#define MAX_PIECES (1 << 24)

enum { T_NORMAL = 1, T_UNKNOWN = 2, T_CONTROL = 3, T_USER = 4, T_UNUSED = 5, T_BYTE = 6 };

struct qp_tokenizer {
	int32_t n;                  /* pieces */
	char **piece;               /* NUL-terminated copies */
	uint32_t *len;              /* bytes of each piece */
	float *score;
	uint8_t *type;              /* T_* */
	int32_t *slot;              /* hash slots: id or -1 */
	size_t mask;                /* slots - 1 */
	int32_t byte_id[256];       /* <0xXX> piece of each byte, -1 if none */
	int32_t bos, eos, unk;      /* -1 if none */
	bool add_dummy_prefix;
	bool remove_extra_ws;
	struct qp_tokenizer_rules rules;
	char desc[160];
	struct qp_tokjson *json;    /* set: a tokenizer.json, which does all the work */
};

static uint64_t hash_bytes(const char *s, size_t n)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */
	for (size_t i = 0; i < n; i++) {
		h ^= (uint8_t)s[i];
		h *= 1099511628211ull;
	}
	return h;
}

/* Id of the piece with these bytes, -1 if none. */
static int32_t lookup(const struct qp_tokenizer *t, const char *s, size_t n)
{
	for (size_t i = hash_bytes(s, n) & t->mask;; i = (i + 1) & t->mask) {
		int32_t id = t->slot[i];
		if (id < 0)
			return -1;
		if (t->len[id] == n && memcmp(t->piece[id], s, n) == 0)
			return id;
	}
}

void qp_tokenizer_free(struct qp_tokenizer *t)
{
	if (!t)
		return;
	qp_tokjson_free(t->json);
	for (int32_t i = 0; t->piece && i < t->n; i++)
		free(t->piece[i]);
	free(t->piece);
	free(t->len);
	free(t->score);
	free(t->type);
	free(t->slot);
	free(t);
}

static int alloc_vocab(struct qp_tokenizer **out, size_t n, struct qp_err *err)
{
	*out = NULL;
	if (n == 0 || n > MAX_PIECES)
		return qp_err_set(err, QP_ECORRUPT, "vocabulary of %zu pieces (want 1 to %d)", n, MAX_PIECES);
	struct qp_tokenizer *t = calloc(1, sizeof(*t));
	if (!t)
		return qp_err_nomem(err);
	size_t slots = 16;
	while (slots < 2 * n)
		slots *= 2;
	t->n = (int32_t)n;
	t->piece = calloc(n, sizeof(char *));
	t->len = calloc(n, sizeof(uint32_t));
	t->score = calloc(n, sizeof(float));
	t->type = calloc(n, 1);
	t->slot = malloc(slots * sizeof(int32_t));
	t->mask = slots - 1;
	if (!t->piece || !t->len || !t->score || !t->type || !t->slot) {
		qp_tokenizer_free(t);
		return qp_err_nomem(err);
	}
	memset(t->slot, 0xff, slots * sizeof(int32_t));
	t->bos = t->eos = t->unk = -1;
	*out = t;
	return 0;
}

/* Piece id gets text s[n]; index it unless the text is already there (the
 * first id of a text wins, as in sentencepiece's and llama.cpp's maps). */
static int set_piece(struct qp_tokenizer *t, int32_t id, const char *s, size_t n, float score,
                     int type, struct qp_err *err)
{
	if (n > UINT32_MAX / 2)
		return qp_err_set(err, QP_ECORRUPT, "piece %d is %zu bytes long", id, n);
	t->piece[id] = malloc(n + 1);
	if (!t->piece[id])
		return qp_err_nomem(err);
	memcpy(t->piece[id], s, n);
	t->piece[id][n] = '\0';
	t->len[id] = (uint32_t)n;
	t->score[id] = score;
	t->type[id] = (uint8_t)(type >= T_NORMAL && type <= T_BYTE ? type : T_NORMAL);
	size_t i = hash_bytes(s, n) & t->mask;
	for (; t->slot[i] >= 0; i = (i + 1) & t->mask)
		if (t->len[t->slot[i]] == n && memcmp(t->piece[t->slot[i]], s, n) == 0)
			return 0;
	t->slot[i] = id;
	return 0;
}

static void find_bytes(struct qp_tokenizer *t)
{
	for (int b = 0; b < 256; b++) {
		char name[8];
		snprintf(name, sizeof(name), "<0x%02X>", b);
		int32_t id = lookup(t, name, 6);
		t->byte_id[b] = id >= 0 && t->type[id] == T_BYTE ? id : -1;
	}
}

static int check_special(int32_t id, int32_t n, const char *what, const char *src,
                         struct qp_err *err)
{
	if (id < -1 || id >= n)
		return qp_err_set(err, QP_ECORRUPT, "%s: %s %d is out of range (%d pieces)", src, what, id, n);
	return 0;
}

int qp_tokenizer_from_spm(struct qp_tokenizer **out, const struct qp_spm *spm,
                          const struct qp_tokenizer_rules *rules, struct qp_err *err)
{
	*out = NULL;
	if (spm->model_type != 2)
		return qp_err_set(err, QP_EINVAL,
		                  "tokenizer.model: model_type %d is not supported (bpe (2) only)",
		                  spm->model_type);
	if (spm->has_charsmap)
		return qp_err_set(err, QP_EINVAL,
		                  "tokenizer.model: the normalizer has a precompiled charsmap (NFKC ...), "
		                  "which qpipe does not implement (identity normalization only)");
	struct qp_tokenizer *t;
	int rc = alloc_vocab(&t, spm->n_pieces, err);
	if (rc)
		return rc;
	for (size_t i = 0; i < spm->n_pieces; i++) {
		const struct qp_spm_piece *p = &spm->pieces[i];
		if ((rc = set_piece(t, (int32_t)i, p->piece, strlen(p->piece), p->score, p->type, err))) {
			qp_tokenizer_free(t);
			return rc;
		}
	}
	t->bos = spm->bos_id;
	t->eos = spm->eos_id;
	t->unk = spm->unk_id;
	t->add_dummy_prefix = spm->add_dummy_prefix;
	t->remove_extra_ws = spm->remove_extra_whitespaces;
	t->rules = *rules;
	find_bytes(t);
	if (!spm->byte_fallback)
		memset(t->byte_id, 0xff, sizeof(t->byte_id));
	snprintf(t->desc, sizeof(t->desc), "sentencepiece bpe, %d pieces, from tokenizer.model", t->n);
	*out = t;
	return 0;
}

static const struct qp_gguf_kv *kv_arr(const struct qp_gguf_file *f, const char *key,
                                       enum qp_gguf_vtype want, uint64_t n, struct qp_err *err)
{
	const struct qp_gguf_kv *kv = qp_gguf_find_kv(f, key);
	if (!kv) {
		qp_err_set(err, QP_EINVAL, "gguf: key '%s' is missing", key);
		return NULL;
	}
	if (kv->type != QP_GGUF_ARRAY || kv->arr_type != want || (n && kv->arr_n != n)) {
		qp_err_set(err, QP_ECORRUPT, "gguf: key '%s' is not an array of %llu %s", key,
		           (unsigned long long)n, qp_gguf_vtype_name(want));
		return NULL;
	}
	return kv;
}

static int kv_id(const struct qp_gguf_file *f, const char *key, int32_t *out)
{
	const struct qp_gguf_kv *kv = qp_gguf_find_kv(f, key);
	if (!kv)
		return 0;
	if (kv->type == QP_GGUF_UINT8 || kv->type == QP_GGUF_UINT16 || kv->type == QP_GGUF_UINT32 ||
	    kv->type == QP_GGUF_UINT64)
		*out = kv->v.u64 > INT32_MAX ? -2 : (int32_t)kv->v.u64;
	else if (kv->type == QP_GGUF_INT8 || kv->type == QP_GGUF_INT16 || kv->type == QP_GGUF_INT32 ||
	         kv->type == QP_GGUF_INT64)
		*out = kv->v.i64 > INT32_MAX || kv->v.i64 < -1 ? -2 : (int32_t)kv->v.i64;
	else
		*out = -2;
	return 0;
}

static bool kv_bool(const struct qp_gguf_file *f, const char *key, bool def)
{
	const struct qp_gguf_kv *kv = qp_gguf_find_kv(f, key);
	return kv && kv->type == QP_GGUF_BOOL ? kv->v.b : def;
}

int qp_tokenizer_from_gguf(struct qp_tokenizer **out, const struct qp_gguf_file *f,
                           struct qp_err *err)
{
	*out = NULL;
	const struct qp_gguf_kv *model = qp_gguf_find_kv(f, "tokenizer.ggml.model");
	if (!model || model->type != QP_GGUF_STRING)
		return qp_err_set(err, QP_EINVAL, "gguf: key 'tokenizer.ggml.model' is missing");
	if (model->v.str.len != 5 || memcmp(model->v.str.data, "llama", 5) != 0)
		return qp_err_set(err, QP_EINVAL,
		                  "gguf: tokenizer.ggml.model '%.*s' is not supported (supported: llama)",
		                  (int)(model->v.str.len > 64 ? 64 : model->v.str.len), model->v.str.data);
	const struct qp_gguf_kv *tok = kv_arr(f, "tokenizer.ggml.tokens", QP_GGUF_STRING, 0, err);
	if (!tok)
		return err->code;
	const struct qp_gguf_kv *sc = kv_arr(f, "tokenizer.ggml.scores", QP_GGUF_FLOAT32, tok->arr_n, err);
	if (!sc)
		return err->code;
	const struct qp_gguf_kv *ty = qp_gguf_find_kv(f, "tokenizer.ggml.token_type");
	if (ty && !(ty = kv_arr(f, "tokenizer.ggml.token_type", QP_GGUF_INT32, tok->arr_n, err)))
		return err->code;
	struct qp_tokenizer *t;
	int rc = alloc_vocab(&t, tok->arr_n, err);
	if (rc)
		return rc;
	for (uint64_t i = 0; i < tok->arr_n; i++) {
		float s;
		int32_t type = T_NORMAL;
		memcpy(&s, (const char *)sc->arr_data + 4 * i, 4);
		if (ty)
			memcpy(&type, (const char *)ty->arr_data + 4 * i, 4);
		if ((rc = set_piece(t, (int32_t)i, tok->arr_str[i].data, tok->arr_str[i].len, s, type, err))) {
			qp_tokenizer_free(t);
			return rc;
		}
	}
	t->bos = 1, t->eos = 2, t->unk = 0; /* llama.cpp's SPM defaults */
	kv_id(f, "tokenizer.ggml.bos_token_id", &t->bos);
	kv_id(f, "tokenizer.ggml.eos_token_id", &t->eos);
	kv_id(f, "tokenizer.ggml.unknown_token_id", &t->unk);
	if ((rc = check_special(t->bos, t->n, "tokenizer.ggml.bos_token_id", "gguf", err)) ||
	    (rc = check_special(t->eos, t->n, "tokenizer.ggml.eos_token_id", "gguf", err)) ||
	    (rc = check_special(t->unk, t->n, "tokenizer.ggml.unknown_token_id", "gguf", err))) {
		qp_tokenizer_free(t);
		return rc;
	}
	t->add_dummy_prefix = kv_bool(f, "tokenizer.ggml.add_space_prefix", true);
	t->remove_extra_ws = false;
	t->rules.add_bos = kv_bool(f, "tokenizer.ggml.add_bos_token", true);
	t->rules.add_eos = kv_bool(f, "tokenizer.ggml.add_eos_token", false);
	find_bytes(t);
	snprintf(t->desc, sizeof(t->desc), "sentencepiece bpe, %d pieces, from gguf", t->n);
	*out = t;
	return 0;
}

/* tokenizer_config.json next to path, or NULL; *cfg is malloc'd. */
static int read_sibling_config(char **cfg, size_t *len, char *cfg_path, size_t cap, const char *path,
                               struct qp_err *err)
{
	*cfg = NULL;
	*len = 0;
	const char *slash = strrchr(path, '/');
	int dl = slash ? (int)(slash - path) : 1;
	snprintf(cfg_path, cap, "%.*s/tokenizer_config.json", dl, slash ? path : ".");
	if (!qp_os_exists(cfg_path))
		return 0;
	return qp_os_read_file(cfg, len, cfg_path, (size_t)64 << 20, err);
}

int qp_tokenizer_from_json_mem(struct qp_tokenizer **out, const void *json, size_t len,
                               const char *name, const void *config, size_t config_len,
                               const char *config_name, struct qp_err *err)
{
	*out = NULL;
	struct qp_tokenizer *t = calloc(1, sizeof(*t));
	if (!t)
		return qp_err_nomem(err);
	int rc = qp_tokjson_parse(&t->json, json, len, name, config, config_len, config_name, err);
	if (rc) {
		free(t);
		return rc;
	}
	*out = t;
	return 0;
}

int qp_tokenizer_from_file(struct qp_tokenizer **out, const char *path, struct qp_err *err)
{
	*out = NULL;
	char cfg_path[PATH_MAX];
	char *cfg, *text = NULL;
	size_t cfg_len, len;
	int rc = read_sibling_config(&cfg, &cfg_len, cfg_path, sizeof(cfg_path), path, err);
	if (rc)
		return rc;
	size_t pl = strlen(path);
	if (pl >= 5 && strcmp(path + pl - 5, ".json") == 0) {
		if (!(rc = qp_os_read_file(&text, &len, path, (size_t)1 << 30, err)))
			rc = qp_tokenizer_from_json_mem(out, text, len, path, cfg, cfg_len, cfg_path, err);
		free(text);
		free(cfg);
		return rc;
	}
	struct qp_hf_tokenizer_config tc = {.add_bos_token = true, .add_eos_token = false};
	if (cfg)
		rc = qp_hf_tokenizer_config_parse(&tc, cfg, cfg_len, cfg_path, err);
	free(cfg);
	if (rc)
		return rc;
	struct qp_spm *spm;
	if ((rc = qp_spm_read(&spm, path, err)))
		return rc;
	struct qp_tokenizer_rules rules = {.add_bos = tc.add_bos_token, .add_eos = tc.add_eos_token};
	rc = qp_tokenizer_from_spm(out, spm, &rules, err);
	qp_spm_free(spm);
	return rc;
}

int qp_tokenizer_from_dir(struct qp_tokenizer **out, const char *dir, struct qp_err *err)
{
	*out = NULL;
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/tokenizer.json", dir);
	if (!qp_os_exists(path))
		snprintf(path, sizeof(path), "%s/tokenizer.model", dir);
	if (!qp_os_exists(path))
		return qp_err_set(err, QP_ENOTFOUND, "%s: no tokenizer.json or tokenizer.model", dir);
	return qp_tokenizer_from_file(out, path, err);
}

/* ---- encoding ---- */

struct buf {
	char *p;
	size_t n, cap;
};

static int buf_put(struct buf *b, const void *s, size_t n)
{
	if (b->n + n + 1 > b->cap) {
		size_t nc = b->cap ? b->cap : 64;
		while (nc < b->n + n + 1) {
			if (nc > SIZE_MAX / 2)
				return -1;
			nc *= 2;
		}
		char *np = realloc(b->p, nc);
		if (!np)
			return -1;
		b->p = np;
		b->cap = nc;
	}
	memcpy(b->p + b->n, s, n);
	b->n += n;
	b->p[b->n] = '\0';
	return 0;
}

/* Step 1 of the file comment. */
static int normalize(const struct qp_tokenizer *t, const char *s, size_t n, struct buf *o)
{
	size_t i = 0;
	if (t->remove_extra_ws)
		while (i < n && s[i] == ' ')
			i++;
	if (i == n)
		return 0;
	if (t->add_dummy_prefix && buf_put(o, SPACE_MARK, SPACE_MARK_LEN))
		return -1;
	bool prev_space = false;
	for (; i < n; i++) {
		if (s[i] == ' ') {
			if (!(t->remove_extra_ws && prev_space) && buf_put(o, SPACE_MARK, SPACE_MARK_LEN))
				return -1;
			prev_space = true;
		} else {
			if (buf_put(o, s + i, 1))
				return -1;
			prev_space = false;
		}
	}
	if (t->remove_extra_ws)
		while (o->n >= SPACE_MARK_LEN && memcmp(o->p + o->n - SPACE_MARK_LEN, SPACE_MARK, SPACE_MARK_LEN) == 0)
			o->n -= SPACE_MARK_LEN;
	return 0;
}

struct sym {
	size_t off, len;  /* bytes of the normalized text; len 0 once merged away */
	int64_t prev, next;
};

struct bigram {
	int64_t left, right;
	float score;
	size_t len;       /* bytes of the pair when it was found */
};

static bool bigram_before(const struct bigram *x, const struct bigram *y)
{
	return x->score > y->score || (x->score == y->score && x->left < y->left);
}

QP_HEAP_DEFINE(bigram_heap, struct bigram, bigram_before)

static bool mergeable(int type)
{
	return type == T_NORMAL || type == T_USER || type == T_UNUSED;
}

/* Unused pieces formed by a merge, with where they split (sentencepiece's
 * rev_merge; the latest merge of a text wins). */
struct revm {
	int32_t id;
	uint32_t left_len;
};

struct enc {
	const struct qp_tokenizer *t;
	const char *text;
	struct sym *sym;
	struct bigram_heap heap;
	struct revm *rev;
	size_t n_rev, cap_rev;
	int32_t *ids;
	size_t n_ids, cap_ids;
};

static int add_pair(struct enc *e, int64_t l, int64_t r)
{
	if (l < 0 || r < 0)
		return 0;
	size_t n = e->sym[l].len + e->sym[r].len;
	int32_t id = lookup(e->t, e->text + e->sym[l].off, n);
	if (id < 0 || !mergeable(e->t->type[id]))
		return 0;
	if (e->t->type[id] == T_UNUSED) {
		if (e->n_rev == e->cap_rev) {
			size_t nc = e->cap_rev ? e->cap_rev * 2 : 16;
			struct revm *nr = realloc(e->rev, nc * sizeof(*nr));
			if (!nr)
				return -1;
			e->rev = nr;
			e->cap_rev = nc;
		}
		e->rev[e->n_rev++] = (struct revm){id, (uint32_t)e->sym[l].len};
	}
	return bigram_heap_push(&e->heap, (struct bigram){l, r, e->t->score[id], n});
}

static int emit(struct enc *e, int32_t id)
{
	if (e->n_ids == e->cap_ids) {
		size_t nc = e->cap_ids ? e->cap_ids * 2 : 256;
		if (nc > SIZE_MAX / sizeof(int32_t))
			return -1;
		int32_t *ni = realloc(e->ids, nc * sizeof(int32_t));
		if (!ni)
			return -1;
		e->ids = ni;
		e->cap_ids = nc;
	}
	e->ids[e->n_ids++] = id;
	return 0;
}

/* Step 4 of the file comment for the bytes s[n]. */
static int resegment(struct enc *e, const char *s, size_t n, int depth)
{
	int32_t id = lookup(e->t, s, n);
	if (id >= 0 && (e->t->type[id] == T_NORMAL || e->t->type[id] == T_USER))
		return emit(e, id);
	if (id >= 0 && e->t->type[id] == T_UNUSED && depth < 64) {
		for (size_t i = e->n_rev; i-- > 0;)
			if (e->rev[i].id == id && e->rev[i].left_len < n) {
				size_t l = e->rev[i].left_len;
				if (resegment(e, s, l, depth + 1))
					return -1;
				return resegment(e, s + l, n - l, depth + 1);
			}
	}
	for (size_t i = 0; i < n; i++) {
		int32_t b = e->t->byte_id[(uint8_t)s[i]];
		if (emit(e, b >= 0 ? b : e->t->unk))
			return -1;
		if (b < 0) /* one unk for the whole symbol, as without byte fallback */
			break;
	}
	return 0;
}

static size_t utf8_len(uint8_t c)
{
	static const uint8_t len[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
	return len[c >> 4];
}

int qp_tokenizer_encode(const struct qp_tokenizer *t, const char *text, size_t len,
                        bool add_special, int32_t **ids, size_t *n, struct qp_err *err)
{
	if (t->json)
		return qp_tokjson_encode(t->json, text, len, add_special, ids, n, err);
	*ids = NULL;
	*n = 0;
	struct buf norm = {0};
	struct enc e = {.t = t};
	int rc = 0;
	if (add_special && t->rules.add_bos && t->bos >= 0 && emit(&e, t->bos))
		goto nomem;
	if (normalize(t, text, len, &norm))
		goto nomem;
	e.text = norm.p;
	if (norm.n) {
		e.sym = malloc(norm.n * sizeof(*e.sym));
		if (!e.sym)
			goto nomem;
	}
	int64_t ns = 0;
	for (size_t off = 0; off < norm.n; ns++) {
		size_t l = utf8_len((uint8_t)norm.p[off]);
		if (l > norm.n - off)
			l = norm.n - off;
		e.sym[ns] = (struct sym){off, l, ns - 1, -1};
		if (ns > 0)
			e.sym[ns - 1].next = ns;
		off += l;
	}
	for (int64_t i = 1; i < ns; i++)
		if (add_pair(&e, i - 1, i))
			goto nomem;
	while (e.heap.n) {
		struct bigram b = bigram_heap_pop(&e.heap);
		struct sym *l = &e.sym[b.left], *r = &e.sym[b.right];
		if (l->len == 0 || r->len == 0 || l->len + r->len != b.len)
			continue;
		l->len += r->len;
		r->len = 0;
		l->next = r->next;
		if (r->next >= 0)
			e.sym[r->next].prev = b.left;
		if (add_pair(&e, l->prev, b.left) || add_pair(&e, b.left, l->next))
			goto nomem;
	}
	for (int64_t i = ns ? 0 : -1; i >= 0; i = e.sym[i].next)
		if (resegment(&e, norm.p + e.sym[i].off, e.sym[i].len, 0))
			goto nomem;
	if (add_special && t->rules.add_eos && t->eos >= 0 && emit(&e, t->eos))
		goto nomem;
	*ids = e.ids;
	*n = e.n_ids;
	e.ids = NULL;
	goto out;
nomem:
	rc = qp_err_nomem(err);
out:
	free(norm.p);
	free(e.sym);
	free(e.heap.a);
	free(e.rev);
	free(e.ids);
	return rc;
}

/* ---- decoding ---- */

int qp_tokenizer_decode(const struct qp_tokenizer *t, const int32_t *ids, size_t n, char **text,
                        size_t *len, struct qp_err *err)
{
	if (t->json)
		return qp_tokjson_decode(t->json, ids, n, text, len, err);
	*text = NULL;
	*len = 0;
	struct buf o = {0};
	if (buf_put(&o, "", 0))
		return qp_err_nomem(err);
	bool first = true;
	for (size_t i = 0; i < n; i++) {
		int32_t id = ids[i];
		if (id < 0 || id >= t->n) {
			free(o.p);
			return qp_err_set(err, QP_EINVAL, "token %zu: id %d is out of range (%d pieces)", i,
			                  id, t->n);
		}
		int type = t->type[id];
		const char *p = t->piece[id];
		size_t pl = t->len[id];
		int rc = 0;
		if (type == T_CONTROL)
			continue;
		if (type == T_BYTE && pl == 6) {
			unsigned v;
			char c;
			if (sscanf(p, "<0x%2X>", &v) == 1) {
				c = (char)v;
				rc = buf_put(&o, &c, 1);
			}
		} else if (type == T_UNKNOWN) {
			rc = buf_put(&o, " \xe2\x81\x87 ", 5);
		} else {
			size_t j = 0;
			if (first && t->add_dummy_prefix && pl >= SPACE_MARK_LEN &&
			    memcmp(p, SPACE_MARK, SPACE_MARK_LEN) == 0)
				j = SPACE_MARK_LEN;
			while (j < pl && !rc) {
				if (pl - j >= SPACE_MARK_LEN && memcmp(p + j, SPACE_MARK, SPACE_MARK_LEN) == 0) {
					rc = buf_put(&o, " ", 1);
					j += SPACE_MARK_LEN;
				} else {
					rc = buf_put(&o, p + j, 1);
					j++;
				}
			}
		}
		if (rc) {
			free(o.p);
			return qp_err_nomem(err);
		}
		first = false;
	}
	*text = o.p;
	*len = o.n;
	return 0;
}

int32_t qp_tokenizer_n_vocab(const struct qp_tokenizer *t)
{
	return t->json ? qp_tokjson_n_vocab(t->json) : t->n;
}

int32_t qp_tokenizer_bos(const struct qp_tokenizer *t)
{
	return t->json ? qp_tokjson_bos(t->json) : t->bos;
}

int32_t qp_tokenizer_eos(const struct qp_tokenizer *t)
{
	return t->json ? qp_tokjson_eos(t->json) : t->eos;
}

const char *qp_tokenizer_piece(const struct qp_tokenizer *t, int32_t id)
{
	if (t->json)
		return qp_tokjson_piece(t->json, id);
	return id >= 0 && id < t->n ? t->piece[id] : NULL;
}

const char *qp_tokenizer_describe(const struct qp_tokenizer *t)
{
	return t->json ? qp_tokjson_describe(t->json) : t->desc;
}
