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

#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"
#include "kernels/kernels.h"
#include "kernels/types.h"

/* y = x / sqrt(mean(x^2) + eps) * w, n elements; y may be x. */
void qp_ops_rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps);

/* The angles of llama.cpp's "normal" RoPE at position pos: for pair
 * i < n_rot / 2, c[i] = cos(a), s[i] = sin(a), a = pos * freq_base^(-2i/n_rot)
 * in ggml's arithmetic (a by repeated float multiplication, cosf, sinf). */
void qp_ops_rope_angles_norm(float *c, float *s, int64_t n_rot, int64_t pos, float freq_base);

/* RoPE in place: x holds n_head heads of head_dim; in each, pair i <
 * n_rot / 2 (dimensions 2i and 2i + 1, or i and i + n_rot / 2 when neox)
 * goes from (x0, x1) to (x0 c[i] - x1 s[i], x0 s[i] + x1 c[i]). A token's
 * angles serve all its heads, q's and k's. */
void qp_ops_rope_rotate(float *x, int64_t n_head, int64_t head_dim, int64_t n_rot, bool neox, const float *c,
                        const float *s);

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
	/* f16's vec_dot_tile (kernels.h) for many tokens: s[c * lds + r] is,
	 * bit for bit, what the level's f16 vec_dot gives the pair, but k is
	 * walked in chunks that stay in L1 while every token's chunk passes.
	 * qp_ops_matmul runs it on weight rows in place, against blocks of
	 * tokens that stay in L2. NULL where the level has none (the scalar
	 * reference never has a tile). */
	void (*f16_block_tile)(int64_t n, float *s, int64_t lds, const void *x, size_t bx, int64_t nr,
	                       const void *y, size_t by, int64_t nc);
	/* qp_ops_attn's two products, each element a chain of fused
	 * multiply-adds in a fixed order, so every level gives the
	 * reference's bits however it groups queries, keys or dimensions:
	 * s[i * lds + j] = sum over d < hd of q_i[d] * kt[d * kt_stride + j]
	 * for i < nq, j < n_keys (q_i at q + i * q_stride), as float chains
	 * over blocks of 16 dimensions added into a double;
	 * out_i[d] = sum over j < len0 + i of p[i * ldp + j] * v[j * v_stride + d]
	 * for i < nq, d < hd (out_i at out + i * out_stride), the same way
	 * over blocks of 16 positions (from j = 0). */
	void (*attn_scores)(float *s, int64_t lds, const float *q, int64_t q_stride, int64_t nq, const float *kt,
	                    int64_t kt_stride, int64_t n_keys, int64_t hd);
	void (*attn_values)(float *out, int64_t out_stride, const float *p, int64_t ldp, int64_t nq, int64_t len0,
	                    const float *v, int64_t v_stride, int64_t hd);
	/* q4_0's vec_dot_tile over a panel: up to eight weight rows (row r
	 * at x + r * bx) repacked once by q4_0_panel into q4_0_panel_bytes(n)
	 * bytes, against nc q8_0 token rows; s[c * lds + r] is, bit for bit,
	 * what the level's q4_0 vec_dot gives the pair. qp_ops_matmul packs
	 * a panel once for a block of tokens. NULL where the level has none. */
	size_t (*q4_0_panel_bytes)(int64_t n);
	void (*q4_0_panel)(const void *x, size_t bx, int64_t nr, void *panel, int64_t n);
	void (*q4_0_panel_tile)(int64_t n, float *s, int64_t lds, const void *panel, int64_t nr, const void *y,
	                        size_t by, int64_t nc);
};
const struct qp_ops_vec *qp_ops_vec_level(enum qp_kernel_level level);

/* y += a * x, n elements. */
void qp_ops_axpy(float *y, float a, const float *x, int64_t n);

/* Causal attention of nq consecutive queries of one head against one kv
 * head's cache: query i (q + i * q_stride, hd floats) attends to positions
 * 0 .. n_kv0 + i - 1 (n_kv0 >= 1); its result goes to out + i * out_stride.
 * The keys are stored transposed, component d of key j at
 * kt[d * kt_stride + j], the values as rows, v_j at v + j * v_stride:
 * both products then run along contiguous memory with a query (or a
 * weight) broadcast. Scores are q . k_j added in order of d, times scale,
 * then softmax over the query's positions, then out = sum_j p_j v_j added
 * in order of j (qp_ops_vec's attn_scores and attn_values): a query's
 * result never depends on which other queries share the call, so neither
 * batches nor threads change it. scores holds nq * (n_kv0 + nq - 1)
 * floats of scratch. */
void qp_ops_attn(float *out, int64_t out_stride, const float *q, int64_t q_stride, int64_t nq, const float *kt,
                 int64_t kt_stride, const float *v, int64_t v_stride, int64_t n_kv0, int64_t hd, float scale,
                 float *scores);

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
