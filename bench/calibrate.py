"""bench/calibrate: calibration tokens/s on llama-docs-27m (f32 GGUF,
windows of 512 tokens of WikiText), with and without the Hessians, as
ratios against the plain forward pass measured in the same run (evaluate's
prefill_tok_s: one batch of 512 tokens, the same shape as a window). The
ratio is the cost of gathering the statistics.

usage: python3 bench/calibrate.py QPIPE SHARED_DIR [SAMPLES]
"""
import json
import os
import subprocess
import sys
import tempfile

RECIPE = """\
stages:
  model: {{ uses: model.local, with: {{ path: {model} }} }}
  base: {{ uses: quantize, with: {{ model: model, type: f32 }} }}
  gguf: {{ uses: export.gguf, with: {{ model: base }} }}
  speed: {{ uses: evaluate, with: {{ model: base, gguf: gguf, metrics: [speed], n_ctx: 512, decode_tokens: 1 }} }}
  cal:
    uses: calibrate
    matrix: {{ hessian: [false, true] }}
    with: {{ gguf: gguf, text: {text}, samples: {samples}, seq_len: 512, hessian: "${{matrix.hessian}}" }}
"""


def main():
    qpipe, shared = sys.argv[1], sys.argv[2]
    samples = int(sys.argv[3]) if len(sys.argv) > 3 else 8
    model = os.path.join(shared, "data", "models", "llama-docs-27m")
    text = os.path.join(shared, "data", "text", "wikitext-2-raw-test", "wiki.test.hfrows.lf.raw")
    with tempfile.TemporaryDirectory(prefix="qp-bench-cal-") as tmp:
        recipe = os.path.join(tmp, "r.yaml")
        with open(recipe, "w") as f:
            f.write(RECIPE.format(model=model, text=text, samples=samples))
        cache = os.path.join(tmp, "cache")
        log = os.path.join(tmp, "log.jsonl")
        # -j 1: the stages must not share the cores while they are timed
        subprocess.run([qpipe, "run", recipe, "--cache-dir", cache, "--log-json", log, "-j", "1", "-q"],
                       check=True)
        metrics = {}
        with open(log) as f:
            for e in map(json.loads, f):
                if e.get("event") == "stage" and e["stage"].startswith(("speed", "cal")):
                    with open(os.path.join(cache, "actions", e["key"][:2], e["key"][2:])) as a:
                        metrics[e["stage"]] = json.load(a)["metrics"]
    peer = metrics["speed"]["prefill_tok_s"]
    print("bench/calibrate: llama-docs-27m f32, %d windows of 512 tokens, %d threads"
          % (samples, metrics["speed"]["threads"]))
    print("plain forward pass (evaluate prefill, 512 tokens): %.0f tok/s\n" % peer)
    print("| calibrate | tok/s | x forward pass |")
    print("|---|---:|---:|")
    for h in ("false", "true"):
        m = metrics["cal[hessian=%s]" % h]
        what = "imatrix + per-channel stats" + (" + Hessians" if h == "true" else "")
        print("| %s | %.0f | %.3f |" % (what, m["tokens_per_s"], m["tokens_per_s"] / peer))


if __name__ == "__main__":
    main()
