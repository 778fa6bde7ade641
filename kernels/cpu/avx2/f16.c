/* F16 through F16C. vcvtps2ph rounds to nearest even like the reference
 * but keeps a NaN's payload where ggml writes 0x7e00, so a group of eight
 * holding a NaN goes through the scalar conversion; vcvtph2ps gives the
 * reference's bits for all 65536 halves, NaNs included. */
#include "kernels/blocks.h"
#include "kernels/cpu/avx2/avx2.h"
#include "kernels/cpu/avx2/simd.h"

void qp_f16_quantize_row_avx2(const float *x, void *vy, int64_t n)
{
	uint16_t *y = vy;
	int64_t i = 0;
	for (; i + 8 <= n; i += 8) {
		const __m256 v = _mm256_loadu_ps(x + i);
		if (_mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q))) {
			for (int k = 0; k < 8; k++)
				y[i + k] = qp_fp32_to_fp16(x[i + k]);
			continue;
		}
		_mm_storeu_si128((__m128i *)(y + i), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
	}
	for (; i < n; i++)
		y[i] = qp_fp32_to_fp16(x[i]);
}

void qp_f16_dequantize_row_avx2(const void *vx, float *y, int64_t n)
{
	const uint16_t *x = vx;
	int64_t i = 0;
	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i))));
	for (; i < n; i++)
		y[i] = qp_fp16_to_fp32(x[i]);
}

static inline __m256 load_f16(const uint16_t *p)
{
	return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

/* One accumulator, as llama.cpp's tinyBLAS tiles keep for each output:
 * the tiles (tile.c) keep one per (row, token) pair and walk each row
 * once, with twelve pairs' chains side by side; with two per pair (the
 * even and the odd groups) they walked the rows twice, and the f16
 * prefill's products ran 9% slower. */
void qp_f16_vec_dot_avx2(int64_t n, float *s, const void *vx, const void *vy)
{
	const uint16_t *x = vx;
	const uint16_t *y = vy;
	__m256 acc = _mm256_setzero_ps();
	int64_t i = 0;
	for (; i + 8 <= n; i += 8)
		acc = _mm256_fmadd_ps(load_f16(x + i), load_f16(y + i), acc);
	double sum = qp_avx2_hsum_ps(acc);
	for (; i < n; i++)
		sum += (double)(qp_fp16_to_fp32(x[i]) * qp_fp16_to_fp32(y[i]));
	*s = (float)sum;
}
