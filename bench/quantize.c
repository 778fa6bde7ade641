/* bench/quantize: throughput of quantizing a model's tensors, per kernel
 * level and type, beside memcpy of the same source bytes (the physical
 * limit a streaming conversion is held against). bench/quantize.py runs it
 * beside llama.cpp's quantizer and gguf-py's and prints the ratios.
 *
 *   bench_quantize kernels MODEL_DIR REPS MAX_MB
 *       every k-th 2-D weight, k chosen for about MAX_MB MB of source (the
 *       scalar k-quants take seconds a pass; a sample of every kind of
 *       weight tells the same rate). memcpy of their bytes; then, at every
 *       kernel level this machine runs, each type's quantize_row over those
 *       weights through qp_convert_rows (f16 source rows converted and
 *       quantized) at 1 thread, and each imatrix quantizer over the same
 *       rows, converted to f32 inside the timed loop as convert_rows does,
 *       with each tensor's column mean of x^2 as its importance.
 *   bench_quantize mix MODEL_DIR MIXFILE THREADS REPS
 *       every tensor of the model, each to the type MIXFILE names for it
 *       ("NAME TYPE" lines, Hugging Face names; a tensor it does not name
 *       goes to f32, as the quantize stage keeps 1-D tensors), through
 *       qp_convert_rows at THREADS threads into memory: the quantize
 *       stage's own work without the pipeline around it. Beside it,
 *       taking turns rep by rep, memcpy of the same tensors' bytes into
 *       buffers of their own ("memcpy_seconds"), one thread: the copy
 *       bandwidth Q8_0 is held against, over the same source bytes and a
 *       destination of the same fresh-buffer kind, not a sample that may
 *       fit in cache.
 *
 * Prints one JSON object per line: {"what", "level", "type", "threads",
 * "bytes": source bytes, "seconds": best of REPS}. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/os.h"
#include "formats/safetensors.h"
#include "kernels/convert.h"
#include "kernels/kernels.h"

static int st_type(enum qp_st_dtype d)
{
	return d == QP_ST_F32 ? QP_TYPE_F32 : d == QP_ST_F16 ? QP_TYPE_F16 : d == QP_ST_BF16 ? QP_TYPE_BF16 : -1;
}

/* 2-D weights whose rows divide into super-blocks: what every type can take */
static int is_weight(const struct qp_st_tensor *t)
{
	return t->ndim == 2 && t->shape[1] % 256 == 0 && st_type(t->dtype) >= 0;
}

/* the kernels table's tensors: every k-th weight, k such that they come to
 * about max_bytes, so embeddings and every kind of layer weight are in */
static void pick_weights(const struct qp_st_model *m, size_t max_bytes, bool *picked)
{
	size_t total = 0, nth = 0;
	for (size_t i = 0; i < qp_st_count(m); i++)
		if (is_weight(qp_st_at(m, i)))
			total += qp_st_at(m, i)->nbytes;
	const size_t k = max_bytes && total > max_bytes ? (total + max_bytes - 1) / max_bytes : 1;
	for (size_t i = 0; i < qp_st_count(m); i++) {
		picked[i] = false;
		if (is_weight(qp_st_at(m, i)))
			picked[i] = nth++ % k == 0;
	}
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p) {
		fprintf(stderr, "bench_quantize: out of memory\n");
		exit(1);
	}
	return p;
}

/* best of reps of memcpy over the picked tensors into out */
static double time_memcpy(const struct qp_st_model *m, const bool *picked, uint8_t *out, int reps)
{
	double best = 1e30;
	for (int r = 0; r < reps; r++) {
		const double t0 = qp_os_now();
		for (size_t i = 0; i < qp_st_count(m); i++) {
			const struct qp_st_tensor *t = qp_st_at(m, i);
			if (picked[i])
				memcpy(out, t->data, t->nbytes);
		}
		const double dt = qp_os_now() - t0;
		best = dt < best ? dt : best;
	}
	return best;
}

/* Column means of x^2 of every weight, one array per tensor (NULL for
 * others): a stand-in importance with an imatrix's shape and spread. */
static float **importances(const struct qp_st_model *m, const bool *picked)
{
	const size_t n = qp_st_count(m);
	float **imat = calloc(n, sizeof(*imat));
	if (!imat)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		const struct qp_st_tensor *t = qp_st_at(m, i);
		if (!picked[i])
			continue;
		const int64_t rows = t->shape[0], cols = t->shape[1];
		float *row = xmalloc((size_t)cols * sizeof(float));
		imat[i] = calloc((size_t)cols, sizeof(float));
		if (!imat[i])
			return NULL;
		const struct qp_kernel_ops *src = qp_kernels_get((enum qp_type)st_type(t->dtype));
		const size_t esize = t->nbytes / (size_t)t->nelem;
		for (int64_t r = 0; r < rows; r++) {
			src->dequantize_row((const uint8_t *)t->data + (size_t)(r * cols) * esize, row, cols);
			for (int64_t c = 0; c < cols; c++)
				imat[i][c] += row[c] * row[c] / (float)rows;
		}
		free(row);
	}
	return imat;
}

static int cmd_kernels(const char *model_dir, int reps, size_t max_bytes)
{
	struct qp_err err = {0};
	struct qp_st_model *m;
	if (qp_st_open(&m, model_dir, &err)) {
		fprintf(stderr, "%s\n", err.msg);
		return 1;
	}
	const size_t n = qp_st_count(m);
	bool *picked = xmalloc(n * sizeof(bool));
	pick_weights(m, max_bytes, picked);
	size_t max_out = 0, bytes = 0;
	int64_t max_cols = 0;
	for (size_t i = 0; i < n; i++) {
		const struct qp_st_tensor *t = qp_st_at(m, i);
		if (!picked[i])
			continue;
		bytes += t->nbytes;
		max_out = (size_t)t->nelem * 4 > max_out ? (size_t)t->nelem * 4 : max_out;
		max_cols = t->shape[1] > max_cols ? t->shape[1] : max_cols;
	}
	uint8_t *out = xmalloc(max_out);
	float *row = xmalloc((size_t)max_cols * sizeof(float));
	/* the first pass pays the page faults of the mapping */
	time_memcpy(m, picked, out, 1);
	printf("{\"what\": \"memcpy\", \"bytes\": %zu, \"seconds\": %.6f}\n", bytes,
	       time_memcpy(m, picked, out, reps));
	fflush(stdout);

	float **imat = importances(m, picked);
	if (!imat) {
		fprintf(stderr, "bench_quantize: out of memory\n");
		return 1;
	}
	const enum qp_type types[] = {QP_TYPE_Q8_0, QP_TYPE_Q4_0, QP_TYPE_Q2_K,  QP_TYPE_Q3_K, QP_TYPE_Q4_K,
	                              QP_TYPE_Q5_K, QP_TYPE_Q6_K, QP_TYPE_TQ1_0, QP_TYPE_TQ2_0};
	for (int level = 0; level < QP_LEVEL_COUNT; level++) {
		if (!qp_kernel_level_supported(level) || qp_kernels_init(qp_kernel_level_name(level), &err))
			continue;
		for (size_t ti = 0; ti < sizeof(types) / sizeof(types[0]); ti++) {
			const struct qp_kernel_ops *ops = qp_kernels_get(types[ti]);
			for (int imatrix = 0; imatrix < 2; imatrix++) {
				if (imatrix && !ops->quantize_row_imat)
					continue;
				double best = 1e30;
				for (int r = 0; r < reps; r++) {
					const double t0 = qp_os_now();
					for (size_t i = 0; i < n; i++) {
						const struct qp_st_tensor *t = qp_st_at(m, i);
						if (!picked[i])
							continue;
						const enum qp_type src = (enum qp_type)st_type(t->dtype);
						if (!imatrix) {
							if (qp_convert_rows(types[ti], out, src, t->data, t->shape[0], t->shape[1], 1,
							                    &err)) {
								fprintf(stderr, "%s\n", err.msg);
								return 1;
							}
							continue;
						}
						const int64_t cols = t->shape[1];
						const size_t esize = t->nbytes / (size_t)t->nelem;
						size_t drow;
						qp_type_row_size(types[ti], cols, &drow);
						const struct qp_kernel_ops *sops = qp_kernels_get(src);
						for (int64_t rr = 0; rr < t->shape[0]; rr++) {
							sops->dequantize_row((const uint8_t *)t->data + (size_t)(rr * cols) * esize, row, cols);
							ops->quantize_row_imat(row, out + (size_t)rr * drow, cols, imat[i]);
						}
					}
					const double dt = qp_os_now() - t0;
					best = dt < best ? dt : best;
				}
				printf("{\"what\": \"%s\", \"level\": \"%s\", \"type\": \"%s\", \"threads\": 1, "
				       "\"bytes\": %zu, \"seconds\": %.6f}\n",
				       imatrix ? "quantize_imat" : "quantize", qp_kernel_level_name(level),
				       qp_type_traits(types[ti])->name, bytes, best);
				fflush(stdout);
			}
		}
	}
	for (size_t i = 0; i < n; i++)
		free(imat[i]);
	free(imat);
	free(picked);
	free(row);
	free(out);
	qp_st_close(m);
	return 0;
}

/* the type MIXFILE gives tensor name, or f32 */
struct mix {
	char **names;
	enum qp_type *types;
	size_t n;
};

static int read_mix(struct mix *mx, const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		perror(path);
		return 1;
	}
	char name[512], type[32];
	size_t cap = 0;
	memset(mx, 0, sizeof(*mx));
	while (fscanf(f, "%511s %31s", name, type) == 2) {
		const int t = qp_type_from_name(type);
		if (t < 0) {
			fprintf(stderr, "%s: unknown type '%s' for '%s'\n", path, type, name);
			fclose(f);
			return 1;
		}
		if (mx->n == cap) {
			cap = cap ? 2 * cap : 64;
			mx->names = realloc(mx->names, cap * sizeof(*mx->names));
			mx->types = realloc(mx->types, cap * sizeof(*mx->types));
			if (!mx->names || !mx->types) {
				fclose(f);
				return 1;
			}
		}
		mx->names[mx->n] = strdup(name);
		mx->types[mx->n++] = (enum qp_type)t;
	}
	fclose(f);
	return 0;
}

static enum qp_type mix_type(const struct mix *mx, const char *name)
{
	for (size_t i = 0; i < mx->n; i++)
		if (strcmp(mx->names[i], name) == 0)
			return mx->types[i];
	return QP_TYPE_F32;
}

static int cmd_mix(const char *model_dir, const char *mix_path, int threads, int reps)
{
	struct qp_err err = {0};
	struct qp_st_model *m;
	struct mix mx;
	if (read_mix(&mx, mix_path))
		return 1;
	if (qp_kernels_init(NULL, &err) || qp_st_open(&m, model_dir, &err)) {
		fprintf(stderr, "%s\n", err.msg);
		return 1;
	}
	const size_t n = qp_st_count(m);
	size_t bytes = 0;
	uint8_t **out = calloc(n, sizeof(*out)), **copy = calloc(n, sizeof(*copy));
	enum qp_type *dst = calloc(n, sizeof(*dst));
	if (!out || !copy || !dst)
		return 1;
	for (size_t i = 0; i < n; i++) {
		const struct qp_st_tensor *t = qp_st_at(m, i);
		if (st_type(t->dtype) < 0) {
			fprintf(stderr, "%s: tensor '%s' is %s\n", model_dir, t->name, qp_st_dtype_name(t->dtype));
			return 1;
		}
		dst[i] = mix_type(&mx, t->name);
		const int64_t cols = t->ndim ? t->shape[t->ndim - 1] : 1;
		size_t drow;
		if (qp_type_row_size(dst[i], cols, &drow)) {
			fprintf(stderr, "%s: '%s' rows of %lld do not divide into %s blocks\n", mix_path, t->name,
			        (long long)cols, qp_type_traits(dst[i])->name);
			return 1;
		}
		/* the stage allocates every output before it converts: so do we */
		out[i] = xmalloc(drow * (size_t)(t->nelem / cols));
		copy[i] = xmalloc(t->nbytes);
		bytes += t->nbytes;
	}
	double best = 1e30, best_copy = 1e30;
	for (int r = 0; r < reps; r++) {
		double t0 = qp_os_now();
		for (size_t i = 0; i < n; i++)
			memcpy(copy[i], qp_st_at(m, i)->data, qp_st_at(m, i)->nbytes);
		const double dc = qp_os_now() - t0;
		best_copy = dc < best_copy ? dc : best_copy;
		t0 = qp_os_now();
		for (size_t i = 0; i < n; i++) {
			const struct qp_st_tensor *t = qp_st_at(m, i);
			const int64_t cols = t->ndim ? t->shape[t->ndim - 1] : 1;
			if (qp_convert_rows(dst[i], out[i], (enum qp_type)st_type(t->dtype), t->data, t->nelem / cols, cols,
			                    threads, &err)) {
				fprintf(stderr, "tensor '%s': %s\n", t->name, err.msg);
				return 1;
			}
		}
		const double dt = qp_os_now() - t0;
		best = dt < best ? dt : best;
	}
	printf("{\"what\": \"mix\", \"level\": \"%s\", \"threads\": %d, \"bytes\": %zu, \"seconds\": %.6f, "
	       "\"memcpy_seconds\": %.6f}\n",
	       qp_kernel_level_name(qp_kernels_level()), threads, bytes, best, best_copy);
	for (size_t i = 0; i < n; i++) {
		free(out[i]);
		free(copy[i]);
	}
	free(out);
	free(copy);
	free(dst);
	for (size_t i = 0; i < mx.n; i++)
		free(mx.names[i]);
	free(mx.names);
	free(mx.types);
	qp_st_close(m);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 5 && strcmp(argv[1], "kernels") == 0) {
		const int reps = atoi(argv[3]), max_mb = atoi(argv[4]);
		return cmd_kernels(argv[2], reps > 0 ? reps : 1, (size_t)(max_mb > 0 ? max_mb : 1) * 1000000);
	}
	if (argc == 6 && strcmp(argv[1], "mix") == 0) {
		const int threads = atoi(argv[4]), reps = atoi(argv[5]);
		return cmd_mix(argv[2], argv[3], threads > 0 ? threads : 1, reps > 0 ? reps : 1);
	}
	fprintf(stderr, "usage: %s kernels MODEL_DIR REPS MAX_MB\n"
	                "       %s mix MODEL_DIR MIXFILE THREADS REPS\n",
	        argv[0], argv[0]);
	return 2;
}
