/* bench/quantize: throughput of quantizing a model's 2-D weights, per kernel
 * level and type, beside memcpy of the same source bytes (the physical
 * limit a streaming conversion is held against).
 *
 * usage: bench_quantize MODEL_DIR [REPS]
 * Prints one JSON object per line: {"what": "memcpy"|"quantize", "level",
 * "type", "threads", "bytes": source bytes, "seconds": best of REPS}.
 * bench/quantize.py runs this beside gguf-py's numpy quantizer and prints
 * the ratios. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/os.h"
#include "formats/safetensors.h"
#include "kernels/convert.h"
#include "kernels/kernels.h"

static int st_type(enum qp_st_dtype d)
{
	return d == QP_ST_F32 ? QP_TYPE_F32 : d == QP_ST_F16 ? QP_TYPE_F16 : d == QP_ST_BF16 ? QP_TYPE_BF16 : -1;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s MODEL_DIR [REPS]\n", argv[0]);
		return 2;
	}
	int reps = argc > 2 ? atoi(argv[2]) : 3;
	if (reps < 1)
		reps = 1;
	struct qp_err err = {0};
	struct qp_st_model *m;
	if (qp_st_open(&m, argv[1], &err)) {
		fprintf(stderr, "%s\n", err.msg);
		return 1;
	}
	size_t n = qp_st_count(m), max_out = 0, bytes = 0;
	for (size_t i = 0; i < n; i++) {
		const struct qp_st_tensor *t = qp_st_at(m, i);
		if (t->ndim != 2 || t->shape[1] % 256 || st_type(t->dtype) < 0)
			continue;
		bytes += t->nbytes;
		size_t need = (size_t)t->nelem * 4;
		if (need > max_out)
			max_out = need;
	}
	uint8_t *out = malloc(max_out ? max_out : 1);
	if (!out)
		return 1;
	/* touch the mapping once so the first measurement is not page faults */
	for (size_t i = 0; i < n; i++) {
		const struct qp_st_tensor *t = qp_st_at(m, i);
		if (t->ndim == 2 && t->shape[1] % 256 == 0)
			memcpy(out, t->data, t->nbytes);
	}
	double best = 1e30;
	for (int r = 0; r < reps; r++) {
		double t0 = qp_os_now();
		for (size_t i = 0; i < n; i++) {
			const struct qp_st_tensor *t = qp_st_at(m, i);
			if (t->ndim == 2 && t->shape[1] % 256 == 0 && st_type(t->dtype) >= 0)
				memcpy(out, t->data, t->nbytes);
		}
		double dt = qp_os_now() - t0;
		if (dt < best)
			best = dt;
	}
	printf("{\"what\": \"memcpy\", \"bytes\": %zu, \"seconds\": %.6f}\n", bytes, best);
	const enum qp_type types[] = {QP_TYPE_Q8_0, QP_TYPE_Q4_0, QP_TYPE_Q4_K, QP_TYPE_Q6_K, QP_TYPE_TQ2_0};
	const size_t ntypes = sizeof(types) / sizeof(types[0]);
	const char *levels[] = {"scalar", "avx2"};
	int ncpu = (int)sysconf(_SC_NPROCESSORS_ONLN);
	for (size_t li = 0; li < 2; li++) {
		if (qp_kernels_init(levels[li], &err))
			continue;
		for (size_t ti = 0; ti < ntypes; ti++)
			for (int threads = 1; threads <= ncpu; threads = threads == ncpu ? ncpu + 1 : ncpu) {
				best = 1e30;
				for (int r = 0; r < reps; r++) {
					double t0 = qp_os_now();
					for (size_t i = 0; i < n; i++) {
						const struct qp_st_tensor *t = qp_st_at(m, i);
						if (t->ndim != 2 || t->shape[1] % 256 || st_type(t->dtype) < 0)
							continue;
						if (qp_convert_rows(types[ti], out, (enum qp_type)st_type(t->dtype), t->data,
						                    t->shape[0], t->shape[1], threads, &err)) {
							fprintf(stderr, "%s\n", err.msg);
							return 1;
						}
					}
					double dt = qp_os_now() - t0;
					if (dt < best)
						best = dt;
				}
				printf("{\"what\": \"quantize\", \"level\": \"%s\", \"type\": \"%s\", \"threads\": %d, "
				       "\"bytes\": %zu, \"seconds\": %.6f}\n",
				       levels[li], qp_type_traits(types[ti])->name, threads, bytes, best);
				fflush(stdout);
			}
	}
	free(out);
	qp_st_close(m);
	return 0;
}
