#!/usr/bin/env python3
"""qpipe's W8A8 codes and product against numpy's, exactly, on real layers.

    test_w8a8_numpy.py QP_W8A8_RAW SHARED_DIR

numpy here is SmoothQuant's per-token / per-channel symmetric scheme
written from kernels/w8a8.h's definition: s = max|x| / 127 (1 where 0),
q = clip(rint(x / s), -127, 127), all in float32 (numpy's float32
division is IEEE's, rint rounds half to even); the product is an int64
integer matmul of the codes (exact, no BLAS), then
float32(acc) * (s_x * s_w) in float32.

Weights are llama-docs-27m's layer-0 q_proj (512 x 512) and down_proj
(512 x 1536), f16 widened to f32; activations are random, gaussian with
a few outlier channels (SmoothQuant's finding), plus an all-zero token,
a tiny one and one with exact ties. Each case runs at every kernel level
this machine has (QPIPE_KERNELS) and at 1 and 2 threads.

Pass: codes, scales and every output float identical, bit for bit.
"""
import os
import subprocess
import sys
import tempfile

import numpy as np

try:
    from safetensors.numpy import load_file
except ImportError as e:  # pragma: no cover - environment check
    print(f"skipping: {e}")
    sys.exit(77)


def quantize_rows(x):
    """Per-row codes (int8) and scales (float32) of x (rows x n, float32)."""
    x = x.astype(np.float32)
    s = np.abs(x).max(axis=1) / np.float32(127)
    s[s == 0] = np.float32(1)
    q = np.clip(np.rint(x / s[:, None]), -127, 127).astype(np.int8)
    return q, s.astype(np.float32)


def w8a8_matmul(xq, xs, wq, ws):
    acc = xq.astype(np.int64) @ wq.astype(np.int64).T
    assert np.abs(acc).max() < 2 ** 31
    return acc.astype(np.float32) * (xs[:, None] * ws[None, :])


def activations(n_tok, k, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_tok, k)).astype(np.float32)
    outliers = rng.choice(k, size=max(1, k // 100), replace=False)
    x[:, outliers] *= np.float32(30)
    x[1] = 0                                                  # scale 1, codes 0
    x[2] *= np.float32(1e-30)                                 # tiny but normal scale
    x[3] = (rng.integers(-127, 127, k) + 0.5).astype(np.float32)  # s = 1: ties
    x[3, 0] = 127
    return x


def first_diff(a, b):
    i = np.flatnonzero(a.reshape(-1).view(np.uint8 if a.dtype == np.int8 else np.uint32)
                       != b.reshape(-1).view(np.uint8 if b.dtype == np.int8 else np.uint32))
    return i[0] if len(i) else None


def levels(binary, tmp):
    """Kernel levels the helper runs here: it refuses the ones it cannot."""
    w = np.ones((1, 1), np.float32)
    w.tofile(os.path.join(tmp, "probe_w.f32"))
    w.tofile(os.path.join(tmp, "probe_x.f32"))
    out = []
    for level in ("scalar", "avx2"):
        r = subprocess.run([binary, os.path.join(tmp, "probe_w.f32"), os.path.join(tmp, "probe_x.f32"),
                            "1", "1", "1", os.path.join(tmp, "probe")],
                           env=dict(os.environ, QPIPE_KERNELS=level), capture_output=True, text=True)
        if r.returncode == 0:
            out.append(level)
        else:
            print(f"  {level}: not run here ({r.stderr.strip()})")
    return out


def main():
    binary, shared = sys.argv[1], sys.argv[2]
    path = os.path.join(shared, "data", "models", "llama-docs-27m", "model.safetensors")
    weights = load_file(path)
    cases = [("model.layers.0.self_attn.q_proj.weight", 48), ("model.layers.0.mlp.down_proj.weight", 40)]
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        lv = levels(binary, tmp)
        for name, n_tok in cases:
            w = weights[name].astype(np.float32)
            rows, k = w.shape
            x = activations(n_tok, k, seed=rows * 7 + k)
            wf, xf = os.path.join(tmp, "w.f32"), os.path.join(tmp, "x.f32")
            w.astype("<f4").tofile(wf)
            x.astype("<f4").tofile(xf)
            wq, ws = quantize_rows(w)
            xq, xs = quantize_rows(x)
            y = w8a8_matmul(xq, xs, wq, ws)
            assert xs[1] == 1 and not xq[1].any() and xs[3] == 1
            for level in lv:
                for threads in (1, 2):
                    out = os.path.join(tmp, "out")
                    subprocess.run([binary, "--threads", str(threads), wf, xf, str(rows), str(k), str(n_tok), out],
                                   env=dict(os.environ, QPIPE_KERNELS=level), check=True)
                    got = {
                        "wq": np.fromfile(out + ".wq", np.int8).reshape(rows, k),
                        "ws": np.fromfile(out + ".ws", "<f4"),
                        "xq": np.fromfile(out + ".xq", np.int8).reshape(n_tok, k),
                        "xs": np.fromfile(out + ".xs", "<f4"),
                        "y": np.fromfile(out + ".y", "<f4").reshape(n_tok, rows),
                    }
                    want = {"wq": wq, "ws": ws, "xq": xq, "xs": xs, "y": y}
                    bad = []
                    for key in want:
                        at = first_diff(got[key], want[key])
                        if at is not None:
                            bad.append("%s differs first at flat index %d (got %r, want %r)"
                                       % (key, at, got[key].reshape(-1)[at], want[key].reshape(-1)[at]))
                    tag = "%s [%d x %d] x %d tokens, %s, %d thread(s)" % (name, rows, k, n_tok, level, threads)
                    if bad:
                        failures += 1
                        print("FAIL %s: %s" % (tag, "; ".join(bad)))
                    else:
                        rel = np.linalg.norm(y - x @ w.T) / np.linalg.norm(x @ w.T)
                        print("ok   %s: codes, scales and %d outputs identical (W8A8 vs f32 rel. error %.2e)"
                              % (tag, y.size, rel))
    if failures:
        print("%d case(s) failed" % failures)
        sys.exit(1)


if __name__ == "__main__":
    main()
