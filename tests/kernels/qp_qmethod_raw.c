/* qp_qmethod_raw: run kernels/qmethod.h on raw f32 matrices, for tests
 * that compare qpipe's quantization methods with another implementation.
 *
 *   qp_qmethod_raw quantize [OPTIONS] IN.f32 ROWS COLS OUT.qm
 *   qp_qmethod_raw fp8-encode e4m3|e5m2 IN.f32 OUT.u8
 *   qp_qmethod_raw fp8-decode e4m3|e5m2 OUT.f32
 *   qp_qmethod_raw tables OUT.qm
 *   qp_qmethod_raw rng SEED COUNT OUT.qm
 *
 * quantize starts from qp_qspec_default of --method and applies the other
 * options: --bits N, --gran tensor|channel|group, --group N, --sym,
 * --scale-f16 / --no-scale-f16, --rule threshold|absmean, --threshold F,
 * --fp8 e4m3|e5m2, --double-quant / --no-double-quant, --channel-scale,
 * --seed N, --iters N, --threads N. IN.f32 holds ROWS x COLS
 * little-endian float32 values, row-major.
 *
 * fp8-encode writes one code byte per input float; fp8-decode writes the
 * 256 codes' values in code order. tables holds "nf4" (16 values) and
 * "dynamic_map" (256). rng holds "u64" and "unit": COUNT draws each of
 * qp_qmethod_rng and qp_qmethod_rng_unit, from two fresh states = SEED.
 *
 * OUT.qm is a list of named arrays after an 8-byte magic "QPQMRAW1":
 * each record is a u8 name length, the name, a 2-byte dtype ("u1", "u8", "i4",
 * "i8", "f4", "f8"; little-endian), a u64 element count, then the data.
 * quantize writes "shape" (i8: rows, cols, row_bytes, scale_rows,
 * scale_cols, lut_rows, n_blocks, n_absmax_scales), "codes" (u1, rows x
 * row_bytes), the arrays the method has ("scales", "zeros", "lut",
 * "absmax_codes", "absmax_scales", "absmax_offset"), "bpw" (f8) and
 * "dequant" (f4, rows x cols).
 *
 * Outputs are written to OUT.tmp and renamed, so a failure leaves none.
 * Exit status: 0 ok, 1 failure (message on stderr), 2 usage. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/qmethod.h"

static int usage(void)
{
	fprintf(stderr, "usage: qp_qmethod_raw quantize [OPTIONS] IN.f32 ROWS COLS OUT.qm\n"
	                "       qp_qmethod_raw fp8-encode e4m3|e5m2 IN.f32 OUT.u8\n"
	                "       qp_qmethod_raw fp8-decode e4m3|e5m2 OUT.f32\n"
	                "       qp_qmethod_raw tables OUT.qm\n"
	                "       qp_qmethod_raw rng SEED COUNT OUT.qm\n");
	return 2;
}

__attribute__((format(printf, 1, 2)))
static int die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("qp_qmethod_raw: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	return 1;
}

/* An output being written: FILE on path.tmp, renamed by out_close. */
struct out {
	FILE *f;
	const char *path;
	char tmp[4096];
	int failed;
};

static int out_open(struct out *o, const char *path, int container)
{
	o->path = path;
	o->failed = 0;
	if (snprintf(o->tmp, sizeof(o->tmp), "%s.tmp", path) >= (int)sizeof(o->tmp))
		return die("%s: path too long", path);
	o->f = fopen(o->tmp, "wb");
	if (!o->f)
		return die("%s: %s", o->tmp, strerror(errno));
	if (container && fwrite("QPQMRAW1", 1, 8, o->f) != 8)
		o->failed = 1;
	return 0;
}

static void out_bytes(struct out *o, const void *p, size_t n)
{
	if (n && fwrite(p, 1, n, o->f) != n)
		o->failed = 1;
}

static void out_array(struct out *o, const char *name, const char *dtype, const void *data, uint64_t count)
{
	const size_t size = dtype[1] == '1' ? 1 : dtype[1] == '4' ? 4 : 8;
	const uint8_t len = (uint8_t)strlen(name);
	out_bytes(o, &len, 1);
	out_bytes(o, name, len);
	out_bytes(o, dtype, 2);
	out_bytes(o, &count, 8);
	out_bytes(o, data, (size_t)count * size);
}

/* Close and rename on success; remove on failure. Returns the exit status. */
static int out_close(struct out *o, int rc)
{
	if (fclose(o->f) != 0 || o->failed) {
		if (!rc)
			rc = die("%s: %s", o->tmp, strerror(errno));
	}
	if (!rc && rename(o->tmp, o->path) != 0)
		rc = die("%s: %s", o->path, strerror(errno));
	if (rc)
		remove(o->tmp);
	return rc;
}

static int parse_i64(const char *s, long long *v)
{
	char *end;
	errno = 0;
	*v = strtoll(s, &end, 10);
	return errno || end == s || *end;
}

static int parse_fp8(const char *s, enum qp_fp8_format *f)
{
	if (strcmp(s, "e4m3") == 0)
		*f = QP_FP8_E4M3;
	else if (strcmp(s, "e5m2") == 0)
		*f = QP_FP8_E5M2;
	else
		return -1;
	return 0;
}

/* Reads exactly n floats (n < 0: all of the file, count into *n). */
static float *read_f32(const char *path, long long *n)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		die("%s: %s", path, strerror(errno));
		return NULL;
	}
	if (*n < 0) {
		if (fseek(f, 0, SEEK_END) != 0 || (*n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
			fclose(f);
			die("%s: cannot size", path);
			return NULL;
		}
		*n /= 4;
	}
	float *w = malloc((size_t)(*n ? *n : 1) * sizeof(float));
	const size_t got = w ? fread(w, sizeof(float), (size_t)*n, f) : 0;
	const int extra = fgetc(f) != EOF;
	fclose(f);
	if (!w || got != (size_t)*n || extra) {
		free(w);
		die("%s: want exactly %lld float32 values", path, *n);
		return NULL;
	}
	return w;
}

static int cmd_quantize(int argc, char **argv)
{
	struct qp_qspec s;
	const char *method = NULL;
	int threads = 1;
	int i = 0;
	for (; i < argc && strcmp(argv[i], "--method") != 0; i++)
		;
	if (i + 1 >= argc)
		return usage();
	method = argv[i + 1];
	const int m = qp_qmethod_from_name(method);
	if (m < 0)
		return die("unknown method '%s'", method);
	qp_qspec_default(&s, (enum qp_qmethod)m);
	const char *pos[4];
	int npos = 0;
	for (i = 0; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		long long n;
		if (strcmp(a, "--method") == 0) {
			i++;
		} else if (strcmp(a, "--sym") == 0) {
			s.sym = true;
		} else if (strcmp(a, "--scale-f16") == 0) {
			s.scale_f16 = true;
		} else if (strcmp(a, "--no-scale-f16") == 0) {
			s.scale_f16 = false;
		} else if (strcmp(a, "--double-quant") == 0) {
			s.double_quant = true;
		} else if (strcmp(a, "--no-double-quant") == 0) {
			s.double_quant = false;
		} else if (strcmp(a, "--channel-scale") == 0) {
			s.channel_scale = true;
		} else if (a[0] == '-' && a[1] == '-') {
			if (!v)
				return usage();
			i++;
			if (strcmp(a, "--gran") == 0) {
				if (strcmp(v, "tensor") == 0)
					s.gran = QP_QG_TENSOR;
				else if (strcmp(v, "channel") == 0)
					s.gran = QP_QG_CHANNEL;
				else if (strcmp(v, "group") == 0)
					s.gran = QP_QG_GROUP;
				else
					return die("unknown granularity '%s'", v);
			} else if (strcmp(a, "--rule") == 0) {
				if (strcmp(v, "threshold") == 0)
					s.rule = QP_TERN_THRESHOLD;
				else if (strcmp(v, "absmean") == 0)
					s.rule = QP_TERN_ABSMEAN;
				else
					return die("unknown ternary rule '%s'", v);
			} else if (strcmp(a, "--fp8") == 0) {
				if (parse_fp8(v, &s.fp8))
					return die("unknown fp8 format '%s'", v);
			} else if (strcmp(a, "--threshold") == 0) {
				char *end;
				s.threshold = strtof(v, &end);
				if (end == v || *end)
					return die("bad threshold '%s'", v);
			} else if (strcmp(a, "--seed") == 0) {
				char *end;
				errno = 0;
				s.seed = strtoull(v, &end, 10);
				if (errno || end == v || *end)
					return die("bad seed '%s'", v);
			} else if (parse_i64(v, &n)) {
				return die("option %s wants an integer, not '%s'", a, v);
			} else if (strcmp(a, "--bits") == 0) {
				s.bits = (int)n;
			} else if (strcmp(a, "--group") == 0) {
				s.group = n;
			} else if (strcmp(a, "--iters") == 0) {
				s.iters = (int)n;
			} else if (strcmp(a, "--threads") == 0) {
				threads = (int)n;
			} else {
				return die("unknown option '%s'", a);
			}
		} else if (npos < 4) {
			pos[npos++] = a;
		} else {
			return usage();
		}
	}
	long long rows, cols;
	if (npos != 4 || parse_i64(pos[1], &rows) || parse_i64(pos[2], &cols) || rows <= 0 || cols <= 0)
		return usage();
	long long n = rows * cols;
	float *w = read_f32(pos[0], &n);
	if (!w)
		return 1;
	struct qp_qtensor q;
	struct qp_err err = {0};
	if (qp_qmethod_quantize(&s, w, rows, cols, &q, threads, &err) != 0) {
		free(w);
		return die("%s", err.msg);
	}
	/* the dequantized values overwrite the input: it is not needed any more */
	int rc = qp_qmethod_dequantize(&s, &q, w, &err) ? die("%s", err.msg) : 0;
	struct out o;
	if (!rc)
		rc = out_open(&o, pos[3], 1);
	if (!rc) {
		const int64_t shape[8] = {q.rows, q.cols, (int64_t)q.row_bytes, q.scale_rows, q.scale_cols,
		                          q.lut_rows, q.n_blocks, q.n_absmax_scales};
		out_array(&o, "shape", "i8", shape, 8);
		out_array(&o, "codes", "u1", q.codes, q.codes_bytes);
		const uint64_t ns = (uint64_t)(q.scale_rows * q.scale_cols);
		if (q.scales)
			out_array(&o, "scales", "f4", q.scales, ns);
		if (q.zeros)
			out_array(&o, "zeros", "u1", q.zeros, ns);
		if (q.lut)
			out_array(&o, "lut", "f4", q.lut, (uint64_t)q.lut_rows << s.bits);
		if (q.absmax_codes) {
			out_array(&o, "absmax_codes", "u1", q.absmax_codes, (uint64_t)q.n_blocks);
			out_array(&o, "absmax_scales", "f4", q.absmax_scales, (uint64_t)q.n_absmax_scales);
			out_array(&o, "absmax_offset", "f4", &q.absmax_offset, 1);
		}
		const double bpw = qp_qtensor_bits_per_weight(&s, &q);
		out_array(&o, "bpw", "f8", &bpw, 1);
		out_array(&o, "dequant", "f4", w, (uint64_t)n);
		rc = out_close(&o, 0);
	}
	qp_qtensor_free(&q);
	free(w);
	return rc;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return usage();
	const char *cmd = argv[1];
	enum qp_fp8_format f;
	struct out o;
	if (strcmp(cmd, "quantize") == 0)
		return cmd_quantize(argc - 2, argv + 2);
	if (strcmp(cmd, "fp8-encode") == 0) {
		if (argc != 5 || parse_fp8(argv[2], &f))
			return usage();
		long long n = -1;
		float *x = read_f32(argv[3], &n);
		if (!x || out_open(&o, argv[4], 0)) {
			free(x);
			return 1;
		}
		for (long long i = 0; i < n; i++) {
			const uint8_t c = qp_fp8_from_f32(x[i], f);
			out_bytes(&o, &c, 1);
		}
		free(x);
		return out_close(&o, 0);
	}
	if (strcmp(cmd, "fp8-decode") == 0) {
		if (argc != 4 || parse_fp8(argv[2], &f))
			return usage();
		if (out_open(&o, argv[3], 0))
			return 1;
		for (int v = 0; v < 256; v++) {
			const float x = qp_fp8_to_f32((uint8_t)v, f);
			out_bytes(&o, &x, 4);
		}
		return out_close(&o, 0);
	}
	if (strcmp(cmd, "tables") == 0) {
		if (argc != 3 || out_open(&o, argv[2], 1))
			return argc != 3 ? usage() : 1;
		float map[256];
		qp_qmethod_dynamic_map(map);
		out_array(&o, "nf4", "f4", qp_nf4_values, 16);
		out_array(&o, "dynamic_map", "f4", map, 256);
		return out_close(&o, 0);
	}
	if (strcmp(cmd, "rng") == 0) {
		long long count;
		char *end;
		errno = 0;
		const uint64_t seed = argc == 5 ? strtoull(argv[2], &end, 10) : 0;
		if (argc != 5 || errno || end == argv[2] || *end || parse_i64(argv[3], &count) || count < 0 ||
		    count > 1 << 20)
			return usage();
		uint64_t *u = malloc((size_t)(count ? count : 1) * sizeof(uint64_t));
		double *d = malloc((size_t)(count ? count : 1) * sizeof(double));
		if (!u || !d || out_open(&o, argv[4], 1)) {
			free(u);
			free(d);
			return die("out of memory or cannot write");
		}
		uint64_t s1 = seed, s2 = seed;
		for (long long i = 0; i < count; i++) {
			u[i] = qp_qmethod_rng(&s1);
			d[i] = qp_qmethod_rng_unit(&s2);
		}
		out_array(&o, "u64", "u8", u, (uint64_t)count);
		out_array(&o, "unit", "f8", d, (uint64_t)count);
		free(u);
		free(d);
		return out_close(&o, 0);
	}
	return usage();
}
