#include "kernels/ops.h"

#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "kernels/cpu/ref/attn.h"
#include "kernels/kernels.h"
#if QP_HAVE_AVX2
#include "kernels/cpu/avx2/avx2.h"
#endif
#if QP_HAVE_AVX512
#include "kernels/cpu/avx512/avx512.h"
#endif

#define MAX_THREADS 64

void qp_ops_rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps)
{
	/* eight partial sums (element i into p[i % 8]) added pairwise, then
	 * the last n % 8 elements, rather than ggml's one chain: that chain
	 * waited on an add's latency at every element, 1.2% of an f16
	 * prefill. In double the order moves only bits that the float mean
	 * rounds away. */
	double p0 = 0, p1 = 0, p2 = 0, p3 = 0, p4 = 0, p5 = 0, p6 = 0, p7 = 0;
	int64_t i = 0;
	for (; i + 8 <= n; i += 8) {
		p0 += (double)(x[i] * x[i]);
		p1 += (double)(x[i + 1] * x[i + 1]);
		p2 += (double)(x[i + 2] * x[i + 2]);
		p3 += (double)(x[i + 3] * x[i + 3]);
		p4 += (double)(x[i + 4] * x[i + 4]);
		p5 += (double)(x[i + 5] * x[i + 5]);
		p6 += (double)(x[i + 6] * x[i + 6]);
		p7 += (double)(x[i + 7] * x[i + 7]);
	}
	double sum = ((p0 + p4) + (p2 + p6)) + ((p1 + p5) + (p3 + p7));
	for (; i < n; i++)
		sum += (double)(x[i] * x[i]);
	const float mean = (float)(sum / (double)n);
	const float scale = 1.0f / sqrtf(mean + eps);
	for (i = 0; i < n; i++)
		y[i] = (x[i] * scale) * w[i];
}

void qp_ops_rope_angles_norm(float *c, float *s, int64_t n_rot, int64_t pos, float freq_base)
{
	const float theta_scale = powf(freq_base, -2.0f / (float)n_rot);
	float theta = (float)pos;
	for (int64_t i = 0; i < n_rot / 2; i++) {
		c[i] = cosf(theta);
		s[i] = sinf(theta);
		theta *= theta_scale;
	}
}

void qp_ops_rope_rotate(float *x, int64_t n_head, int64_t head_dim, int64_t n_rot, bool neox, const float *c,
                        const float *s)
{
	const int64_t half = n_rot / 2, step = neox ? 1 : 2, off = neox ? half : 1;
	for (int64_t h = 0; h < n_head; h++) {
		float *xh = x + h * head_dim;
		for (int64_t i = 0; i < half; i++) {
			float *p0 = xh + i * step, *p1 = p0 + off;
			const float x0 = *p0, x1 = *p1;
			*p0 = x0 * c[i] - x1 * s[i];
			*p1 = x0 * s[i] + x1 * c[i];
		}
	}
}

static void softmax_ref(float *x, int64_t n)
{
	float max = -INFINITY;
	for (int64_t i = 0; i < n; i++)
		max = x[i] > max ? x[i] : max;
	double sum = 0.0;
	for (int64_t i = 0; i < n; i++) {
		x[i] = expf(x[i] - max);
		sum += (double)x[i];
	}
	const float inv = (float)(1.0 / sum);
	for (int64_t i = 0; i < n; i++)
		x[i] *= inv;
}

static void silu_mul_ref(float *g, const float *u, int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

static const struct qp_ops_vec vec_levels[QP_LEVEL_COUNT] = {
	[QP_LEVEL_SCALAR] = {silu_mul_ref, softmax_ref, NULL, qp_attn_scores_ref, qp_attn_values_ref, NULL, NULL, NULL},
#if QP_HAVE_AVX2
	[QP_LEVEL_AVX2] = {qp_silu_mul_avx2, qp_softmax_avx2, qp_f16_vec_dot_tile_block_avx2, qp_attn_scores_avx2,
	                   qp_attn_values_avx2, qp_q4_0_panel_bytes_avx2, qp_q4_0_panel_avx2, qp_q4_0_panel_tile_avx2},
#endif
#if QP_HAVE_AVX512
	/* AVX2's but q4_0's panel tile, VNNI's */
	[QP_LEVEL_AVX512] = {qp_silu_mul_avx2, qp_softmax_avx2, qp_f16_vec_dot_tile_block_avx2, qp_attn_scores_avx2,
	                     qp_attn_values_avx2, qp_q4_0_panel_bytes_avx2, qp_q4_0_panel_avx2,
	                     qp_q4_0_panel_tile_avx512},
#endif
};

const struct qp_ops_vec *qp_ops_vec_level(enum qp_kernel_level level)
{
	if ((int)level < 0 || level >= QP_LEVEL_COUNT || !qp_kernel_level_supported(level))
		return NULL;
	return vec_levels[level].silu_mul ? &vec_levels[level] : NULL;
}

static const struct qp_ops_vec *vec_ops(void)
{
	/* qp_kernels_level() only names a level this CPU runs, and it runs
	 * the levels below it */
	int l = qp_kernels_level();
	while (!vec_levels[l].silu_mul)
		l = qp_kernel_level_below(l);
	return &vec_levels[l];
}

void qp_ops_softmax(float *x, int64_t n)
{
	vec_ops()->softmax(x, n);
}

void qp_ops_silu_mul(float *g, const float *u, int64_t n)
{
	vec_ops()->silu_mul(g, u, n);
}

void qp_ops_axpy(float *y, float a, const float *x, int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		y[i] += a * x[i];
}

void qp_ops_attn(float *out, int64_t out_stride, const float *q, int64_t q_stride, int64_t nq, const float *kt,
                 int64_t kt_stride, const float *v, int64_t v_stride, int64_t n_kv0, int64_t hd, float scale,
                 float *scores)
{
	const struct qp_ops_vec *vo = vec_ops();
	const int64_t ld = n_kv0 + nq - 1;
	/* every query against the last one's keys: the few past a query's
	 * own end are computed and left out of its softmax */
	vo->attn_scores(scores, ld, q, q_stride, nq, kt, kt_stride, ld, hd);
	for (int64_t i = 0; i < nq; i++) {
		float *si = scores + i * ld;
		for (int64_t j = 0; j < n_kv0 + i; j++)
			si[j] *= scale;
		vo->softmax(si, n_kv0 + i);
	}
	vo->attn_values(out, out_stride, scores, ld, nq, n_kv0, v, v_stride, hd);
}

void qp_ops_transpose(float *dst, int64_t ld, const float *src, int64_t rows, int64_t cols)
{
	/* eight rows at a time, so that each column's eight stores fill one
	 * stretch of dst: row by row, every store went to a line of its own,
	 * ld apart */
	for (int64_t r0 = 0; r0 < rows; r0 += 8) {
		const int64_t r1 = r0 + 8 < rows ? r0 + 8 : rows;
		for (int64_t c = 0; c < cols; c++)
			for (int64_t r = r0; r < r1; r++)
				dst[c * ld + r] = src[r * cols + c];
	}
}

double qp_ops_nll(const float *logits, int64_t n, int32_t target)
{
	float max = -INFINITY;
	for (int64_t i = 0; i < n; i++)
		max = logits[i] > max ? logits[i] : max;
	double sum = 0.0;
	for (int64_t i = 0; i < n; i++)
		sum += (double)expf(logits[i] - max);
	return log(sum) - (double)(logits[target] - max);
}

struct par {
	void (*fn)(void *, int64_t, int64_t);
	void *arg;
	int64_t begin, end;
};

static void *par_run(void *p)
{
	struct par *j = p;
	j->fn(j->arg, j->begin, j->end);
	return NULL;
}

/* One thread per range, created and joined for this call: the way when
 * the pool is taken (a nested or concurrent call). */
static void parallel_spawn(struct par *jobs, int threads)
{
	pthread_t tids[MAX_THREADS];
	int started[MAX_THREADS] = {0};
	/* a thread that cannot be started runs inline: slower, same result */
	for (int t = 1; t < threads; t++)
		started[t] = pthread_create(&tids[t], NULL, par_run, &jobs[t]) == 0;
	par_run(&jobs[0]);
	for (int t = 1; t < threads; t++) {
		if (started[t])
			pthread_join(tids[t], NULL);
		else
			par_run(&jobs[t]);
	}
}

/* Workers that outlive a call: a forward pass makes some fifty parallel
 * calls per token, and creating and joining threads for each cost more
 * than a decode step's products. Worker i (1 ..) runs jobs[i] of each
 * call that has one and sleeps on `wake` in between; the calling thread
 * runs jobs[0]. `use` is held for a whole call, so the pool serves one
 * caller at a time; a caller that finds it taken spawns threads as before.
 * Which thread runs a range never changes what it computes. */
static struct {
	pthread_mutex_t use;
	pthread_mutex_t mu;       /* guards the rest */
	pthread_cond_t wake, done;
	int n_workers;
	uint64_t gen;             /* bumped for each call */
	uint64_t start_gen[MAX_THREADS];
	struct par jobs[MAX_THREADS];
	int n_jobs;               /* this call's ranges: jobs[1 .. n_jobs) are the workers' */
	int pending;              /* workers' ranges not finished yet */
} pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
          PTHREAD_COND_INITIALIZER, 0, 0, {0}, {{0}}, 0, 0};

/* A decode step makes some hundred parallel calls a few microseconds
 * apart: sleeping on a condition variable between them cost more than the
 * work (two threads decoded slower than one). So a worker, and a caller
 * waiting for its workers, first watch the counters for about POOL_SPIN
 * pauses (tens of microseconds), and only then sleep. gen and pending are
 * written under `mu` but with atomic stores, so the watchers may read
 * them without it. */
#define POOL_SPIN 4000

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

static void *pool_worker(void *p)
{
	const int id = (int)(intptr_t)p;
	pthread_mutex_lock(&pool.mu);
	uint64_t seen = pool.start_gen[id];
	for (;;) {
		if (pool.gen == seen) {
			pthread_mutex_unlock(&pool.mu);
			for (int i = 0; i < POOL_SPIN && __atomic_load_n(&pool.gen, __ATOMIC_ACQUIRE) == seen; i++)
				cpu_relax();
			pthread_mutex_lock(&pool.mu);
		}
		while (pool.gen == seen)
			pthread_cond_wait(&pool.wake, &pool.mu);
		seen = pool.gen;
		if (id >= pool.n_jobs)
			continue;
		struct par j = pool.jobs[id];
		pthread_mutex_unlock(&pool.mu);
		par_run(&j);
		pthread_mutex_lock(&pool.mu);
		if (__atomic_sub_fetch(&pool.pending, 1, __ATOMIC_RELEASE) == 0)
			pthread_cond_signal(&pool.done);
	}
	return NULL;
}

/* A forked child has none of the parent's workers: it starts an empty pool. */
static void pool_after_fork(void)
{
	pthread_mutex_init(&pool.use, NULL);
	pthread_mutex_init(&pool.mu, NULL);
	pthread_cond_init(&pool.wake, NULL);
	pthread_cond_init(&pool.done, NULL);
	pool.n_workers = 0;
	pool.n_jobs = 0;
	pool.pending = 0;
}

static pthread_once_t pool_once = PTHREAD_ONCE_INIT;

static void pool_init(void)
{
	pthread_atfork(NULL, NULL, pool_after_fork);
}

/* Run jobs[0 .. threads) on the pool; false if it is taken. */
static bool parallel_pool(struct par *jobs, int threads)
{
	pthread_once(&pool_once, pool_init);
	if (pthread_mutex_trylock(&pool.use) != 0)
		return false;
	/* gen is stable while `use` is held: new workers start from it */
	while (pool.n_workers < threads - 1) {
		int id = pool.n_workers + 1;
		pool.start_gen[id] = pool.gen;
		pthread_t tid;
		pthread_attr_t attr;
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		int rc = pthread_create(&tid, &attr, pool_worker, (void *)(intptr_t)id);
		pthread_attr_destroy(&attr);
		if (rc != 0)
			break;
		pool.n_workers++;
	}
	/* ranges without a worker (one could not be started) run inline */
	const int n_pool = threads - 1 < pool.n_workers ? threads : pool.n_workers + 1;
	pthread_mutex_lock(&pool.mu);
	for (int t = 0; t < n_pool; t++)
		pool.jobs[t] = jobs[t];
	pool.n_jobs = n_pool;
	__atomic_store_n(&pool.pending, n_pool - 1, __ATOMIC_RELAXED);
	__atomic_store_n(&pool.gen, pool.gen + 1, __ATOMIC_RELEASE);
	pthread_cond_broadcast(&pool.wake);
	pthread_mutex_unlock(&pool.mu);
	par_run(&jobs[0]);
	for (int t = n_pool; t < threads; t++)
		par_run(&jobs[t]);
	for (int i = 0; i < POOL_SPIN && __atomic_load_n(&pool.pending, __ATOMIC_ACQUIRE) > 0; i++)
		cpu_relax();
	pthread_mutex_lock(&pool.mu);
	while (pool.pending > 0)
		pthread_cond_wait(&pool.done, &pool.mu);
	pthread_mutex_unlock(&pool.mu);
	pthread_mutex_unlock(&pool.use);
	return true;
}

void qp_ops_parallel(int threads, int64_t n, void (*fn)(void *arg, int64_t begin, int64_t end),
                     void *arg)
{
	if (threads > MAX_THREADS)
		threads = MAX_THREADS;
	if (threads > n)
		threads = (int)n;
	if (threads <= 1) {
		if (n > 0)
			fn(arg, 0, n);
		return;
	}
	struct par jobs[MAX_THREADS];
	for (int t = 0; t < threads; t++)
		jobs[t] = (struct par){fn, arg, n * t / threads, n * (t + 1) / threads};
	if (!parallel_pool(jobs, threads))
		parallel_spawn(jobs, threads);
}

struct mm {
	float *y;
	int64_t ldy;
	const uint8_t *w;
	size_t w_row;           /* bytes per row of w */
	const uint8_t *xq;
	size_t x_row;           /* bytes per quantized row of x */
	int64_t k, n_tok;
	const struct qp_kernel_ops *ops;
};

/* Blocks of rows keep a few weight rows in L1 while the activations
 * stream past them. */
#define MM_ROWS 16

static void mm_rows(void *arg, int64_t r0, int64_t r1)
{
	const struct mm *m = arg;
	for (int64_t rb = r0; rb < r1; rb += MM_ROWS) {
		int64_t re = rb + MM_ROWS < r1 ? rb + MM_ROWS : r1;
		if (m->ops->vec_dot_tile) {
			m->ops->vec_dot_tile(m->k, m->y + rb, m->ldy, m->w + (size_t)rb * m->w_row, m->w_row, re - rb,
			                     m->xq, m->x_row, m->n_tok);
			continue;
		}
		for (int64_t t = 0; t < m->n_tok; t++)
			for (int64_t r = rb; r < re; r++)
				m->ops->vec_dot(m->k, &m->y[t * m->ldy + r], m->w + (size_t)r * m->w_row,
				                m->xq + (size_t)t * m->x_row);
	}
}

struct qx {
	const struct qp_kernel_ops *ops;
	const float *x;
	uint8_t *xq;
	size_t x_row;
	int64_t k;
};

static void quantize_rows(void *arg, int64_t t0, int64_t t1)
{
	const struct qx *q = arg;
	for (int64_t t = t0; t < t1; t++)
		q->ops->quantize_row(q->x + t * q->k, q->xq + (size_t)t * q->x_row, q->k);
}

/* Products over a panel of weight rows against a block of tokens, where
 * a tile of a few tokens would walk the whole of k for each:
 * - f16: four rows in place for qp_ops_vec's f16_block_tile, which walks
 *   k in chunks that stay in L1, against the f16 activations (before,
 *   rows widened to f32 once per block cost 9% of an f16 prefill);
 * - q4_0: eight rows repacked for qp_ops_vec's q4_0_panel_tile, which
 *   puts the eight rows in a vector's lanes, against the q8_0
 *   activations.
 * Both give every pair the weight type's vec_dot bits (ops.h). Tokens go
 * in blocks that stay in L2 (WIDE_BLOCK_BYTES of activations), and for
 * each block, a panel of rows at a time (packed, where the tile wants it)
 * is run against every token of it. */
#define WIDE_BLOCK_BYTES (192 * 1024)
/* below this many tokens a panel is not reused enough to pay for itself */
#define WIDE_MIN_TOK 8

struct mmw {
	float *y;
	int64_t ldy;
	const uint8_t *w;
	size_t w_row;
	const uint8_t *x;       /* n_tok activation rows of x_row bytes, as the tile takes them */
	size_t x_row;
	int64_t k, n_tok;
	int64_t p_rows;         /* weight rows per panel */
	int64_t t_mult;         /* the tile's tokens at a time: blocks of tokens are multiples */
	size_t p_bytes;         /* bytes of a packed panel */
	/* rows [0, nr) of w (w_row apart) into a panel; NULL: the tile
	 * takes the rows in place */
	void (*pack)(const uint8_t *w, size_t w_row, int64_t nr, void *panel, int64_t k);
	/* the panel's nr rows (or the rows in place, w_row apart) against
	 * nc activation rows */
	void (*tile)(int64_t k, float *s, int64_t lds, const void *panel, size_t w_row, int64_t nr,
	             const uint8_t *x, size_t x_row, int64_t nc);
	int failed;
};

static void mm_rows_wide(void *arg, int64_t r0, int64_t r1)
{
	struct mmw *m = arg;
	void *panel = m->pack ? aligned_alloc(64, (m->p_bytes + 63) / 64 * 64) : NULL;
	if (m->pack && !panel) {
		__atomic_store_n(&m->failed, 1, __ATOMIC_RELAXED);
		return;
	}
	int64_t tb = (int64_t)(WIDE_BLOCK_BYTES / m->x_row) / m->t_mult * m->t_mult;
	if (tb < m->t_mult)
		tb = m->t_mult;
	for (int64_t t0 = 0; t0 < m->n_tok; t0 += tb) {
		const int64_t nt = m->n_tok - t0 < tb ? m->n_tok - t0 : tb;
		for (int64_t rb = r0; rb < r1; rb += m->p_rows) {
			const int64_t nr = r1 - rb < m->p_rows ? r1 - rb : m->p_rows;
			const uint8_t *w = m->w + (size_t)rb * m->w_row;
			if (m->pack)
				m->pack(w, m->w_row, nr, panel, m->k);
			m->tile(m->k, m->y + t0 * m->ldy + rb, m->ldy, m->pack ? panel : w, m->w_row, nr,
			        m->x + (size_t)t0 * m->x_row, m->x_row, nt);
		}
	}
	free(panel);
}

/* f16: the tile reads four weight rows in place */
#define F16_PANEL_ROWS 4

static void tile_f16(int64_t k, float *s, int64_t lds, const void *w, size_t w_row, int64_t nr, const uint8_t *x,
                     size_t x_row, int64_t nc)
{
	vec_ops()->f16_block_tile(k, s, lds, w, w_row, nr, x, x_row, nc);
}

static void pack_q4_0(const uint8_t *w, size_t w_row, int64_t nr, void *panel, int64_t k)
{
	vec_ops()->q4_0_panel(w, w_row, nr, panel, k);
}

static void tile_q4_0(int64_t k, float *s, int64_t lds, const void *panel, size_t w_row, int64_t nr,
                      const uint8_t *x, size_t x_row, int64_t nc)
{
	(void)w_row; /* the panel has its own layout */
	vec_ops()->q4_0_panel_tile(k, s, lds, panel, nr, x, x_row, nc);
}

int qp_ops_matmul(float *y, int64_t ldy, enum qp_type wt, const void *w, int64_t n_rows, int64_t k,
                  const float *x, int64_t n_tok, int threads, struct qp_err *err)
{
	const struct qp_kernel_ops *ops = qp_kernels_get(wt);
	const struct qp_type_traits *tt = qp_type_traits((int)wt);
	if (!ops || !ops->vec_dot)
		return qp_err_set(err, QP_EINVAL, "type %s has no dot product kernel",
		                  tt ? tt->name : "(unknown)");
	const struct qp_kernel_ops *vops = qp_kernels_get(ops->vec_dot_type);
	size_t w_row, x_row;
	if (qp_type_row_size((int)wt, k, &w_row) || qp_type_row_size((int)ops->vec_dot_type, k, &x_row))
		return qp_err_set(err, QP_EINVAL, "rows of %lld elements do not divide into %s blocks",
		                  (long long)k, tt->name);
	if (n_tok > 0 && x_row > SIZE_MAX / (size_t)n_tok)
		return qp_err_nomem(err);
	const bool wide_f16 = wt == QP_TYPE_F16 && vec_ops()->f16_block_tile && ops->vec_dot_tile &&
	                      n_tok >= WIDE_MIN_TOK;
	const bool wide_q4 = wt == QP_TYPE_Q4_0 && vec_ops()->q4_0_panel_tile && n_tok >= WIDE_MIN_TOK;
	uint8_t *xq = malloc(x_row * (size_t)(n_tok > 0 ? n_tok : 1));
	if (!xq)
		return qp_err_nomem(err);
	struct qx q = {vops, x, xq, x_row, k};
	qp_ops_parallel(threads, n_tok, quantize_rows, &q);
	if (wide_f16 || wide_q4) {
		struct mmw m = wide_f16 ? (struct mmw){y, ldy, w, w_row, xq, x_row, k, n_tok, F16_PANEL_ROWS, 3, 0, NULL,
		                                       tile_f16, 0}
		                        : (struct mmw){y, ldy, w, w_row, xq, x_row, k, n_tok, 8, 4,
		                                       vec_ops()->q4_0_panel_bytes(k), pack_q4_0, tile_q4_0, 0};
		qp_ops_parallel(threads, n_rows, mm_rows_wide, &m);
		free(xq);
		return m.failed ? qp_err_nomem(err) : 0;
	}
	struct mm m = {y, ldy, w, w_row, xq, x_row, k, n_tok, ops};
	qp_ops_parallel(threads, n_rows, mm_rows, &m);
	free(xq);
	return 0;
}
