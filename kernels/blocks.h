/* GGUF block layouts and the number conversions the formats are defined with.
 *
 * The structs are the on-disk bytes of ggml's blocks (ggml-common.h): every
 * field is a byte array or a uint16_t, so there is no padding and the layout
 * is the same on every ABI; fp16 values are stored as their bit patterns.
 * The one exception is q8_K, the in-memory activation format of the k-quant
 * dot products, never written to a file: it holds a float and int16_ts, as
 * ggml's does, and its size assert checks that they pack without padding.
 * All multi-byte fields are little-endian, as GGUF is; qpipe only builds for
 * little-endian hosts.
 *
 * The conversions give the same bits as ggml's scalar ones (ggml-impl.h):
 * fp32 -> fp16 rounds to nearest, ties to even (as numpy's astype(float16)),
 * overflows to infinity and turns any NaN into 0x7e00 with the sign kept;
 * fp32 -> bf16 rounds to nearest even and keeps a NaN's top bits, forcing it
 * quiet. They use integer arithmetic only, so no floating-point mode (FTZ,
 * DAZ, rounding) can change their result. */
#ifndef QP_BLOCKS_H
#define QP_BLOCKS_H

#include <assert.h>
#include <stdint.h>
#include <string.h>

/* elements per block */
#define QP_QK4_0 32
#define QP_QK4_1 32
#define QP_QK5_0 32
#define QP_QK5_1 32
#define QP_QK8_0 32
#define QP_QK8_1 32
#define QP_QK_K 256      /* k-quant and ternary super-blocks */
#define QP_K_SCALE_SIZE 12

/* 4.5 bits per weight: x[j] = d * (q[j] - 8), q in 0..15 */
struct qp_block_q4_0 {
	uint16_t d;                /* scale, fp16 */
	uint8_t qs[QP_QK4_0 / 2];  /* q[j] in the low nibble of qs[j], q[j+16] in the high */
};
static_assert(sizeof(struct qp_block_q4_0) == 18, "wrong q4_0 block size/padding");

/* 5 bits per weight: x[j] = d * q[j] + m, q in 0..15 */
struct qp_block_q4_1 {
	uint16_t d;                /* scale, fp16 */
	uint16_t m;                /* minimum, fp16 */
	uint8_t qs[QP_QK4_1 / 2];  /* nibbles as in q4_0 */
};
static_assert(sizeof(struct qp_block_q4_1) == 20, "wrong q4_1 block size/padding");

/* 5.5 bits per weight: x[j] = d * (q[j] - 16), q in 0..31 */
struct qp_block_q5_0 {
	uint16_t d;                /* scale, fp16 */
	uint8_t qh[4];             /* bit j (little-endian uint32) is bit 4 of q[j] */
	uint8_t qs[QP_QK5_0 / 2];  /* low 4 bits of q, nibbles as in q4_0 */
};
static_assert(sizeof(struct qp_block_q5_0) == 22, "wrong q5_0 block size/padding");

/* 6 bits per weight: x[j] = d * q[j] + m, q in 0..31 */
struct qp_block_q5_1 {
	uint16_t d;                /* scale, fp16 */
	uint16_t m;                /* minimum, fp16 */
	uint8_t qh[4];             /* as in q5_0 */
	uint8_t qs[QP_QK5_1 / 2];  /* as in q5_0 */
};
static_assert(sizeof(struct qp_block_q5_1) == 24, "wrong q5_1 block size/padding");

/* 8.5 bits per weight: x[j] = d * qs[j] */
struct qp_block_q8_0 {
	uint16_t d;                /* scale, fp16 */
	int8_t qs[QP_QK8_0];
};
static_assert(sizeof(struct qp_block_q8_0) == 34, "wrong q8_0 block size/padding");

/* 9 bits per weight, the activation format paired with q4_1 and q5_1:
 * x[j] = d * qs[j]; s caches d * sum(qs) so a dot with an offset format
 * (m + d*q) needs no second pass */
struct qp_block_q8_1 {
	uint16_t d;                /* scale, fp16 */
	uint16_t s;                /* d * sum(qs), fp16 */
	int8_t qs[QP_QK8_1];
};
static_assert(sizeof(struct qp_block_q8_1) == 36, "wrong q8_1 block size/padding");

/* The k-quants: super-blocks of 256 made of sub-blocks of 16 or 32 whose
 * scales (and minimums) are themselves quantized against the fp16 d (and
 * dmin) of the super-block. Element order inside a super-block is given
 * with each dequantize_row (kernels/cpu/ref/). */

/* 2.625 bits per weight: 16 sub-blocks of 16, x = d*sc*q - dmin*m,
 * q in 0..3 */
struct qp_block_q2_K {
	uint8_t scales[QP_QK_K / 16]; /* sc in the low nibble, m in the high */
	uint8_t qs[QP_QK_K / 4];      /* 2-bit q, four to a byte */
	uint16_t d;                   /* scale of the sub-block scales, fp16 */
	uint16_t dmin;                /* scale of the sub-block minimums, fp16 */
};
static_assert(sizeof(struct qp_block_q2_K) == 84, "wrong q2_K block size/padding");

/* 3.4375 bits per weight: 16 sub-blocks of 16, x = d*(sc-32)*(q-4),
 * q in 0..7 */
struct qp_block_q3_K {
	uint8_t hmask[QP_QK_K / 8];     /* bit 2 of q */
	uint8_t qs[QP_QK_K / 4];        /* bits 0-1 of q */
	uint8_t scales[QP_K_SCALE_SIZE]; /* 16 6-bit sub-block scales, packed */
	uint16_t d;                     /* fp16 */
};
static_assert(sizeof(struct qp_block_q3_K) == 110, "wrong q3_K block size/padding");

/* 4.5 bits per weight: 8 sub-blocks of 32, x = d*sc*q - dmin*m,
 * q in 0..15, sc and m 6 bits each */
struct qp_block_q4_K {
	uint16_t d;                      /* fp16 */
	uint16_t dmin;                   /* fp16 */
	uint8_t scales[QP_K_SCALE_SIZE]; /* 8 sc and 8 m, 6 bits each, packed */
	uint8_t qs[QP_QK_K / 2];         /* nibbles */
};
static_assert(sizeof(struct qp_block_q4_K) == 144, "wrong q4_K block size/padding");

/* 5.5 bits per weight: q4_K with a fifth bit, q in 0..31 */
struct qp_block_q5_K {
	uint16_t d;                      /* fp16 */
	uint16_t dmin;                   /* fp16 */
	uint8_t scales[QP_K_SCALE_SIZE]; /* as in q4_K */
	uint8_t qh[QP_QK_K / 8];         /* bit 4 of q */
	uint8_t qs[QP_QK_K / 2];         /* bits 0-3 of q */
};
static_assert(sizeof(struct qp_block_q5_K) == 176, "wrong q5_K block size/padding");

/* 6.5625 bits per weight: 16 sub-blocks of 16, x = d*sc*(q-32),
 * q in 0..63, sc a signed byte */
struct qp_block_q6_K {
	uint8_t ql[QP_QK_K / 2];     /* bits 0-3 of q */
	uint8_t qh[QP_QK_K / 4];     /* bits 4-5 of q */
	int8_t scales[QP_QK_K / 16]; /* sub-block scales */
	uint16_t d;                  /* fp16 */
};
static_assert(sizeof(struct qp_block_q6_K) == 210, "wrong q6_K block size/padding");

/* the activation format of the k-quant and ternary dots: x = d * qs */
struct qp_block_q8_K {
	float d;                       /* scale, fp32 */
	int8_t qs[QP_QK_K];
	int16_t bsums[QP_QK_K / 16];   /* sum of each 16 qs */
};
static_assert(sizeof(struct qp_block_q8_K) == 292, "wrong q8_K block size/padding");

/* 1.6875 bits per weight: x = d * (t - 1), t in 0..2; five trits to a
 * byte in qs, four in qh, each byte holding ceil(value * 256 / 243) so
 * a trit is read back with a multiply by 3 and a shift */
struct qp_block_tq1_0 {
	uint8_t qs[(QP_QK_K - 4 * QP_QK_K / 64) / 5]; /* 48 bytes, 240 trits */
	uint8_t qh[QP_QK_K / 64];                     /* 4 bytes, 16 trits */
	uint16_t d;                                   /* fp16 */
};
static_assert(sizeof(struct qp_block_tq1_0) == 54, "wrong tq1_0 block size/padding");

/* 2.0625 bits per weight: x = d * (q - 1), q in 0..2, four to a byte */
struct qp_block_tq2_0 {
	uint8_t qs[QP_QK_K / 4];
	uint16_t d;                  /* fp16 */
};
static_assert(sizeof(struct qp_block_tq2_0) == 66, "wrong tq2_0 block size/padding");

static inline uint32_t qp_f32_bits(float f)
{
	uint32_t u;
	memcpy(&u, &f, sizeof(u));
	return u;
}

static inline float qp_f32_from_bits(uint32_t u)
{
	float f;
	memcpy(&f, &u, sizeof(f));
	return f;
}

/* Exact for every non-NaN half. A NaN keeps its payload and comes back
 * quiet, as x86's own conversion (and ggml's, through a multiply) does. */
static inline float qp_fp16_to_fp32(uint16_t h)
{
	const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
	const uint32_t exp = (h >> 10) & 0x1fu;
	const uint32_t man = h & 0x3ffu;

	if (exp == 0x1fu) {
		const uint32_t quiet = man ? 0x00400000u : 0u;
		return qp_f32_from_bits(sign | 0x7f800000u | quiet | (man << 13));
	}
	if (exp == 0) {
		/* zero or subnormal: man * 2^-24, exact in fp32 */
		const float mag = (float)man * 0x1p-24f;
		return qp_f32_from_bits(sign | qp_f32_bits(mag));
	}
	/* rebias the exponent from 15 to 127 */
	return qp_f32_from_bits(sign | ((exp + 112u) << 23) | (man << 13));
}

static inline uint16_t qp_fp32_to_fp16(float f)
{
	const uint32_t u = qp_f32_bits(f);
	const uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
	const uint32_t a = u & 0x7fffffffu;

	if (a > 0x7f800000u)
		return sign | 0x7e00u;
	if (a >= 0x47800000u) /* 65536 and up, infinity included */
		return sign | 0x7c00u;
	if (a >= 0x38800000u) {
		/* normal half (2^-14 and up): round the mantissa at bit 13,
		 * ties to even; a carry runs into the exponent, which is right
		 * up to and including the overflow of 65520.. to infinity */
		const uint32_t r = a + 0x0fffu + ((a >> 13) & 1u);
		return sign | (uint16_t)((r - (112u << 23)) >> 13);
	}
	if (a <= 0x33000000u) /* 2^-25 and below round to zero (the tie to even) */
		return sign;
	/* subnormal half: round m * 2^(e-150) to a multiple of 2^-24 */
	const uint32_t e = a >> 23;
	const uint32_t m = (a & 0x7fffffu) | 0x800000u;
	const uint32_t shift = 126u - e; /* 14..24 */
	uint32_t q = m >> shift;
	const uint32_t rem = m & ((1u << shift) - 1u);
	const uint32_t half = 1u << (shift - 1u);
	if (rem > half || (rem == half && (q & 1u)))
		q++;
	return sign | (uint16_t)q;
}

static inline float qp_bf16_to_fp32(uint16_t h)
{
	return qp_f32_from_bits((uint32_t)h << 16);
}

static inline uint16_t qp_fp32_to_bf16(float f)
{
	const uint32_t u = qp_f32_bits(f);
	if ((u & 0x7fffffffu) > 0x7f800000u)
		return (uint16_t)((u >> 16) | 0x40u);
	return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

#endif
