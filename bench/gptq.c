/* bench/gptq: wall time of qp_gptq_quantize on every projection of a
 * Llama model, and the process's peak RSS.
 *
 * usage: bench_gptq MODEL_DIR HDIR THREADS ACT_ORDER(0|1) [LAYERS]
 * HDIR holds the Hessians the projections are quantized against, raw
 * float32: h_qkv.f32 and h_gate_up.f32 (hidden x hidden), h_o.f32
 * (attention width squared) and h_down.f32 (intermediate squared); one
 * per input kind, reused for every layer (time does not depend on which
 * layer's H it is). 4 bits, groups of 128, asymmetric, damping 0.01,
 * block 128, f16 scales. LAYERS limits the layers (default all).
 *
 * Prints one JSON object per line: {"what": "layer", "tensor", "rows",
 * "cols", "seconds", "cpu_seconds"} per projection (GPTQ alone: the f16
 * to f32 conversion is outside the clock; CPU time of all threads), then
 * {"what": "total", "layers", "params", "seconds", "cpu_seconds",
 * "rss_before_kb", "peak_rss_kb"}: peak RSS before
 * the first GPTQ call (the mapped model and the Hessians) and at the end
 * (VmHWM, see peak_rss_kb).
 * bench/gptq.py runs this beside a numpy GPTQ and prints the table. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "common/os.h"
#include "formats/safetensors.h"
#include "kernels/convert.h"
#include "kernels/gptq.h"
#include "kernels/kernels.h"

static const struct {
	const char *name;  /* under model.layers.N. */
	const char *h;     /* which HDIR file */
} projections[] = {
	{"self_attn.q_proj.weight", "qkv"}, {"self_attn.k_proj.weight", "qkv"},
	{"self_attn.v_proj.weight", "qkv"}, {"self_attn.o_proj.weight", "o"},
	{"mlp.gate_proj.weight", "gate_up"}, {"mlp.up_proj.weight", "gate_up"},
	{"mlp.down_proj.weight", "down"},
};
#define N_PROJ (sizeof(projections) / sizeof(projections[0]))

/* Peak RSS in KiB. Linux carries getrusage's ru_maxrss across execve, so
 * a child of a large parent (bench/gptq.py holds a float64 model) would
 * report the parent's peak: VmHWM of /proc/self/status is this image's
 * own, and getrusage is the fallback elsewhere. */
static long peak_rss_kb(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	if (f) {
		char line[256];
		long kb = -1;
		while (fgets(line, sizeof(line), f))
			if (sscanf(line, "VmHWM: %ld kB", &kb) == 1)
				break;
		fclose(f);
		if (kb >= 0)
			return kb;
	}
	struct rusage ru;
	return getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_maxrss : -1;
}

/* CPU seconds of the whole process, all threads: beside wall time it
 * shows how much of a run other processes on the machine took. */
static double cpu_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* HDIR/h_KIND.f32 as cols x cols floats, cols from the file's size. */
static float *read_h(const char *dir, const char *kind, int64_t cols)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/h_%s.f32", dir, kind);
	FILE *f = fopen(path, "rb");
	if (!f) {
		perror(path);
		return NULL;
	}
	const size_t n = (size_t)(cols * cols);
	float *h = malloc(n * sizeof(float));
	if (!h || fread(h, sizeof(float), n, f) != n || fgetc(f) != EOF) {
		fprintf(stderr, "%s: expected %lld x %lld float32\n", path, (long long)cols, (long long)cols);
		free(h);
		h = NULL;
	}
	fclose(f);
	return h;
}

int main(int argc, char **argv)
{
	if (argc < 5) {
		fprintf(stderr, "usage: %s MODEL_DIR HDIR THREADS ACT_ORDER(0|1) [LAYERS]\n", argv[0]);
		return 2;
	}
	const int threads = atoi(argv[3]);
	const bool act_order = atoi(argv[4]) != 0;
	int max_layers = argc > 5 ? atoi(argv[5]) : 1 << 20;
	struct qp_err err = {0};
	if (qp_kernels_init(NULL, &err)) {
		fprintf(stderr, "%s\n", err.msg);
		return 1;
	}
	struct qp_st_model *m;
	if (qp_st_open(&m, argv[1], &err)) {
		fprintf(stderr, "%s\n", err.msg);
		return 1;
	}
	struct qp_gptq_params p;
	qp_gptq_params_default(&p);
	p.act_order = act_order;

	/* every tensor and H up front, so the peak before GPTQ is the inputs' */
	const struct qp_st_tensor *t[64][N_PROJ];
	float *h[N_PROJ] = {0};
	int layers = 0;
	for (bool complete = true; complete && layers < max_layers && layers < 64; layers += complete)
		for (size_t k = 0; complete && k < N_PROJ; k++) {
			char name[256];
			snprintf(name, sizeof(name), "model.layers.%d.%s", layers, projections[k].name);
			const struct qp_st_tensor *x = qp_st_find(m, name);
			complete = x && x->ndim == 2 && x->dtype == QP_ST_F16;
			t[layers][k] = x;
		}
	if (layers == 0) {
		fprintf(stderr, "%s: no f16 Llama projections found\n", argv[1]);
		return 1;
	}
	int64_t max_elems = 0;
	for (size_t k = 0; k < N_PROJ; k++) {
		const struct qp_st_tensor *x = t[0][k];
		if (x->nelem > max_elems)
			max_elems = x->nelem;
		for (size_t j = 0; j < k; j++)
			if (strcmp(projections[j].h, projections[k].h) == 0)
				h[k] = h[j];
		if (!h[k] && !(h[k] = read_h(argv[2], projections[k].h, x->shape[1])))
			return 1;
	}
	float *w = malloc((size_t)max_elems * sizeof(float));
	if (!w)
		return 1;
	for (int l = 0; l < layers; l++)
		for (size_t k = 0; k < N_PROJ; k++)
			memcpy(w, t[l][k]->data, t[l][k]->nbytes); /* page the mapping in */
	const long rss_before = peak_rss_kb();

	double total = 0, total_cpu = 0;
	int64_t params = 0;
	for (int l = 0; l < layers; l++)
		for (size_t k = 0; k < N_PROJ; k++) {
			const struct qp_st_tensor *x = t[l][k];
			if (qp_convert_rows(QP_TYPE_F32, w, QP_TYPE_F16, x->data, x->shape[0], x->shape[1], 1, &err)) {
				fprintf(stderr, "%s\n", err.msg);
				return 1;
			}
			struct qp_qtensor q;
			const double t0 = qp_os_now(), c0 = cpu_now();
			if (qp_gptq_quantize(&p, w, h[k], x->shape[0], x->shape[1], &q, threads, &err)) {
				fprintf(stderr, "%s: %s\n", x->name, err.msg);
				return 1;
			}
			const double dt = qp_os_now() - t0, dc = cpu_now() - c0;
			qp_qtensor_free(&q);
			total += dt;
			total_cpu += dc;
			params += x->nelem;
			printf("{\"what\": \"layer\", \"tensor\": \"%s\", \"rows\": %lld, \"cols\": %lld, "
			       "\"seconds\": %.6f, \"cpu_seconds\": %.6f}\n",
			       x->name, (long long)x->shape[0], (long long)x->shape[1], dt, dc);
		}
	printf("{\"what\": \"total\", \"layers\": %d, \"params\": %lld, \"seconds\": %.6f, "
	       "\"cpu_seconds\": %.6f, \"rss_before_kb\": %ld, \"peak_rss_kb\": %ld}\n",
	       layers * (int)N_PROJ, (long long)params, total, total_cpu, rss_before, peak_rss_kb());
	free(w);
	for (size_t k = 0; k < N_PROJ; k++) {
		bool shared = false;
		for (size_t j = 0; j < k; j++)
			shared |= h[j] == h[k];
		if (!shared)
			free(h[k]);
	}
	qp_st_close(m);
	return 0;
}
