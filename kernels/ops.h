/* Transformer operations over f32 rows, and the threaded matrix product
 * over the kernel table that a forward pass is built from. Each follows
 * the arithmetic of ggml's CPU operation of the same name (sums of
 * squares and of exponentials in double, RoPE angles by repeated
 * multiplication), so results track llama.cpp's closely. model/ calls
 * these; it carries no inner loops of its own.
 *
 * Every result depends only on its inputs, never on the thread count:
 * threads split the output, not a sum. */
#ifndef QP_OPS_H
#define QP_OPS_H

#include <stdint.h>

#include "common/err.h"
#include "kernels/kernels.h"
#include "kernels/types.h"

/* y = x / sqrt(mean(x^2) + eps) * w, n elements; y may be x. */
void qp_ops_rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps);

/* llama.cpp's "normal" RoPE in place: x holds n_head heads of head_dim;
 * in each, pairs (2i, 2i+1) for 2i < n_rot are rotated by the angle
 * pos * freq_base^(-2i/n_rot). */
void qp_ops_rope_norm(float *x, int64_t n_head, int64_t head_dim, int64_t n_rot, int64_t pos,
                      float freq_base);

/* x = softmax(x) in place, n >= 1. */
void qp_ops_softmax(float *x, int64_t n);

/* g = silu(g) * u, n elements (SwiGLU). */
void qp_ops_silu_mul(float *g, const float *u, int64_t n);

/* The two above at one kernel level, for tests that run every variant
 * against the scalar reference (the level's exponential is its own, so
 * they match it by relative error); NULL where the level has none or
 * cannot run here. The functions above use the level qp_kernels_init
 * selected. */
struct qp_ops_vec {
	void (*silu_mul)(float *g, const float *u, int64_t n);
	void (*softmax)(float *x, int64_t n);
	/* f16's vec_dot_tile (kernels.h) over rows already widened to f32:
	 * x and y hold f16 values as floats (the conversion is exact), and
	 * s[c * lds + r] is, bit for bit, what the level's f16 vec_dot gives
	 * the f16 rows. qp_ops_matmul widens a few weight rows once for a
	 * block of tokens instead of converting at every load of every tile.
	 * NULL where the level has none (the scalar reference never has a
	 * tile). */
	void (*f16_tile_wide)(int64_t n, float *s, int64_t lds, const float *x, size_t bx, int64_t nr,
	                      const float *y, size_t by, int64_t nc);
};
const struct qp_ops_vec *qp_ops_vec_level(enum qp_kernel_level level);

/* y += a * x, n elements. */
void qp_ops_axpy(float *y, float a, const float *x, int64_t n);

/* One query head against n_kv cached positions: out[hd] = sum_j p_j v_j
 * with p = softmax(scale * q . k_j). k_j is at k + j * k_stride; the
 * values are stored transposed, component d of v_0 .. v_{n_kv-1} at
 * vt + d * vt_stride (strides in floats), so that both products are rows
 * against one vector, which the kernel table's f32 tiles take a few rows
 * at a time. scores holds n_kv floats of scratch. */
void qp_ops_attn_head(float *out, const float *q, const float *k, int64_t k_stride, const float *vt,
                      int64_t vt_stride, int64_t n_kv, int64_t head_dim, float scale, float *scores);

/* dst[c * ld + r] = src[r * cols + c] for r < rows, c < cols: rows of
 * src become columns of dst (the values into a transposed cache). */
void qp_ops_transpose(float *dst, int64_t ld, const float *src, int64_t rows, int64_t cols);

/* Negative log-likelihood of target under softmax(logits[n]), in double. */
double qp_ops_nll(const float *logits, int64_t n, int32_t target);

/* y[t * ldy + r] = dot(row r of w, x[t * k .. + k]) for r < n_rows,
 * t < n_tok: w holds n_rows rows of k elements of type wt; each x row is
 * first quantized to wt's vec_dot_type, as llama.cpp does. Rows of w are
 * split across up to threads threads. Fails naming the type when it has
 * no dot product or k does not divide into its blocks. */
int qp_ops_matmul(float *y, int64_t ldy, enum qp_type wt, const void *w, int64_t n_rows, int64_t k,
                  const float *x, int64_t n_tok, int threads, struct qp_err *err);

/* Run fn(arg, begin, end) over [0, n) split into up to threads contiguous
 * ranges, one thread each (the caller's thread takes the first). */
void qp_ops_parallel(int threads, int64_t n, void (*fn)(void *arg, int64_t begin, int64_t end),
                     void *arg);

#endif
