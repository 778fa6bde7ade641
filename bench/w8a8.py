"""bench/w8a8: GOPS of qpipe's W8A8 matrix product (int8 weights with one
scale per output row, activations quantized per token inside the call,
int32 sums) beside qpipe's f32 matrix product (qp_ops_matmul, F32
weights) and numpy's float32 matmul (OpenBLAS sgemm/sgemv) on the same
shapes, measured in the same run, as ratios.

usage: python3 bench/w8a8.py BENCH_BINARY [MIN_SECONDS]
Shapes are llama-docs-27m's: 512x512 (q/o_proj), 1536x512 (gate/up_proj),
512x1536 (down_proj), as output rows x inputs, at 1 token (decode) and
512 tokens (prefill), at 1 and 2 threads (numpy's OpenBLAS limited to
the same). GOPS = 2 * rows * inputs * tokens / seconds / 1e9 (a multiply
and an add each); each time is the best of calls repeated for at least
MIN_SECONDS (default 0.3). qpipe's W8A8 time includes quantizing the
activations; its weights are quantized before the clock starts.
"""
import json
import os
import subprocess
import sys
import time

import numpy as np

SHAPES = [(512, 512), (1536, 512), (512, 1536)]
TOKENS = [1, 512]


def peer(min_seconds):
    """numpy x @ w.T per case; runs in a child whose OPENBLAS_NUM_THREADS
    was set before numpy loaded."""
    rng = np.random.default_rng(0)
    out = {}
    for rows, k in SHAPES:
        w = (0.02 * rng.standard_normal((rows, k))).astype(np.float32)
        for tok in TOKENS:
            x = rng.standard_normal((tok, k)).astype(np.float32)
            best, spent, reps = 1e30, 0.0, 0
            while reps < 3 or spent < min_seconds:
                t0 = time.perf_counter()
                x @ w.T
                dt = time.perf_counter() - t0
                best, spent, reps = min(best, dt), spent + dt, reps + 1
            out["%dx%d:%d" % (rows, k, tok)] = best
    print(json.dumps(out))


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--peer":
        peer(float(sys.argv[2]))
        return
    binary = sys.argv[1]
    min_seconds = sys.argv[2] if len(sys.argv) > 2 else "0.3"
    cases = ["%dx%d:%d" % (r, k, t) for r, k in SHAPES for t in TOKENS]
    print("bench/w8a8: best of calls over >= %s s each; %d CPUs\n" % (min_seconds, os.cpu_count() or 1))
    print("| rows x inputs | tokens | threads | level | W8A8 GOPS | f32 GOPS | numpy f32 GOPS "
          "| W8A8 / f32 | W8A8 / numpy |")
    print("|---|---:|---:|---|---:|---:|---:|---:|---:|")
    for threads in (1, 2):
        out = subprocess.run([binary, str(threads), min_seconds] + cases, check=True, capture_output=True,
                             text=True).stdout
        ours = [json.loads(line) for line in out.splitlines() if line.strip()]
        env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
        theirs = json.loads(subprocess.run([sys.executable, os.path.abspath(__file__), "--peer", min_seconds],
                                           check=True, capture_output=True, text=True, env=env).stdout)
        for r in ours:
            ops = 2.0 * r["rows"] * r["k"] * r["tokens"] / 1e9
            t_np = theirs["%dx%d:%d" % (r["rows"], r["k"], r["tokens"])]
            print("| %d x %d | %d | %d | %s | %.1f | %.1f | %.1f | %.2f | %.2f |" % (
                r["rows"], r["k"], r["tokens"], threads, r["level"], ops / r["w8a8_s"], ops / r["f32_s"],
                ops / t_np, r["f32_s"] / r["w8a8_s"], t_np / r["w8a8_s"]))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
