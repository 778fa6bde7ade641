/* Rotary position embedding: the frequencies of each rotated pair, with the
 * context-extension variants of transformers' modeling_rope_utils.py, and
 * their application to the q and k heads of one token.
 *
 *   default   inv_freq[i] = theta^(-2i/d), d the rotated dimensions
 *   linear    inv_freq / factor
 *   dynamic   (NTK) theta' = theta * (factor * L / max_pos - (factor - 1))^(d/(d-2))
 *             with L = max(seq_len, max_pos); seq_len is the batch's last
 *             position + 1, as transformers' dynamic_rope_update takes it
 *             from position_ids (without its cache of the largest length
 *             seen: each batch uses its own)
 *   yarn      interpolated (inv_freq / factor) below the correction range
 *             of beta_fast/beta_slow rotations over original_max_pos,
 *             extrapolated (inv_freq) above it, a linear ramp between;
 *             cos and sin scaled by the attention factor
 *             (attention_factor, else 0.1 ln(factor) + 1, or the ratio of
 *             the mscale/mscale_all_dim forms when both are given)
 *   llama3    wavelengths above original_max_pos / low_freq_factor divided
 *             by factor, below original_max_pos / high_freq_factor kept,
 *             smoothly interpolated between
 *
 * A GGUF's rope_freqs.weight (llama.cpp's form of llama3 scaling) divides
 * inv_freq pair by pair. Pairs are (i, i + d/2) in Hugging Face's
 * rotate_half layout ("neox"), or (2i, 2i + 1) in llama.cpp's "normal"
 * layout that export.gguf's row permutation produces. */
#ifndef QP_ROPE_H
#define QP_ROPE_H

#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"

enum qp_rope_kind { QP_ROPE_DEFAULT, QP_ROPE_LINEAR, QP_ROPE_DYNAMIC, QP_ROPE_YARN, QP_ROPE_LLAMA3 };

struct qp_hf_config;

/* The scaling types accepted from config.json, for messages. */
extern const char qp_rope_supported[];

/* The longest rotated dimension count (2 x pairs) qp_rope_angles takes. */
#define QP_ROPE_MAX_DIMS 1024

struct qp_rope {
	enum qp_rope_kind kind;
	bool neox;                   /* pairs (i, i + d/2) instead of (2i, 2i + 1) */
	double theta;                /* base */
	double factor;               /* every kind but default */
	int64_t max_pos;             /* dynamic: max_position_embeddings */
	int64_t orig_max_pos;        /* yarn, llama3: original_max_position_embeddings */
	double low_freq_factor, high_freq_factor;  /* llama3 */
	double beta_fast, beta_slow;               /* yarn; 0: 32 and 1 */
	double attention_factor;     /* yarn; 0: derived from factor (and mscale) */
	double mscale, mscale_all_dim;             /* yarn; 0: absent */
	bool truncate;               /* yarn: correction range to whole dims */
	const float *freq_factors;   /* NULL, or d/2 divisors of inv_freq (borrowed) */
};

/* kind by its transformers name ("default", "linear", "dynamic", "yarn",
 * "llama3"); fails naming the type and the supported ones. */
int qp_rope_kind_parse(enum qp_rope_kind *out, const char *name, struct qp_err *err);

/* r from a config.json's rope_theta and rope_scaling (or rope_parameters),
 * as transformers reads them, in the neox layout; checked (qp_rope_check),
 * file naming the config in messages. */
int qp_rope_from_hf_config(struct qp_rope *r, const struct qp_hf_config *c, int64_t n_rot, const char *file,
                           struct qp_err *err);

/* Check the parameters r's kind needs (factor > 0, ...); what names the
 * source (a file) in messages. */
int qp_rope_check(const struct qp_rope *r, int64_t n_rot, const char *what, struct qp_err *err);

/* inv_freq[n_rot / 2] and the factor cos and sin are scaled by, for a
 * batch whose last position is seq_len - 1. */
void qp_rope_freqs(const struct qp_rope *r, int64_t n_rot, int64_t seq_len, double *inv_freq,
                   double *scale);

/* The rotation at position pos: c[i] and s[i] for each of the n_rot / 2
 * pairs, at most QP_ROPE_MAX_DIMS / 2. The default kind in the normal
 * layout without freq_factors takes qp_ops_rope_angles_norm's, so a plain
 * GGUF keeps ggml's arithmetic; the rest cos and sin of pos * inv_freq[i]
 * in double, times scale (inv_freq and scale from qp_rope_freqs).
 * qp_ops_rope_rotate applies them to a token's heads in r's layout. */
void qp_rope_angles(const struct qp_rope *r, int64_t n_rot, int64_t pos, const double *inv_freq, double scale,
                    float *c, float *s);

#endif
