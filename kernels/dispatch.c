/* Run-time choice of kernel level (the shape of xxHash's xxh_x86dispatch.c).
 *
 * One const table holds every level's row of operations per type; a level
 * leaves an operation NULL where it has no variant of its own. At init the
 * chosen level's rows are copied, with every NULL filled from the levels
 * below it (below[]: avx512, then avx2, then the scalar reference), into
 * `selected`, the library's only mutable global. It is
 * written by qp_kernels_init() before any thread starts and only read
 * after that.
 *
 * This file is built without ISA flags: it must run on any x86-64 (or
 * other) CPU, to find out which variants this one can run. */
#include "kernels/kernels.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/ref/ref.h"
#if QP_HAVE_AVX2
#include "kernels/cpu/avx2/avx2.h"
#include <cpuid.h>
#endif
#if QP_HAVE_AVX512
#include "kernels/cpu/avx512/avx512.h"
#endif

static const struct qp_kernel_ops levels[QP_LEVEL_COUNT][QP_TYPE_COUNT] = {
	[QP_LEVEL_SCALAR] = {
		[QP_TYPE_F32] = {
			.quantize_row = qp_f32_quantize_row_ref,
			.dequantize_row = qp_f32_dequantize_row_ref,
			.vec_dot = qp_f32_vec_dot_ref,
			.vec_dot_type = QP_TYPE_F32,
		},
		[QP_TYPE_F16] = {
			.quantize_row = qp_f16_quantize_row_ref,
			.dequantize_row = qp_f16_dequantize_row_ref,
			.vec_dot = qp_f16_vec_dot_ref,
			.vec_dot_type = QP_TYPE_F16,
		},
		[QP_TYPE_BF16] = {
			.quantize_row = qp_bf16_quantize_row_ref,
			.dequantize_row = qp_bf16_dequantize_row_ref,
			.vec_dot = qp_bf16_vec_dot_ref,
			.vec_dot_type = QP_TYPE_BF16,
		},
		[QP_TYPE_Q8_0] = {
			.quantize_row = qp_q8_0_quantize_row_ref,
			.dequantize_row = qp_q8_0_dequantize_row_ref,
			.vec_dot = qp_q8_0_vec_dot_ref,
			.vec_dot_type = QP_TYPE_Q8_0,
		},
		/* activation format only: no dot with q8_1 weights, as in ggml */
		[QP_TYPE_Q8_1] = {
			.quantize_row = qp_q8_1_quantize_row_ref,
			.dequantize_row = qp_q8_1_dequantize_row_ref,
			.vec_dot_type = QP_TYPE_Q8_1,
		},
		[QP_TYPE_Q4_0] = {
			.quantize_row = qp_q4_0_quantize_row_ref,
			.dequantize_row = qp_q4_0_dequantize_row_ref,
			.vec_dot = qp_q4_0_vec_dot_ref,
			.vec_dot_type = QP_TYPE_Q8_0,
		},
		[QP_TYPE_Q4_1] = {
			.quantize_row = qp_q4_1_quantize_row_ref,
			.dequantize_row = qp_q4_1_dequantize_row_ref,
			.vec_dot = qp_q4_1_vec_dot_ref,
			.vec_dot_type = QP_TYPE_Q8_1,
		},
		[QP_TYPE_Q5_0] = {
			.quantize_row = qp_q5_0_quantize_row_ref,
			.dequantize_row = qp_q5_0_dequantize_row_ref,
			.vec_dot = qp_q5_0_vec_dot_ref,
			.vec_dot_type = QP_TYPE_Q8_0,
		},
		[QP_TYPE_Q5_1] = {
			.quantize_row = qp_q5_1_quantize_row_ref,
			.dequantize_row = qp_q5_1_dequantize_row_ref,
			.vec_dot = qp_q5_1_vec_dot_ref,
			.vec_dot_type = QP_TYPE_Q8_1,
		},
		[QP_TYPE_Q2_K] = {
			.quantize_row = qp_q2_k_quantize_row_ref,
			.quantize_row_imat = qp_q2_k_quantize_row_imat_ref,
			.dequantize_row = qp_q2_k_dequantize_row_ref,
			.vec_dot = qp_q2_k_vec_dot_ref,
			.vec_dot_type = QP_TYPE_Q8_K,
		},
		[QP_TYPE_Q3_K] = {
			.quantize_row = qp_q3_k_quantize_row_ref,
			.quantize_row_imat = qp_q3_k_quantize_row_imat_ref,
			.dequantize_row = qp_q3_k_dequantize_row_ref,
			.vec_dot = qp_q3_k_vec_dot_ref,
			.vec_dot_type = QP_TYPE_Q8_K,
		},
		[QP_TYPE_Q4_K] = {
			.quantize_row = qp_q4_k_quantize_row_ref,
			.quantize_row_imat = qp_q4_k_quantize_row_imat_ref,
			.dequantize_row = qp_q4_k_dequantize_row_ref,
			.vec_dot = qp_q4_k_vec_dot_ref,
			.vec_dot_type = QP_TYPE_Q8_K,
		},
		[QP_TYPE_Q5_K] = {
			.quantize_row = qp_q5_k_quantize_row_ref,
			.quantize_row_imat = qp_q5_k_quantize_row_imat_ref,
			.dequantize_row = qp_q5_k_dequantize_row_ref,
			.vec_dot = qp_q5_k_vec_dot_ref,
			.vec_dot_type = QP_TYPE_Q8_K,
		},
		[QP_TYPE_Q6_K] = {
			.quantize_row = qp_q6_k_quantize_row_ref,
			.quantize_row_imat = qp_q6_k_quantize_row_imat_ref,
			.dequantize_row = qp_q6_k_dequantize_row_ref,
			.vec_dot = qp_q6_k_vec_dot_ref,
			.vec_dot_type = QP_TYPE_Q8_K,
		},
		/* activation format only, as q8_1 */
		[QP_TYPE_Q8_K] = {
			.quantize_row = qp_q8_k_quantize_row_ref,
			.dequantize_row = qp_q8_k_dequantize_row_ref,
			.vec_dot_type = QP_TYPE_Q8_K,
		},
		[QP_TYPE_TQ1_0] = {
			.quantize_row = qp_tq1_0_quantize_row_ref,
			.dequantize_row = qp_tq1_0_dequantize_row_ref,
			.vec_dot = qp_tq1_0_vec_dot_ref,
			.vec_dot_type = QP_TYPE_Q8_K,
		},
		[QP_TYPE_TQ2_0] = {
			.quantize_row = qp_tq2_0_quantize_row_ref,
			.dequantize_row = qp_tq2_0_dequantize_row_ref,
			.vec_dot = qp_tq2_0_vec_dot_ref,
			.vec_dot_type = QP_TYPE_Q8_K,
		},
	},
#if QP_HAVE_AVX2
	[QP_LEVEL_AVX2] = {
		/* quantize and dequantize of f32 are memcpy, already at the
		 * machine's copy speed: they stay with the reference */
		[QP_TYPE_F32] = {
			.vec_dot = qp_f32_vec_dot_avx2,
			.vec_dot_tile = qp_f32_vec_dot_tile_avx2,
			.vec_dot_type = QP_TYPE_F32,
		},
		[QP_TYPE_F16] = {
			.quantize_row = qp_f16_quantize_row_avx2,
			.dequantize_row = qp_f16_dequantize_row_avx2,
			.vec_dot = qp_f16_vec_dot_avx2,
			.vec_dot_tile = qp_f16_vec_dot_tile_avx2,
			.vec_dot_type = QP_TYPE_F16,
		},
		[QP_TYPE_BF16] = {
			.quantize_row = qp_bf16_quantize_row_avx2,
			.dequantize_row = qp_bf16_dequantize_row_avx2,
			.vec_dot = qp_bf16_vec_dot_avx2,
			.vec_dot_type = QP_TYPE_BF16,
		},
		[QP_TYPE_Q8_0] = {
			.quantize_row = qp_q8_0_quantize_row_avx2,
			.quantize_row_f16 = qp_q8_0_quantize_row_f16_avx2,
			.quantize_row_bf16 = qp_q8_0_quantize_row_bf16_avx2,
			.dequantize_row = qp_q8_0_dequantize_row_avx2,
			.vec_dot = qp_q8_0_vec_dot_avx2,
			.vec_dot_tile = qp_q8_0_vec_dot_tile_avx2,
			.vec_dot_type = QP_TYPE_Q8_0,
		},
		[QP_TYPE_Q8_1] = {
			.quantize_row = qp_q8_1_quantize_row_avx2,
			.dequantize_row = qp_q8_1_dequantize_row_avx2,
			.vec_dot_type = QP_TYPE_Q8_1,
		},
		[QP_TYPE_Q4_0] = {
			.quantize_row = qp_q4_0_quantize_row_avx2,
			.dequantize_row = qp_q4_0_dequantize_row_avx2,
			.vec_dot = qp_q4_0_vec_dot_avx2,
			.vec_dot_tile = qp_q4_0_vec_dot_tile_avx2,
			.vec_dot_type = QP_TYPE_Q8_0,
		},
		[QP_TYPE_Q4_1] = {
			.quantize_row = qp_q4_1_quantize_row_avx2,
			.dequantize_row = qp_q4_1_dequantize_row_avx2,
			.vec_dot = qp_q4_1_vec_dot_avx2,
			.vec_dot_type = QP_TYPE_Q8_1,
		},
		[QP_TYPE_Q5_0] = {
			.quantize_row = qp_q5_0_quantize_row_avx2,
			.dequantize_row = qp_q5_0_dequantize_row_avx2,
			.vec_dot = qp_q5_0_vec_dot_avx2,
			.vec_dot_type = QP_TYPE_Q8_0,
		},
		[QP_TYPE_Q5_1] = {
			.quantize_row = qp_q5_1_quantize_row_avx2,
			.dequantize_row = qp_q5_1_dequantize_row_avx2,
			.vec_dot = qp_q5_1_vec_dot_avx2,
			.vec_dot_type = QP_TYPE_Q8_1,
		},
		[QP_TYPE_Q2_K] = {
			.quantize_row = qp_q2_k_quantize_row_avx2,
			.quantize_row_imat = qp_q2_k_quantize_row_imat_avx2,
			.dequantize_row = qp_q2_k_dequantize_row_avx2,
			.vec_dot = qp_q2_k_vec_dot_avx2,
			.vec_dot_tile = qp_q2_k_vec_dot_tile_avx2,
			.vec_dot_type = QP_TYPE_Q8_K,
		},
		[QP_TYPE_Q3_K] = {
			.quantize_row = qp_q3_k_quantize_row_avx2,
			.quantize_row_imat = qp_q3_k_quantize_row_imat_avx2,
			.dequantize_row = qp_q3_k_dequantize_row_avx2,
			.vec_dot = qp_q3_k_vec_dot_avx2,
			.vec_dot_tile = qp_q3_k_vec_dot_tile_avx2,
			.vec_dot_type = QP_TYPE_Q8_K,
		},
		[QP_TYPE_Q4_K] = {
			.quantize_row = qp_q4_k_quantize_row_avx2,
			.quantize_row_imat = qp_q4_k_quantize_row_imat_avx2,
			.dequantize_row = qp_q4_k_dequantize_row_avx2,
			.vec_dot = qp_q4_k_vec_dot_avx2,
			.vec_dot_tile = qp_q4_k_vec_dot_tile_avx2,
			.vec_dot_type = QP_TYPE_Q8_K,
		},
		[QP_TYPE_Q5_K] = {
			.quantize_row = qp_q5_k_quantize_row_avx2,
			.quantize_row_imat = qp_q5_k_quantize_row_imat_avx2,
			.dequantize_row = qp_q5_k_dequantize_row_avx2,
			.vec_dot = qp_q5_k_vec_dot_avx2,
			.vec_dot_tile = qp_q5_k_vec_dot_tile_avx2,
			.vec_dot_type = QP_TYPE_Q8_K,
		},
		[QP_TYPE_Q6_K] = {
			.quantize_row = qp_q6_k_quantize_row_avx2,
			.quantize_row_imat = qp_q6_k_quantize_row_imat_avx2,
			.dequantize_row = qp_q6_k_dequantize_row_avx2,
			.vec_dot = qp_q6_k_vec_dot_avx2,
			.vec_dot_tile = qp_q6_k_vec_dot_tile_avx2,
			.vec_dot_type = QP_TYPE_Q8_K,
		},
		[QP_TYPE_TQ1_0] = {
			.quantize_row = qp_tq1_0_quantize_row_avx2,
			.dequantize_row = qp_tq1_0_dequantize_row_avx2,
			.vec_dot = qp_tq1_0_vec_dot_avx2,
			.vec_dot_type = QP_TYPE_Q8_K,
		},
		[QP_TYPE_TQ2_0] = {
			.quantize_row = qp_tq2_0_quantize_row_avx2,
			.dequantize_row = qp_tq2_0_dequantize_row_avx2,
			.vec_dot = qp_tq2_0_vec_dot_avx2,
			.vec_dot_type = QP_TYPE_Q8_K,
		},
		[QP_TYPE_Q8_K] = {
			.quantize_row = qp_q8_k_quantize_row_avx2,
			.dequantize_row = qp_q8_k_dequantize_row_avx2,
			.vec_dot_type = QP_TYPE_Q8_K,
		},
	},
#endif
#if QP_HAVE_AVX512
	/* only what gains from the width or from VNNI: the rest is avx2's
	 * (below[]) */
	[QP_LEVEL_AVX512] = {
		[QP_TYPE_Q8_0] = {
			.vec_dot = qp_q8_0_vec_dot_avx512,
			.vec_dot_tile = qp_q8_0_vec_dot_tile_avx512,
			.vec_dot_type = QP_TYPE_Q8_0,
		},
		[QP_TYPE_Q4_K] = {
			.quantize_row = qp_q4_k_quantize_row_avx512,
			.quantize_row_imat = qp_q4_k_quantize_row_imat_avx512,
			.vec_dot_type = QP_TYPE_Q8_K,
		},
		[QP_TYPE_Q5_K] = {
			.quantize_row = qp_q5_k_quantize_row_avx512,
			.quantize_row_imat = qp_q5_k_quantize_row_imat_avx512,
			.vec_dot_type = QP_TYPE_Q8_K,
		},
		[QP_TYPE_Q6_K] = {
			.quantize_row = qp_q6_k_quantize_row_avx512,
			.quantize_row_imat = qp_q6_k_quantize_row_imat_avx512,
			.vec_dot_type = QP_TYPE_Q8_K,
		},
	},
#endif
};

/* where a level has no variant of an operation, the level below it runs
 * (a CPU with AVX-512 has AVX2) */
static const int below[QP_LEVEL_COUNT] = {
	[QP_LEVEL_SCALAR] = -1,
	[QP_LEVEL_AVX2] = QP_LEVEL_SCALAR,
	[QP_LEVEL_AVX512] = QP_LEVEL_AVX2,
	[QP_LEVEL_NEON] = QP_LEVEL_SCALAR,
};

static const char *const level_names[QP_LEVEL_COUNT] = {
	[QP_LEVEL_SCALAR] = "scalar",
	[QP_LEVEL_AVX2] = "avx2",
	[QP_LEVEL_AVX512] = "avx512",
	[QP_LEVEL_NEON] = "neon",
};

#define REASON_MAX 128

struct selection {
	bool ready;                               /* set by a successful qp_kernels_init */
	enum qp_kernel_level level;
	char reason[REASON_MAX];                  /* "avx2: cpu has ..." */
	struct qp_kernel_ops ops[QP_TYPE_COUNT];  /* the level's rows, NULLs filled from scalar */
	bool runs[QP_LEVEL_COUNT];                /* levels this CPU and OS run: CPUID can
	                                           * trap to a hypervisor, so ask it once */
};

static struct selection selected;

static bool row_empty(const struct qp_kernel_ops *ops)
{
	return !ops->quantize_row && !ops->dequantize_row && !ops->vec_dot && !ops->quantize_row_imat;
}

#if QP_HAVE_AVX2
/* the low half of XCR0: which register states the OS saves (only once
 * CPUID has said the OS enabled XSAVE) */
static unsigned xcr0(void)
{
	unsigned lo, hi;
	__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
	return lo;
}
#endif

/* Whether this CPU and OS can run the AVX2 level; *why says what is
 * missing, or what is there. */
static bool avx2_runs_here(const char **why)
{
#if QP_HAVE_AVX2
	unsigned a, b, c, d;
	if (!__get_cpuid(1, &a, &b, &c, &d)) {
		*why = "cpuid leaf 1 is missing";
		return false;
	}
	const bool fma = c & bit_FMA;
	const bool f16c = c & bit_F16C;
	const bool avx = c & bit_AVX;
	const bool osxsave = c & bit_OSXSAVE;
	bool avx2 = false;
	if (__get_cpuid_max(0, NULL) >= 7) {
		__cpuid_count(7, 0, a, b, c, d);
		avx2 = b & bit_AVX2;
	}
	if (!avx || !avx2 || !fma || !f16c) {
		*why = !avx2 || !avx ? "cpu lacks avx2" : !fma ? "cpu lacks fma" : "cpu lacks f16c";
		return false;
	}
	/* The CPU may support AVX while the OS does not save the upper
	 * halves of the YMM registers across context switches: XCR0 must
	 * have both the SSE (bit 1) and AVX (bit 2) state enabled. */
	if (!osxsave) {
		*why = "os has not enabled xsave, so ymm registers are not saved";
		return false;
	}
	if ((xcr0() & 0x6u) != 0x6u) {
		*why = "os does not save ymm registers (xcr0)";
		return false;
	}
	*why = "cpu has avx2+fma+f16c and os saves ymm";
	return true;
#else
	*why = "this build has no avx2 kernels";
	return false;
#endif
}

/* Whether this CPU and OS can run the AVX-512 level (F, BW, DQ, VL and
 * VNNI, on top of what AVX2 needs: every AVX-512 CPU since Cascade Lake
 * and Zen 4 has them; Skylake-SP's AVX-512, without VNNI, runs the AVX2
 * level); *why as for avx2_runs_here. */
static bool avx512_runs_here(const char **why)
{
#if QP_HAVE_AVX512
	if (!avx2_runs_here(why))
		return false;
	unsigned a, b, c, d;
	__cpuid_count(7, 0, a, b, c, d);
	const unsigned need = bit_AVX512F | bit_AVX512DQ | bit_AVX512BW | bit_AVX512VL;
	if ((b & need) != need) {
		*why = "cpu lacks avx512 f, bw, dq or vl";
		return false;
	}
	if (!(c & bit_AVX512VNNI)) {
		*why = "cpu lacks avx512 vnni";
		return false;
	}
	/* the opmask (bit 5) and both halves of the zmm state (6, 7), beside
	 * sse and avx's */
	if ((xcr0() & 0xe6u) != 0xe6u) {
		*why = "os does not save zmm and opmask registers (xcr0)";
		return false;
	}
	*why = "cpu has avx512 f+bw+dq+vl+vnni and os saves zmm";
	return true;
#else
	*why = "this build has no avx512 kernels";
	return false;
#endif
}

/* Whether level can run here; *why as for avx2_runs_here. */
static bool level_runs_here(enum qp_kernel_level level, const char **why)
{
	switch (level) {
	case QP_LEVEL_SCALAR:
		*why = "portable c";
		return true;
	case QP_LEVEL_AVX2:
		return avx2_runs_here(why);
	case QP_LEVEL_AVX512:
		return avx512_runs_here(why);
	case QP_LEVEL_NEON:
		*why = "this build has no neon kernels";
		return false;
	case QP_LEVEL_COUNT:
		break;
	}
	*why = "no such level";
	return false;
}

/* Make level the selection; reason is "<level>: <detail>". */
static void select_level(enum qp_kernel_level level, const char *detail)
{
	selected.level = level;
	snprintf(selected.reason, sizeof(selected.reason), "%s: %s", level_names[level], detail);
	for (int t = 0; t < QP_TYPE_COUNT; t++) {
		struct qp_kernel_ops ops = {0};
		/* each operation from the highest level that has it */
		for (int l = level; l >= 0; l = below[l]) {
			const struct qp_kernel_ops *o = &levels[l][t];
			if (!ops.quantize_row)
				ops.quantize_row = o->quantize_row;
			if (!ops.dequantize_row)
				ops.dequantize_row = o->dequantize_row;
			/* a tile gives its own level's vec_dot bit for bit,
			 * never another's, so it goes with that vec_dot */
			if (!ops.vec_dot) {
				ops.vec_dot = o->vec_dot;
				ops.vec_dot_tile = o->vec_dot_tile;
			}
			if (!ops.quantize_row_imat)
				ops.quantize_row_imat = o->quantize_row_imat;
			if (!ops.quantize_row_f16)
				ops.quantize_row_f16 = o->quantize_row_f16;
			if (!ops.quantize_row_bf16)
				ops.quantize_row_bf16 = o->quantize_row_bf16;
		}
		/* the pairing is part of the format, not of the level */
		ops.vec_dot_type = levels[QP_LEVEL_SCALAR][t].vec_dot_type;
		selected.ops[t] = ops;
	}
	for (int l = 0; l < QP_LEVEL_COUNT; l++) {
		const char *why;
		selected.runs[l] = level_runs_here(l, &why);
	}
	selected.ready = true;
}

int qp_kernels_init(const char *force_name, struct qp_err *err)
{
	const char *name = force_name;
	const char *source = "--kernels";
	if (!name || !*name) {
		name = getenv("QPIPE_KERNELS");
		source = "QPIPE_KERNELS";
	}

	const char *why;
	if (name && *name && strcmp(name, "auto") != 0) {
		const int level = qp_kernel_level_from_name(name);
		if (level < 0)
			return qp_err_set(err, QP_EINVAL, "%s: unknown kernel level '%s' (expected scalar, avx2, avx512 or auto)",
			                  source, name);
		if (!level_runs_here(level, &why))
			return qp_err_set(err, QP_EINVAL, "%s: kernel level '%s' cannot run here: %s", source, name, why);
		char detail[64];
		snprintf(detail, sizeof(detail), "forced by %s", source);
		select_level(level, detail);
		return 0;
	}

	/* each check that fails says why in why, for the next level down */
	if (avx512_runs_here(&why))
		select_level(QP_LEVEL_AVX512, why);
	else if (avx2_runs_here(&why))
		select_level(QP_LEVEL_AVX2, why);
	else
		select_level(QP_LEVEL_SCALAR, why);
	return 0;
}

enum qp_kernel_level qp_kernels_level(void)
{
	return selected.ready ? selected.level : QP_LEVEL_SCALAR;
}

const char *qp_kernels_reason(void)
{
	return selected.ready ? selected.reason : "scalar: qp_kernels_init has not run";
}

const char *qp_kernel_level_name(enum qp_kernel_level level)
{
	if ((int)level < 0 || level >= QP_LEVEL_COUNT)
		return "unknown";
	return level_names[level];
}

int qp_kernel_level_from_name(const char *name)
{
	if (!name)
		return -1;
	for (int l = 0; l < QP_LEVEL_COUNT; l++)
		if (strcmp(level_names[l], name) == 0)
			return l;
	return -1;
}

int qp_kernel_level_below(enum qp_kernel_level level)
{
	if ((int)level < 0 || level >= QP_LEVEL_COUNT)
		return -1;
	return below[level];
}

int qp_kernel_level_supported(enum qp_kernel_level level)
{
	if ((int)level < 0 || level >= QP_LEVEL_COUNT)
		return 0;
	if (selected.ready)
		return selected.runs[level];
	const char *why;
	return level_runs_here(level, &why);
}

const struct qp_kernel_ops *qp_kernels_get(enum qp_type t)
{
	if ((int)t < 0 || t >= QP_TYPE_COUNT)
		return NULL;
	/* before init, the reference: correct everywhere, if slower */
	const struct qp_kernel_ops *ops = selected.ready ? &selected.ops[t] : &levels[QP_LEVEL_SCALAR][t];
	return row_empty(ops) ? NULL : ops;
}

const struct qp_kernel_ops *qp_kernels_get_level(enum qp_type t, enum qp_kernel_level level)
{
	if ((int)t < 0 || t >= QP_TYPE_COUNT || (int)level < 0 || level >= QP_LEVEL_COUNT)
		return NULL;
	if (!qp_kernel_level_supported(level))
		return NULL;
	const struct qp_kernel_ops *ops = &levels[level][t];
	return row_empty(ops) ? NULL : ops;
}

const struct qp_kernel_ops *qp_kernels_get_cuda(enum qp_type t)
{
	(void)t;
	return NULL;
}

int qp_kernels_to_f32(enum qp_type t, const void *src, float *dst, int64_t n)
{
	const struct qp_kernel_ops *ops = qp_kernels_get(t);
	const struct qp_type_traits *traits = qp_type_traits(t);
	if (!ops || !ops->dequantize_row || !traits || n < 0 || n % traits->blck != 0)
		return -1;
	ops->dequantize_row(src, dst, n);
	return 0;
}
