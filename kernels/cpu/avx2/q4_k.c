/* Q4_K and Q5_K: nibbles (plus qh's bit) unpacked 32 at a time; see
 * kquants.h. */
#include "kernels/blocks.h"
#include "kernels/cpu/avx2/avx2.h"
#include "kernels/cpu/avx2/kquants.h"
#include "kernels/cpu/ref/kquants.h"

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
