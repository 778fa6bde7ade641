"""bench/hash: input hashing GB/s against memcpy bandwidth of the same
bytes (page cache warm), and what the stat cache saves: bytes read by
`qpipe plan` on llama-docs-27m, first run (hashes the model) against a
second (stat cache hit), from /proc/self/io's rchar in qpipe's run log.

usage: python3 bench/hash.py BENCH_HASH QPIPE SHARED_DIR
"""
import json
import os
import subprocess
import sys
import tempfile


def main():
    bench, qpipe, shared = sys.argv[1:4]
    model = os.path.join(shared, "data", "models", "llama-docs-27m")
    out = subprocess.run([bench, os.path.join(model, "model.safetensors"), "10"], check=True,
                         capture_output=True, text=True).stdout
    r = json.loads(out)
    gbh, gbm = r["bytes"] / r["hash_s"] / 1e9, r["bytes"] / r["memcpy_s"] / 1e9
    print("bench/hash: %.1f MB file, XXH3-128 %.2f GB/s, memcpy %.2f GB/s: hashing at %.2fx memcpy"
          % (r["bytes"] / 1e6, gbh, gbm, gbh / gbm))
    with tempfile.TemporaryDirectory(prefix="qpipe-hash-") as d:
        recipe = os.path.join(d, "r.yaml")
        with open(recipe, "w") as f:
            f.write("stages:\n  m: { uses: model.local, with: { path: %s } }\n" % model)
        reads = []
        for i in range(2):
            log = os.path.join(d, "log%d" % i)
            subprocess.run([qpipe, "plan", recipe, "--cache-dir", os.path.join(d, "c"), "--log-json", log],
                           check=True, stdout=subprocess.DEVNULL)
            with open(log) as f:
                ev = [json.loads(x) for x in f if '"io"' in x][0]
            reads.append(ev)
        print("qpipe plan, first run: hashed %d files, %.1f MB; second run: hashed %d files, "
              "%.1f MB (stat cache); read(2) bytes of the second run: %.3f MB"
              % (reads[0]["inputs_hashed"], reads[0]["bytes_hashed"] / 1e6, reads[1]["inputs_hashed"],
                 reads[1]["bytes_hashed"] / 1e6, reads[1]["rchar"] / 1e6))


if __name__ == "__main__":
    main()
