/* Q8_K: the k-quants' activation quantizer, one super-block of 256 per
 * iteration. nearest_int is the reference's float-adder rounding (add
 * 1.5 * 2^23, keep the mantissa), so every lane rounds as it does, ties
 * to even, and garbage in (Inf, NaN) gives the same garbage out. */
#include "kernels/blocks.h"
#include "kernels/cpu/avx2/avx2.h"
#include "kernels/cpu/avx2/simd.h"

#include <string.h>

void qp_q8_k_quantize_row_avx2(const float *x, void *vy, int64_t n)
{
	struct qp_block_q8_K *y = vy;
	const int64_t nb = n / QP_QK_K;
	const __m256 sign = _mm256_set1_ps(-0.0f);

	for (int64_t i = 0; i < nb; i++, x += QP_QK_K) {
		/* max's second operand wins on NaN: a NaN |x| is skipped, as the
		 * reference's ax > amax skips it */
		__m256 am = _mm256_setzero_ps();
		for (int k = 0; k < QP_QK_K; k += 8)
			am = _mm256_max_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(x + k)), am);
		const float amax = qp_avx2_hmax_ps(am);
		if (!amax) {
			y[i].d = 0;
			memset(y[i].qs, 0, QP_QK_K);
			memset(y[i].bsums, 0, sizeof(y[i].bsums));
			continue;
		}
		/* the reference keeps the signed value of the first |x| == amax */
		const __m256 va = _mm256_set1_ps(amax);
		int first = 0;
		for (int k = 0; k < QP_QK_K; k += 8) {
			const int m = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(x + k)), va, _CMP_EQ_OQ));
			if (m) {
				first = k + __builtin_ctz((unsigned)m);
				break;
			}
		}
		const float iscale = -127.f / x[first];
		const __m256 vis = _mm256_set1_ps(iscale);
		const __m256 magic = _mm256_set1_ps(12582912.0f);
		const __m256i mant = _mm256_set1_epi32(0x007fffff);
		const __m256i off = _mm256_set1_epi32(0x00400000);
		const __m256i top = _mm256_set1_epi32(127);
		for (int k = 0; k < QP_QK_K; k += 32) {
			__m256i q[4];
			for (int u = 0; u < 4; u++) {
				const __m256 v = _mm256_add_ps(_mm256_mul_ps(vis, _mm256_loadu_ps(x + k + 8 * u)), magic);
				const __m256i r = _mm256_sub_epi32(_mm256_and_si256(_mm256_castps_si256(v), mant), off);
				q[u] = _mm256_min_epi32(r, top);
			}
			const __m256i b = qp_avx2_low_bytes(q[0], q[1], q[2], q[3]);
			_mm256_storeu_si256((__m256i *)(y[i].qs + k), b);
			/* sums of 16 signed bytes: bias to unsigned, sad against 0 */
			const __m256i sad = _mm256_sad_epu8(_mm256_xor_si256(b, _mm256_set1_epi8((char)0x80)), _mm256_setzero_si256());
			const __m256i pair = _mm256_add_epi64(sad, _mm256_srli_si256(sad, 8));
			y[i].bsums[k / 16] = (int16_t)(_mm256_extract_epi64(pair, 0) - 16 * 128);
			y[i].bsums[k / 16 + 1] = (int16_t)(_mm256_extract_epi64(pair, 2) - 16 * 128);
		}
		y[i].d = 1 / iscale;
	}
}

void qp_q8_k_dequantize_row_avx2(const void *vx, float *y, int64_t n)
{
	const struct qp_block_q8_K *x = vx;
	const int64_t nb = n / QP_QK_K;
	for (int64_t i = 0; i < nb; i++) {
		const __m256 d = _mm256_set1_ps(x[i].d);
		for (int k = 0; k < QP_QK_K; k += 32) {
			__m256 f[4];
			qp_avx2_i8_to_ps(_mm256_loadu_si256((const __m256i *)(x[i].qs + k)), f);
			for (int u = 0; u < 4; u++)
				_mm256_storeu_ps(y + i * QP_QK_K + k + 8 * u, _mm256_mul_ps(d, f[u]));
		}
	}
}
