/* The base model's next-token distributions on the tokens perplexity
 * scores, stored once (stage evaluate.base) and read by every evaluate's
 * kld instead of running the base model again.
 *
 * What a scored token needs (model/kld.h): kld_t needs the base's p over
 * the vocabulary, rms dp the base's p[next], top-1 its argmax. Per token
 * the file keeps:
 *   top, lp_max, lp_next  exact: argmax id, log p of the argmax (f32)
 *                         and of the text's next token (f64)
 *   kept set              every id whose log p lies less than 16 nats
 *                         below lp_max, with its distance from lp_max
 *                         rounded: under 8 nats to steps of 2^-12 (a
 *                         two-byte "fine" code, p_i within 1.2e-4
 *                         relative), from 8 to 16 nats, where p_i is
 *                         under e^-8 = 3.4e-4 of the argmax's, to steps
 *                         of 1/16 (a one-byte "coarse" code, p_i within
 *                         3.2%)
 *   tail                  the exact mass of the other ids (f64)
 *   corr                  sum over kept ids of p'_i (log p'_i - log p_i),
 *                         p' the rounded p (f64), so the reader can take
 *                         the rounding's own divergence back out
 * and the reader computes, with q the quantized model's softmax,
 *   kld_t' = sum_kept p'_i (log p'_i - log q_i) - corr
 *            + tail * (log tail - log q_tail)      (q_tail: q's mass off the kept set)
 *          = kld_t + sum_kept (p'_i - p_i)(log p_i - log q_i) - tail * D_tail
 * where D_tail >= 0 is the divergence within the tail (log-sum
 * inequality), so the tail term never over-counts. Bound per token, with
 * r_i = log p_i - log q_i:
 *   |error| <= 1.2e-4 * sum_fine p_i |r_i| + 0.032 * sum_coarse p_i |r_i|
 *              + tail * D_tail,
 * the first two of no fixed sign (they average out over tokens), the
 * coarse ids' p_i each under 3.4e-4 of the argmax's, and the last at most
 * the tail's mass (each tail id under e^-16 = 1.1e-7 of the argmax's
 * probability) times how differently q spreads it. llama.cpp's
 * uint16 file drops the tail instead and keeps the rounding's own
 * divergence: on llama.cpp's own logits of llama-docs-27m q8_0 its mean
 * KLD is 2.6e-3 below the exact value (tests/model/test_kld_llama_cpp.py).
 *
 * Measured on llama-docs-27m (vocabulary 8192, held-out text, n_ctx 512,
 * 8 chunks, 2040 tokens: recipes/demo.yaml's) against the exact float
 * path (model/kld.h), relative errors of the file's statistics:
 *   q8_0 (kld 3.3e-4): kld 6.7e-5, median 1.4e-3, p99 2.7e-4, max 3.7e-4;
 *   q4_0 (kld 3.3e-2): kld 6.8e-5, median 1.9e-4, p99 2.9e-5, max 3.1e-5;
 *   rms dp and top-1 are exact (from lp_next and top).
 * Size: 40 + min(bitmap, id list) + 2 bytes per fine and 1 per coarse id
 * per token; on llama-docs-27m 6.5 KB per token (13.3 MB for the demo's
 * 2040 tokens), against llama.cpp's 2 * n_vocab +
 * 8 = 16.4 KB. A large-vocabulary model should be peakier (not measured:
 * none can be brought onto these machines): where its kept set is a small
 * share of the vocabulary the id list replaces the bitmap and the file
 * shrinks with the kept set, where llama.cpp's grows with n_vocab.
 *
 * Layout (little-endian):
 *   header   "QPLOGITS", u32 version (1), u32 n_vocab, u32 n_ctx,
 *            u32 n_chunks, u32 first, i32 bos, u32 step_shift (12: fine
 *            steps of 2^-12 nats), u32 n_text (tokens in the whole text),
 *            u32 0 (reserved), then three
 *            u16-length-prefixed strings: model (the base's identity),
 *            tokenizer (its description), text (the text's identity)
 *   tokens   n_chunks * n_ctx i32: each chunk as run, BOS first
 *   records  for each chunk, for positions first .. n_ctx - 2:
 *            u32 top, u32 n_keep, u32 n_fine, f32 lp_max, f64 lp_next,
 *            f64 tail, f64 corr, the kept set, then n_keep codes in
 *            ascending id order, n_fine of them fine: a fine code is two
 *            bytes v (big-endian, top bit clear: distance v * 2^-12), a
 *            coarse one byte 0x80 | w (distance 8 + w / 16, w < 128). The
 *            set is an id list (u16 ids when n_vocab <=
 *            65536, else u32) when that is smaller than a bitmap of
 *            n_vocab bits (bit i of byte i/8 = id i kept), else the bitmap
 *   trailer  u64 XXH3-64 of every byte before it, "QPLEND\0\0" */
#ifndef QP_LOGITS_FILE_H
#define QP_LOGITS_FILE_H

#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"

/* What a file covers. Strings are borrowed: from the caller while writing,
 * from the open file while reading. */
struct qp_logits_info {
	int64_t n_vocab, n_ctx, n_chunks;
	int64_t first;            /* first scored position of a chunk */
	int32_t bos;
	int64_t n_text;           /* tokens in the whole text */
	const char *model, *tokenizer, *text;
	const int32_t *tokens;    /* n_chunks * n_ctx, as each chunk ran */
};

/* One scored token as stored; codes and set point into the file. */
struct qp_logits_rec {
	uint32_t top, n_keep, n_fine;
	float lp_max;
	double lp_next, tail, corr;
	int set_kind;             /* QP_LOGITS_SET_LIST or _BITMAP */
	const uint8_t *set;
	const uint8_t *codes;     /* n_keep codes, n_fine of them two bytes */
};

enum { QP_LOGITS_SET_LIST, QP_LOGITS_SET_BITMAP };

struct qp_logits_writer;
struct qp_logits_file;

/* Start writing path atomically (nothing appears there until finish). */
int qp_logits_writer_open(struct qp_logits_writer **out, const char *path, const struct qp_logits_info *info,
                          struct qp_err *err);
/* Add the next chunk: logits of its n_ctx positions (n_ctx * n_vocab). */
int qp_logits_writer_chunk(struct qp_logits_writer *w, const float *logits, struct qp_err *err);
/* Bytes written so far. */
uint64_t qp_logits_writer_bytes(const struct qp_logits_writer *w);
/* Write the trailer and commit the file; every chunk must have been added. */
int qp_logits_writer_finish(struct qp_logits_writer *w, struct qp_err *err);
/* Free; an unfinished file is removed. Accepts NULL. */
void qp_logits_writer_free(struct qp_logits_writer *w);

/* Map and check path: checksum, header, every record's bounds; errors
 * name the file and the offset. */
int qp_logits_open(struct qp_logits_file **out, const char *path, struct qp_err *err);
/* What it covers (borrowed until close). */
const struct qp_logits_info *qp_logits_info(const struct qp_logits_file *f);
/* Record of scored position first + j of chunk c. */
void qp_logits_rec(struct qp_logits_rec *out, const struct qp_logits_file *f, int64_t c, int64_t j);
/* The record's log p' into lp[n_vocab]: lp_max less the code's distance
 * for a kept id (the writer's own rounding), -INFINITY for a tail id. */
void qp_logits_expand(const struct qp_logits_rec *r, int64_t n_vocab, double *lp);
/* Accepts NULL. */
void qp_logits_close(struct qp_logits_file *f);

#endif
