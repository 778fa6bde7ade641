/* qp_quantize_raw: quantize raw f32 rows with the kernel table, for tests
 * that compare qpipe's bytes with another implementation's.
 *
 *   qp_quantize_raw --kernels LEVEL --type TYPE [--imatrix W.f32] IN.f32 ROWLEN OUT.bin
 *   qp_quantize_raw --kernels LEVEL --type TYPE --dequantize IN.bin ROWLEN OUT.f32
 *   qp_quantize_raw --list-levels
 *
 * IN.f32 holds little-endian float32 rows of ROWLEN elements; OUT.bin gets
 * each row quantized to TYPE, rows back to back, as GGUF stores a tensor.
 * With --imatrix, W.f32 holds ROWLEN float32 importances (one per column,
 * as llama-quantize's imatrix has them) and the type's weighted quantizer
 * (quantize_row_imat) is used; a type without one is an error.
 * --dequantize goes the other way: rows of TYPE blocks in, float32 out.
 * --list-levels prints the levels this machine can run, one a line.
 * Exit status: 0 ok, 1 failure (message on stderr), 2 usage. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"

static int usage(void)
{
	fprintf(stderr, "usage: qp_quantize_raw --kernels LEVEL --type TYPE [--imatrix W.f32] IN.f32 ROWLEN OUT.bin\n"
	                "       qp_quantize_raw --kernels LEVEL --type TYPE --dequantize IN.bin ROWLEN OUT.f32\n"
	                "       qp_quantize_raw --list-levels\n");
	return 2;
}

__attribute__((format(printf, 1, 2)))
static int die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("qp_quantize_raw: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	return 1;
}

int main(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "--list-levels") == 0) {
		for (int l = 0; l < QP_LEVEL_COUNT; l++)
			if (qp_kernel_level_supported(l))
				puts(qp_kernel_level_name(l));
		return 0;
	}
	const char *imat_path = NULL;
	int dequantize = 0;
	if (argc == 10 && strcmp(argv[5], "--imatrix") == 0) {
		imat_path = argv[6];
		memmove(&argv[5], &argv[7], 3 * sizeof(argv[0]));
		argc -= 2;
	} else if (argc == 9 && strcmp(argv[5], "--dequantize") == 0) {
		dequantize = 1;
		memmove(&argv[5], &argv[6], 3 * sizeof(argv[0]));
		argc -= 1;
	}
	if (argc != 8 || strcmp(argv[1], "--kernels") != 0 || strcmp(argv[3], "--type") != 0)
		return usage();
	const char *level = argv[2], *type_name = argv[4], *in_path = argv[5], *out_path = argv[7];

	struct qp_err err = {0};
	if (qp_kernels_init(level, &err) != 0)
		return die("%s", err.msg);
	const int type = qp_type_from_name(type_name);
	const struct qp_kernel_ops *ops = type < 0 ? NULL : qp_kernels_get(type);
	if (!ops || (dequantize ? !ops->dequantize_row : !ops->quantize_row))
		return die("type '%s': no %s kernel", type_name, dequantize ? "dequantize" : "quantize");
	if (imat_path && !ops->quantize_row_imat)
		return die("type '%s': no imatrix quantize kernel", type_name);

	char *end;
	errno = 0;
	const long long row_len = strtoll(argv[6], &end, 10);
	size_t row_out;
	if (errno || *end || row_len <= 0 || qp_type_row_size(type, row_len, &row_out) != 0)
		return die("row length '%s' is not a positive multiple of the block size of '%s'", argv[6], type_name);

	float *imat = NULL;
	if (imat_path) {
		FILE *f = fopen(imat_path, "rb");
		if (!f)
			return die("%s: %s", imat_path, strerror(errno));
		imat = malloc((size_t)row_len * sizeof(float));
		const size_t got = imat ? fread(imat, sizeof(float), (size_t)row_len, f) : 0;
		const int extra = fgetc(f) != EOF;
		fclose(f);
		if (!imat || got != (size_t)row_len || extra) {
			free(imat);
			return die("%s: want exactly %lld float32 importances", imat_path, row_len);
		}
	}

	FILE *in = fopen(in_path, "rb");
	if (!in) {
		free(imat);
		return die("%s: %s", in_path, strerror(errno));
	}
	FILE *out = fopen(out_path, "wb");
	if (!out) {
		free(imat);
		fclose(in);
		return die("%s: %s", out_path, strerror(errno));
	}
	size_t row_in = (size_t)row_len * sizeof(float);
	if (dequantize) {
		const size_t t = row_in;
		row_in = row_out;
		row_out = t;
	}
	void *x = malloc(row_in);
	void *y = malloc(row_out);
	int rc = 0;
	if (!x || !y) {
		rc = die("out of memory");
		goto done;
	}
	for (;;) {
		const size_t got = fread(x, 1, row_in, in);
		if (got == 0)
			break;
		if (got != row_in) {
			rc = die("%s: ends inside a row (size is not a multiple of a row of ROWLEN)", in_path);
			goto done;
		}
		if (dequantize)
			ops->dequantize_row(x, y, row_len);
		else if (imat)
			ops->quantize_row_imat(x, y, row_len, imat);
		else
			ops->quantize_row(x, y, row_len);
		if (fwrite(y, 1, row_out, out) != row_out) {
			rc = die("%s: %s", out_path, strerror(errno));
			goto done;
		}
	}
	if (ferror(in))
		rc = die("%s: read error", in_path);
done:
	free(imat);
	free(x);
	free(y);
	fclose(in);
	if (fclose(out) != 0 && rc == 0)
		rc = die("%s: %s", out_path, strerror(errno));
	return rc;
}
