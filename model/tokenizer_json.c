/* tokenizer.json: BPE models as Hugging Face `tokenizers` (0.2x) runs them.
 *
 * Two families are covered: SentencePiece-style BPE with byte fallback
 * (Llama, Mistral: normalizer Prepend+Replace or pre-tokenizer Metaspace,
 * decoder Replace/ByteFallback/Fuse/Strip or Metaspace) and byte-level BPE
 * (GPT-2, Llama-3, Qwen2: pre-tokenizer ByteLevel, alone or after a Split
 * with one of the known regex patterns; normalizer NFC, from tables of
 * Python's unicodedata, whose Unicode version may differ from HF's). Any other component, option or
 * pattern is refused with the file and JSON path, never approximated.
 *
 * Encoding follows Tokenizer::encode step by step:
 *   0. The text must be a str for HF; bytes that are not valid UTF-8 are
 *      first replaced by U+FFFD, one per maximal invalid subsequence (what
 *      Python's bytes.decode(errors="replace") and Rust's from_utf8_lossy
 *      both do), so that ids equal HF's on the decoded string.
 *   1. Added tokens with normalized=false are cut out of the raw text
 *      (leftmost-longest, honouring lstrip/rstrip/single_word); each
 *      remaining piece is normalized and the normalized=true added tokens
 *      are cut out of it. Empty pieces are dropped after every split.
 *   2. The pre-tokenizers split every piece further (the spans below).
 *   3. The BPE model turns each piece into ids (word.rs merge_all: lowest
 *      merge rank first, ties to the leftmost pair).
 *   4. With add_special, the BOS/EOS ids are put around (see rules()).
 * The hand-written splitters stand in for Oniguruma on the three known
 * patterns; each comment spells out the backtracking it reproduces. */
#include "model/tokenizer_json.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/heap.h"
#include "model/unicode_tables.h"

#define MAX_IDS (1 << 24)

/* ---- growable byte buffer and span lists ---- */

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
	if (n)
		memcpy(b->p + b->n, s, n);
	b->n += n;
	b->p[b->n] = '\0';
	return 0;
}

/* A piece of text in an arena, or (id >= 0) an added token already cut
 * out. first: the piece starts at offset 0 of the original text, which
 * Metaspace's prepend_scheme "first" asks about. */
struct span {
	size_t off, len;
	int32_t id;
	bool first;
};

struct pieces {
	struct buf text;
	struct span *v;
	size_t n, cap;
};

static void pieces_free(struct pieces *p)
{
	free(p->text.p);
	free(p->v);
	memset(p, 0, sizeof(*p));
}

static int pieces_add(struct pieces *p, const char *s, size_t n, int32_t id, bool first)
{
	if (p->n == p->cap) {
		size_t nc = p->cap ? p->cap * 2 : 64;
		struct span *nv = realloc(p->v, nc * sizeof(*nv));
		if (!nv)
			return -1;
		p->v = nv;
		p->cap = nc;
	}
	size_t off = p->text.n;
	if (buf_put(&p->text, s, n))
		return -1;
	p->v[p->n++] = (struct span){off, n, id, first};
	return 0;
}

/* Close the piece whose bytes the caller appended to p->text since mark
 * (empty text pieces are dropped, as PreTokenizedString::split does). */
static int piece_end(struct pieces *p, size_t mark, bool first)
{
	if (p->text.n == mark)
		return 0;
	if (p->n == p->cap) {
		size_t nc = p->cap ? p->cap * 2 : 64;
		struct span *nv = realloc(p->v, nc * sizeof(*nv));
		if (!nv)
			return -1;
		p->v = nv;
		p->cap = nc;
	}
	p->v[p->n++] = (struct span){mark, p->text.n - mark, -1, first};
	return 0;
}

/* ---- UTF-8 ---- */

/* The character at s[0..n): its length, or 0 when it is not valid UTF-8,
 * with *bad set to the length of the maximal invalid subpart (at least 1;
 * the unit that gets one U+FFFD). */
static size_t utf8_char(const uint8_t *s, size_t n, uint32_t *cp, size_t *bad)
{
	uint8_t c = s[0];
	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	size_t need;
	uint8_t lo = 0x80, hi = 0xbf;
	uint32_t v;
	if (c >= 0xc2 && c <= 0xdf) {
		need = 1, v = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		need = 2, v = c & 0x0f;
		if (c == 0xe0)
			lo = 0xa0;
		if (c == 0xed)
			hi = 0x9f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		need = 3, v = c & 0x07;
		if (c == 0xf0)
			lo = 0x90;
		if (c == 0xf4)
			hi = 0x8f;
	} else {
		*bad = 1;
		return 0;
	}
	size_t i = 1;
	for (; i <= need && i < n; i++) {
		if (s[i] < lo || s[i] > hi)
			break;
		lo = 0x80, hi = 0xbf;
		v = (v << 6) | (s[i] & 0x3f);
	}
	if (i <= need) {
		*bad = i;
		return 0;
	}
	*cp = v;
	return need + 1;
}

/* Decode the character at s[i] of a string known to be valid UTF-8. */
static size_t dec(const char *s, size_t n, size_t i, uint32_t *cp)
{
	size_t bad;
	size_t l = utf8_char((const uint8_t *)s + i, n - i, cp, &bad);
	if (l == 0) { /* unreachable on valid text; be safe anyway */
		*cp = 0xfffd;
		return bad;
	}
	return l;
}

static size_t enc(uint32_t cp, char *o)
{
	if (cp < 0x80) {
		o[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (char)(0xc0 | (cp >> 6));
		o[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		o[0] = (char)(0xe0 | (cp >> 12));
		o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		o[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	o[0] = (char)(0xf0 | (cp >> 18));
	o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	o[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

#define REPLACEMENT "\xef\xbf\xbd" /* U+FFFD */

/* Step 0 of the file comment: append s[n] to o with every maximal invalid
 * subsequence replaced by U+FFFD. */
static int put_lossy(struct buf *o, const char *s, size_t n)
{
	size_t i = 0, run = 0;
	while (i < n) {
		uint32_t cp;
		size_t bad;
		size_t l = utf8_char((const uint8_t *)s + i, n - i, &cp, &bad);
		if (l) {
			i += l;
			continue;
		}
		if (buf_put(o, s + run, i - run) || buf_put(o, REPLACEMENT, 3))
			return -1;
		i += bad;
		run = i;
	}
	return buf_put(o, s + run, n - run);
}

static bool is_valid_utf8(const char *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		uint32_t cp;
		size_t bad, l = utf8_char((const uint8_t *)s + i, n - i, &cp, &bad);
		if (!l)
			return false;
		i += l;
	}
	return true;
}

/* ---- hash maps: text -> id, merge pair -> (rank, id) ---- */

static uint64_t hash_bytes(const char *s, size_t n)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */
	for (size_t i = 0; i < n; i++) {
		h ^= (uint8_t)s[i];
		h *= 1099511628211ull;
	}
	return h;
}

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	return x ^ (x >> 33);
}

struct merge {
	uint64_t key;      /* left id << 32 | right id; UINT64_MAX when free */
	int32_t rank, id;
};

enum { N_PREPEND, N_REPLACE, N_NFC };
struct norm {
	int kind;
	char *a, *b;       /* prepend: a; replace: a by b */
	size_t na, nb;
};

enum { P_METASPACE, P_BYTELEVEL, P_SPLIT, P_DIGITS };
enum { PAT_GPT2, PAT_LLAMA3, PAT_QWEN2 };
enum { B_REMOVED, B_ISOLATED, B_MERGED_PREV, B_MERGED_NEXT, B_CONTIGUOUS };
enum { PREPEND_NEVER, PREPEND_FIRST, PREPEND_ALWAYS };
struct pre {
	int kind;
	uint32_t repl;     /* metaspace */
	int prepend;       /* metaspace: PREPEND_* */
	bool split;        /* metaspace */
	bool prefix_space; /* bytelevel add_prefix_space */
	bool use_regex;    /* bytelevel */
	int pattern;       /* split: PAT_* */
	int behavior;      /* split, digits: B_* */
};

enum { D_REPLACE, D_BYTEFALLBACK, D_FUSE, D_STRIP, D_BYTELEVEL, D_METASPACE };
struct decoder {
	int kind;
	char *a, *b;       /* replace a by b */
	size_t na, nb;
	uint32_t ch;       /* strip: the character; metaspace: the replacement */
	size_t start, stop;
	int prepend;       /* metaspace */
};

struct added {
	int32_t id;
	char *s;           /* content; normalized tokens: its normalized form */
	size_t n;
	bool special, lstrip, rstrip, normalized, single_word;
};

struct qp_tokjson {
	int32_t n;                  /* ids 0..n-1 (vocab and added tokens) */
	char **piece;               /* text of each id, NULL for a hole */
	uint32_t *len;
	bool *special;              /* skipped by decode */
	int32_t *slot;              /* model vocab: text -> id hash slots, -1 empty */
	size_t mask;
	struct merge *merges;
	size_t merge_mask;
	int32_t unk;                /* model unk id, -1 if none */
	bool byte_fallback, fuse_unk, ignore_merges;
	int32_t byte_id[256];       /* <0xXX> ids for byte fallback, -1 if absent */

	struct added *added;
	size_t n_added;
	struct norm *norm;
	size_t n_norm;
	struct pre *pre;
	size_t n_pre;
	struct decoder *dec;
	size_t n_dec;
	bool has_decoder;

	int32_t *prefix, *suffix;   /* ids put around the text when add_special */
	size_t n_prefix, n_suffix;
	int32_t bos, eos;
	uint32_t bchar[256];        /* GPT-2's byte -> character table */
	int16_t cbyte[324];         /* and back, -1 where none */
	bool first_byte[2][256];    /* some added token (normalized or not) starts with it */
	char desc[160];
};

static int32_t vocab_get(const struct qp_tokjson *t, const char *s, size_t n)
{
	for (size_t i = hash_bytes(s, n) & t->mask;; i = (i + 1) & t->mask) {
		int32_t id = t->slot[i];
		if (id < 0)
			return -1;
		if (t->len[id] == n && memcmp(t->piece[id], s, n) == 0)
			return id;
	}
}

static const struct merge *merge_get(const struct qp_tokjson *t, int32_t a, int32_t b)
{
	uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
	for (size_t i = mix64(key) & t->merge_mask;; i = (i + 1) & t->merge_mask) {
		if (t->merges[i].key == key)
			return &t->merges[i];
		if (t->merges[i].key == UINT64_MAX)
			return NULL;
	}
}

void qp_tokjson_free(struct qp_tokjson *t)
{
	if (!t)
		return;
	for (int32_t i = 0; t->piece && i < t->n; i++)
		free(t->piece[i]);
	free(t->piece);
	free(t->len);
	free(t->special);
	free(t->slot);
	free(t->merges);
	for (size_t i = 0; i < t->n_added; i++)
		free(t->added[i].s);
	free(t->added);
	for (size_t i = 0; i < t->n_norm; i++) {
		free(t->norm[i].a);
		free(t->norm[i].b);
	}
	free(t->norm);
	free(t->pre);
	for (size_t i = 0; i < t->n_dec; i++) {
		free(t->dec[i].a);
		free(t->dec[i].b);
	}
	free(t->dec);
	free(t->prefix);
	free(t->suffix);
	free(t);
}

/* ---- loading ---- */

struct ld {
	const char *name;           /* file name for messages */
	struct qp_err *err;
	struct qp_tokjson *t;
	int32_t *added_idx;         /* id -> index in t->added, -1 */
};

static int fail(struct ld *c, int code, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int fail(struct ld *c, int code, const char *path, const char *fmt, ...)
{
	char msg[600];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return qp_err_set(c->err, code, "%s: %s: %s", c->name, path, msg);
}

#define BAD(c, path, ...) fail((c), QP_ECORRUPT, (path), __VA_ARGS__)
#define UNSUP(c, path, ...) fail((c), QP_EINVAL, (path), __VA_ARGS__)

/* path + "." + key, or path + "[i]", into a caller's buffer */
#define SUBPATH(buf, path, key) snprintf((buf), sizeof(buf), "%s.%s", (path), (key))
#define SUBIDX(buf, path, i) snprintf((buf), sizeof(buf), "%s[%zu]", (path), (size_t)(i))

static int get_bool(struct ld *c, json_t *o, const char *key, bool dflt, bool *out, const char *path)
{
	json_t *v = json_object_get(o, key);
	if (!v || json_is_null(v)) {
		*out = dflt;
		return 0;
	}
	if (!json_is_boolean(v)) {
		char p[256];
		SUBPATH(p, path, key);
		return BAD(c, p, "expected true or false");
	}
	*out = json_is_true(v);
	return 0;
}

/* A string value; *s borrows from the JSON tree. */
static int as_str(struct ld *c, json_t *v, const char **s, size_t *n, const char *path)
{
	if (!json_is_string(v))
		return BAD(c, path, "expected a string");
	*s = json_string_value(v);
	*n = json_string_length(v);
	return 0;
}

static int get_str(struct ld *c, json_t *o, const char *key, const char **s, size_t *n,
                   const char *path)
{
	char p[256];
	SUBPATH(p, path, key);
	json_t *v = json_object_get(o, key);
	if (!v)
		return BAD(c, p, "is missing");
	return as_str(c, v, s, n, p);
}

/* A string of exactly one character, as a code point. */
static int get_char(struct ld *c, json_t *o, const char *key, uint32_t *cp, const char *path)
{
	const char *s;
	size_t n;
	int rc = get_str(c, o, key, &s, &n, path);
	if (rc)
		return rc;
	char p[256];
	SUBPATH(p, path, key);
	if (n == 0 || dec(s, n, 0, cp) != n)
		return BAD(c, p, "expected a single character");
	return 0;
}

static int get_size(struct ld *c, json_t *o, const char *key, size_t *out, const char *path)
{
	char p[256];
	SUBPATH(p, path, key);
	json_t *v = json_object_get(o, key);
	if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 1 << 20)
		return BAD(c, p, "expected an integer from 0 to %d", 1 << 20);
	*out = (size_t)json_integer_value(v);
	return 0;
}

static int dup_bytes(char **out, const char *s, size_t n)
{
	*out = malloc(n + 1);
	if (!*out)
		return -1;
	memcpy(*out, s, n);
	(*out)[n] = '\0';
	return 0;
}

/* The "type" of a component object at path. */
static int get_type(struct ld *c, json_t *v, const char *path, const char **type)
{
	if (!json_is_object(v))
		return BAD(c, path, "expected an object or null");
	size_t n;
	return get_str(c, v, "type", type, &n, path);
}

/* A Replace-style pattern: {"String": s}; regex patterns are refused. */
static int get_string_pattern(struct ld *c, json_t *o, const char *path, const char **s, size_t *n,
                              bool *is_regex)
{
	char p[256], q[300];
	SUBPATH(p, path, "pattern");
	json_t *pat = json_object_get(o, "pattern");
	if (!json_is_object(pat))
		return BAD(c, p, "expected {\"String\": ...} or {\"Regex\": ...}");
	json_t *v;
	if ((v = json_object_get(pat, "String"))) {
		SUBPATH(q, p, "String");
		*is_regex = false;
	} else if ((v = json_object_get(pat, "Regex"))) {
		SUBPATH(q, p, "Regex");
		*is_regex = true;
	} else {
		return BAD(c, p, "expected {\"String\": ...} or {\"Regex\": ...}");
	}
	return as_str(c, v, s, n, q);
}

/* A Replace normalizer's or decoder's {pattern: {String: a}, content: b},
 * both copied into *a / *b (the caller frees them); regex patterns are
 * refused, as tokenizers' Replace would need a regex engine here. */
static int get_replace(struct ld *c, json_t *v, const char *path, char **a, size_t *na, char **b, size_t *nb)
{
	const char *s, *r;
	size_t n, nr;
	bool re;
	char p[256];
	int rc;
	if ((rc = get_string_pattern(c, v, path, &s, &n, &re)) || (rc = get_str(c, v, "content", &r, &nr, path)))
		return rc;
	SUBPATH(p, path, "pattern.Regex");
	if (re)
		return UNSUP(c, p, "regex pattern \"%.80s\" is not supported (string patterns only)", s);
	SUBPATH(p, path, "pattern.String");
	if (n == 0)
		return BAD(c, p, "the pattern is empty");
	if (dup_bytes(a, s, n))
		return qp_err_nomem(c->err);
	if (dup_bytes(b, r, nr)) {
		free(*a);
		*a = NULL;
		return qp_err_nomem(c->err);
	}
	*na = n, *nb = nr;
	return 0;
}

static int prepend_scheme(struct ld *c, json_t *o, const char *path, int *out)
{
	json_t *v = json_object_get(o, "prepend_scheme");
	if (!v || json_is_null(v)) { /* before tokenizers 0.14: add_prefix_space */
		bool aps;
		int rc = get_bool(c, o, "add_prefix_space", true, &aps, path);
		if (rc) /* aps is unset */
			return rc;
		*out = aps ? PREPEND_ALWAYS : PREPEND_NEVER;
		return 0;
	}
	char p[256];
	SUBPATH(p, path, "prepend_scheme");
	const char *s = json_string_value(v);
	if (s && strcmp(s, "first") == 0)
		*out = PREPEND_FIRST;
	else if (s && strcmp(s, "always") == 0)
		*out = PREPEND_ALWAYS;
	else if (s && strcmp(s, "never") == 0)
		*out = PREPEND_NEVER;
	else
		return BAD(c, p, "expected \"first\", \"always\" or \"never\"");
	return 0;
}

/* A "Sequence" normalizer, pre-tokenizer, decoder or post-processor: its
 * array under key, each item parsed by fn (with arg) in order */
static int parse_seq(struct ld *c, json_t *v, const char *path, const char *key,
                     int (*fn)(struct ld *, json_t *, const char *, void *), void *arg)
{
	char p[256];
	SUBPATH(p, path, key);
	json_t *a = json_object_get(v, key);
	if (!json_is_array(a))
		return BAD(c, p, "expected an array");
	for (size_t i = 0; i < json_array_size(a); i++) {
		char q[300];
		SUBIDX(q, p, i);
		int rc = fn(c, json_array_get(a, i), q, arg);
		if (rc)
			return rc;
	}
	return 0;
}

static int parse_norm(struct ld *c, json_t *v, const char *path, void *unused)
{
	(void)unused;
	struct qp_tokjson *t = c->t;
	if (!v || json_is_null(v))
		return 0;
	const char *type;
	int rc = get_type(c, v, path, &type);
	if (rc)
		return rc;
	char p[256];
	if (strcmp(type, "Sequence") == 0)
		return parse_seq(c, v, path, "normalizers", parse_norm, NULL);
	struct norm nm = {0};
	const char *s;
	size_t n;
	if (strcmp(type, "Prepend") == 0) {
		if ((rc = get_str(c, v, "prepend", &s, &n, path)))
			return rc;
		nm.kind = N_PREPEND;
		if (dup_bytes(&nm.a, s, n))
			return qp_err_nomem(c->err);
		nm.na = n;
	} else if (strcmp(type, "Replace") == 0) {
		if ((rc = get_replace(c, v, path, &nm.a, &nm.na, &nm.b, &nm.nb)))
			return rc;
		nm.kind = N_REPLACE;
	} else if (strcmp(type, "NFC") == 0) {
		nm.kind = N_NFC;
	} else {
		SUBPATH(p, path, "type");
		return UNSUP(c, p, "normalizer \"%.40s\" is not supported (supported: Sequence, Prepend, "
		             "Replace, NFC)", type);
	}
	struct norm *nn = realloc(t->norm, (t->n_norm + 1) * sizeof(*nn));
	if (!nn) {
		free(nm.a);
		free(nm.b);
		return qp_err_nomem(c->err);
	}
	t->norm = nn;
	t->norm[t->n_norm++] = nm;
	return 0;
}

/* The pre-tokenizer patterns recognised, exactly as tokenizers writes them. */
static const struct {
	const char *re;
	int pat;
	const char *what;
} known_patterns[] = {
	{"'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+", PAT_GPT2,
	 "GPT-2"},
	{"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
	 "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
	 PAT_LLAMA3, "Llama-3"},
	{"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
	 "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
	 PAT_QWEN2, "Qwen2"},
};

static int parse_pre(struct ld *c, json_t *v, const char *path, void *unused)
{
	(void)unused;
	struct qp_tokjson *t = c->t;
	if (!v || json_is_null(v))
		return 0;
	const char *type, *s;
	size_t n;
	int rc = get_type(c, v, path, &type);
	if (rc)
		return rc;
	char p[256];
	struct pre pr = {0};
	if (strcmp(type, "Sequence") == 0)
		return parse_seq(c, v, path, "pretokenizers", parse_pre, NULL); else if (strcmp(type, "Metaspace") == 0) {
		pr.kind = P_METASPACE;
		if ((rc = get_char(c, v, "replacement", &pr.repl, path)) ||
		    (rc = prepend_scheme(c, v, path, &pr.prepend)) ||
		    (rc = get_bool(c, v, "split", true, &pr.split, path)))
			return rc;
	} else if (strcmp(type, "ByteLevel") == 0) {
		pr.kind = P_BYTELEVEL;
		if ((rc = get_bool(c, v, "add_prefix_space", true, &pr.prefix_space, path)) ||
		    (rc = get_bool(c, v, "use_regex", true, &pr.use_regex, path)))
			return rc;
	} else if (strcmp(type, "Digits") == 0) {
		bool individual;
		if ((rc = get_bool(c, v, "individual_digits", false, &individual, path)))
			return rc;
		pr.kind = P_DIGITS;
		pr.behavior = individual ? B_ISOLATED : B_CONTIGUOUS;
	} else if (strcmp(type, "Split") == 0) {
		bool invert, re;
		if ((rc = get_string_pattern(c, v, path, &s, &n, &re)) ||
		    (rc = get_bool(c, v, "invert", false, &invert, path)))
			return rc;
		SUBPATH(p, path, "invert");
		if (invert)
			return UNSUP(c, p, "inverted patterns are not supported");
		SUBPATH(p, path, re ? "pattern.Regex" : "pattern.String");
		if (!re)
			return UNSUP(c, p, "string pattern \"%.80s\" is not supported (the GPT-2, Llama-3 "
			             "and Qwen2 regex patterns only)", s);
		pr.kind = P_SPLIT;
		pr.pattern = -1;
		for (size_t i = 0; i < sizeof(known_patterns) / sizeof(known_patterns[0]); i++)
			if (strlen(known_patterns[i].re) == n && memcmp(known_patterns[i].re, s, n) == 0)
				pr.pattern = known_patterns[i].pat;
		if (pr.pattern < 0)
			return UNSUP(c, p, "regex \"%.200s\" is not supported (known: the GPT-2, Llama-3 "
			             "and Qwen2 patterns)", s);
		const char *b;
		size_t nb;
		if ((rc = get_str(c, v, "behavior", &b, &nb, path)))
			return rc;
		static const char *const names[] = {"Removed", "Isolated", "MergedWithPrevious",
		                                    "MergedWithNext", "Contiguous"};
		pr.behavior = -1;
		for (int i = 0; i < 5; i++)
			if (strcmp(b, names[i]) == 0)
				pr.behavior = i;
		SUBPATH(p, path, "behavior");
		if (pr.behavior < 0)
			return BAD(c, p, "\"%.40s\" is not a split behavior (Removed, Isolated, "
			           "MergedWithPrevious, MergedWithNext, Contiguous)", b);
	} else {
		SUBPATH(p, path, "type");
		return UNSUP(c, p, "pre-tokenizer \"%.40s\" is not supported (supported: Sequence, "
		             "Metaspace, ByteLevel, Split, Digits)", type);
	}
	struct pre *np = realloc(t->pre, (t->n_pre + 1) * sizeof(*np));
	if (!np)
		return qp_err_nomem(c->err);
	t->pre = np;
	t->pre[t->n_pre++] = pr;
	return 0;
}

static int parse_dec(struct ld *c, json_t *v, const char *path, void *unused)
{
	(void)unused;
	struct qp_tokjson *t = c->t;
	if (!v || json_is_null(v))
		return 0;
	t->has_decoder = true;
	const char *type;
	int rc = get_type(c, v, path, &type);
	if (rc)
		return rc;
	char p[256];
	struct decoder d = {0};
	if (strcmp(type, "Sequence") == 0)
		return parse_seq(c, v, path, "decoders", parse_dec, NULL); else if (strcmp(type, "Replace") == 0) {
		if ((rc = get_replace(c, v, path, &d.a, &d.na, &d.b, &d.nb)))
			return rc;
		d.kind = D_REPLACE;
	} else if (strcmp(type, "ByteFallback") == 0) {
		d.kind = D_BYTEFALLBACK;
	} else if (strcmp(type, "Fuse") == 0) {
		d.kind = D_FUSE;
	} else if (strcmp(type, "ByteLevel") == 0) {
		d.kind = D_BYTELEVEL;
	} else if (strcmp(type, "Strip") == 0) {
		d.kind = D_STRIP;
		if ((rc = get_char(c, v, "content", &d.ch, path)) ||
		    (rc = get_size(c, v, "start", &d.start, path)) ||
		    (rc = get_size(c, v, "stop", &d.stop, path)))
			return rc;
	} else if (strcmp(type, "Metaspace") == 0) {
		d.kind = D_METASPACE;
		if ((rc = get_char(c, v, "replacement", &d.ch, path)) ||
		    (rc = prepend_scheme(c, v, path, &d.prepend)))
			return rc;
	} else {
		SUBPATH(p, path, "type");
		return UNSUP(c, p, "decoder \"%.40s\" is not supported (supported: Sequence, Replace, "
		             "ByteFallback, Fuse, Strip, ByteLevel, Metaspace)", type);
	}
	struct decoder *nd = realloc(t->dec, (t->n_dec + 1) * sizeof(*nd));
	if (!nd) {
		free(d.a);
		free(d.b);
		return qp_err_nomem(c->err);
	}
	t->dec = nd;
	t->dec[t->n_dec++] = d;
	return 0;
}

static int normalize(const struct qp_tokjson *t, const char *s, size_t n, struct buf *o);
static int grow(void **p, size_t *cap, size_t need, size_t size);
static uint32_t byte_char(uint8_t b);

static int id_of(struct ld *c, int32_t max, json_t *v, int32_t *id, const char *path)
{
	if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= max)
		return BAD(c, path, "expected an id from 0 to %d", max - 1);
	*id = (int32_t)json_integer_value(v);
	return 0;
}

/* model.vocab and the ids of added_tokens fix t->n; then the vocab. */
static int parse_vocab(struct ld *c, json_t *model, json_t *added)
{
	struct qp_tokjson *t = c->t;
	json_t *vocab = json_object_get(model, "vocab");
	if (!json_is_object(vocab))
		return BAD(c, "model.vocab", "expected an object of token: id");
	int32_t max = -1, id;
	const char *key;
	json_t *v;
	char p[300];
	int rc;
	json_object_foreach(vocab, key, v) {
		snprintf(p, sizeof(p), "model.vocab[\"%.80s\"]", key);
		if ((rc = id_of(c, MAX_IDS, v, &id, p)))
			return rc;
		if (id > max)
			max = id;
	}
	for (size_t i = 0; i < json_array_size(added); i++) {
		json_t *a = json_array_get(added, i);
		snprintf(p, sizeof(p), "added_tokens[%zu].id", i);
		if (!json_is_object(a))
			return BAD(c, p, "expected an object");
		if ((rc = id_of(c, MAX_IDS, json_object_get(a, "id"), &id, p)))
			return rc;
		if (id > max)
			max = id;
	}
	if (max < 0)
		return BAD(c, "model.vocab", "the vocabulary is empty");
	t->n = max + 1;
	size_t slots = 16;
	while (slots < 2 * (size_t)t->n)
		slots *= 2;
	t->piece = calloc((size_t)t->n, sizeof(char *));
	t->len = calloc((size_t)t->n, sizeof(uint32_t));
	t->special = calloc((size_t)t->n, sizeof(bool));
	t->slot = malloc(slots * sizeof(int32_t));
	c->added_idx = malloc((size_t)t->n * sizeof(int32_t));
	if (!t->piece || !t->len || !t->special || !t->slot || !c->added_idx)
		return qp_err_nomem(c->err);
	t->mask = slots - 1;
	memset(t->slot, 0xff, slots * sizeof(int32_t));
	memset(c->added_idx, 0xff, (size_t)t->n * sizeof(int32_t));
	json_object_foreach(vocab, key, v) {
		id = (int32_t)json_integer_value(v);
		size_t n = strlen(key);
		snprintf(p, sizeof(p), "model.vocab[\"%.80s\"]", key);
		if (t->piece[id])
			return BAD(c, p, "id %d is already given to \"%.80s\"", id, t->piece[id]);
		if (dup_bytes(&t->piece[id], key, n))
			return qp_err_nomem(c->err);
		t->len[id] = (uint32_t)n;
		size_t i = hash_bytes(key, n) & t->mask;
		while (t->slot[i] >= 0)
			i = (i + 1) & t->mask;
		t->slot[i] = id;
	}
	for (int b = 0; b < 256; b++) {
		char name[8];
		snprintf(name, sizeof(name), "<0x%02X>", b);
		t->byte_id[b] = vocab_get(t, name, 6);
	}
	return 0;
}

static int parse_merges(struct ld *c, json_t *model)
{
	struct qp_tokjson *t = c->t;
	json_t *m = json_object_get(model, "merges");
	if (!m || json_is_null(m))
		m = NULL;
	else if (!json_is_array(m))
		return BAD(c, "model.merges", "expected an array");
	size_t nm = m ? json_array_size(m) : 0, slots = 16;
	while (slots < 2 * nm + 2)
		slots *= 2;
	t->merges = malloc(slots * sizeof(*t->merges));
	if (!t->merges)
		return qp_err_nomem(c->err);
	t->merge_mask = slots - 1;
	for (size_t i = 0; i < slots; i++)
		t->merges[i].key = UINT64_MAX;
	struct buf cat = {0};
	int rc = 0;
	for (size_t r = 0; r < nm; r++) {
		json_t *e = json_array_get(m, r);
		const char *a, *b;
		size_t na, nb;
		char p[64];
		SUBIDX(p, "model.merges", r);
		if (json_is_string(e)) { /* "a b": the tokens split at the first space */
			const char *s = json_string_value(e), *sp = memchr(s, ' ', json_string_length(e));
			if (!sp) {
				rc = BAD(c, p, "expected a string \"a b\" or a pair");
				break;
			}
			a = s, na = (size_t)(sp - s);
			b = sp + 1, nb = json_string_length(e) - na - 1;
		} else if (json_is_array(e) && json_array_size(e) == 2 &&
		           json_is_string(json_array_get(e, 0)) && json_is_string(json_array_get(e, 1))) {
			a = json_string_value(json_array_get(e, 0));
			na = json_string_length(json_array_get(e, 0));
			b = json_string_value(json_array_get(e, 1));
			nb = json_string_length(json_array_get(e, 1));
		} else {
			rc = BAD(c, p, "expected a string \"a b\" or a pair");
			break;
		}
		int32_t ia = vocab_get(t, a, na), ib = vocab_get(t, b, nb);
		cat.n = 0;
		if (buf_put(&cat, a, na) || buf_put(&cat, b, nb)) {
			rc = qp_err_nomem(c->err);
			break;
		}
		int32_t ic = vocab_get(t, cat.p, cat.n);
		if (ia < 0 || ib < 0 || ic < 0) {
			rc = BAD(c, p, "\"%.60s\" is not in model.vocab",
			         ia < 0 ? a : ib < 0 ? b : cat.p);
			break;
		}
		/* a pair listed twice keeps its last rank, as HF's HashMap collect */
		uint64_t key = (uint64_t)(uint32_t)ia << 32 | (uint32_t)ib;
		size_t i = mix64(key) & t->merge_mask;
		while (t->merges[i].key != UINT64_MAX && t->merges[i].key != key)
			i = (i + 1) & t->merge_mask;
		t->merges[i] = (struct merge){key, (int32_t)r, ic};
	}
	free(cat.p);
	return rc;
}

static int parse_model(struct ld *c, json_t *model, json_t *added)
{
	struct qp_tokjson *t = c->t;
	if (!json_is_object(model))
		return BAD(c, "model", "expected an object");
	const char *type;
	size_t n;
	int rc = get_str(c, model, "type", &type, &n, "model");
	if (rc)
		return rc;
	if (strcmp(type, "BPE") != 0)
		return UNSUP(c, "model.type", "\"%.40s\" is not supported (supported: BPE)", type);
	json_t *v = json_object_get(model, "dropout");
	if (v && !json_is_null(v) && !(json_is_number(v) && json_number_value(v) == 0.0))
		return UNSUP(c, "model.dropout", "BPE dropout is not supported (null or 0 only)");
	static const char *const affix[] = {"continuing_subword_prefix", "end_of_word_suffix"};
	for (int i = 0; i < 2; i++) {
		v = json_object_get(model, affix[i]);
		if (v && !json_is_null(v) && !(json_is_string(v) && json_string_length(v) == 0)) {
			char p[64];
			SUBPATH(p, "model", affix[i]);
			return UNSUP(c, p, "is not supported (null only)");
		}
	}
	if ((rc = get_bool(c, model, "byte_fallback", false, &t->byte_fallback, "model")) ||
	    (rc = get_bool(c, model, "fuse_unk", false, &t->fuse_unk, "model")) ||
	    (rc = get_bool(c, model, "ignore_merges", false, &t->ignore_merges, "model")) ||
	    (rc = parse_vocab(c, model, added)) || (rc = parse_merges(c, model)))
		return rc;
	t->unk = -1;
	v = json_object_get(model, "unk_token");
	if (v && !json_is_null(v)) {
		const char *s = NULL;
		if ((rc = as_str(c, v, &s, &n, "model.unk_token")))
			return rc;
		if ((t->unk = vocab_get(t, s, n)) < 0)
			return BAD(c, "model.unk_token", "\"%.60s\" is not in model.vocab", s);
	}
	return 0;
}

static int parse_added(struct ld *c, json_t *added)
{
	struct qp_tokjson *t = c->t;
	if (!added || json_is_null(added))
		return 0;
	if (!json_is_array(added))
		return BAD(c, "added_tokens", "expected an array");
	size_t na = json_array_size(added);
	t->added = calloc(na ? na : 1, sizeof(*t->added));
	if (!t->added)
		return qp_err_nomem(c->err);
	for (size_t i = 0; i < na; i++) {
		json_t *a = json_array_get(added, i);
		char p[64];
		SUBIDX(p, "added_tokens", i);
		struct added *ad = &t->added[t->n_added];
		const char *s;
		size_t n;
		int rc;
		if ((rc = get_str(c, a, "content", &s, &n, p)) ||
		    (rc = get_bool(c, a, "special", false, &ad->special, p)) ||
		    (rc = get_bool(c, a, "normalized", !ad->special, &ad->normalized, p)) ||
		    (rc = get_bool(c, a, "lstrip", false, &ad->lstrip, p)) ||
		    (rc = get_bool(c, a, "rstrip", false, &ad->rstrip, p)) ||
		    (rc = get_bool(c, a, "single_word", false, &ad->single_word, p)))
			return rc;
		if (n == 0) {
			char q[80];
			SUBPATH(q, p, "content");
			return BAD(c, q, "an added token cannot be empty");
		}
		/* HF keeps the model's id for a content the vocab has (it warns when
		 * the file says otherwise), else the file's id */
		int32_t id = vocab_get(t, s, n);
		if (id < 0) {
			id = (int32_t)json_integer_value(json_object_get(a, "id"));
			if (t->piece[id]) {
				char q[80];
				SUBPATH(q, p, "id");
				return BAD(c, q, "id %d is \"%.60s\" in model.vocab", id, t->piece[id]);
			}
		}
		if (c->added_idx[id] >= 0) {
			char q[80];
			SUBPATH(q, p, "id");
			return BAD(c, q, "id %d is already an added token", id);
		}
		ad->id = id;
		if (ad->normalized) {
			struct buf nb = {0};
			if (normalize(t, s, n, &nb) || buf_put(&nb, "", 0)) {
				free(nb.p);
				return qp_err_nomem(c->err);
			}
			ad->s = nb.p, ad->n = nb.n;
		} else {
			if (dup_bytes(&ad->s, s, n))
				return qp_err_nomem(c->err);
			ad->n = n;
		}
		t->n_added++;
		c->added_idx[id] = (int32_t)i;
		t->special[id] = ad->special;
		if (!t->piece[id]) { /* give a hole its text for decode and piece() */
			if (dup_bytes(&t->piece[id], s, n))
				return qp_err_nomem(c->err);
			t->len[id] = (uint32_t)n;
		}
	}
	return 0;
}

/* What TemplateProcessing's "single" template puts around the text. */
struct tmpl {
	bool present;
	int32_t *prefix, *suffix;
	size_t n_prefix, n_suffix;
};

static int push_id(int32_t **v, size_t *n, int32_t id)
{
	int32_t *nv = realloc(*v, (*n + 1) * sizeof(int32_t));
	if (!nv)
		return -1;
	*v = nv;
	nv[(*n)++] = id;
	return 0;
}

static int parse_template(struct ld *c, json_t *v, const char *path, struct tmpl *tp)
{
	char p[256], q[300], r[360];
	if (tp->present)
		return UNSUP(c, path, "a second TemplateProcessing is not supported");
	tp->present = true;
	SUBPATH(p, path, "single");
	json_t *single = json_object_get(v, "single");
	json_t *specials = json_object_get(v, "special_tokens");
	if (!json_is_array(single))
		return BAD(c, p, "expected an array");
	bool seen_a = false;
	for (size_t i = 0; i < json_array_size(single); i++) {
		json_t *it = json_array_get(single, i), *x;
		SUBIDX(q, p, i);
		if ((x = json_object_get(it, "Sequence"))) {
			SUBPATH(r, q, "Sequence.id");
			const char *sid = json_string_value(json_object_get(x, "id"));
			if (!sid || strcmp(sid, "A") != 0 || seen_a)
				return BAD(c, r, "expected the one sequence \"A\"");
			seen_a = true;
		} else if ((x = json_object_get(it, "SpecialToken"))) {
			SUBPATH(r, q, "SpecialToken.id");
			const char *name = json_string_value(json_object_get(x, "id"));
			if (!name)
				return BAD(c, r, "expected a string");
			json_t *st = json_object_get(specials, name);
			json_t *ids = json_object_get(st, "ids");
			if (!json_is_array(ids))
				return BAD(c, r, "\"%.60s\" has no ids in %s.special_tokens", name, path);
			for (size_t k = 0; k < json_array_size(ids); k++) {
				int32_t id;
				char s[400];
				snprintf(s, sizeof(s), "%s.special_tokens[\"%.60s\"].ids[%zu]", path, name, k);
				int rc = id_of(c, c->t->n, json_array_get(ids, k), &id, s);
				if (rc)
					return rc;
				if (seen_a ? push_id(&tp->suffix, &tp->n_suffix, id)
				           : push_id(&tp->prefix, &tp->n_prefix, id))
					return qp_err_nomem(c->err);
			}
		} else {
			return BAD(c, q, "expected {\"Sequence\": ...} or {\"SpecialToken\": ...}");
		}
	}
	if (!seen_a)
		return BAD(c, p, "the template has no sequence \"A\"");
	return 0;
}

static int parse_post(struct ld *c, json_t *v, const char *path, void *tmpl)
{
	struct tmpl *tp = tmpl;
	if (!v || json_is_null(v))
		return 0;
	const char *type;
	int rc = get_type(c, v, path, &type);
	if (rc)
		return rc;
	char p[256];
	if (strcmp(type, "Sequence") == 0)
		return parse_seq(c, v, path, "processors", parse_post, tp);
	if (strcmp(type, "ByteLevel") == 0) /* trims offsets only; no ids */
		return 0;
	if (strcmp(type, "TemplateProcessing") == 0)
		return parse_template(c, v, path, tp);
	SUBPATH(p, path, "type");
	return UNSUP(c, p, "post-processor \"%.40s\" is not supported (supported: Sequence, "
	             "ByteLevel, TemplateProcessing)", type);
}

/* Id of a token named by text: an added token's content, else the vocab. */
static int32_t token_id(const struct qp_tokjson *t, const char *s, size_t n)
{
	for (size_t i = 0; i < t->n_added; i++)
		if (t->piece[t->added[i].id] && t->len[t->added[i].id] == n &&
		    memcmp(t->piece[t->added[i].id], s, n) == 0)
			return t->added[i].id;
	return vocab_get(t, s, n);
}

/* tokenizer_config.json's bos_token / eos_token: a string, an object with
 * "content" (AddedToken), or null/absent (*id = -1). */
static int config_token(struct ld *c, json_t *root, const char *key, int32_t *id)
{
	json_t *v = json_object_get(root, key);
	*id = -1;
	if (!v || json_is_null(v))
		return 0;
	if (json_is_object(v))
		v = json_object_get(v, "content");
	if (!json_is_string(v))
		return BAD(c, key, "expected a string or an object with \"content\"");
	*id = token_id(c->t, json_string_value(v), json_string_length(v));
	if (*id < 0)
		return BAD(c, key, "\"%.60s\" is neither an added token nor in the vocabulary",
		           json_string_value(v));
	return 0;
}

/* The BOS/EOS rules. transformers' Llama-style tokenizers rebuild the
 * template from tokenizer_config.json's add_bos_token / add_eos_token with
 * its bos_token / eos_token, so a key present there decides its side; a
 * side the config is silent on follows the post_processor's template, as
 * `tokenizers` alone applies it. */
static int rules(struct ld *c, const struct tmpl *tp, const void *cfg, size_t cfg_len,
                 const char *cfg_name)
{
	struct qp_tokjson *t = c->t;
	json_t *root = NULL;
	int rc = 0;
	int32_t bos = -1, eos = -1;
	bool has[2] = {false, false}, add[2] = {false, false};
	if (cfg) {
		json_error_t je;
		root = json_loadb(cfg, cfg_len, JSON_REJECT_DUPLICATES, &je);
		if (!root)
			return qp_err_set(c->err, QP_ECORRUPT, "%s:%d:%d: %s", cfg_name, je.line, je.column,
			                  je.text);
		struct ld cc = *c;
		cc.name = cfg_name;
		if (!json_is_object(root)) {
			rc = qp_err_set(c->err, QP_ECORRUPT, "%s: not a JSON object", cfg_name);
			goto out;
		}
		static const char *const keys[2] = {"add_bos_token", "add_eos_token"};
		for (int i = 0; i < 2; i++) {
			json_t *v = json_object_get(root, keys[i]);
			if (!v || json_is_null(v))
				continue;
			if (!json_is_boolean(v)) {
				rc = BAD(&cc, keys[i], "expected true or false");
				goto out;
			}
			has[i] = true;
			add[i] = json_is_true(v);
		}
		if ((rc = config_token(&cc, root, "bos_token", &bos)) ||
		    (rc = config_token(&cc, root, "eos_token", &eos)))
			goto out;
		if (add[0] && bos < 0 && !(tp->n_prefix == 1)) {
			rc = BAD(&cc, "add_bos_token", "is true but no bos_token is named");
			goto out;
		}
		if (add[1] && eos < 0 && !(tp->n_suffix == 1)) {
			rc = BAD(&cc, "add_eos_token", "is true but no eos_token is named");
			goto out;
		}
	}
	if (bos < 0 && tp->n_prefix == 1)
		bos = tp->prefix[0];
	if (eos < 0 && tp->n_suffix == 1)
		eos = tp->suffix[0];
	t->bos = bos, t->eos = eos;
	if (has[0] ? add[0] && push_id(&t->prefix, &t->n_prefix, bos) : 0)
		goto nomem;
	if (!has[0])
		for (size_t i = 0; i < tp->n_prefix; i++)
			if (push_id(&t->prefix, &t->n_prefix, tp->prefix[i]))
				goto nomem;
	if (has[1] ? add[1] && push_id(&t->suffix, &t->n_suffix, eos) : 0)
		goto nomem;
	if (!has[1])
		for (size_t i = 0; i < tp->n_suffix; i++)
			if (push_id(&t->suffix, &t->n_suffix, tp->suffix[i]))
				goto nomem;
	goto out;
nomem:
	rc = qp_err_nomem(c->err);
out:
	json_decref(root);
	return rc;
}

int qp_tokjson_parse(struct qp_tokjson **out, const void *json, size_t len, const char *name,
                     const void *cfg, size_t cfg_len, const char *cfg_name, struct qp_err *err)
{
	*out = NULL;
	json_error_t je;
	json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
	if (!root)
		return qp_err_set(err, QP_ECORRUPT, "%s:%d:%d: %s", name, je.line, je.column, je.text);
	struct qp_tokjson *t = calloc(1, sizeof(*t));
	struct ld c = {.name = name, .err = err, .t = t};
	struct tmpl tp = {0};
	int rc;
	if (!t) {
		rc = qp_err_nomem(err);
		goto out;
	}
	if (!json_is_object(root)) {
		rc = qp_err_set(err, QP_ECORRUPT, "%s: not a JSON object", name);
		goto out;
	}
	json_t *added = json_object_get(root, "added_tokens");
	if (added && !json_is_null(added) && !json_is_array(added)) {
		rc = BAD(&c, "added_tokens", "expected an array");
		goto out;
	}
	static const char *const unsupported[] = {"truncation", "padding"};
	for (int i = 0; i < 2; i++) {
		json_t *v = json_object_get(root, unsupported[i]);
		if (v && !json_is_null(v)) {
			rc = UNSUP(&c, unsupported[i], "is not supported (null only)");
			goto out;
		}
	}
	if ((rc = parse_model(&c, json_object_get(root, "model"), added)) ||
	    (rc = parse_norm(&c, json_object_get(root, "normalizer"), "normalizer", NULL)) ||
	    (rc = parse_added(&c, added)) ||
	    (rc = parse_pre(&c, json_object_get(root, "pre_tokenizer"), "pre_tokenizer", NULL)) ||
	    (rc = parse_post(&c, json_object_get(root, "post_processor"), "post_processor", &tp)) ||
	    (rc = parse_dec(&c, json_object_get(root, "decoder"), "decoder", NULL)) ||
	    (rc = rules(&c, &tp, cfg, cfg_len, cfg_name)))
		goto out;
	memset(t->cbyte, 0xff, sizeof(t->cbyte));
	for (int i = 0; i < 256; i++) {
		t->bchar[i] = byte_char((uint8_t)i);
		t->cbyte[t->bchar[i]] = (int16_t)i;
	}
	for (size_t i = 0; i < t->n_added; i++)
		t->first_byte[t->added[i].normalized][(uint8_t)t->added[i].s[0]] = true;
	bool bytelevel = false;
	for (size_t i = 0; i < t->n_pre; i++)
		bytelevel |= t->pre[i].kind == P_BYTELEVEL;
	snprintf(t->desc, sizeof(t->desc), "bpe%s, %d ids, from tokenizer.json",
	         bytelevel ? " (byte-level)" : t->byte_fallback ? " (byte fallback)" : "", t->n);
	*out = t;
	t = NULL;
out:
	free(tp.prefix);
	free(tp.suffix);
	free(c.added_idx);
	qp_tokjson_free(t);
	json_decref(root);
	return rc;
}

/* ---- normalizers ---- */

static int replace_all(struct buf *o, const char *s, size_t n, const char *a, size_t na,
                       const char *b, size_t nb)
{
	size_t i = 0, run = 0;
	while (i + na <= n) {
		if (memcmp(s + i, a, na) == 0) {
			if (buf_put(o, s + run, i - run) || buf_put(o, b, nb))
				return -1;
			i += na;
			run = i;
		} else {
			i++;
		}
	}
	return buf_put(o, s + run, n - run);
}

/* Canonical decomposition of cp, recursively, appended to *v. */
static int decompose(uint32_t cp, uint32_t **v, size_t *n, size_t *cap)
{
	uint32_t d[2];
	int k = qp_uni_decompose(cp, d);
	if (k == 0) {
		if (grow((void **)v, cap, *n + 1, sizeof(uint32_t)))
			return -1;
		(*v)[(*n)++] = cp;
		return 0;
	}
	if (decompose(d[0], v, n, cap))
		return -1;
	return k == 2 ? decompose(d[1], v, n, cap) : 0;
}

/* NFC (UAX #15): full canonical decomposition, canonical ordering of the
 * combining marks, then canonical composition (the sample algorithm). */
static int nfc(struct buf *o, const char *s, size_t n)
{
	uint32_t *v = NULL;
	size_t nv = 0, cap = 0;
	int rc = 0;
	for (size_t i = 0; i < n && !rc;) {
		uint32_t cp;
		i += dec(s, n, i, &cp);
		rc = decompose(cp, &v, &nv, &cap);
	}
	for (size_t i = 1; i < nv && !rc; i++)
		for (size_t j = i; j > 0 && qp_uni_ccc(v[j]) && qp_uni_ccc(v[j - 1]) > qp_uni_ccc(v[j]); j--) {
			uint32_t x = v[j];
			v[j] = v[j - 1];
			v[j - 1] = x;
		}
	size_t out = 0;
	if (nv && !rc) {
		size_t starter = 0;
		int last = qp_uni_ccc(v[0]) ? 256 : 0;
		out = 1;
		for (size_t i = 1; i < nv; i++) {
			int cc = qp_uni_ccc(v[i]);
			uint32_t comp = qp_uni_compose(v[starter], v[i]);
			if (comp && (last < cc || last == 0)) {
				v[starter] = comp;
				continue;
			}
			if (cc == 0)
				starter = out;
			last = cc;
			v[out++] = v[i];
		}
	}
	for (size_t i = 0; i < out && !rc; i++) {
		char u[4];
		rc = buf_put(o, u, enc(v[i], u));
	}
	free(v);
	return rc;
}

/* Append s[n], normalized, to o. */
static int normalize(const struct qp_tokjson *t, const char *s, size_t n, struct buf *o)
{
	if (t->n_norm == 0)
		return buf_put(o, s, n);
	struct buf cur = {0}, next = {0};
	int rc = buf_put(&cur, s, n);
	for (size_t k = 0; k < t->n_norm && !rc; k++) {
		const struct norm *nm = &t->norm[k];
		next.n = 0;
		if (nm->kind == N_PREPEND)
			rc = cur.n ? buf_put(&next, nm->a, nm->na) || buf_put(&next, cur.p, cur.n)
			           : buf_put(&next, "", 0);
		else if (nm->kind == N_REPLACE)
			rc = replace_all(&next, cur.p, cur.n, nm->a, nm->na, nm->b, nm->nb);
		else
			rc = nfc(&next, cur.p, cur.n) || buf_put(&next, "", 0);
		struct buf tmp = cur;
		cur = next;
		next = tmp;
	}
	if (!rc)
		rc = buf_put(o, cur.p, cur.n);
	free(cur.p);
	free(next.p);
	return rc;
}

/* ---- added tokens ---- */

static bool is_word_char(uint32_t cp)
{
	return qp_uni_is_letter(cp) || qp_uni_is_number(cp) || cp == '_';
}

/* Cut the added tokens whose normalized flag is want_norm out of s[n]
 * (AddedVocabulary::find_matches: leftmost-longest, lstrip takes the
 * whitespace before the match, rstrip the whitespace after, single_word
 * needs non-word characters around). */
static int split_added(const struct qp_tokjson *t, const char *s, size_t n, bool first,
                       bool want_norm, struct pieces *out)
{
	size_t start_off = 0, pos = 0;
	while (pos < n) {
		if (!t->first_byte[want_norm][(uint8_t)s[pos]]) {
			pos++;
			continue;
		}
		const struct added *best = NULL;
		for (size_t k = 0; k < t->n_added; k++) {
			const struct added *a = &t->added[k];
			if (a->normalized == want_norm && a->n <= n - pos &&
			    memcmp(s + pos, a->s, a->n) == 0 && (!best || a->n > best->n))
				best = a;
		}
		if (!best) {
			pos++;
			continue;
		}
		size_t start = pos, stop = pos + best->n;
		pos = stop;
		if (best->single_word) {
			uint32_t cp;
			bool before = false, after = false;
			if (start > 0) {
				size_t b = start - 1;
				while (b > 0 && ((uint8_t)s[b] & 0xc0) == 0x80)
					b--;
				dec(s, n, b, &cp);
				before = is_word_char(cp);
			}
			if (stop < n) {
				dec(s, n, stop, &cp);
				after = is_word_char(cp);
			}
			if (before || after)
				continue;
		}
		if (best->lstrip) {
			size_t b = start;
			while (b > 0) {
				size_t p = b - 1;
				uint32_t cp;
				while (p > 0 && ((uint8_t)s[p] & 0xc0) == 0x80)
					p--;
				dec(s, n, p, &cp);
				if (!qp_uni_is_space(cp))
					break;
				b = p;
			}
			start = b > start_off ? b : start_off;
		}
		if (best->rstrip) {
			uint32_t cp;
			size_t l;
			while (stop < n && (l = dec(s, n, stop, &cp)) && qp_uni_is_space(cp))
				stop += l;
		}
		if (start_off < start && pieces_add(out, s + start_off, start - start_off, -1,
		                                    first && start_off == 0))
			return -1;
		if (pieces_add(out, "", 0, best->id, false))
			return -1;
		start_off = stop;
	}
	if (start_off < n && pieces_add(out, s + start_off, n - start_off, -1, first && start_off == 0))
		return -1;
	return 0;
}

/* ---- pre-tokenizers ---- */

/* GPT-2's byte-to-character table (bytes_char in byte_level.rs). */
static uint32_t byte_char(uint8_t b)
{
	if ((b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || b >= 0xae)
		return b;
	uint32_t k = 0; /* rank of b among the bytes that are not kept */
	for (unsigned x = 0; x < b; x++)
		if (!((x >= '!' && x <= '~') || (x >= 0xa1 && x <= 0xac) || x >= 0xae))
			k++;
	return 256 + k;
}


enum { C_LETTER, C_NUMBER, C_SPACE, C_OTHER };

static int cls(uint32_t cp)
{
	if (qp_uni_is_letter(cp))
		return C_LETTER;
	if (qp_uni_is_number(cp))
		return C_NUMBER;
	return qp_uni_is_space(cp) ? C_SPACE : C_OTHER;
}

/* End of the run of characters of class k starting at i (at most max). */
static size_t run_of(const char *s, size_t n, size_t i, int k, size_t max)
{
	uint32_t cp;
	for (size_t c = 0; i < n && c < max; c++) {
		size_t l = dec(s, n, i, &cp);
		if (cls(cp) != k)
			break;
		i += l;
	}
	return i;
}

static size_t run_of_newlines(const char *s, size_t n, size_t i)
{
	while (i < n && (s[i] == '\r' || s[i] == '\n'))
		i++;
	return i;
}

/* 's|'t|'re|'ve|'m|'ll|'d at i: the match length or 0. Case-insensitive
 * as (?i:...) in Oniguruma, where U+017F (long s) folds to s. */
static size_t contraction(const char *s, size_t n, size_t i, bool icase)
{
	if (s[i] != '\'' || i + 1 >= n)
		return 0;
	char a = s[i + 1], b = i + 2 < n ? s[i + 2] : 0;
	if (icase) {
		if (a >= 'A' && a <= 'Z')
			a = (char)(a + 32);
		if (b >= 'A' && b <= 'Z')
			b = (char)(b + 32);
		if (a == '\xc5' && b == '\xbf')
			return 3;
	}
	if (a == 's' || a == 't' || a == 'm' || a == 'd')
		return 2;
	if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))
		return 3;
	return 0;
}

/* \s+(?!\S) then \s+ at i (s[i] is whitespace): the greedy run, backed
 * off by one character when a non-space follows and the run is longer
 * than one character. */
static size_t spaces(const char *s, size_t n, size_t i)
{
	size_t e = i, last = i;
	uint32_t cp;
	while (e < n) {
		size_t l = dec(s, n, e, &cp);
		if (!qp_uni_is_space(cp))
			break;
		last = e;
		e += l;
	}
	if (e < n && last > i)
		return last - i;
	return e - i;
}

/* GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static size_t match_gpt2(const char *s, size_t n, size_t i)
{
	size_t l = contraction(s, n, i, false);
	if (l)
		return l;
	uint32_t cp;
	size_t j = i + (s[i] == ' ' && i + 1 < n);
	dec(s, n, j, &cp);
	int k = cls(cp);
	if (k != C_SPACE)
		return run_of(s, n, j, k, SIZE_MAX) - i;
	dec(s, n, i, &cp);
	return qp_uni_is_space(cp) ? spaces(s, n, i) : 0;
}

/* Llama-3 (digits 3) and Qwen2 (digits 1):
 * (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
 * ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
static size_t match_llama3(const char *s, size_t n, size_t i, size_t digits)
{
	size_t l = contraction(s, n, i, true);
	if (l)
		return l;
	uint32_t c0, c1 = 0;
	size_t l0 = dec(s, n, i, &c0);
	int k0 = cls(c0), k1 = -1;
	if (i + l0 < n) {
		dec(s, n, i + l0, &c1);
		k1 = cls(c1);
	}
	if (k0 == C_LETTER)
		return run_of(s, n, i, C_LETTER, SIZE_MAX) - i;
	if (c0 != '\r' && c0 != '\n' && k0 != C_NUMBER && k1 == C_LETTER)
		return run_of(s, n, i + l0, C_LETTER, SIZE_MAX) - i;
	if (k0 == C_NUMBER)
		return run_of(s, n, i, C_NUMBER, digits) - i;
	size_t j = c0 == ' ' && k1 == C_OTHER ? i + 1 : i;
	uint32_t cj;
	dec(s, n, j, &cj);
	if (cls(cj) == C_OTHER)
		return run_of_newlines(s, n, run_of(s, n, j, C_OTHER, SIZE_MAX)) - i;
	if (k0 != C_SPACE)
		return 0;
	/* \s*[\r\n]+: the whitespace run up to and including its last \r or \n */
	size_t e = i, nl = SIZE_MAX;
	uint32_t cp;
	while (e < n) {
		size_t le = dec(s, n, e, &cp);
		if (!qp_uni_is_space(cp))
			break;
		if (cp == '\r' || cp == '\n')
			nl = e;
		e += le;
	}
	if (nl != SIZE_MAX)
		return nl + 1 - i;
	return spaces(s, n, i);
}

struct matcher {
	int kind;                   /* P_METASPACE (the replacement), P_SPLIT, P_DIGITS */
	int pattern;
	char rep[4];
	size_t nrep;
};

static size_t match_at(const struct matcher *m, const char *s, size_t n, size_t i)
{
	uint32_t cp;
	switch (m->kind) {
	case P_METASPACE:
		return n - i >= m->nrep && memcmp(s + i, m->rep, m->nrep) == 0 ? m->nrep : 0;
	case P_DIGITS: {
		size_t l = dec(s, n, i, &cp);
		return qp_uni_is_number(cp) ? l : 0;
	}
	default:
		return m->pattern == PAT_GPT2 ? match_gpt2(s, n, i)
		                              : match_llama3(s, n, i, m->pattern == PAT_LLAMA3 ? 3 : 1);
	}
}

struct cut {
	size_t off, len;
	bool match;
};

/* A piece to out; with bchar, each byte as its GPT-2 character. */
static int emit_piece(struct pieces *out, const char *s, size_t n, bool first, const uint32_t *bchar)
{
	if (n == 0)
		return 0;
	if (!bchar)
		return pieces_add(out, s, n, -1, first);
	size_t mark = out->text.n;
	for (size_t i = 0; i < n; i++) {
		char u[4];
		if (buf_put(&out->text, u, enc(bchar[(uint8_t)s[i]], u)))
			return -1;
	}
	return piece_end(out, mark, first);
}

/* NormalizedString::split: the matches of m in s[n] and the gaps between
 * them, regrouped by behavior; every piece goes to out. */
static int split_by(const struct matcher *m, int behavior, const char *s, size_t n, bool first,
                    const uint32_t *bchar, struct pieces *out)
{
	struct cut *v = malloc((2 * n + 1) * sizeof(*v));
	if (!v)
		return -1;
	size_t nv = 0, i = 0, gap = 0;
	while (i < n) {
		size_t l = match_at(m, s, n, i);
		if (l) {
			if (gap < i)
				v[nv++] = (struct cut){gap, i - gap, false};
			v[nv++] = (struct cut){i, l, true};
			i += l;
			gap = i;
		} else {
			uint32_t cp;
			i += dec(s, n, i, &cp);
		}
	}
	if (gap < n)
		v[nv++] = (struct cut){gap, n - gap, false};
	size_t no = 0;
	bool prev = false;
	switch (behavior) {
	case B_ISOLATED:
		no = nv;
		break;
	case B_REMOVED:
		for (size_t k = 0; k < nv; k++)
			if (!v[k].match)
				v[no++] = v[k];
		break;
	case B_MERGED_PREV:
		for (size_t k = 0; k < nv; k++) {
			if (v[k].match && !prev && no)
				v[no - 1].len = v[k].off + v[k].len - v[no - 1].off;
			else
				v[no++] = v[k];
			prev = v[k].match;
		}
		break;
	case B_CONTIGUOUS:
		for (size_t k = 0; k < nv; k++) {
			if (v[k].match == prev && no)
				v[no - 1].len = v[k].off + v[k].len - v[no - 1].off;
			else
				v[no++] = v[k];
			prev = v[k].match;
		}
		break;
	case B_MERGED_NEXT: /* the same fold from the right */
		for (size_t k = nv; k-- > 0;) {
			if (v[k].match && !prev && no) {
				v[nv - no].len += v[nv - no].off - v[k].off;
				v[nv - no].off = v[k].off;
			} else {
				no++;
				v[nv - no] = v[k];
			}
			prev = v[k].match;
		}
		memmove(v, v + nv - no, no * sizeof(*v));
		break;
	}
	int rc = 0;
	for (size_t k = 0; k < no && !rc; k++)
		rc = emit_piece(out, s + v[k].off, v[k].len, first && v[k].off == 0, bchar);
	free(v);
	return rc;
}

static int pre_step(const struct qp_tokjson *t, const struct pre *pr, const struct pieces *in,
                    struct pieces *out)
{
	struct buf tmp = {0};
	int rc = 0;
	for (size_t k = 0; k < in->n && !rc; k++) {
		const struct span *sp = &in->v[k];
		const char *s = in->text.p + sp->off;
		size_t n = sp->len;
		if (sp->id >= 0) {
			rc = pieces_add(out, "", 0, sp->id, false);
			continue;
		}
		struct matcher m = {.kind = pr->kind, .pattern = pr->pattern};
		tmp.n = 0;
		switch (pr->kind) {
		case P_METASPACE: {
			m.nrep = enc(pr->repl, m.rep);
			bool starts = n >= m.nrep && memcmp(s, m.rep, m.nrep) == 0;
			/* the ' ' replacement comes first: a text starting with a space
			 * starts with the replacement when the prepend is decided */
			starts |= n > 0 && s[0] == ' ';
			if (!starts && (pr->prepend == PREPEND_ALWAYS || (pr->prepend == PREPEND_FIRST && sp->first)))
				rc = buf_put(&tmp, m.rep, m.nrep);
			if (!rc)
				rc = replace_all(&tmp, s, n, " ", 1, m.rep, m.nrep);
			if (!rc)
				rc = pr->split ? split_by(&m, B_MERGED_NEXT, tmp.p, tmp.n, sp->first, NULL, out)
				               : emit_piece(out, tmp.p, tmp.n, sp->first, NULL);
			break;
		}
		case P_BYTELEVEL:
			if (pr->prefix_space && !(n > 0 && s[0] == ' '))
				rc = buf_put(&tmp, " ", 1);
			if (!rc)
				rc = buf_put(&tmp, s, n);
			m.kind = P_SPLIT;
			m.pattern = PAT_GPT2;
			if (!rc)
				rc = pr->use_regex ? split_by(&m, B_ISOLATED, tmp.p, tmp.n, sp->first, t->bchar, out)
				                   : emit_piece(out, tmp.p, tmp.n, sp->first, t->bchar);
			break;
		default:
			rc = split_by(&m, pr->behavior, s, n, sp->first, NULL, out);
		}
	}
	free(tmp.p);
	return rc;
}

/* ---- the BPE model ---- */

struct sym {
	int32_t id;
	int64_t prev, next;
	size_t len;                 /* bytes covered; 0 once merged away */
};

struct cand {
	int32_t rank, id;
	int64_t pos;
};

static bool cand_before(const struct cand *x, const struct cand *y)
{
	return x->rank < y->rank || (x->rank == y->rank && x->pos < y->pos);
}

QP_HEAP_DEFINE(cand_heap, struct cand, cand_before)

struct enc {
	struct sym *sym;
	size_t n_sym, cap_sym;
	struct cand_heap heap;
	int32_t *ids;
	size_t n_ids, cap_ids;
};

static int grow(void **p, size_t *cap, size_t need, size_t size)
{
	if (need <= *cap)
		return 0;
	size_t nc = *cap ? *cap : 64;
	while (nc < need)
		nc *= 2;
	if (nc > SIZE_MAX / size)
		return -1;
	void *np = realloc(*p, nc * size);
	if (!np)
		return -1;
	*p = np;
	*cap = nc;
	return 0;
}

static int emit(struct enc *e, int32_t id)
{
	if (e->n_ids >= MAX_IDS * 4 || grow((void **)&e->ids, &e->cap_ids, e->n_ids + 1, sizeof(int32_t)))
		return -1;
	e->ids[e->n_ids++] = id;
	return 0;
}

static int add_sym(struct enc *e, int32_t id, size_t len)
{
	if (grow((void **)&e->sym, &e->cap_sym, e->n_sym + 1, sizeof(struct sym)))
		return -1;
	int64_t i = (int64_t)e->n_sym++;
	e->sym[i] = (struct sym){id, i - 1, -1, len};
	if (i > 0)
		e->sym[i - 1].next = i;
	return 0;
}

static int push_cand(struct enc *e, const struct qp_tokjson *t, int64_t l, int64_t r)
{
	const struct merge *m = merge_get(t, e->sym[l].id, e->sym[r].id);
	if (!m)
		return 0;
	return cand_heap_push(&e->heap, (struct cand){m->rank, m->id, l});
}

/* BPE::merge_word + Word::merge_all on one pre-token w[n]. */
static int bpe_word(const struct qp_tokjson *t, const char *w, size_t n, struct enc *e)
{
	if (n == 0)
		return 0;
	if (t->ignore_merges) {
		int32_t id = vocab_get(t, w, n);
		if (id >= 0)
			return emit(e, id);
	}
	e->n_sym = 0;
	e->heap.n = 0;
	bool unk = false;
	size_t unk_len = 0;
	for (size_t i = 0; i < n;) {
		uint32_t cp;
		size_t l = dec(w, n, i, &cp);
		int32_t id = vocab_get(t, w + i, l);
		if (id >= 0) {
			if (unk && add_sym(e, t->unk, unk_len))
				return -1;
			unk = false;
			if (add_sym(e, id, l))
				return -1;
			i += l;
			continue;
		}
		bool bytes = t->byte_fallback;
		for (size_t k = 0; k < l && bytes; k++)
			bytes = t->byte_id[(uint8_t)w[i + k]] >= 0;
		if (bytes) { /* as HF, a pending unk is not flushed before the bytes */
			for (size_t k = 0; k < l; k++)
				if (add_sym(e, t->byte_id[(uint8_t)w[i + k]], 1))
					return -1;
		} else if (t->unk >= 0) {
			if (unk && t->fuse_unk) {
				unk_len += l;
			} else {
				if (unk && add_sym(e, t->unk, unk_len))
					return -1;
				unk = true;
				unk_len = l;
			}
		} /* no unk token: the character is dropped, as HF does */
		i += l;
	}
	if (unk && add_sym(e, t->unk, unk_len))
		return -1;
	for (size_t i = 0; i + 1 < e->n_sym; i++)
		if (push_cand(e, t, (int64_t)i, (int64_t)i + 1))
			return -1;
	while (e->heap.n) {
		struct cand c = cand_heap_pop(&e->heap);
		struct sym *s = &e->sym[c.pos];
		if (s->len == 0 || s->next < 0)
			continue;
		struct sym r = e->sym[s->next];
		const struct merge *m = merge_get(t, s->id, r.id);
		if (!m || m->id != c.id)
			continue;
		e->sym[s->next].len = 0;
		s->id = c.id;
		s->len += r.len;
		s->next = r.next;
		if (r.next >= 0)
			e->sym[r.next].prev = c.pos;
		if (s->prev >= 0 && push_cand(e, t, s->prev, c.pos))
			return -1;
		if (s->next >= 0 && push_cand(e, t, c.pos, s->next))
			return -1;
	}
	for (size_t i = 0; i < e->n_sym; i++)
		if (e->sym[i].len && emit(e, e->sym[i].id))
			return -1;
	return 0;
}

/* ---- encode ---- */

static bool any_added(const struct qp_tokjson *t, bool normalized)
{
	for (size_t i = 0; i < t->n_added; i++)
		if (t->added[i].normalized == normalized)
			return true;
	return false;
}

int qp_tokjson_encode(const struct qp_tokjson *t, const char *text, size_t len, bool add_special,
                      int32_t **ids, size_t *n, struct qp_err *err)
{
	*ids = NULL;
	*n = 0;
	struct pieces a = {0}, b = {0};
	struct buf clean = {0}, norm = {0};
	struct enc e = {0};
	int rc = 0;
	if (put_lossy(&clean, text ? text : "", text ? len : 0))
		goto nomem;
	/* step 1 */
	if (any_added(t, false)) {
		if (split_added(t, clean.p, clean.n, true, false, &a))
			goto nomem;
	} else if (clean.n && pieces_add(&a, clean.p, clean.n, -1, true)) {
		goto nomem;
	}
	bool split_norm = any_added(t, true);
	for (size_t k = 0; k < a.n; k++) {
		const struct span *sp = &a.v[k];
		if (sp->id >= 0) {
			if (pieces_add(&b, "", 0, sp->id, false))
				goto nomem;
			continue;
		}
		norm.n = 0;
		if (normalize(t, a.text.p + sp->off, sp->len, &norm) || buf_put(&norm, "", 0))
			goto nomem;
		if (split_norm ? split_added(t, norm.p, norm.n, sp->first, true, &b)
		               : norm.n && pieces_add(&b, norm.p, norm.n, -1, sp->first))
			goto nomem;
	}
	/* step 2 */
	for (size_t k = 0; k < t->n_pre; k++) {
		pieces_free(&a);
		if (pre_step(t, &t->pre[k], &b, &a))
			goto nomem;
		struct pieces tmp = a;
		a = b;
		b = tmp;
	}
	/* steps 3 and 4 */
	for (size_t k = 0; add_special && k < t->n_prefix; k++)
		if (emit(&e, t->prefix[k]))
			goto nomem;
	for (size_t k = 0; k < b.n; k++)
		if (b.v[k].id >= 0 ? emit(&e, b.v[k].id) : bpe_word(t, b.text.p + b.v[k].off, b.v[k].len, &e))
			goto nomem;
	for (size_t k = 0; add_special && k < t->n_suffix; k++)
		if (emit(&e, t->suffix[k]))
			goto nomem;
	*ids = e.ids;
	*n = e.n_ids;
	e.ids = NULL;
	goto out;
nomem:
	rc = qp_err_nomem(err);
out:
	pieces_free(&a);
	pieces_free(&b);
	free(clean.p);
	free(norm.p);
	free(e.sym);
	free(e.heap.a);
	free(e.ids);
	return rc;
}

/* ---- decode ---- */

/* ByteFallback's test: "<0xXX>" where XX parses as Rust's
 * u8::from_str_radix(_, 16) would (which takes a leading '+'). */
static int byte_token(const char *s, size_t n)
{
	if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>')
		return -1;
	int v = 0;
	for (int i = 3; i < 5; i++) {
		char ch = s[i];
		int d = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
		        : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
		if (d < 0 && !(i == 3 && ch == '+'))
			return -1;
		if (d >= 0)
			v = v * 16 + d;
	}
	return v;
}

static int dec_step(const struct qp_tokjson *t, const struct decoder *d, const struct pieces *in,
                    struct pieces *out)
{
	struct buf tmp = {0};
	int rc = 0;
	switch (d->kind) {
	case D_REPLACE:
		for (size_t k = 0; k < in->n && !rc; k++) {
			tmp.n = 0;
			rc = replace_all(&tmp, in->text.p + in->v[k].off, in->v[k].len, d->a, d->na, d->b, d->nb) ||
			     pieces_add(out, tmp.p ? tmp.p : "", tmp.n, -1, false);
		}
		break;
	case D_BYTEFALLBACK:
		for (size_t k = 0; k <= in->n && !rc; k++) {
			int v = k < in->n ? byte_token(in->text.p + in->v[k].off, in->v[k].len) : -1;
			if (v >= 0) {
				char ch = (char)v;
				rc = buf_put(&tmp, &ch, 1);
				continue;
			}
			if (tmp.n) { /* the bytes so far: their text, or one U+FFFD per byte */
				if (is_valid_utf8(tmp.p, tmp.n))
					rc = pieces_add(out, tmp.p, tmp.n, -1, false);
				else
					for (size_t i = 0; i < tmp.n && !rc; i++)
						rc = pieces_add(out, REPLACEMENT, 3, -1, false);
				tmp.n = 0;
			}
			if (k < in->n && !rc)
				rc = pieces_add(out, in->text.p + in->v[k].off, in->v[k].len, -1, false);
		}
		break;
	case D_FUSE:
		for (size_t k = 0; k < in->n && !rc; k++)
			rc = buf_put(&tmp, in->text.p + in->v[k].off, in->v[k].len);
		if (!rc)
			rc = pieces_add(out, tmp.p ? tmp.p : "", tmp.n, -1, false);
		break;
	case D_STRIP:
		for (size_t k = 0; k < in->n && !rc; k++) {
			const char *s = in->text.p + in->v[k].off;
			size_t n = in->v[k].len, a = 0, b = n;
			uint32_t cp;
			for (size_t c = 0; c < d->start && a < n; c++) {
				size_t l = dec(s, n, a, &cp);
				if (cp != d->ch)
					break;
				a += l;
			}
			for (size_t c = 0; c < d->stop && b > a; c++) {
				size_t p = b - 1;
				while (p > a && ((uint8_t)s[p] & 0xc0) == 0x80)
					p--;
				dec(s, n, p, &cp);
				if (cp != d->ch)
					break;
				b = p;
			}
			rc = pieces_add(out, s + a, b - a, -1, false);
		}
		break;
	case D_BYTELEVEL: {
		struct buf raw = {0};
		for (size_t k = 0; k < in->n && !rc; k++) {
			const char *s = in->text.p + in->v[k].off;
			size_t n = in->v[k].len, mark = raw.n;
			bool all = true;
			for (size_t i = 0; i < n && !rc;) {
				uint32_t cp;
				i += dec(s, n, i, &cp);
				int bv = cp < 324 ? t->cbyte[cp] : -1;
				if (bv < 0) {
					all = false;
					break;
				}
				char ch = (char)bv;
				rc = buf_put(&raw, &ch, 1);
			}
			if (!all && !rc) { /* a token not in the byte alphabet stays as it is */
				raw.n = mark;
				rc = buf_put(&raw, s, n);
			}
		}
		if (!rc)
			rc = put_lossy(&tmp, raw.p ? raw.p : "", raw.n) ||
			     pieces_add(out, tmp.p ? tmp.p : "", tmp.n, -1, false);
		free(raw.p);
		break;
	}
	case D_METASPACE: {
		char rep[4];
		size_t nrep = enc(d->ch, rep);
		for (size_t k = 0; k < in->n && !rc; k++) {
			tmp.n = 0;
			const char *repl = k == 0 && d->prepend != PREPEND_NEVER ? "" : " ";
			rc = replace_all(&tmp, in->text.p + in->v[k].off, in->v[k].len, rep, nrep, repl,
			                 strlen(repl)) ||
			     pieces_add(out, tmp.p ? tmp.p : "", tmp.n, -1, false);
		}
		break;
	}
	}
	free(tmp.p);
	return rc ? -1 : 0;
}

int qp_tokjson_decode(const struct qp_tokjson *t, const int32_t *ids, size_t n, char **text,
                      size_t *len, struct qp_err *err)
{
	*text = NULL;
	*len = 0;
	struct pieces a = {0}, b = {0};
	struct buf o = {0};
	int rc = 0;
	for (size_t i = 0; i < n; i++) {
		int32_t id = ids[i];
		if (id < 0 || id >= t->n) {
			rc = qp_err_set(err, QP_EINVAL, "token %zu: id %d is out of range (%d ids)", i, id,
			                t->n);
			goto out;
		}
		/* decode(skip_special_tokens=True): special added tokens go */
		if (t->special[id] || !t->piece[id])
			continue;
		if (pieces_add(&a, t->piece[id], t->len[id], -1, false))
			goto nomem;
	}
	for (size_t k = 0; k < t->n_dec; k++) {
		pieces_free(&b);
		if (dec_step(t, &t->dec[k], &a, &b))
			goto nomem;
		struct pieces tmp = a;
		a = b;
		b = tmp;
	}
	if (buf_put(&o, "", 0))
		goto nomem;
	for (size_t k = 0; k < a.n; k++)
		if ((!t->has_decoder && k > 0 && buf_put(&o, " ", 1)) ||
		    buf_put(&o, a.text.p + a.v[k].off, a.v[k].len))
			goto nomem;
	*text = o.p;
	*len = o.n;
	o.p = NULL;
	goto out;
nomem:
	rc = qp_err_nomem(err);
out:
	pieces_free(&a);
	pieces_free(&b);
	free(o.p);
	return rc;
}

int32_t qp_tokjson_n_vocab(const struct qp_tokjson *t) { return t->n; }
int32_t qp_tokjson_bos(const struct qp_tokjson *t) { return t->bos; }
int32_t qp_tokjson_eos(const struct qp_tokjson *t) { return t->eos; }

const char *qp_tokjson_piece(const struct qp_tokjson *t, int32_t id)
{
	return id >= 0 && id < t->n ? t->piece[id] : NULL;
}

const char *qp_tokjson_describe(const struct qp_tokjson *t) { return t->desc; }
