/* qp_w8a8_raw: W8A8 codes and product of raw f32 files, for tests that
 * hold qpipe's result against another implementation's.
 *
 *   qp_w8a8_raw [--threads T] W.f32 X.f32 ROWS K NTOK OUT
 *
 * W.f32 holds ROWS x K little-endian float32 weights (row = output
 * channel), X.f32 NTOK x K float32 activations (row = token). Writes
 * OUT.wq (int8 ROWS x K) and OUT.ws (float32 ROWS): the weight codes and
 * scales of qp_w8a8_quantize_weights; OUT.xq (int8 NTOK x K) and OUT.xs
 * (float32 NTOK): each token through the selected level's quantize_row,
 * as qp_w8a8_matmul quantizes it; OUT.y (float32 NTOK x ROWS): the
 * product. The level is QPIPE_KERNELS's (auto when unset).
 * Exit status: 0 ok, 1 failure (message on stderr), 2 usage. */
#define RAW_PROG "qp_w8a8_raw"
#include "raw_io.h"

#include "kernels/kernels.h"
#include "kernels/w8a8.h"

static int usage(void)
{
	fprintf(stderr, "usage: qp_w8a8_raw [--threads T] W.f32 X.f32 ROWS K NTOK OUT\n");
	return 2;
}

int main(int argc, char **argv)
{
	long long threads = 1;
	int i = 1;
	if (i + 1 < argc && strcmp(argv[i], "--threads") == 0) {
		if (parse_int(argv[i + 1], &threads) != 0)
			return usage();
		i += 2;
	}
	long long rows, k, n_tok;
	if (argc - i != 6 || parse_int(argv[i + 2], &rows) || parse_int(argv[i + 3], &k) ||
	    parse_int(argv[i + 4], &n_tok) || rows < 1 || k < 1 || n_tok < 1 || rows > (1 << 20) ||
	    k > QP_W8A8_MAX_K || n_tok > (1 << 20) || threads < 1 || threads > 256)
		return usage();
	const char *out = argv[i + 5];
	struct qp_err err = {0};
	if (qp_kernels_init(NULL, &err) != 0)
		return die("%s", err.msg);

	float *w = read_exact(argv[i], (size_t)(rows * k) * sizeof(float));
	float *x = w ? read_exact(argv[i + 1], (size_t)(n_tok * k) * sizeof(float)) : NULL;
	int8_t *wq = malloc((size_t)(rows * k)), *xq = malloc((size_t)(n_tok * k));
	float *ws = malloc((size_t)rows * sizeof(float)), *xs = malloc((size_t)n_tok * sizeof(float));
	float *y = malloc((size_t)(n_tok * rows) * sizeof(float));
	int rc = 1;
	if (!x || !wq || !xq || !ws || !xs || !y) {
		if (x)
			die("out of memory");
		goto done;
	}
	if (qp_w8a8_quantize_weights(wq, ws, w, rows, k, &err) != 0 ||
	    qp_w8a8_matmul(y, rows, wq, ws, rows, k, x, n_tok, (int)threads, &err) != 0) {
		die("%s", err.msg);
		goto done;
	}
	for (long long t = 0; t < n_tok; t++)
		qp_w8a8_ops()->quantize_row(x + t * k, xq + t * k, &xs[t], k);
	if (write_file(out, "wq", wq, (size_t)(rows * k)) || write_file(out, "ws", ws, (size_t)rows * sizeof(float)) ||
	    write_file(out, "xq", xq, (size_t)(n_tok * k)) || write_file(out, "xs", xs, (size_t)n_tok * sizeof(float)) ||
	    write_file(out, "y", y, (size_t)(n_tok * rows) * sizeof(float)))
		goto done;
	fprintf(stderr, "qp_w8a8_raw: %s\n", qp_kernels_reason());
	rc = 0;
done:
	free(w);
	free(x);
	free(wq);
	free(xq);
	free(ws);
	free(xs);
	free(y);
	return rc;
}
