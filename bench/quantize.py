"""bench/quantize: MB/s of quantizing llama-docs-27m's 2-D weights (f16
source) to q8_0, q4_0, q4_K, q6_K and tq2_0 with qpipe's scalar and AVX2
kernels and with gguf-py's numpy quantizer (for the types it has), as ratios against memcpy of the same source
bytes measured in the same run.

usage: python3 bench/quantize.py BENCH_BINARY SHARED_DIR [REPS]
MB = 10^6 bytes of source tensor data (f16) consumed per second.
"""
import json
import os
import subprocess
import sys
import time

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.quants import quantize
from safetensors.numpy import load_file


def main():
    binary, shared = sys.argv[1], sys.argv[2]
    reps = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    model = os.path.join(shared, "data", "models", "llama-docs-27m")
    out = subprocess.run([binary, model, str(reps)], check=True, capture_output=True, text=True).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.strip()]
    mem = [r for r in rows if r["what"] == "memcpy"][0]
    mem_mbs = mem["bytes"] / mem["seconds"] / 1e6

    weights = [w for w in load_file(os.path.join(model, "model.safetensors")).values()
               if w.ndim == 2 and w.shape[1] % 32 == 0]
    src_bytes = sum(w.nbytes for w in weights)
    for name, gt in (("q8_0", T.Q8_0), ("q4_0", T.Q4_0), ("tq2_0", T.TQ2_0)):
        best = 1e30
        for _ in range(max(1, reps // 2)):
            t0 = time.perf_counter()
            for w in weights:
                # the conversion to f32 is part of the job, as it is for qpipe
                quantize(w.astype(np.float32), gt)
            best = min(best, time.perf_counter() - t0)
        rows.append({"what": "quantize", "level": "gguf-py numpy", "type": name, "threads": 1,
                     "bytes": src_bytes, "seconds": best})

    numpy_mbs = {r["type"]: r["bytes"] / r["seconds"] / 1e6 for r in rows if r.get("level") == "gguf-py numpy"}
    print("bench/quantize: llama-docs-27m, %d 2-D tensors, %.1f MB of f16 source" % (len(weights), src_bytes / 1e6))
    print("memcpy of the same bytes: %.0f MB/s\n" % mem_mbs)
    print("| type | kernels | threads | MB/s | x memcpy | x gguf-py numpy |")
    print("|---|---|---:|---:|---:|---:|")
    for r in rows:
        if r["what"] != "quantize":
            continue
        mbs = r["bytes"] / r["seconds"] / 1e6
        vs_numpy = "%.1f" % (mbs / numpy_mbs[r["type"]]) if r["type"] in numpy_mbs else "-"
        print("| %s | %s | %d | %.0f | %.3f | %s |" % (r["type"], r["level"], r["threads"], mbs,
                                                    mbs / mem_mbs, vs_numpy))


if __name__ == "__main__":
    main()
