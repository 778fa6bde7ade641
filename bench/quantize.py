"""bench/quantize: how fast qpipe quantizes llama-docs-27m, against
llama.cpp's quantizer and memcpy bandwidth measured in the same run.

usage: python3 bench/quantize.py BENCH_BINARY QPIPE SHARED_DIR [REPS]

Two tables. MB is always 10^6 bytes of the model's f16 tensor data
(the safetensors' bytes; the f16 GGUF holds the same tensors), so every
MB/s in a row divides the same work by a different time.

1. Kernels, one thread: each type's quantize_row at each kernel level over
   the 2-D weights (bench_quantize kernels; imatrix rows time the weighted
   quantizers), beside gguf-py's numpy quantizer for the types it has.
   Scalar against avx2 is the gain of the SIMD quantizers.

2. qpipe against llama.cpp at 1 and 2 threads, for Q8_0, Q4_0, Q4_K_M,
   Q6_K and TQ2_0. Both start from f16 and produce every tensor:
   - llama.cpp: llama_model_quantize (llama-cpp-python's bundled
     llama.cpp) from the f16 GGUF qpipe exports to a GGUF in a temporary
     folder, params.nthread = threads; the time is the call's: reading
     (mmap), f16 -> f32, quantizing, writing the file (no fsync).
     Q4_0 is a plain type (params.pure); the others are llama.cpp's
     mixtures, which qpipe's presets reproduce tensor for tensor (the type
     counts of both files are printed).
   - qpipe kernels: the quantize stage's work in memory, every tensor
     through qp_convert_rows at the stage's per-tensor types (read from the
     stage's own tensor_types metric), threads as given (bench_quantize mix;
     the second of two passes, the first having paid the page faults).
   - qpipe run: `qpipe run -t threads` of a recipe holding model.local and
     one quantize stage, with a fresh cache each time: process start,
     hashing the model, reading, quantizing, writing model.gguf into the
     store (temporary file, fsync, rename) and hashing it.
   llama.cpp is the one Python imports: scripts/bootstrap builds it for
   AVX2 (x86-64-v3) on every x86-64 machine, for the conformance tests;
   for one built for this CPU, install it elsewhere (pip --target DIR,
   CMAKE_ARGS as bootstrap's without the level) and put DIR first on
   PYTHONPATH. The last lines name the build used.
   Each is the best of REPS runs (default 5), the three sides taking turns
   run by run. "kernels / memcpy" divides qpipe kernels' rate by that of
   memcpy of the same tensors (all of them, into fresh buffers, one
   thread), timed by bench_quantize mix beside the quantizing: the
   bandwidth a streaming conversion is held against. Nothing is asserted.
"""
import ctypes
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import GGUFReader
from gguf.quants import quantize
from safetensors.numpy import load_file

import llama_build  # bench/, beside this file

try:
    import llama_cpp
except ImportError:  # the table says so rather than fail the whole bench
    llama_cpp = None

# (row name, qpipe quantize parameters, llama.cpp ftype, llama.cpp pure)
PEERS = [
    ("Q8_0", "preset: Q8_0", "LLAMA_FTYPE_MOSTLY_Q8_0", False),
    ("Q4_0", "type: q4_0", "LLAMA_FTYPE_MOSTLY_Q4_0", True),
    ("Q4_K_M", "preset: Q4_K_M", "LLAMA_FTYPE_MOSTLY_Q4_K_M", False),
    ("Q6_K", "preset: Q6_K", "LLAMA_FTYPE_MOSTLY_Q6_K", False),
    ("TQ2_0", "preset: TQ2_0", "LLAMA_FTYPE_MOSTLY_TQ2_0", False),
]
THREADS = [1, 2]
KERNELS_MB = 18  # the kernels table's sample of weights (bench_quantize kernels)

F16_RECIPE = """\
stages:
  model: {{ uses: model.local, with: {{ path: {model} }} }}
  f16: {{ uses: quantize, with: {{ model: model, type: f16 }} }}
  gguf: {{ uses: export.gguf, with: {{ model: f16, name: f16 }} }}
"""

QUANT_RECIPE = """\
stages:
  model: {{ uses: model.local, with: {{ path: {model} }} }}
  quant: {{ uses: quantize, with: {{ model: model, {params} }} }}
"""


def metrics(cache, event):
    """A stage's metrics, from its action record in the store."""
    key = event["key"]
    with open(os.path.join(cache, "actions", key[:2], key[2:])) as f:
        return json.load(f)["metrics"]


def qpipe_run(qpipe, recipe, cache, log, threads):
    """Run recipe with a fresh cache; (seconds, stage events by name)."""
    shutil.rmtree(cache, ignore_errors=True)
    if os.path.exists(log):
        os.unlink(log)
    t0 = time.perf_counter()
    subprocess.run([qpipe, "run", recipe, "--cache-dir", cache, "--log-json", log, "-q", "-t", str(threads)],
                   check=True, capture_output=True)
    dt = time.perf_counter() - t0
    stages = {}
    with open(log) as f:
        for line in f:
            e = json.loads(line)
            if e.get("event") == "stage":
                stages[e["stage"]] = e
    return dt, stages


_QUIET = llama_cpp.llama_log_callback(lambda level, text, user: None) if llama_cpp else None


def llama_quantize(src, dst, ftype, pure, threads):
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, ftype)
    params.pure = pure
    params.nthread = threads
    t0 = time.perf_counter()
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params))
    dt = time.perf_counter() - t0
    if rc != 0:
        raise SystemExit(f"llama_model_quantize({ftype}) returned {rc}")
    return dt


def type_counts(names):
    counts = {}
    for n in names:
        counts[n] = counts.get(n, 0) + 1
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


def kernels_table(binary, model, reps, mb):
    out = subprocess.run([binary, "kernels", model, str(reps), str(KERNELS_MB)], check=True, capture_output=True,
                         text=True).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.strip()]
    mem = [r for r in rows if r["what"] == "memcpy"][0]
    mem_mbs = mb(mem)

    weights = [w for w in load_file(os.path.join(model, "model.safetensors")).values()
               if w.ndim == 2 and w.shape[1] % 256 == 0]
    src_bytes = sum(w.nbytes for w in weights)  # gguf-py's rate over all of them
    numpy_mbs = {}
    for name, gt in (("q8_0", T.Q8_0), ("q4_0", T.Q4_0), ("tq2_0", T.TQ2_0)):
        t0 = time.perf_counter()
        for w in weights:
            # the conversion to f32 is part of the job, as it is for qpipe
            quantize(w.astype(np.float32), gt)
        numpy_mbs[name] = src_bytes / (time.perf_counter() - t0) / 1e6

    scalar = {(r["what"], r["type"]): mb(r) for r in rows if r.get("level") == "scalar"}
    print("## Kernels, 1 thread: a sample of %.1f MB of the f16 weights; memcpy %.0f MB/s\n"
          % (mem["bytes"] / 1e6, mem_mbs))
    print("| type | kernels | MB/s | x scalar | x memcpy | x gguf-py numpy |")
    print("|---|---|---:|---:|---:|---:|")
    for r in rows:
        if r["what"] not in ("quantize", "quantize_imat"):
            continue
        name = r["type"] + (" imatrix" if r["what"] == "quantize_imat" else "")
        vs_numpy = "-"
        if r["what"] == "quantize" and r["type"] in numpy_mbs:
            vs_numpy = "%.1f" % (mb(r) / numpy_mbs[r["type"]])
        vs_scalar = mb(r) / scalar[(r["what"], r["type"])]
        print("| %s | %s | %.0f | %.1f | %.3f | %s |" % (name, r["level"], mb(r), vs_scalar, mb(r) / mem_mbs, vs_numpy))
    for name, v in numpy_mbs.items():
        print("| %s | gguf-py numpy | %.0f | - | %.3f | 1.0 |" % (name, v, v / mem_mbs))
    print()
    return mem_mbs


def main():
    if len(sys.argv) < 4:
        sys.exit("usage: quantize.py BENCH_BINARY QPIPE SHARED_DIR [REPS]")
    binary, qpipe, shared = (os.path.abspath(a) for a in sys.argv[1:4])
    reps = int(sys.argv[4]) if len(sys.argv) > 4 else 5
    model = os.path.join(shared, "data", "models", "llama-docs-27m")
    mb = lambda r: r["bytes"] / r["seconds"] / 1e6  # noqa: E731
    t_start = time.perf_counter()
    print("bench/quantize: llama-docs-27m; MB = 10^6 bytes of f16 tensor data, best of %d\n" % reps)

    kernels_table(binary, model, reps, mb)

    with tempfile.TemporaryDirectory(prefix="qp-bench-quantize-") as tmp:
        cache, log = os.path.join(tmp, "cache"), os.path.join(tmp, "log.jsonl")
        f16_recipe = os.path.join(tmp, "f16.yaml")
        with open(f16_recipe, "w") as f:
            f.write(F16_RECIPE.format(model=model))
        f16_cache = os.path.join(tmp, "f16cache")
        _, st = qpipe_run(qpipe, f16_recipe, f16_cache, log, 2)
        f16_gguf = st["gguf"]["outputs"]["model.gguf"]
        if llama_cpp:
            llama_cpp.llama_log_set(_QUIET, ctypes.c_void_p())

        results = []
        for name, params, ftype, pure in PEERS:
            recipe = os.path.join(tmp, name + ".yaml")
            with open(recipe, "w") as f:
                f.write(QUANT_RECIPE.format(model=model, params=params))
            for threads in THREADS:
                # one repetition of each side after the other, so a burst of
                # load on this shared machine hits both alike
                best = {"run": 1e30, "kernels": 1e30, "llama": 1e30, "memcpy": 1e30}
                mix = os.path.join(tmp, "mix.txt")
                dst = os.path.join(tmp, name + ".gguf")
                tensor_types, theirs = {}, ""
                for rep in range(reps):
                    run_s, st = qpipe_run(qpipe, recipe, cache, log, threads)
                    best["run"] = min(best["run"], run_s)
                    if rep == 0:
                        tensor_types = metrics(cache, st["quant"])["tensor_types"]
                        with open(mix, "w") as f:
                            f.writelines(f"{k} {v}\n" for k, v in tensor_types.items())
                    # 2 passes: the first pays the page faults of the mapping
                    out = subprocess.run([binary, "mix", model, mix, str(threads), "2"], check=True,
                                         capture_output=True, text=True).stdout
                    k = json.loads(out)
                    best["kernels"] = min(best["kernels"], k["seconds"])
                    best["memcpy"] = min(best["memcpy"], k["memcpy_seconds"])
                    if llama_cpp:
                        best["llama"] = min(best["llama"], llama_quantize(f16_gguf, dst, ftype, pure, threads))
                        if rep == 0:
                            theirs = type_counts(t.tensor_type.name.lower().replace("_k", "_K")
                                                 for t in GGUFReader(dst).tensors)
                        os.unlink(dst)
                mbs = lambda sec: k["bytes"] / sec / 1e6  # noqa: E731
                row = {"type": name, "threads": threads, "kernels": mbs(best["kernels"]), "run": mbs(best["run"]),
                       "ours": type_counts(tensor_types.values()),
                       "llama": mbs(best["llama"]) if llama_cpp else None, "theirs": theirs,
                       "memcpy": mbs(best["memcpy"])}
                results.append(row)

    print("## qpipe against llama.cpp's quantizer (llama_model_quantize), f16 in, every tensor out\n")
    print("| type | threads | qpipe kernels MB/s | qpipe run MB/s | llama.cpp MB/s "
          "| kernels / llama.cpp | run / llama.cpp | kernels / memcpy |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        ll = r["llama"]
        print("| %s | %d | %.0f | %.0f | %s | %s | %s | %.3f |" % (
            r["type"], r["threads"], r["kernels"], r["run"], "%.0f" % ll if ll else "-",
            "%.1f" % (r["kernels"] / ll) if ll else "-", "%.1f" % (r["run"] / ll) if ll else "-",
            r["kernels"] / r["memcpy"]))
    print("\ntensor types (qpipe | llama.cpp):")
    for r in results:
        if r["threads"] == THREADS[0]:
            print("  %s: %s | %s" % (r["type"], r["ours"], r["theirs"] or "llama-cpp-python missing"))
    print("\nmemcpy of every tensor (one thread, beside the kernels' run): %s MB/s"
          % ", ".join("%.0f" % r["memcpy"] for r in results))
    print(llama_build.describe())
    print("bench took %.0f s" % (time.perf_counter() - t_start))


if __name__ == "__main__":
    main()
