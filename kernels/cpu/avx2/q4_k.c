/* Q4_K and Q5_K: nibbles (plus qh's bit) unpacked 32 at a time; see
 * kquants.h. Quantize fits the eight sub-blocks of a super-block at once
 * (kquants_search.h), then hands the fits to the reference's second half
 * (qp_kq_q4_k_from_fits), so the bytes are the reference's. */
#include "kernels/blocks.h"
#include "kernels/cpu/avx2/avx2.h"
#include "kernels/cpu/avx2/kquants.h"
#include "kernels/cpu/avx2/kquants_search.h"
#include "kernels/cpu/ref/kquants.h"

/* make_qkx2_quants of the eight sub-blocks, weighted as the reference
 * weights them: av_x + |x|, av_x = sqrt(mean x^2) of the sub-block */
static void fits_q45(const float *x, int nmax, float rmin, float rdelta, int nstep, float scales[8], float mins[8],
                     uint8_t L[QP_QK_K])
{
	__m256 xv[32], wv[32];
	__m256i lv[32];
	qp_avx2_to_lanes(x, 32, xv);
	__m256 sum_x2 = _mm256_setzero_ps();
	for (int i = 0; i < 32; i++)
		sum_x2 = _mm256_add_ps(sum_x2, _mm256_mul_ps(xv[i], xv[i]));
	const __m256 av_x = _mm256_sqrt_ps(_mm256_div_ps(sum_x2, _mm256_set1_ps(32.0f)));
	for (int i = 0; i < 32; i++)
		wv[i] = _mm256_add_ps(av_x, _mm256_andnot_ps(_mm256_set1_ps(-0.0f), xv[i]));
	__m256 the_min;
	const __m256 sc = qp_avx2_make_qkx_quants_x8(32, nmax, xv, wv, lv, &the_min, rmin, rdelta, nstep, false, false);
	_mm256_storeu_ps(scales, sc);
	_mm256_storeu_ps(mins, the_min);
	qp_avx2_levels_from_lanes(lv, 32, L);
}

/* The imatrix path's fits: make_qkx3_quants weighted by
 * qw * sqrt(2 sigma^2 + x^2); sw each sub-block's total weight */
static void imat_fits_q45(const float *x, const float *qw, int nmax, float scales[8], float mins[8], float sw[8],
                          uint8_t L[QP_QK_K])
{
	/* one sum, in element order, as the reference adds it */
	float sum_x2 = 0;
	for (int l = 0; l < QP_QK_K; l++)
		sum_x2 += x[l] * x[l];
	const __m256 sigma2 = _mm256_set1_ps(2 * sum_x2 / QP_QK_K);
	__m256 xv[32], wv[32];
	__m256i lv[32];
	qp_avx2_to_lanes(x, 32, xv);
	qp_avx2_to_lanes(qw, 32, wv);
	__m256 sumw = _mm256_setzero_ps();
	for (int l = 0; l < 32; l++) {
		wv[l] = _mm256_mul_ps(wv[l], _mm256_sqrt_ps(_mm256_add_ps(sigma2, _mm256_mul_ps(xv[l], xv[l]))));
		sumw = _mm256_add_ps(sumw, wv[l]);
	}
	_mm256_storeu_ps(sw, sumw);
	__m256 the_min;
	const __m256 sc = qp_avx2_make_qkx_quants_x8(32, nmax, xv, wv, lv, &the_min, -0.9f, 0.05f, 36, false, true);
	_mm256_storeu_ps(scales, sc);
	_mm256_storeu_ps(mins, the_min);
	qp_avx2_levels_from_lanes(lv, 32, L);
}

void qp_q4_k_quantize_row_avx2(const float *x, void *vy, int64_t n)
{
	struct qp_block_q4_K *y = vy;
	for (int64_t i = 0; i < n / QP_QK_K; i++, x += QP_QK_K) {
		uint8_t L[QP_QK_K];
		float scales[8], mins[8];
		fits_q45(x, 15, -1.f, 0.1f, 20, scales, mins, L);
		qp_kq_q4_k_from_fits(x, &y[i], scales, mins, L);
	}
}

void qp_q4_k_quantize_row_imat_avx2(const float *x, void *vy, int64_t n, const float *qw)
{
	struct qp_block_q4_K *y = vy;
	for (int64_t i = 0; i < n / QP_QK_K; i++, x += QP_QK_K, qw += QP_QK_K) {
		uint8_t L[QP_QK_K];
		float scales[8], mins[8], sw[8];
		imat_fits_q45(x, qw, 15, scales, mins, sw, L);
		qp_kq_q4_k_from_imat_fits(x, &y[i], scales, mins, sw, L);
	}
}

void qp_q5_k_quantize_row_avx2(const float *x, void *vy, int64_t n)
{
	struct qp_block_q5_K *y = vy;
	for (int64_t i = 0; i < n / QP_QK_K; i++, x += QP_QK_K) {
		uint8_t L[QP_QK_K];
		float scales[8], mins[8];
		fits_q45(x, 31, -0.5f, 0.1f, 15, scales, mins, L);
		qp_kq_q5_k_from_fits(x, &y[i], scales, mins, L);
	}
}

void qp_q5_k_quantize_row_imat_avx2(const float *x, void *vy, int64_t n, const float *qw)
{
	struct qp_block_q5_K *y = vy;
	for (int64_t i = 0; i < n / QP_QK_K; i++, x += QP_QK_K, qw += QP_QK_K) {
		uint8_t L[QP_QK_K];
		float scales[8], mins[8], sw[8];
		imat_fits_q45(x, qw, 31, scales, mins, sw, L);
		qp_kq_q5_k_from_imat_fits(x, &y[i], scales, mins, sw, L);
	}
}

/* q[256] in 0..15 (0..31 with qh), element order; chunk k of 32 takes
 * bit k of qh */
static inline void unpack_q45(const uint8_t *qs, const uint8_t *qh, int8_t q[QP_QK_K])
{
	const __m256i m4 = _mm256_set1_epi8(0x0f);
	const __m256i hv = qh ? _mm256_loadu_si256((const __m256i *)qh) : _mm256_setzero_si256();
	for (int g = 0; g < 4; g++) {
		const __m256i v = _mm256_loadu_si256((const __m256i *)(qs + 32 * g));
		__m256i lo = _mm256_and_si256(v, m4);
		__m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
		if (qh) {
			lo = _mm256_or_si256(lo, _mm256_slli_epi16(qp_avx2_bit_k(hv, 2 * g), 4));
			hi = _mm256_or_si256(hi, _mm256_slli_epi16(qp_avx2_bit_k(hv, 2 * g + 1), 4));
		}
		_mm256_storeu_si256((__m256i *)(q + 64 * g), lo);
		_mm256_storeu_si256((__m256i *)(q + 64 * g + 32), hi);
	}
}

static void dequant_q45(const uint8_t *qs, const uint8_t *qh, const uint8_t *scales, uint16_t d16, uint16_t dmin16,
                        float *y)
{
	int8_t q[QP_QK_K];
	float a[16], b[16];
	unpack_q45(qs, qh, q);
	const float d = qp_fp16_to_fp32(d16);
	const float min = qp_fp16_to_fp32(dmin16);
	for (int j = 0; j < 8; j++) {
		uint8_t sc, m;
		qp_kq_scale_min_k4(j, scales, &sc, &m);
		a[2 * j] = a[2 * j + 1] = d * sc;
		b[2 * j] = b[2 * j + 1] = min * m;
	}
	qp_avx2_dequant_256(q, a, b, y);
}

static float dot_q45(const uint8_t *qs, const uint8_t *qh, const uint8_t *scales, uint16_t d16, uint16_t dmin16,
                     const struct qp_block_q8_K *y)
{
	int8_t q[QP_QK_K];
	int16_t sc16[16];
	unpack_q45(qs, qh, q);
	int sumi = 0;
	for (int j = 0; j < 8; j++) {
		uint8_t sc, m;
		qp_kq_scale_min_k4(j, scales, &sc, &m);
		sc16[2 * j] = sc16[2 * j + 1] = sc;
		sumi += (y->bsums[2 * j] + y->bsums[2 * j + 1]) * m;
	}
	const int isum = qp_avx2_scaled_dot_256(q, y->qs, sc16);
	return (qp_fp16_to_fp32(d16) * y->d) * isum - (qp_fp16_to_fp32(dmin16) * y->d) * sumi;
}

void qp_q4_k_dequantize_row_avx2(const void *vx, float *y, int64_t n)
{
	const struct qp_block_q4_K *x = vx;
	for (int64_t i = 0; i < n / QP_QK_K; i++)
		dequant_q45(x[i].qs, NULL, x[i].scales, x[i].d, x[i].dmin, y + i * QP_QK_K);
}

void qp_q4_k_vec_dot_avx2(int64_t n, float *s, const void *vx, const void *vy)
{
	const struct qp_block_q4_K *x = vx;
	const struct qp_block_q8_K *y = vy;
	float sumf = 0;
	for (int64_t i = 0; i < n / QP_QK_K; i++)
		sumf += dot_q45(x[i].qs, NULL, x[i].scales, x[i].d, x[i].dmin, &y[i]);
	*s = sumf;
}

void qp_q5_k_dequantize_row_avx2(const void *vx, float *y, int64_t n)
{
	const struct qp_block_q5_K *x = vx;
	for (int64_t i = 0; i < n / QP_QK_K; i++)
		dequant_q45(x[i].qs, x[i].qh, x[i].scales, x[i].d, x[i].dmin, y + i * QP_QK_K);
}

void qp_q5_k_vec_dot_avx2(int64_t n, float *s, const void *vx, const void *vy)
{
	const struct qp_block_q5_K *x = vx;
	const struct qp_block_q8_K *y = vy;
	float sumf = 0;
	for (int64_t i = 0; i < n / QP_QK_K; i++)
		sumf += dot_q45(x[i].qs, x[i].qh, x[i].scales, x[i].d, x[i].dmin, &y[i]);
	*s = sumf;
}
