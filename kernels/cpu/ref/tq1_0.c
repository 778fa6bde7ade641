/* TQ1_0: ternary super-blocks of 256 (BitNet b1.58, TriLMs): d = absmax,
 * t = round(x / d) + 1 in 0..2, x = d * (t - 1).
 *
 * Trits are packed in base 3, five to a byte, and the byte stores
 * ceil(v * 256 / 243) for the 5-trit value v, so trit k comes back as the
 * top of (byte * 3^k) mod 256, times 3, over 256: one multiply and one
 * shift per trit. Element order: qs[0..31] hold elements 0..159 (byte m,
 * trit k = element 32k + m, most significant trit first), qs[32..47]
 * elements 160..239 (16 to a row), qh[0..3] elements 240..255 (byte j,
 * trit k = element 240 + 4k + j, four trits and a zero). */
#include "kernels/blocks.h"
#include "kernels/cpu/ref/ref.h"

#include <assert.h>
#include <math.h>

/* ceil(v * 256 / 243) as a byte, v the base-3 value of five trits */
static inline uint8_t trits_to_byte(unsigned v)
{
	return (uint8_t)(((v & 0xffu) * 256 + (243 - 1)) / 243);
}

void qp_tq1_0_quantize_row_ref(const float *x, void *vy, int64_t n)
{
	struct qp_block_tq1_0 *y = vy;
	assert(n % QP_QK_K == 0);
	const int64_t nb = n / QP_QK_K;

	for (int64_t i = 0; i < nb; i++) {
		float amax = 0.0f;
		for (int j = 0; j < QP_QK_K; j++) {
			const float a = fabsf(x[j]);
			amax = amax > a ? amax : a;
		}
		const float d = amax;
		const float id = d ? 1.0f / d : 0.0f;
		y[i].d = qp_fp32_to_fp16(d);

		/* the trit arithmetic wraps in a byte, as llama.cpp's uint8_t */
		for (int m = 0; m < 32; m++) {
			unsigned q = 0;
			for (int k = 0; k < 5; k++)
				q = (q * 3 + qp_ref_lroundf_low(x[m + 32 * k] * id) + 1) & 0xffu;
			y[i].qs[m] = trits_to_byte(q);
		}
		x += 160;
		for (int m = 0; m < 16; m++) {
			unsigned q = 0;
			for (int k = 0; k < 5; k++)
				q = (q * 3 + qp_ref_lroundf_low(x[m + 16 * k] * id) + 1) & 0xffu;
			y[i].qs[32 + m] = trits_to_byte(q);
		}
		x += 80;
		for (int j = 0; j < 4; j++) {
			unsigned q = 0;
			for (int k = 0; k < 4; k++)
				q = (q * 3 + qp_ref_lroundf_low(x[j + 4 * k] * id) + 1) & 0xffu;
			/* a zero trit last, so the first is the most significant */
			y[i].qh[j] = trits_to_byte(q * 3);
		}
		x += 16;
	}
}

/* trit k of a packed byte: 0..2 */
static inline int trit(uint8_t b, int k)
{
	static const uint8_t pow3[5] = {1, 3, 9, 27, 81};
	const uint8_t q = (uint8_t)(b * pow3[k]);
	return (q * 3) >> 8;
}

void qp_tq1_0_dequantize_row_ref(const void *vx, float *y, int64_t n)
{
	const struct qp_block_tq1_0 *x = vx;
	assert(n % QP_QK_K == 0);
	const int64_t nb = n / QP_QK_K;

	for (int64_t i = 0; i < nb; i++) {
		const float d = qp_fp16_to_fp32(x[i].d);
		for (int k = 0; k < 5; k++)
			for (int m = 0; m < 32; m++)
				*y++ = (float)(trit(x[i].qs[m], k) - 1) * d;
		for (int k = 0; k < 5; k++)
			for (int m = 0; m < 16; m++)
				*y++ = (float)(trit(x[i].qs[32 + m], k) - 1) * d;
		for (int k = 0; k < 4; k++)
			for (int j = 0; j < 4; j++)
				*y++ = (float)(trit(x[i].qh[j], k) - 1) * d;
	}
}

/* ggml's generic tq1_0 x q8_K dot */
void qp_tq1_0_vec_dot_ref(int64_t n, float *s, const void *vx, const void *vy)
{
	const struct qp_block_tq1_0 *x = vx;
	const struct qp_block_q8_K *y = vy;
	assert(n % QP_QK_K == 0);
	const int64_t nb = n / QP_QK_K;

	float sumf = 0.0f;
	for (int64_t i = 0; i < nb; i++) {
		const int8_t *q8 = y[i].qs;
		int sum = 0;
		for (int k = 0; k < 5; k++)
			for (int m = 0; m < 32; m++)
				sum += (trit(x[i].qs[m], k) - 1) * q8[32 * k + m];
		for (int k = 0; k < 5; k++)
			for (int m = 0; m < 16; m++)
				sum += (trit(x[i].qs[32 + m], k) - 1) * q8[160 + 16 * k + m];
		for (int k = 0; k < 4; k++)
			for (int j = 0; j < 4; j++)
				sum += (trit(x[i].qh[j], k) - 1) * q8[240 + 4 * k + j];
		sumf += (float)sum * (qp_fp16_to_fp32(x[i].d) * y[i].d);
	}
	*s = sumf;
}
