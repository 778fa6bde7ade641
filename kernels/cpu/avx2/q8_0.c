/* Q8_0. Quantize works on groups of eight blocks, straight from the
 * source format (f32, or f16 and bf16 without a conversion pass):
 *  - the largest |x| of each block from the integer bits of |x|, whose
 *    order is the floats' for every non-NaN value (for f16 and bf16 on the
 *    halves themselves, 16 lanes at a time), the eight blocks' reduced
 *    together by a transpose;
 *  - the eight scales and inverses in one vector, the reference's
 *    operations (d = amax / 127, id = 1 / d or 0) lane by lane, and d to
 *    fp16 by vcvtps2ph, which rounds as qp_fp32_to_fp16 for every non-NaN;
 *  - roundf(x * id) as cvtt(v + copysign(0.49999997f, v)): for every one of
 *    the 2^32 floats v this truncates to the integer cvtt(roundf(v)) does
 *    (checked exhaustively; 0.49999997 is the float below 1/2, so a v just
 *    under a half does not round up, and at |v| >= 2^23 the sum is v).
 * A block whose largest |x| is NaN, Inf, or so small that its scale is
 * subnormal (only f32 and bf16 can hold one) goes to the reference, which
 * defines what those give (llama.cpp's own AVX2 quantizer rounds to even
 * and computes the scale differently, so its blocks can differ from the
 * reference's; ours cannot). Every other block has |x * id| <= 127 * (1 +
 * 2^-21), so the saturating packs of the int32s are exact. */
#include "kernels/blocks.h"
#include "kernels/cpu/avx2/avx2.h"
#include "kernels/cpu/avx2/simd.h"
#include "kernels/cpu/ref/ref.h"

enum src { SRC_F32, SRC_F16, SRC_BF16 };

/* block b of the source as four vectors of eight floats */
static inline void load_block(enum src src, const void *x, int64_t b, __m256 v[4])
{
	if (src == SRC_F32) {
		const float *p = (const float *)x + QP_QK8_0 * b;
		_Pragma("GCC unroll 4")
		for (int k = 0; k < 4; k++)
			v[k] = _mm256_loadu_ps(p + 8 * k);
	} else if (src == SRC_F16) {
		const uint16_t *p = (const uint16_t *)x + QP_QK8_0 * b;
		_Pragma("GCC unroll 4")
		for (int k = 0; k < 4; k++)
			v[k] = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p + 8 * k)));
	} else {
		const uint16_t *p = (const uint16_t *)x + QP_QK8_0 * b;
		_Pragma("GCC unroll 4")
		for (int k = 0; k < 4; k++)
			v[k] = _mm256_castsi256_ps(
				_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(p + 8 * k))), 16));
	}
}

/* the largest |x| bits of block b: 8 u32 lanes (f32) or 16 u16 lanes */
static inline __m256i block_absmax(enum src src, const void *x, int64_t b)
{
	if (src == SRC_F32) {
		const __m256i *p = (const __m256i *)((const float *)x + QP_QK8_0 * b);
		const __m256i m = _mm256_set1_epi32(0x7fffffff);
		const __m256i a0 = _mm256_and_si256(_mm256_loadu_si256(p), m);
		const __m256i a1 = _mm256_and_si256(_mm256_loadu_si256(p + 1), m);
		const __m256i a2 = _mm256_and_si256(_mm256_loadu_si256(p + 2), m);
		const __m256i a3 = _mm256_and_si256(_mm256_loadu_si256(p + 3), m);
		return _mm256_max_epi32(_mm256_max_epi32(a0, a1), _mm256_max_epi32(a2, a3));
	}
	const __m256i *p = (const __m256i *)((const uint16_t *)x + QP_QK8_0 * b);
	const __m256i m = _mm256_set1_epi16(0x7fff);
	return _mm256_max_epu16(_mm256_and_si256(_mm256_loadu_si256(p), m), _mm256_and_si256(_mm256_loadu_si256(p + 1), m));
}

/* lane b = the largest 32-bit lane of m[b] */
static inline __m256i reduce8_u32(const __m256i m[8])
{
	__m256i t[4], u[2];
	for (int k = 0; k < 4; k++)
		t[k] = _mm256_max_epi32(_mm256_unpacklo_epi32(m[2 * k], m[2 * k + 1]),
		                        _mm256_unpackhi_epi32(m[2 * k], m[2 * k + 1]));
	for (int k = 0; k < 2; k++)
		u[k] = _mm256_max_epi32(_mm256_unpacklo_epi64(t[2 * k], t[2 * k + 1]),
		                        _mm256_unpackhi_epi64(t[2 * k], t[2 * k + 1]));
	/* u[0]'s 128-bit halves hold blocks 0-3, u[1]'s 4-7 */
	return _mm256_max_epi32(_mm256_permute2x128_si256(u[0], u[1], 0x20), _mm256_permute2x128_si256(u[0], u[1], 0x31));
}

/* lane b = the largest 16-bit lane of m[b] */
static inline __m128i reduce8_u16(const __m256i m[8])
{
	__m256i t[4], u[2];
	for (int k = 0; k < 4; k++)
		t[k] = _mm256_max_epu16(_mm256_unpacklo_epi16(m[2 * k], m[2 * k + 1]),
		                        _mm256_unpackhi_epi16(m[2 * k], m[2 * k + 1]));
	for (int k = 0; k < 2; k++)
		u[k] = _mm256_max_epu16(_mm256_unpacklo_epi32(t[2 * k], t[2 * k + 1]),
		                        _mm256_unpackhi_epi32(t[2 * k], t[2 * k + 1]));
	const __m256i w = _mm256_max_epu16(_mm256_unpacklo_epi64(u[0], u[1]), _mm256_unpackhi_epi64(u[0], u[1]));
	return _mm_max_epu16(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1));
}

/* Whether a block whose largest |x| has these bits takes the fast path:
 * amax 0, or at least 2^-119 (a normal scale) and finite; f16's smallest
 * half is far above that */
static inline int fast_amax(uint32_t bits)
{
	return bits == 0 || (bits >= 0x04000000u && bits < 0x7f800000u);
}

/* nb (1..8) blocks from block b0 of the source. A block off the fast path
 * gets bytes the second pass (redo_slow) replaces; the returned mask says
 * which. */
static inline __attribute__((always_inline)) uint32_t quantize_group(enum src src, const void *x, int64_t b0, int nb,
                                                                     struct qp_block_q8_0 *y)
{
	__m256i m[8];
	_Pragma("GCC unroll 8")
	for (int b = 0; b < 8; b++)
		m[b] = b < nb ? block_absmax(src, x, b0 + b) : _mm256_setzero_si256();
	__m256 amax;
	__m256i bits;
	if (src == SRC_F32) {
		bits = reduce8_u32(m);
		amax = _mm256_castsi256_ps(bits);
	} else {
		const __m128i h = reduce8_u16(m);
		amax = src == SRC_F16 ? _mm256_cvtph_ps(h) : _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
		bits = _mm256_castps_si256(amax);
	}
	/* fast_amax, eight lanes at once */
	const __m256i ok = _mm256_or_si256(
		_mm256_cmpeq_epi32(bits, _mm256_setzero_si256()),
		_mm256_and_si256(_mm256_cmpgt_epi32(bits, _mm256_set1_epi32(0x04000000 - 1)),
		                 _mm256_cmpgt_epi32(_mm256_set1_epi32(0x7f800000), bits)));
	const uint32_t slow = ~(uint32_t)_mm256_movemask_ps(_mm256_castsi256_ps(ok)) & ((1u << nb) - 1u);

	const __m256 d = _mm256_div_ps(amax, _mm256_set1_ps(127.0f));
	const __m256 nz = _mm256_cmp_ps(d, _mm256_setzero_ps(), _CMP_NEQ_OQ);
	const __m256 idv = _mm256_and_ps(nz, _mm256_div_ps(_mm256_set1_ps(1.0f), d));
	float id[8];
	uint16_t dh[8];
	_mm256_storeu_ps(id, idv);
	_mm_storeu_si128((__m128i *)dh, _mm256_cvtps_ph(d, _MM_FROUND_TO_NEAREST_INT));

	const __m256 sign = _mm256_set1_ps(-0.0f), half = _mm256_set1_ps(0.49999997f);
	for (int b = 0; b < nb; b++) {
		__m256 v[4];
		__m256i q[4];
		load_block(src, x, b0 + b, v);
		const __m256 s = _mm256_set1_ps(id[b]);
		_Pragma("GCC unroll 4")
		for (int k = 0; k < 4; k++) {
			const __m256 p = _mm256_mul_ps(v[k], s);
			q[k] = _mm256_cvttps_epi32(_mm256_add_ps(p, _mm256_or_ps(_mm256_and_ps(p, sign), half)));
		}
		/* the packs work per 128-bit lane: dwords hold elements 0-3,
		 * 8-11, 16-19, 24-27, 4-7, 12-15, 20-23, 28-31 */
		const __m256i b8 = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
		y[b].d = dh[b];
		_mm256_storeu_si256((__m256i *)y[b].qs,
		                    _mm256_permutevar8x32_epi32(b8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
	}
	return slow;
}

/* The blocks off the fast path again, by the reference. A pass of its own
 * keeps the call, which clobbers every vector register, out of the first
 * pass's loop. */
static void redo_slow(enum src src, const void *x, struct qp_block_q8_0 *y, int64_t nb)
{
	for (int64_t b = 0; b < nb; b++) {
		float tmp[QP_QK8_0];
		__m256 v[4];
		load_block(src, x, b, v);
		if (fast_amax(qp_avx2_absmax_bits(v)))
			continue;
		_Pragma("GCC unroll 4")
		for (int k = 0; k < 4; k++)
			_mm256_storeu_ps(tmp + 8 * k, v[k]);
		qp_q8_0_quantize_row_ref(tmp, &y[b], QP_QK8_0);
	}
}

static inline __attribute__((always_inline)) void quantize_row(enum src src, const void *x, void *vy, int64_t n)
{
	struct qp_block_q8_0 *y = vy;
	const int64_t nb = n / QP_QK8_0;
	int64_t b = 0;
	uint32_t slow = 0;
	for (; b + 8 <= nb; b += 8)
		slow |= quantize_group(src, x, b, 8, y + b);
	if (b < nb)
		slow |= quantize_group(src, x, b, (int)(nb - b), y + b);
	if (slow)
		redo_slow(src, x, y, nb);
}

void qp_q8_0_quantize_row_avx2(const float *x, void *vy, int64_t n)
{
	quantize_row(SRC_F32, x, vy, n);
}

void qp_q8_0_quantize_row_f16_avx2(const void *x, void *vy, int64_t n)
{
	quantize_row(SRC_F16, x, vy, n);
}

void qp_q8_0_quantize_row_bf16_avx2(const void *x, void *vy, int64_t n)
{
	quantize_row(SRC_BF16, x, vy, n);
}

void qp_q8_0_dequantize_row_avx2(const void *vx, float *y, int64_t n)
{
	const struct qp_block_q8_0 *x = vx;
	const int64_t nb = n / QP_QK8_0;

	for (int64_t i = 0; i < nb; i++) {
		const __m256 d = _mm256_set1_ps(qp_fp16_to_fp32(x[i].d));
		__m256 f[4];
		qp_avx2_i8_to_ps(_mm256_loadu_si256((const __m256i *)x[i].qs), f);
		_Pragma("GCC unroll 4")
		for (int k = 0; k < 4; k++)
			_mm256_storeu_ps(y + i * QP_QK8_0 + 8 * k, _mm256_mul_ps(f[k], d));
	}
}

void qp_q8_0_vec_dot_avx2(int64_t n, float *s, const void *vx, const void *vy)
{
	const struct qp_block_q8_0 *x = vx;
	const struct qp_block_q8_0 *y = vy;
	const int64_t nb = n / QP_QK8_0;

	__m256 acc = _mm256_setzero_ps();
	for (int64_t i = 0; i < nb; i++) {
		const __m256i qx = _mm256_loadu_si256((const __m256i *)x[i].qs);
		const __m256i qy = _mm256_loadu_si256((const __m256i *)y[i].qs);
		const __m256 d = _mm256_set1_ps(qp_fp16_to_fp32(x[i].d) * qp_fp16_to_fp32(y[i].d));
		acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(qp_avx2_dot_i8(qx, qy)), acc);
	}
	*s = qp_avx2_hsum_ps(acc);
}
