"""bench/gptq: seconds of qpipe's GPTQ per linear layer and per million
parameters over llama-docs-27m's 42 projections (4 bits, groups of 128,
with and without act_order, at 1 and 2 threads), its peak RSS, and the
ratio against a numpy GPTQ (tests/kernels/test_gptq_numpy.py's, float64,
numpy's OpenBLAS limited to the same threads) on layer 0's seven
projections, measured in the same run.

usage: python3 bench/gptq.py BENCH_BINARY SHARED_DIR [REPS]
H comes from real inputs: layer 0 of llama-docs-27m over held-out text,
one H per input kind, reused for every layer. Times are the best of REPS
(default 2) runs, per projection; CPU s counts all of the process's threads,
so on an idle machine it is wall time times the threads kept busy, and
where it falls short of that, other processes had the CPUs. Peak RSS is
the bench process's own (VmHWM), with the part already there before GPTQ
started (mapped model, Hessians) shown.
"""
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "kernels"))

KINDS = {"self_attn.q_proj": "qkv", "self_attn.k_proj": "qkv", "self_attn.v_proj": "qkv",
         "self_attn.o_proj": "o", "mlp.gate_proj": "gate_up", "mlp.up_proj": "gate_up",
         "mlp.down_proj": "down"}


def peer(model_dir, hdir, act_order, reps):
    """numpy GPTQ on layer 0's projections; runs in a child whose
    OPENBLAS_NUM_THREADS was set before numpy loaded."""
    from safetensors.numpy import load_file
    from test_gptq_numpy import gptq
    weights = load_file(os.path.join(model_dir, "model.safetensors"))
    out = {}
    for proj, kind in KINDS.items():
        W = weights["model.layers.0.%s.weight" % proj].astype(np.float32)
        n = {"qkv": 512, "o": 512, "gate_up": 512, "down": 1536}[kind]
        H = np.fromfile(os.path.join(hdir, "h_%s.f32" % kind), "<f4").reshape(n, n)
        best = 1e30
        for _ in range(reps):
            t0 = time.perf_counter()
            gptq(W, H, act_order=act_order)
            best = min(best, time.perf_counter() - t0)
        out["model.layers.0.%s.weight" % proj] = best
    print(json.dumps(out))


def run_bench(binary, model_dir, hdir, threads, act_order, reps):
    best = None
    for _ in range(reps):
        out = subprocess.run([binary, model_dir, hdir, str(threads), str(int(act_order))],
                             check=True, capture_output=True, text=True).stdout
        rows = [json.loads(line) for line in out.splitlines() if line.strip()]
        per = {r["tensor"]: r["seconds"] for r in rows if r["what"] == "layer"}
        cpu = {r["tensor"]: r["cpu_seconds"] for r in rows if r["what"] == "layer"}
        total = [r for r in rows if r["what"] == "total"][0]
        if best is None:
            best = (per, total, cpu)
        else:
            best[0].update({k: min(v, best[0][k]) for k, v in per.items()})
            best[2].update({k: min(v, best[2][k]) for k, v in cpu.items()})
            best[1]["peak_rss_kb"] = max(best[1]["peak_rss_kb"], total["peak_rss_kb"])
    best[1]["seconds"] = sum(best[0].values())
    best[1]["cpu_seconds"] = sum(best[2].values())
    return best[0], best[1]


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--peer":
        peer(sys.argv[2], sys.argv[3], sys.argv[4] == "1", int(sys.argv[5]))
        return
    binary, shared = sys.argv[1], sys.argv[2]
    reps = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    model_dir = os.path.join(shared, "data", "models", "llama-docs-27m")
    text = os.path.join(shared, "data", "text", "kernel-docs-heldout", "heldout.txt")
    from test_gptq_numpy import hessian, layer_inputs
    acts = layer_inputs(model_dir, text)
    ncpu = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as hdir:
        for kind in ("qkv", "o", "gate_up", "down"):
            hessian(acts[kind]).astype("<f4").tofile(os.path.join(hdir, "h_%s.f32" % kind))
        print("bench/gptq: llama-docs-27m, 42 projections, 4-bit g128, H from %d tokens; best of %d; "
              "%d CPUs\n" % (len(acts["qkv"]), reps, ncpu))
        print("| act_order | threads | s / layer | s / M params | CPU s / layer | peak RSS MB (before GPTQ) "
              "| layer 0: qpipe s | numpy s | x numpy |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        shapes = {}
        for act_order in (False, True):
            for threads in (1, 2):
                per, total = run_bench(binary, model_dir, hdir, threads, act_order, reps)
                env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
                numpy_per = json.loads(subprocess.run(
                    [sys.executable, os.path.abspath(__file__), "--peer", model_dir, hdir,
                     str(int(act_order)), str(reps)], check=True, capture_output=True, text=True,
                    env=env).stdout)
                ours0 = sum(per[k] for k in numpy_per)
                theirs0 = sum(numpy_per.values())
                print("| %s | %d | %.4f | %.4f | %.4f | %.1f (%.1f) | %.3f | %.3f | %.1f |" % (
                    "yes" if act_order else "no", threads, total["seconds"] / total["layers"],
                    total["seconds"] / (total["params"] / 1e6), total["cpu_seconds"] / total["layers"],
                    total["peak_rss_kb"] / 1024,
                    total["rss_before_kb"] / 1024, ours0, theirs0, theirs0 / ours0))
                sys.stdout.flush()
                for k, v in per.items():
                    proj = k.split(".", 3)[3].rsplit(".", 1)[0]
                    shapes.setdefault((proj, act_order, threads), []).append(v)
        print("\nper projection, mean seconds over the 6 layers:\n")
        print("| projection | act_order | 1 thread | 2 threads | speedup |")
        print("|---|---|---:|---:|---:|")
        for act_order in (False, True):
            for proj in KINDS:
                a = np.mean(shapes[(proj, act_order, 1)])
                b = np.mean(shapes[(proj, act_order, 2)])
                print("| %s | %s | %.4f | %.4f | %.2f |" % (proj, "yes" if act_order else "no", a, b, a / b))


if __name__ == "__main__":
    main()
