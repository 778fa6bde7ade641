/* The base-logits file; its layout and precision are specified in
 * logits_file.h. */
#include "model/logits_file.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "common/os.h"

#define MAGIC "QPLOGITS"
#define END_MAGIC "QPLEND\0\0"
#define VERSION 1
#define STEP_SHIFT 12                  /* fine codes count steps of 2^-12 nats */
#define STEP (1.0 / (double)(1 << STEP_SHIFT))
#define FINE_CODES 32768               /* fine: distance 0 .. 8 nats, two bytes */
#define COARSE_FROM 8.0                /* coarse: 8 + w / 16 nats, w < 128, one byte */
#define COARSE_STEP (1.0 / 16.0)
#define COARSE_CODES 128
#define COARSE_BIT 0x8000              /* in a code held as u16: a coarse one */
#define REC_HEAD 40                    /* top, n_keep, n_fine, lp_max, lp_next, tail, corr */
#define TRAILER 16
#define MAX_STR 4096

/* ---- little-endian fields ---- */

static void put_u16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put_u32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put_f32(uint8_t *p, float f)
{
	uint32_t v;
	memcpy(&v, &f, 4);
	put_u32(p, v);
}

static void put_f64(uint8_t *p, double d)
{
	uint64_t v;
	memcpy(&v, &d, 8);
	put_u64(p, v);
}

static uint16_t get_u16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

static uint32_t get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_u64(const uint8_t *p) { return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32; }

static float get_f32(const uint8_t *p)
{
	uint32_t v = get_u32(p);
	float f;
	memcpy(&f, &v, 4);
	return f;
}

static double get_f64(const uint8_t *p)
{
	uint64_t v = get_u64(p);
	double d;
	memcpy(&d, &v, 8);
	return d;
}

/* bytes of an id in a list, and of the bitmap */
static int id_bytes(int64_t n_vocab) { return n_vocab <= 65536 ? 2 : 4; }
static uint64_t bitmap_bytes(int64_t n_vocab) { return ((uint64_t)n_vocab + 7) / 8; }

static int set_kind(int64_t n_vocab, uint64_t n_keep)
{
	return n_keep * (uint64_t)id_bytes(n_vocab) < bitmap_bytes(n_vocab) ? QP_LOGITS_SET_LIST
	                                                                     : QP_LOGITS_SET_BITMAP;
}

static uint64_t set_bytes(int64_t n_vocab, uint64_t n_keep)
{
	return set_kind(n_vocab, n_keep) == QP_LOGITS_SET_LIST ? n_keep * (uint64_t)id_bytes(n_vocab)
	                                                       : bitmap_bytes(n_vocab);
}

/* log p' of a code held as u16: fine v (distance v * 2^-12) or
 * COARSE_BIT | w (distance 8 + w / 16) */
static double decode(float lp_max, uint16_t code)
{
	if (code & COARSE_BIT)
		return (double)lp_max - (COARSE_FROM + (double)(code & 0x7f) * COARSE_STEP);
	return (double)lp_max - (double)code * STEP;
}

/* The code at *p of the code bytes, advancing *p: a byte with its top bit
 * set is a coarse code, else it and the next byte are a fine one. */
static uint16_t next_code(const uint8_t **p)
{
	const uint8_t *b = *p;
	if (b[0] & 0x80) {
		*p += 1;
		return (uint16_t)(COARSE_BIT | (b[0] & 0x7f));
	}
	*p += 2;
	return (uint16_t)(b[0] << 8 | b[1]);
}

/* ---- writer ---- */

struct qp_logits_writer {
	struct qp_atomic_file f;
	bool open, done;
	XXH3_state_t *h;
	uint64_t bytes;
	int64_t n_vocab, n_ctx, n_chunks, first, chunks_done;
	int32_t *tokens;          /* copy of info->tokens */
	uint8_t *rec;             /* one record, at most REC_HEAD + bitmap/list + 2 * n_vocab */
	uint16_t *codes;          /* n_vocab */
	uint32_t *ids;            /* n_vocab */
};

static int w_write(struct qp_logits_writer *w, const void *buf, size_t len, struct qp_err *err)
{
	XXH3_64bits_update(w->h, buf, len);
	w->bytes += len;
	return qp_os_atomic_write(&w->f, buf, len, err);
}

static int w_str(struct qp_logits_writer *w, const char *s, struct qp_err *err)
{
	size_t n = s ? strlen(s) : 0;
	if (n > MAX_STR)
		n = MAX_STR;
	uint8_t len[2];
	put_u16(len, (uint16_t)n);
	int rc = w_write(w, len, 2, err);
	return rc ? rc : w_write(w, s ? s : "", n, err);
}

int qp_logits_writer_open(struct qp_logits_writer **out, const char *path, const struct qp_logits_info *info,
                          struct qp_err *err)
{
	*out = NULL;
	int64_t nv = info->n_vocab, n_ctx = info->n_ctx, nc = info->n_chunks;
	if (nv < 1 || nv > INT32_MAX || n_ctx < 2 || n_ctx > INT32_MAX || nc < 1 || nc > INT32_MAX ||
	    info->first < 0 || info->first >= n_ctx - 1 || info->n_text < 0 || info->n_text > UINT32_MAX ||
	    (uint64_t)nc * (uint64_t)n_ctx > SIZE_MAX / sizeof(int32_t))
		return qp_err_set(err, QP_EINVAL, "%s: bad logits file shape: n_vocab %lld, n_ctx %lld, chunks %lld, first %lld",
		                  path, (long long)nv, (long long)n_ctx, (long long)nc, (long long)info->first);
	struct qp_logits_writer *w = calloc(1, sizeof(*w));
	if (!w)
		return qp_err_nomem(err);
	size_t nt = (size_t)(nc * n_ctx);
	w->n_vocab = nv;
	w->n_ctx = n_ctx;
	w->n_chunks = nc;
	w->first = info->first;
	w->h = XXH3_createState();
	w->tokens = malloc(nt * sizeof(int32_t));
	w->rec = malloc(REC_HEAD + (size_t)nv * 4 + (size_t)nv * 2);
	w->codes = malloc((size_t)nv * sizeof(uint16_t));
	w->ids = malloc((size_t)nv * sizeof(uint32_t));
	if (!w->h || !w->tokens || !w->rec || !w->codes || !w->ids) {
		qp_logits_writer_free(w);
		return qp_err_nomem(err);
	}
	memcpy(w->tokens, info->tokens, nt * sizeof(int32_t));
	XXH3_64bits_reset(w->h);
	int rc = qp_os_atomic_open(&w->f, path, err);
	if (rc) {
		qp_logits_writer_free(w);
		return rc;
	}
	w->open = true;
	uint8_t head[44];
	memcpy(head, MAGIC, 8);
	put_u32(head + 8, VERSION);
	put_u32(head + 12, (uint32_t)nv);
	put_u32(head + 16, (uint32_t)n_ctx);
	put_u32(head + 20, (uint32_t)nc);
	put_u32(head + 24, (uint32_t)info->first);
	put_u32(head + 28, (uint32_t)info->bos);
	put_u32(head + 32, STEP_SHIFT);
	put_u32(head + 36, (uint32_t)info->n_text);
	put_u32(head + 40, 0); /* reserved */
	if ((rc = w_write(w, head, sizeof(head), err)) || (rc = w_str(w, info->model, err)) ||
	    (rc = w_str(w, info->tokenizer, err)) || (rc = w_str(w, info->text, err))) {
		qp_logits_writer_free(w);
		return rc;
	}
	uint8_t buf[4096];
	for (size_t i = 0; i < nt && !rc;) {
		size_t k = 0;
		for (; k < sizeof(buf) / 4 && i < nt; k++, i++)
			put_u32(buf + 4 * k, (uint32_t)w->tokens[i]);
		rc = w_write(w, buf, 4 * k, err);
	}
	if (rc) {
		qp_logits_writer_free(w);
		return rc;
	}
	*out = w;
	return 0;
}

/* Encode the row x[n_vocab] predicting token next into w->rec; returns its bytes. */
static size_t encode_row(struct qp_logits_writer *w, const float *x, int32_t next)
{
	int64_t nv = w->n_vocab, top = 0;
	float m = x[0];
	for (int64_t i = 1; i < nv; i++)
		if (x[i] > m) {
			m = x[i];
			top = i;
		}
	double s = 0.0;
	for (int64_t i = 0; i < nv; i++)
		s += exp((double)x[i] - (double)m);
	double lse = log(s);
	float lp_max = (float)-lse;
	double tail = 0.0, corr = 0.0;
	uint64_t k = 0, fine = 0;
	for (int64_t i = 0; i < nv; i++) {
		double d = (double)m - (double)x[i], lp = -d - lse;
		double v = nearbyint(d / STEP), cw = nearbyint((d - COARSE_FROM) / COARSE_STEP);
		uint16_t code;
		if (v < FINE_CODES) {
			code = (uint16_t)v;
		} else if (cw < COARSE_CODES) {
			code = (uint16_t)(COARSE_BIT | (cw > 0 ? (int)cw : 0));
		} else {
			tail += exp(lp);
			continue;
		}
		double lq = decode(lp_max, code);
		corr += exp(lq) * (lq - lp);
		fine += !(code & COARSE_BIT);
		w->codes[k] = code;
		w->ids[k++] = (uint32_t)i;
	}
	double lp_next = next >= 0 && next < nv ? (double)x[next] - (double)m - lse : -INFINITY;
	uint8_t *p = w->rec;
	put_u32(p, (uint32_t)top);
	put_u32(p + 4, (uint32_t)k);
	put_u32(p + 8, (uint32_t)fine);
	put_f32(p + 12, lp_max);
	put_f64(p + 16, lp_next);
	put_f64(p + 24, tail);
	put_f64(p + 32, corr);
	p += REC_HEAD;
	if (set_kind(nv, k) == QP_LOGITS_SET_LIST) {
		int ib = id_bytes(nv);
		for (uint64_t j = 0; j < k; j++, p += ib)
			if (ib == 2)
				put_u16(p, (uint16_t)w->ids[j]);
			else
				put_u32(p, w->ids[j]);
	} else {
		size_t nb = (size_t)bitmap_bytes(nv);
		memset(p, 0, nb);
		for (uint64_t j = 0; j < k; j++)
			p[w->ids[j] / 8] |= (uint8_t)(1u << (w->ids[j] % 8));
		p += nb;
	}
	for (uint64_t j = 0; j < k; j++)
		if (w->codes[j] & COARSE_BIT) {
			*p++ = (uint8_t)(0x80 | (w->codes[j] & 0x7f));
		} else {
			*p++ = (uint8_t)(w->codes[j] >> 8);
			*p++ = (uint8_t)w->codes[j];
		}
	return (size_t)(p - w->rec);
}

int qp_logits_writer_chunk(struct qp_logits_writer *w, const float *logits, struct qp_err *err)
{
	if (w->chunks_done >= w->n_chunks)
		return qp_err_set(err, QP_EINVAL, "%s: all %lld chunks already written", w->f.dst_path,
		                  (long long)w->n_chunks);
	const int32_t *chunk = w->tokens + w->chunks_done * w->n_ctx;
	for (int64_t j = w->first; j < w->n_ctx - 1; j++) {
		size_t n = encode_row(w, logits + j * w->n_vocab, chunk[j + 1]);
		int rc = w_write(w, w->rec, n, err);
		if (rc)
			return rc;
	}
	w->chunks_done++;
	return 0;
}

uint64_t qp_logits_writer_bytes(const struct qp_logits_writer *w) { return w->bytes; }

int qp_logits_writer_finish(struct qp_logits_writer *w, struct qp_err *err)
{
	if (w->chunks_done != w->n_chunks)
		return qp_err_set(err, QP_EINVAL, "%s: %lld of %lld chunks written", w->f.dst_path,
		                  (long long)w->chunks_done, (long long)w->n_chunks);
	uint8_t t[TRAILER];
	put_u64(t, XXH3_64bits_digest(w->h));
	memcpy(t + 8, END_MAGIC, 8);
	int rc = qp_os_atomic_write(&w->f, t, sizeof(t), err);
	w->bytes += sizeof(t);
	if (rc)
		return rc;
	w->open = false;
	if ((rc = qp_os_atomic_commit(&w->f, err)))
		return rc;
	w->done = true;
	return 0;
}

void qp_logits_writer_free(struct qp_logits_writer *w)
{
	if (!w)
		return;
	if (w->open)
		qp_os_atomic_abort(&w->f);
	XXH3_freeState(w->h);
	free(w->tokens);
	free(w->rec);
	free(w->codes);
	free(w->ids);
	free(w);
}

/* ---- reader ---- */

struct qp_logits_file {
	struct qp_map map;
	struct qp_logits_info info;
	char *model, *tokenizer, *text;
	int32_t *tokens;
	uint64_t *off;            /* n_chunks * per_chunk record offsets */
	int64_t per_chunk;        /* n_ctx - 1 - first */
};

static int read_str(char **out, const struct qp_map *m, uint64_t *pos, const char *path, const char *what,
                    struct qp_err *err)
{
	if (m->size - *pos < 2)
		return qp_err_set(err, QP_ECORRUPT, "%s: offset %llu: %s string runs past the end of the file", path,
		                  (unsigned long long)*pos, what);
	uint64_t n = get_u16(m->data + *pos);
	if (m->size - *pos - 2 < n)
		return qp_err_set(err, QP_ECORRUPT, "%s: offset %llu: %s string of %llu bytes runs past the end of the file",
		                  path, (unsigned long long)*pos, what, (unsigned long long)n);
	if (!(*out = malloc(n + 1)))
		return qp_err_nomem(err);
	memcpy(*out, m->data + *pos + 2, n);
	(*out)[n] = 0;
	*pos += 2 + n;
	return 0;
}

/* Check the record at *pos (of chunk c, position j) and step over it. */
static int check_rec(const struct qp_logits_file *f, uint64_t *pos, uint64_t end, int64_t c, int64_t j,
                     const char *path, struct qp_err *err)
{
	const uint8_t *d = f->map.data;
	int64_t nv = f->info.n_vocab;
	uint64_t at = *pos;
#define BAD(...) qp_err_set(err, QP_ECORRUPT, "%s: offset %llu: chunk %lld position %lld: " __VA_ARGS__)
	if (end - at < REC_HEAD)
		return BAD("record runs past the end of the data", path, (unsigned long long)at, (long long)c,
		           (long long)j);
	uint32_t top = get_u32(d + at), k = get_u32(d + at + 4), fine = get_u32(d + at + 8);
	if (top >= (uint64_t)nv || k > (uint64_t)nv || fine > k)
		return BAD("top id %u, kept count %u or fine count %u out of the vocabulary of %lld", path,
		           (unsigned long long)at, (long long)c, (long long)j, top, k, fine, (long long)nv);
	double tail = get_f64(d + at + 24), corr = get_f64(d + at + 32);
	float lp_max = get_f32(d + at + 12);
	double lp_next = get_f64(d + at + 16);
	if (!(tail >= 0.0 && tail <= 1.0) || !isfinite(corr) || !(lp_max <= 0.0f) || !(lp_next <= 0.0))
		return BAD("bad values (lp_max %g, lp_next %g, tail %g, corr %g)", path, (unsigned long long)at,
		           (long long)c, (long long)j, (double)lp_max, lp_next, tail, corr);
	uint64_t sb = set_bytes(nv, k), need = sb + (uint64_t)k + fine;
	if (end - at - REC_HEAD < need)
		return BAD("%u kept ids run past the end of the data", path, (unsigned long long)at, (long long)c,
		           (long long)j, k);
	const uint8_t *set = d + at + REC_HEAD;
	if (set_kind(nv, k) == QP_LOGITS_SET_LIST) {
		int ib = id_bytes(nv);
		int64_t prev = -1;
		for (uint32_t i = 0; i < k; i++) {
			int64_t id = ib == 2 ? get_u16(set + (size_t)i * 2) : get_u32(set + (size_t)i * 4);
			if (id <= prev || id >= nv)
				return BAD("kept id %lld out of order or out of the vocabulary", path, (unsigned long long)at,
				           (long long)c, (long long)j, (long long)id);
			prev = id;
		}
	} else {
		uint64_t bits = 0;
		for (uint64_t b = 0; b < sb; b++)
			bits += (uint64_t)__builtin_popcount(set[b]);
		if (bits != k || (nv % 8 && set[sb - 1] >> (nv % 8)))
			return BAD("bitmap holds %llu ids, the record says %u", path, (unsigned long long)at, (long long)c,
			           (long long)j, (unsigned long long)bits, k);
	}
	const uint8_t *code = set + sb, *code_end = code + k + fine;
	uint32_t n_fine = 0;
	for (uint32_t i = 0; i < k && code < code_end; i++)
		n_fine += !(next_code(&code) & COARSE_BIT);
	if (code != code_end || n_fine != fine)
		return BAD("codes do not add up to %u kept ids, %u of them fine", path, (unsigned long long)at,
		           (long long)c, (long long)j, k, fine);
#undef BAD
	*pos = at + REC_HEAD + need;
	return 0;
}

int qp_logits_open(struct qp_logits_file **out, const char *path, struct qp_err *err)
{
	*out = NULL;
	struct qp_logits_file *f = calloc(1, sizeof(*f));
	if (!f)
		return qp_err_nomem(err);
	int rc = qp_os_map(&f->map, path, err);
	if (rc) {
		free(f);
		return rc;
	}
	const uint8_t *d = f->map.data;
	uint64_t size = f->map.size;
	struct qp_logits_info *in = &f->info;
	if (size < 44 || memcmp(d, MAGIC, 8)) {
		rc = qp_err_set(err, QP_ECORRUPT, "%s: offset 0: not a qpipe base-logits file (no QPLOGITS magic)", path);
		goto fail;
	}
	if (get_u32(d + 8) != VERSION || get_u32(d + 32) != STEP_SHIFT) {
		rc = qp_err_set(err, QP_ECORRUPT, "%s: offset 8: version %u (step 2^-%u) is not version %d (step 2^-%d)",
		                path, get_u32(d + 8), get_u32(d + 32), VERSION, STEP_SHIFT);
		goto fail;
	}
	if (size < 44 + TRAILER || memcmp(d + size - 8, END_MAGIC, 8)) {
		rc = qp_err_set(err, QP_ECORRUPT, "%s: offset %llu: no trailer: the file is truncated", path,
		                (unsigned long long)size);
		goto fail;
	}
	uint64_t end = size - TRAILER;
	if (XXH3_64bits(d, (size_t)end) != get_u64(d + end)) {
		rc = qp_err_set(err, QP_ECORRUPT, "%s: offset %llu: checksum mismatch: the file is damaged", path,
		                (unsigned long long)end);
		goto fail;
	}
	in->n_vocab = get_u32(d + 12);
	in->n_ctx = get_u32(d + 16);
	in->n_chunks = get_u32(d + 20);
	in->first = get_u32(d + 24);
	in->bos = (int32_t)get_u32(d + 28);
	in->n_text = get_u32(d + 36);
	if (in->n_vocab < 1 || in->n_vocab > INT32_MAX || in->n_ctx < 2 || in->n_ctx > INT32_MAX ||
	    in->n_chunks < 1 || in->first >= in->n_ctx - 1) {
		rc = qp_err_set(err, QP_ECORRUPT, "%s: offset 12: bad shape: n_vocab %lld, n_ctx %lld, chunks %lld, first %lld",
		                path, (long long)in->n_vocab, (long long)in->n_ctx, (long long)in->n_chunks,
		                (long long)in->first);
		goto fail;
	}
	uint64_t pos = 44;
	if ((rc = read_str(&f->model, &f->map, &pos, path, "model", err)) ||
	    (rc = read_str(&f->tokenizer, &f->map, &pos, path, "tokenizer", err)) ||
	    (rc = read_str(&f->text, &f->map, &pos, path, "text", err)))
		goto fail;
	in->model = f->model;
	in->tokenizer = f->tokenizer;
	in->text = f->text;
	uint64_t nt = (uint64_t)in->n_chunks * (uint64_t)in->n_ctx; /* both < 2^31: no overflow */
	if (end < pos || (end - pos) / 4 < nt) {
		rc = qp_err_set(err, QP_ECORRUPT, "%s: offset %llu: %llu tokens run past the end of the data", path,
		                (unsigned long long)pos, (unsigned long long)nt);
		goto fail;
	}
	f->per_chunk = in->n_ctx - 1 - in->first;
	uint64_t nrec = (uint64_t)in->n_chunks * (uint64_t)f->per_chunk;
	if (!(f->tokens = malloc((size_t)nt * sizeof(int32_t))) || !(f->off = malloc((size_t)nrec * sizeof(uint64_t)))) {
		rc = qp_err_nomem(err);
		goto fail;
	}
	for (uint64_t i = 0; i < nt; i++, pos += 4)
		f->tokens[i] = (int32_t)get_u32(d + pos);
	in->tokens = f->tokens;
	for (int64_t c = 0; c < in->n_chunks; c++)
		for (int64_t j = 0; j < f->per_chunk; j++) {
			f->off[c * f->per_chunk + j] = pos;
			if ((rc = check_rec(f, &pos, end, c, in->first + j, path, err)))
				goto fail;
		}
	if (pos != end) {
		rc = qp_err_set(err, QP_ECORRUPT, "%s: offset %llu: %llu bytes after the last record", path,
		                (unsigned long long)pos, (unsigned long long)(end - pos));
		goto fail;
	}
	*out = f;
	return 0;
fail:
	qp_logits_close(f);
	return rc;
}

const struct qp_logits_info *qp_logits_info(const struct qp_logits_file *f) { return &f->info; }

void qp_logits_rec(struct qp_logits_rec *r, const struct qp_logits_file *f, int64_t c, int64_t j)
{
	const uint8_t *p = f->map.data + f->off[c * f->per_chunk + (j - f->info.first)];
	r->top = get_u32(p);
	r->n_keep = get_u32(p + 4);
	r->n_fine = get_u32(p + 8);
	r->lp_max = get_f32(p + 12);
	r->lp_next = get_f64(p + 16);
	r->tail = get_f64(p + 24);
	r->corr = get_f64(p + 32);
	r->set_kind = set_kind(f->info.n_vocab, r->n_keep);
	r->set = p + REC_HEAD;
	r->codes = r->set + set_bytes(f->info.n_vocab, r->n_keep);
}

void qp_logits_expand(const struct qp_logits_rec *r, int64_t n_vocab, double *lp)
{
	const uint8_t *code = r->codes;
	if (r->set_kind == QP_LOGITS_SET_LIST) {
		int ib = id_bytes(n_vocab);
		for (int64_t i = 0; i < n_vocab; i++)
			lp[i] = -INFINITY;
		for (uint32_t k = 0; k < r->n_keep; k++) {
			int64_t id = ib == 2 ? get_u16(r->set + (size_t)k * 2) : get_u32(r->set + (size_t)k * 4);
			lp[id] = decode(r->lp_max, next_code(&code));
		}
		return;
	}
	for (int64_t i = 0; i < n_vocab; i++)
		lp[i] = r->set[i / 8] >> (i % 8) & 1 ? decode(r->lp_max, next_code(&code)) : -INFINITY;
}

void qp_logits_close(struct qp_logits_file *f)
{
	if (!f)
		return;
	qp_os_unmap(&f->map);
	free(f->model);
	free(f->tokenizer);
	free(f->text);
	free(f->tokens);
	free(f->off);
	free(f);
}
