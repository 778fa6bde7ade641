/* qp_gptq_raw: run GPTQ on raw f32 files, for tests that hold qpipe's
 * result against another implementation's.
 *
 *   qp_gptq_raw [OPTIONS] W.f32 H.f32 ROWS COLS OUT
 *
 * W.f32 holds ROWS x COLS little-endian float32 weights (row = output
 * channel), H.f32 COLS x COLS float32 (kernels/gptq.h says which H).
 * Options: --bits N (4), --group G (128; -1 per row), --sym,
 * --act-order, --static-groups, --damp X (0.01), --block B (128),
 * --f32-scales (scales not rounded to f16), --threads T (1).
 * Writes OUT.codes (one byte per code, ROWS x COLS, original column
 * order), OUT.scales (float32 ROWS x n_groups), OUT.zeros (uint8, same
 * shape), OUT.gidx (int32 x COLS; only when the result has a g_idx) and
 * OUT.deq (float32 ROWS x COLS: qp_qmethod_dequantize of the result).
 * Exit status: 0 ok, 1 failure (message on stderr), 2 usage. */
#define RAW_PROG "qp_gptq_raw"
#include "raw_io.h"

#include "kernels/gptq.h"

static int usage(void)
{
	fprintf(stderr, "usage: qp_gptq_raw [--bits N] [--group G] [--sym] [--act-order] [--static-groups]\n"
	                "                   [--damp X] [--block B] [--f32-scales] [--threads T]\n"
	                "                   W.f32 H.f32 ROWS COLS OUT\n");
	return 2;
}

int main(int argc, char **argv)
{
	struct qp_gptq_params p;
	qp_gptq_params_default(&p);
	long long threads = 1, v;
	int i = 1;
	for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
		const char *o = argv[i];
		if (strcmp(o, "--sym") == 0)
			p.sym = true;
		else if (strcmp(o, "--act-order") == 0)
			p.act_order = true;
		else if (strcmp(o, "--static-groups") == 0)
			p.static_groups = true;
		else if (strcmp(o, "--f32-scales") == 0)
			p.scale_f16 = false;
		else if (i + 1 >= argc)
			return usage();
		else if (strcmp(o, "--damp") == 0) {
			char *end;
			p.damp_percent = strtod(argv[++i], &end);
			if (*end)
				return usage();
		} else if (parse_int(argv[i + 1], &v) != 0)
			return usage();
		else if (strcmp(o, "--bits") == 0)
			p.bits = (int)v, i++;
		else if (strcmp(o, "--group") == 0)
			p.group = v, i++;
		else if (strcmp(o, "--block") == 0)
			p.block = v, i++;
		else if (strcmp(o, "--threads") == 0)
			threads = v, i++;
		else
			return usage();
	}
	long long rows, cols;
	if (argc - i != 5 || parse_int(argv[i + 2], &rows) || parse_int(argv[i + 3], &cols) || rows < 1 ||
	    cols < 1 || rows > (1 << 20) || cols > (1 << 20) || threads < 1 || threads > 256)
		return usage();
	const char *out_prefix = argv[i + 4];

	float *w = read_exact(argv[i], (size_t)(rows * cols) * sizeof(float));
	float *h = w ? read_exact(argv[i + 1], (size_t)(cols * cols) * sizeof(float)) : NULL;
	if (!h) {
		free(w);
		return 1;
	}
	struct qp_err err = {0};
	struct qp_qtensor q;
	if (qp_gptq_quantize(&p, w, h, rows, cols, &q, (int)threads, &err) != 0) {
		free(w);
		free(h);
		return die("%s", err.msg);
	}
	int rc = 0;
	uint8_t *codes = malloc((size_t)(rows * cols));
	float *deq = malloc((size_t)(rows * cols) * sizeof(float));
	struct qp_qspec spec;
	qp_gptq_spec(&p, &spec);
	if (!codes || !deq)
		rc = die("out of memory");
	else if (qp_qmethod_dequantize(&spec, &q, deq, &err) != 0)
		rc = die("%s", err.msg);
	if (rc == 0) {
		/* codes unpacked here, from qmethod.h's layout, so the test reads plain bytes */
		for (long long r = 0; r < rows; r++)
			for (long long c = 0; c < cols; c++) {
				const uint8_t *row = q.codes + (size_t)r * q.row_bytes;
				const size_t bit = (size_t)c * (size_t)p.bits;
				unsigned x = row[bit / 8];
				if (bit / 8 + 1 < q.row_bytes)
					x |= (unsigned)row[bit / 8 + 1] << 8;
				codes[r * cols + c] = (uint8_t)((x >> (bit % 8)) & ((1u << p.bits) - 1));
			}
		const size_t ns = (size_t)(q.scale_rows * q.scale_cols);
		rc = write_file(out_prefix, "codes", codes, (size_t)(rows * cols));
		if (!rc)
			rc = write_file(out_prefix, "scales", q.scales, ns * sizeof(float));
		if (!rc)
			rc = write_file(out_prefix, "zeros", q.zeros, ns);
		if (!rc && q.g_idx)
			rc = write_file(out_prefix, "gidx", q.g_idx, (size_t)cols * sizeof(int32_t));
		if (!rc)
			rc = write_file(out_prefix, "deq", deq, (size_t)(rows * cols) * sizeof(float));
	}
	free(codes);
	free(deq);
	qp_qtensor_free(&q);
	free(w);
	free(h);
	return rc;
}
