#!/usr/bin/env python3
"""qpipe's k-quant and ternary blocks against llama.cpp's own quantizer.

    test_llama_quantize.py QP_QUANTIZE_RAW QPIPE SHARED_DIR

gguf-py cannot quantize Q2_K..Q6_K, so the reference for them is llama.cpp
itself, through llama-cpp-python:

1. qpipe exports llama-docs-27m as an F32 llama GGUF (quantize type f32,
   export.gguf), the file llama-quantize would start from.
2. llama_model_quantize turns it into Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, TQ1_0
   and TQ2_0 with params.pure set, so every 2-D tensor gets that type
   (llama.cpp still keeps a tensor at another type when its rows do not
   divide into blocks; only tensors of the requested type are compared,
   and the counts printed).
3. For each such tensor, qp_quantize_raw at every kernel level quantizes
   the F32 rows of the input file; its bytes must equal the tensor's bytes
   in llama.cpp's output, read with gguf.GGUFReader.

llama_model_quantize takes its imatrix only as a C++ map, out of reach of
ctypes, so the importance-weighted path is checked one level down, in
llama.cpp's ggml library that llama-cpp-python ships: quantize_q2_K ..
quantize_q6_K with quant_weights (what llama-quantize --imatrix calls per
tensor) against qp_quantize_raw --imatrix, with a fixed pseudo-random
imatrix, on every tensor of the first layer.

Without llama-cpp-python the test fails: the conformance suite exists to
run it. Exit status 0 pass, 1 fail.
"""
import ctypes
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

try:
    import gguf
    import llama_cpp
    from gguf import GGMLQuantizationType as T
except ImportError as e:
    sys.exit(f"conformance suite needs gguf and llama-cpp-python: {e}")

TYPES = [
    ("q2_K", "LLAMA_FTYPE_MOSTLY_Q2_K", T.Q2_K),
    ("q3_K", "LLAMA_FTYPE_MOSTLY_Q3_K_M", T.Q3_K),
    ("q4_K", "LLAMA_FTYPE_MOSTLY_Q4_K_M", T.Q4_K),
    ("q5_K", "LLAMA_FTYPE_MOSTLY_Q5_K_M", T.Q5_K),
    ("q6_K", "LLAMA_FTYPE_MOSTLY_Q6_K", T.Q6_K),
    ("tq1_0", "LLAMA_FTYPE_MOSTLY_TQ1_0", T.TQ1_0),
    ("tq2_0", "LLAMA_FTYPE_MOSTLY_TQ2_0", T.TQ2_0),
]
IMAT_TYPES = ["q2_K", "q3_K", "q4_K", "q5_K", "q6_K"]
IMAT_TENSORS = ("blk.0.",)

RECIPE = """\
stages:
  model: {{ uses: model.local, with: {{ path: {model} }} }}
  quant: {{ uses: quantize, with: {{ model: model, type: f32 }} }}
  gguf: {{ uses: export.gguf, with: {{ model: quant, name: f32 }} }}
"""


def export_f32(qpipe, shared, tmp):
    recipe = os.path.join(tmp, "f32.yaml")
    log = os.path.join(tmp, "log.jsonl")
    with open(recipe, "w") as f:
        f.write(RECIPE.format(model=os.path.join(shared, "data", "models", "llama-docs-27m")))
    subprocess.run([qpipe, "run", recipe, "--cache-dir", os.path.join(tmp, "cache"), "--log-json", log, "-q"],
                   check=True, capture_output=True)
    with open(log) as f:
        for line in f:
            e = json.loads(line)
            if e.get("event") == "stage" and e.get("stage", "").startswith("gguf"):
                return e["outputs"]["model.gguf"]
    raise SystemExit("qpipe's run log names no model.gguf")


def llama_quantize(src, dst, ftype_name):
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, ftype_name)
    params.pure = True
    params.nthread = os.cpu_count() or 1
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params))
    if rc != 0:
        raise SystemExit(f"llama_model_quantize({ftype_name}) returned {rc}")


def f32_tensors(path):
    out = {}
    for t in gguf.GGUFReader(path).tensors:
        if t.tensor_type == T.F32 and len(t.shape) == 2:
            out[t.name] = np.asarray(t.data, dtype=np.float32).reshape(-1, int(t.shape[0]))
    return out


def ggml_library():
    lib_dir = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
    for name in ("libggml-base.so", "libggml-base.dylib", "libggml.so"):
        path = os.path.join(lib_dir, name)
        if os.path.exists(path):
            lib = ctypes.CDLL(path)
            if hasattr(lib, "quantize_q4_K"):
                return lib
    raise SystemExit(f"no ggml library with quantize_q4_K under {lib_dir}")


def ggml_quantize_imat(lib, type_name, rows, imat, size):
    fn = getattr(lib, "quantize_" + type_name)
    fn.restype = ctypes.c_size_t
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
    src = np.ascontiguousarray(rows, dtype=np.float32)
    w = np.ascontiguousarray(imat, dtype=np.float32)
    out = ctypes.create_string_buffer(rows.shape[0] * rows.shape[1] // 256 * size)
    fn(src.ctypes.data, out, rows.shape[0], rows.shape[1], w.ctypes.data)
    return out.raw


def ours(tool, level, type_name, rows, tmp, imat=None):
    src, dst, wpath = (os.path.join(tmp, n) for n in ("in.f32", "out.bin", "imat.f32"))
    rows.astype(np.float32).tofile(src)
    cmd = [tool, "--kernels", level, "--type", type_name]
    if imat is not None:
        imat.astype(np.float32).tofile(wpath)
        cmd += ["--imatrix", wpath]
    subprocess.run(cmd + [src, str(rows.shape[1]), dst], check=True)
    with open(dst, "rb") as f:
        return f.read()


def describe(got, want, size):
    a = np.frombuffer(got, dtype=np.uint8)
    b = np.frombuffer(want, dtype=np.uint8)
    if a.size != b.size:
        return f"{a.size} bytes, want {b.size}"
    bad = (a != b).reshape(-1, size).any(axis=1)
    first = int(np.flatnonzero(bad)[0])
    return f"{int(bad.sum())} of {bad.size} blocks differ, first block {first}"


# llama.cpp logs every tensor it converts; keep the test's own lines readable
_QUIET = llama_cpp.llama_log_callback(lambda level, text, user: None)


def main():
    llama_cpp.llama_log_set(_QUIET, ctypes.c_void_p())
    if len(sys.argv) != 4:
        print("usage: test_llama_quantize.py QP_QUANTIZE_RAW QPIPE SHARED_DIR", file=sys.stderr)
        return 2
    tool, qpipe, shared = (os.path.abspath(a) for a in sys.argv[1:])
    levels = subprocess.run([tool, "--list-levels"], check=True, capture_output=True, text=True).stdout.split()
    print(f"levels: {' '.join(levels)}; llama-cpp-python {llama_cpp.__version__}")
    start = time.monotonic()
    passed = failed = 0
    with tempfile.TemporaryDirectory(prefix="qp-llama-quant-") as tmp:
        src = export_f32(qpipe, shared, tmp)
        source = f32_tensors(src)
        print(f"f32 source: {len(source)} 2-D tensors from {os.path.basename(src)}")

        for type_name, ftype, qtype in TYPES:
            dst = os.path.join(tmp, f"{type_name}.gguf")
            t0 = time.monotonic()
            llama_quantize(src, dst, ftype)
            t_llama = time.monotonic() - t0
            size = gguf.GGML_QUANT_SIZES[qtype][1]
            compared = other = 0
            for t in gguf.GGUFReader(dst).tensors:
                if t.name not in source:
                    continue
                if t.tensor_type != qtype:
                    other += 1
                    continue
                want = bytes(np.asarray(t.data).reshape(-1).view(np.uint8))
                compared += 1
                for level in levels:
                    got = ours(tool, level, type_name, source[t.name], tmp)
                    if got == want:
                        passed += 1
                    else:
                        failed += 1
                        print(f"FAIL {type_name} {t.name} at {level}: {describe(got, want, size)}")
            os.unlink(dst)
            print(f"{type_name}: {compared} tensors compared with llama_model_quantize "
                  f"({other} left at another type by llama.cpp); llama.cpp took {t_llama:.1f} s")
            if compared == 0:
                failed += 1
                print(f"FAIL {type_name}: llama.cpp wrote no tensor of that type")

        lib = ggml_library()
        rng = np.random.default_rng(6)
        for type_name in IMAT_TYPES:
            size = gguf.GGML_QUANT_SIZES[T[type_name.upper()]][1]
            compared = 0
            for name, rows in sorted(source.items()):
                if not name.startswith(IMAT_TENSORS) or rows.shape[1] % 256:
                    continue
                # squares of activations, as an imatrix holds: spread over
                # decades, with a few zeros
                imat = (rng.standard_normal(rows.shape[1]) ** 2 * 10.0 ** rng.uniform(-2, 2, rows.shape[1]))
                imat[rng.integers(0, rows.shape[1], 3)] = 0.0
                imat = imat.astype(np.float32)
                want = ggml_quantize_imat(lib, type_name, rows, imat, size)
                compared += 1
                for level in levels:
                    got = ours(tool, level, type_name, rows, tmp, imat)
                    if got == want:
                        passed += 1
                    else:
                        failed += 1
                        print(f"FAIL {type_name} imatrix {name} at {level}: {describe(got, want, size)}")
            print(f"{type_name} with imatrix: {compared} tensors compared with ggml's quantize_{type_name}")
    print(f"compared {passed + failed} (tensor, type, level) cases in {time.monotonic() - start:.1f} s")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
