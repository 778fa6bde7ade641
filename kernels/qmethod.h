/* Quantization methods outside GGUF's block types: round-to-nearest
 * integers (RTN), binary, ternary, NF4, FP8 and k-means look-up tables.
 *
 * A weight tensor is a row-major matrix of rows x cols f32 values (row =
 * output channel, as Hugging Face stores nn.Linear weights). Quantizing it
 * fills a struct qp_qtensor: packed integer codes plus the arrays that turn
 * them back into values (scales, zero points, look-up tables). Dequantizing
 * gives f32 values; qpipe evaluates a method by exactly these values.
 *
 * Codes: each row is packed on its own, code j of a row at bit j * bits,
 * least significant bit first within each byte, a row padded up to a whole
 * byte (row_bytes = ceil(cols * bits / 8)); codes_bytes = rows * row_bytes.
 *
 * Scales and zeros form a [scale_rows x scale_cols] matrix:
 *   tensor   1 x 1
 *   channel  rows x 1              (one per row)
 *   group    rows x (cols / group) (group consecutive elements of a row;
 *                                   cols must be a multiple of group)
 * Element (r, c) uses scale [(r * scale_rows / rows) * scale_cols +
 * c * scale_cols / cols], i.e. its group's, unless g_idx is set (GPTQ's
 * act-order, RTN by channel or group only): then [r * scale_cols +
 * g_idx[c]], and scale_cols may be any number of groups. In all three
 * cases a scale unit is a contiguous span of the flattened tensor.
 *
 * Rounding is to nearest, ties to even (rintf in the default rounding mode),
 * as torch.round and numpy.round do.
 *
 * The methods, value = what dequantize returns:
 *
 *   RTN, bits 2..8, maxq = 2^bits - 1, codes q in [0, maxq], GPTQ's
 *   quantizer (so a GPTQ/AWQ export maps onto it exactly):
 *     asym: lo = min(min w, 0), hi = max(max w, 0) over the scale unit;
 *           lo == hi == 0 -> lo = -1, hi = 1; s = (hi - lo) / maxq;
 *           z = clamp(round(-lo / s), 0, maxq)
 *     sym:  a = max |w|; a == 0 -> a = 1; s = (a + a) / maxq; z = (maxq + 1) / 2
 *     all in f32, as GPTQ's torch code (so an all-zero asym unit at 4 bits
 *     gets z = round(1 / (2/15)) = round(7.4999995) = 7).
 *     s is rounded to f16 first when spec.scale_f16 (and stored as F16);
 *     a scale that would be 0 becomes the least positive value (f16:
 *     2^-24, f32: FLT_TRUE_MIN) and one that would overflow the largest
 *     finite (65504, FLT_MAX), so that w / s is always defined;
 *     q = clamp(round(w / s) + z, 0, maxq); value = s * (q - z).
 *     zeros holds z for every scale (also for sym, where all are equal).
 *   BINARY, bits 1: s = mean |w| over the unit; q = (w >= 0, so -0 -> 1);
 *     value = q ? s : -s. Units: tensor, channel or group.
 *   TERNARY, bits 2 (stored), q in {0, 1, 2} meaning -1, 0, +1:
 *     threshold rule: d = threshold * mean |w| over the unit (f32);
 *       t = |w| > d ? sign(w) : 0; s = mean |w| over {|w| > d} (0 if none)
 *       (Ternary Weight Networks' rule; threshold 0.45 by default, as in
 *       the t81 suite)
 *     absmean rule (BitNet b1.58): g = mean |w| over the unit;
 *       t = clamp(round(w / (g + 1e-5)), -1, 1) (f32); s = g
 *     q = t + 1; value = s * t. Codes use the unrounded mean; s is then
 *     rounded to f16 when spec.scale_f16 (BINARY too).
 *   Means (BINARY, TERNARY, NF4's c) sum in double and round once to f32.
 *   An f16 scale of BINARY or TERNARY past 65504 saturates to it.
 *   NF4, bits 4, blocks of `group` (64) consecutive elements of the
 *     flattened tensor (rows * cols must be a multiple of group; gran
 *     must be GROUP): absmax a per block; q = index of the NF4 code value
 *     nearest to w / a (f32 quotient; lowest index on a tie; a == 0 ->
 *     q = index of 0.0, 7); value = a' * NF4[q], a' = a, or with
 *     double_quant QLoRA's second level: c = mean of all a;
 *     blocks of 256 absmax values (the last may be shorter), each with
 *     m = max |a - c| (f32 differences); the 8-bit code of (a - c) / m is
 *     the nearest entry of bitsandbytes' signed dynamic map
 *     (qp_qmethod_dynamic_map), lowest on a tie, and the map's 0 (code
 *     127) when m is 0; a' = map[code] * m + c (f32 multiply, then add).
 *     n_blocks is set either way. Without double quantization scales
 *     holds a (f32), n_blocks x 1 (scale_rows = n_blocks, scale_cols = 1);
 *     with it scales is NULL and absmax_codes (n_blocks), absmax_scales
 *     (n_absmax_scales = ceil(n_blocks / 256)) and absmax_offset (c) hold it.
 *   FP8, bits 8, E4M3 (OCP "fn": bias 7, max 448, no infinities, NaN =
 *     S.1111.111) or E5M2 (bias 15, max 57344, IEEE infinities and NaNs):
 *     s = max |w| / fmax over the finite weights of the unit (tensor or
 *     channel; s = 1 when that is 0, the least positive float if the
 *     quotient underflows); q = fp8(w / s) rounded to nearest even with
 *     subnormals, saturating finite overflow to +-fmax, NaN to the NaN
 *     code (sign kept; E4M3 S.1111.111, E5M2 S.11111.10), infinity to
 *     E5M2's infinity or E4M3's +-448; -0 stays -0; value = s * f(q).
 *     One code a byte; scales f32.
 *   KMEANS, bits 2..8, k = 2^bits centroids (coremltools' post-training
 *     palettizer): one LUT per tensor, or per group of `group` consecutive
 *     rows (rows must be a multiple of group); with channel_scale every row
 *     is first divided by its max |w| (stored in scales, rows x 1; 0 rows
 *     keep scale 1; x = w / scale in f32). Per LUT group g, on its n
 *     values x sorted ascending, with state = seed + g *
 *     0xd1b54a32d192ed03 (mod 2^64):
 *       k-means++: the first centroid is x[floor(u * n)], u =
 *       qp_qmethod_rng_unit(&state); each next one: D2[i] = min over the
 *       centroids so far of (x[i] - c)^2 (in double), T = sum D2; if T is
 *       0 (fewer distinct values than k) the remaining centroids repeat
 *       the largest; else target = u * T (next u) and the pick is the first
 *       i whose running sum of D2 exceeds target (the last i with D2 > 0
 *       if rounding leaves none). Running sums are sequential within
 *       blocks of 4096 sorted values and add block totals across them.
 *       Lloyd, at most `iters` rounds: the assignment is the boundaries
 *       b[j] = #{x <= (c[j] + c[j+1]) / 2} (midpoints in double; a point
 *       on a midpoint goes to the lower centroid); stop if they equal the
 *       last round's; else each non-empty cluster's centroid becomes
 *       (P[hi] - P[lo]) / (hi - lo), P the double prefix sums of sorted
 *       x, clamped to [x[lo], x[hi - 1]], rounded to f32; an empty one
 *       keeps its centroid. Centroids stay ascending, so LUT rows are
 *       sorted; q = #{midpoints of the final LUT < x}, the nearest entry,
 *       the lower on a tie. value = lut[g][q] (* scale of its row). */
#ifndef QP_QMETHOD_H
#define QP_QMETHOD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

enum qp_qmethod {
	QP_QM_RTN,
	QP_QM_BINARY,
	QP_QM_TERNARY,
	QP_QM_NF4,
	QP_QM_FP8,
	QP_QM_KMEANS,
};

enum qp_qgran {
	QP_QG_TENSOR,
	QP_QG_CHANNEL,
	QP_QG_GROUP,
};

enum qp_tern_rule {
	QP_TERN_THRESHOLD,
	QP_TERN_ABSMEAN,
};

enum qp_fp8_format {
	QP_FP8_E4M3,
	QP_FP8_E5M2,
};

struct qp_qspec {
	enum qp_qmethod method;
	int bits;                /* RTN, KMEANS: 2..8; others: fixed (1, 2, 4, 8), set by qp_qspec_default */
	enum qp_qgran gran;      /* scale unit (RTN, BINARY, TERNARY, FP8); KMEANS: TENSOR or GROUP (of rows) */
	int64_t group;           /* GROUP: elements per group in a row; NF4: block (64); KMEANS: rows per LUT */
	bool sym;                /* RTN */
	bool scale_f16;          /* RTN, BINARY, TERNARY: round scales to f16 and store them as F16 */
	enum qp_tern_rule rule;  /* TERNARY */
	float threshold;         /* TERNARY threshold rule: fraction of mean |w| (0.45) */
	enum qp_fp8_format fp8;  /* FP8 */
	bool double_quant;       /* NF4 */
	bool channel_scale;      /* KMEANS */
	uint64_t seed;           /* KMEANS */
	int iters;               /* KMEANS: Lloyd iterations at most (default 50) */
};

/* A quantized tensor. qp_qmethod_quantize allocates every array (NULL
 * where the method has none); qp_qtensor_free frees them. */
struct qp_qtensor {
	int64_t rows, cols;
	uint8_t *codes;          /* rows x row_bytes, packed as above */
	size_t row_bytes, codes_bytes;
	float *scales;           /* scale_rows x scale_cols (NF4 without double quant: one per block) */
	int64_t scale_rows, scale_cols;
	uint8_t *zeros;          /* RTN: one per scale; else NULL */
	int32_t *g_idx;          /* RTN by GPTQ with act-order: the group of each column (cols entries),
	                          * overriding column / group; else NULL */
	float *lut;              /* KMEANS: lut_rows x 2^bits; else NULL */
	int64_t lut_rows;
	uint8_t *absmax_codes;   /* NF4 double quant: one per block */
	float *absmax_scales;    /* NF4 double quant: one per 256 blocks */
	int64_t n_blocks, n_absmax_scales;
	float absmax_offset;     /* NF4 double quant */
};

/* The spec's defaults for a method: RTN 4 bits asym per group of 128 with
 * f16 scales, BINARY per channel, TERNARY threshold 0.45 per channel,
 * NF4 block 64 with double quantization, FP8 E4M3 per channel, KMEANS 4
 * bits per tensor, seed 0, 50 iterations. */
void qp_qspec_default(struct qp_qspec *s, enum qp_qmethod m);

/* Check a spec against a tensor shape: bits in range for the method,
 * granularity allowed, group dividing the shape as the method needs.
 * Fails with a message naming the parameter. */
int qp_qspec_check(const struct qp_qspec *s, int64_t rows, int64_t cols, struct qp_err *err);

/* Method names ("rtn", "binary", "ternary", "nf4", "fp8", "kmeans"),
 * and back (-1 if unknown). */
const char *qp_qmethod_name(enum qp_qmethod m);
int qp_qmethod_from_name(const char *name);

/* Quantize w (rows x cols f32) by spec into out, using up to threads
 * threads (units, rows or LUT groups split over them; the result is the
 * same for any count). out is overwritten (not freed first); on failure
 * it holds no arrays. */
int qp_qmethod_quantize(const struct qp_qspec *spec, const float *w, int64_t rows, int64_t cols,
                        struct qp_qtensor *out, int threads, struct qp_err *err);

/* The values of q (rows x cols f32) into out. q may come from a file:
 * its arrays are checked against spec and the shape first, and a code
 * no value has (ternary's 3) is an error; out is then unspecified. */
int qp_qmethod_dequantize(const struct qp_qspec *spec, const struct qp_qtensor *q, float *out,
                          struct qp_err *err);

void qp_qtensor_free(struct qp_qtensor *q);

/* Code j of a packed row (bits wide, LSB first), as the layout above
 * stores it; for readers of the codes (layouts, checkpoint formats). */
static inline unsigned qp_qcode_get(const uint8_t *row, int64_t j, int bits)
{
	const int64_t bit = j * bits;
	const int shift = (int)(bit & 7);
	const uint8_t *p = row + (bit >> 3);
	unsigned v = (unsigned)p[0] >> shift;
	if (shift + bits > 8)
		v |= (unsigned)p[1] << (8 - shift);
	return v & ((1u << bits) - 1u);
}

/* RTN's scale and zero point for one unit of n values (the formulas
 * above, scale_f16 included); GPTQ and AWQ quantize through these too. */
void qp_rtn_scale_zero(const float *w, int64_t n, int bits, bool sym, bool scale_f16, float *s,
                       uint8_t *z);
/* RTN's code of one value: clamp(round(w / s) + z, 0, 2^bits - 1). */
uint8_t qp_rtn_code(float w, float s, uint8_t z, int bits);

/* Bits of stored data per weight, over rows * cols: codes (codes_bytes *
 * 8, row padding included), scales (16 bits when scale_f16 applies to the
 * method, else 32), zeros (bits each, sym too: GPTQ stores them), g_idx
 * (32 a column), LUT entries (32 each) and NF4's second level (8 a block,
 * 32 per absmax scale, 32 for the offset). */
double qp_qtensor_bits_per_weight(const struct qp_qspec *spec, const struct qp_qtensor *q);

/* Tables, exposed for tests and the layout reader. */
extern const float qp_nf4_values[16];         /* QLoRA's NormalFloat4 code values, ascending */
void qp_qmethod_dynamic_map(float map[256]);  /* bitsandbytes' signed dynamic 8-bit map, ascending */
float qp_fp8_to_f32(uint8_t v, enum qp_fp8_format f);
uint8_t qp_fp8_from_f32(float x, enum qp_fp8_format f);

/* The generator behind k-means++: splitmix64 over the state, and a double
 * in [0, 1) from its top 53 bits. */
uint64_t qp_qmethod_rng(uint64_t *state);
double qp_qmethod_rng_unit(uint64_t *state);

#endif
