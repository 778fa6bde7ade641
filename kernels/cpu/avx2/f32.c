/* F32 dot with four FMA accumulators: the order of the sum differs from the
 * reference's (a double-precision running sum), so it matches by NMSE. */
#include "kernels/cpu/avx2/avx2.h"
#include "kernels/cpu/avx2/simd.h"

void qp_f32_vec_dot_avx2(int64_t n, float *s, const void *vx, const void *vy)
{
	const float *x = vx;
	const float *y = vy;
	__m256 acc0 = _mm256_setzero_ps();
	__m256 acc1 = _mm256_setzero_ps();
	__m256 acc2 = _mm256_setzero_ps();
	__m256 acc3 = _mm256_setzero_ps();
	int64_t i = 0;
	for (; i + 32 <= n; i += 32) {
		acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), acc0);
		acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), acc1);
		acc2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 16), _mm256_loadu_ps(y + i + 16), acc2);
		acc3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 24), _mm256_loadu_ps(y + i + 24), acc3);
	}
	for (; i + 8 <= n; i += 8)
		acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), acc0);
	const __m256 acc = _mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3));
	double sum = qp_avx2_hsum_ps(acc);
	for (; i < n; i++)
		sum += (double)(x[i] * y[i]);
	*s = (float)sum;
}
