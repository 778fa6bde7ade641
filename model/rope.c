/* RoPE frequencies and rotation (see rope.h). The frequencies follow
 * transformers' _compute_*_parameters step by step, in double; it
 * computes them in float32, a difference far below the tolerances logits
 * are compared with.
 *
 * The rotation loop lives here rather than in kernels/ops beside
 * qp_ops_rope_norm because it depends on the scaling variants this file
 * owns; it is O(tokens x heads x head_dim), negligible against the
 * products. */
#include "model/rope.h"

#include <math.h>
#include <string.h>

#include "formats/hfconfig.h"
#include "kernels/ops.h"

const char qp_rope_supported[] = "default, linear, dynamic, yarn, llama3";

static const char *const kind_names[] = {"default", "linear", "dynamic", "yarn", "llama3"};

int qp_rope_kind_parse(enum qp_rope_kind *out, const char *name, struct qp_err *err)
{
	for (size_t i = 0; i < sizeof(kind_names) / sizeof(kind_names[0]); i++)
		if (!strcmp(name, kind_names[i])) {
			*out = (enum qp_rope_kind)i;
			return 0;
		}
	return qp_err_set(err, QP_EINVAL, "RoPE type '%s' is not supported (supported: %s)", name,
	                  qp_rope_supported);
}

int qp_rope_check(const struct qp_rope *r, int64_t n_rot, const char *what, struct qp_err *err)
{
	const char *kn = kind_names[r->kind];
	if (n_rot < 2 || n_rot % 2 || n_rot > QP_ROPE_MAX_DIMS)
		return qp_err_set(err, QP_EINVAL, "%s: %lld RoPE dimensions (even, 2 to %d supported)", what,
		                  (long long)n_rot, QP_ROPE_MAX_DIMS);
	if (!(r->theta > 0.0) || !isfinite(r->theta))
		return qp_err_set(err, QP_EINVAL, "%s: RoPE theta %g is not a positive number", what, r->theta);
	if (r->kind != QP_ROPE_DEFAULT && !(r->factor > 0.0 && isfinite(r->factor)))
		return qp_err_set(err, QP_EINVAL, "%s: RoPE type %s needs a positive 'factor'", what, kn);
	if (r->kind == QP_ROPE_DYNAMIC && r->max_pos < 1)
		return qp_err_set(err, QP_EINVAL, "%s: RoPE type dynamic needs max_position_embeddings", what);
	if (r->kind == QP_ROPE_DYNAMIC && n_rot < 4)
		return qp_err_set(err, QP_EINVAL, "%s: RoPE type dynamic needs more than 2 dimensions", what);
	if ((r->kind == QP_ROPE_YARN || r->kind == QP_ROPE_LLAMA3) && r->orig_max_pos < 1)
		return qp_err_set(err, QP_EINVAL, "%s: RoPE type %s needs 'original_max_position_embeddings'",
		                  what, kn);
	if (r->kind == QP_ROPE_LLAMA3 &&
	    !(r->low_freq_factor > 0.0 && r->high_freq_factor > r->low_freq_factor))
		return qp_err_set(err, QP_EINVAL,
		                  "%s: RoPE type llama3 needs 0 < 'low_freq_factor' < 'high_freq_factor' "
		                  "(got %g and %g)", what, r->low_freq_factor, r->high_freq_factor);
	if (r->kind == QP_ROPE_YARN && (r->beta_fast < 0.0 || r->beta_slow < 0.0 || r->attention_factor < 0.0))
		return qp_err_set(err, QP_EINVAL, "%s: RoPE type yarn: beta_fast, beta_slow and "
		                  "attention_factor must not be negative", what);
	return 0;
}

int qp_rope_from_hf_config(struct qp_rope *r, const struct qp_hf_config *c, int64_t n_rot, const char *file,
                           struct qp_err *err)
{
	memset(r, 0, sizeof(*r));
	int rc = qp_rope_kind_parse(&r->kind, c->rope_type, err);
	if (rc)
		return qp_err_prefix(err, "%s", file);
	r->neox = true;
	r->theta = c->rope_theta;
	r->factor = c->rope_factor;
	r->max_pos = c->max_position_embeddings;
	/* transformers' standardize_rope_params: the pretraining length
	 * defaults to max_position_embeddings */
	r->orig_max_pos = c->rope_original_max_position_embeddings ? c->rope_original_max_position_embeddings
	                                                           : c->max_position_embeddings;
	/* transformers 5's yarn: without factor, the ratio of the lengths */
	if (r->kind == QP_ROPE_YARN && r->factor == 0.0 && c->rope_original_max_position_embeddings)
		r->factor = (double)c->max_position_embeddings / c->rope_original_max_position_embeddings;
	r->low_freq_factor = c->rope_low_freq_factor;
	r->high_freq_factor = c->rope_high_freq_factor;
	r->beta_fast = c->rope_beta_fast;
	r->beta_slow = c->rope_beta_slow;
	r->attention_factor = c->rope_attention_factor;
	r->mscale = c->rope_mscale;
	r->mscale_all_dim = c->rope_mscale_all_dim;
	r->truncate = c->rope_truncate;
	return qp_rope_check(r, n_rot, file, err);
}

static double yarn_mscale(double scale, double mscale)
{
	return scale <= 1.0 ? 1.0 : 0.1 * mscale * log(scale) + 1.0;
}

/* The dimension (of d) whose wavelength makes n_rotations turns over len positions. */
static double yarn_corr_dim(double n_rotations, double d, double base, double len)
{
	return d * log(len / (n_rotations * 2.0 * M_PI)) / (2.0 * log(base));
}

void qp_rope_freqs(const struct qp_rope *r, int64_t n_rot, int64_t seq_len, double *inv_freq,
                   double *scale)
{
	const int64_t half = n_rot / 2;
	const double d = (double)n_rot;
	double base = r->theta;
	*scale = 1.0;
	if (r->kind == QP_ROPE_DYNAMIC) {
		double len = (double)(seq_len > r->max_pos ? seq_len : r->max_pos);
		base *= pow(r->factor * len / (double)r->max_pos - (r->factor - 1.0), d / (d - 2.0));
	}
	for (int64_t i = 0; i < half; i++)
		inv_freq[i] = 1.0 / pow(base, (double)(2 * i) / d);
	if (r->kind == QP_ROPE_LINEAR) {
		for (int64_t i = 0; i < half; i++)
			inv_freq[i] /= r->factor;
	} else if (r->kind == QP_ROPE_LLAMA3) {
		const double omax = (double)r->orig_max_pos;
		const double low_wl = omax / r->low_freq_factor, high_wl = omax / r->high_freq_factor;
		for (int64_t i = 0; i < half; i++) {
			double wl = 2.0 * M_PI / inv_freq[i];
			if (wl > low_wl) {
				inv_freq[i] /= r->factor;
			} else if (wl >= high_wl) {
				double smooth = (omax / wl - r->low_freq_factor) / (r->high_freq_factor - r->low_freq_factor);
				inv_freq[i] = (1.0 - smooth) * inv_freq[i] / r->factor + smooth * inv_freq[i];
			}
		}
	} else if (r->kind == QP_ROPE_YARN) {
		double bf = r->beta_fast > 0.0 ? r->beta_fast : 32.0;
		double bs = r->beta_slow > 0.0 ? r->beta_slow : 1.0;
		double lo = yarn_corr_dim(bf, d, base, (double)r->orig_max_pos);
		double hi = yarn_corr_dim(bs, d, base, (double)r->orig_max_pos);
		if (r->truncate) {
			lo = floor(lo);
			hi = ceil(hi);
		}
		lo = lo > 0.0 ? lo : 0.0;
		hi = hi < d - 1.0 ? hi : d - 1.0;
		if (lo == hi)
			hi += 0.001; /* as transformers: no zero-width ramp */
		for (int64_t i = 0; i < half; i++) {
			double ramp = ((double)i - lo) / (hi - lo);
			ramp = ramp < 0.0 ? 0.0 : ramp > 1.0 ? 1.0 : ramp;
			double extrap = 1.0 - ramp; /* weight of the unscaled frequency */
			inv_freq[i] = inv_freq[i] / r->factor * (1.0 - extrap) + inv_freq[i] * extrap;
		}
		if (r->attention_factor > 0.0)
			*scale = r->attention_factor;
		else if (r->mscale > 0.0 && r->mscale_all_dim > 0.0)
			*scale = yarn_mscale(r->factor, r->mscale) / yarn_mscale(r->factor, r->mscale_all_dim);
		else
			*scale = yarn_mscale(r->factor, 1.0);
	}
	if (r->freq_factors)
		for (int64_t i = 0; i < half; i++)
			inv_freq[i] /= (double)r->freq_factors[i];
}

void qp_rope_angles(const struct qp_rope *r, int64_t n_rot, int64_t pos, const double *inv_freq, double scale,
                    float *c, float *s)
{
	if (r->kind == QP_ROPE_DEFAULT && !r->neox && !r->freq_factors) {
		qp_ops_rope_angles_norm(c, s, n_rot, pos, (float)r->theta);
		return;
	}
	for (int64_t i = 0; i < n_rot / 2; i++) {
		double a = (double)pos * inv_freq[i];
		c[i] = (float)(cos(a) * scale);
		s[i] = (float)(sin(a) * scale);
	}
}
