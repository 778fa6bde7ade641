"""bench/eval: qpipe's forward pass against llama.cpp's on the same GGUF
files, at the same thread counts, measured in the same run.

usage: python3 bench/eval.py QPIPE SHARED_DIR [REPS]

llama-docs-27m is exported by qpipe to f16, q8_0 and q4_0 GGUF files and
to Q4_K_M, llama-quantize's mixture of that name (q4_K with q6_K where
llama-quantize puts it: quantize's preset), the k-quant file users run
most (a recipe of model.local -> quantize -> export.gguf); every
measurement on either side reads those same files.

- qpipe: evaluate's `speed` metric, the code a user's recipe runs
  (stages/evaluate/evaluate.c run_speed): `qpipe stage ... eval[type=T]
  -t THREADS` in its own process after `qpipe cache rm` of that result.
  prefill_tok_s: one batch of n_ctx = 512 tokens from an empty KV cache,
  logits for all of them, after one untimed warm-up batch; decode_tok_s:
  64 single-token steps at positions 1 .. 64 after an untimed step at
  position 0.
- llama.cpp: llama-cpp-python's bundled llama.cpp in its own process
  (this file run with --llama), n_ctx 512, n_batch = n_ubatch = 512,
  n_threads = n_threads_batch = THREADS, default KV cache (f16) and no
  flash attention; the same tokens, the same steps: a warm-up batch, the
  cache cleared, the timed batch of 512 tokens with logits for all of
  them; the cache cleared, an untimed step at position 0, then 64 timed
  single-token steps. time.perf_counter around llama_decode.
- peak RSS: each side's process's ru_maxrss (os.wait4), in MB (10^6
  bytes), beside the GGUF file's size. Both map the file, so the pages
  they touch count. The llama.cpp process also holds the Python
  interpreter, numpy and the library; its RSS before the model was loaded
  is printed too.

Tokens: evaluate's stand-ins when no text is given, (i * 7919 + 13) mod
n_vocab with BOS first, reproduced here for llama.cpp.

llama.cpp is the one Python imports: scripts/bootstrap builds it for AVX2
(x86-64-v3) on every x86-64 machine, for the conformance tests; for one
built for this CPU, install it elsewhere (pip --target DIR, CMAKE_ARGS as
bootstrap's without the level) and put DIR first on PYTHONPATH. The last
lines name the build used.

Each figure is the best of REPS (default 3), the two sides taking turns,
so a burst of load on this shared machine hits both alike. Ratios are
qpipe / llama.cpp (> 1: qpipe faster). Nothing is asserted.
"""
import ctypes
import json
import os
import subprocess
import sys
import tempfile
import time

import llama_build  # bench/, beside this file

N_CTX = 512
N_DEC = 64
TYPES = ["f16", "q8_0", "q4_0"]
PRESETS = ["Q4_K_M"]
THREADS = [1, 2]

RECIPE = """\
stages:
  model: {{ uses: model.local, with: {{ path: {model} }} }}
  quant:
    uses: quantize
    matrix: {{ type: [{types}] }}
    with: {{ model: model, type: "${{matrix.type}}" }}
  gguf: {{ uses: export.gguf, with: {{ model: quant }} }}
  eval:
    uses: evaluate
    with: {{ model: quant, gguf: gguf, metrics: [speed, memory], n_ctx: {n_ctx}, decode_tokens: {n_dec} }}
  quant_p:
    uses: quantize
    matrix: {{ preset: [{presets}] }}
    with: {{ model: model, preset: "${{matrix.preset}}" }}
  gguf_p: {{ uses: export.gguf, with: {{ model: quant_p }} }}
  eval_p:
    uses: evaluate
    with: {{ model: quant_p, gguf: gguf_p, metrics: [speed, memory], n_ctx: {n_ctx}, decode_tokens: {n_dec} }}
"""

# a row's stage names: types through quant's matrix, presets through quant_p's
ROWS = [(t, "[type=%s]" % t, "") for t in TYPES] + [(p, "[preset=%s]" % p, "_p") for p in PRESETS]


def tokens(n, n_vocab, bos):
    """evaluate's synth_tokens."""
    t = [(i * 7919 + 13) % n_vocab for i in range(n)]
    if bos >= 0 and n > 0:
        t[0] = bos
    return t


def vm_hwm_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1e6
    return 0.0


def llama_side(path, threads):
    """Runs in its own process: prints llama.cpp's figures as JSON."""
    import llama_cpp
    quiet = llama_cpp.llama_log_callback(lambda level, text, user: None)
    llama_cpp.llama_log_set(quiet, ctypes.c_void_p())
    rss_before = vm_hwm_mb()
    llama_cpp.llama_backend_init()
    mp = llama_cpp.llama_model_default_params()
    t0 = time.perf_counter()
    model = llama_cpp.llama_model_load_from_file(path.encode(), mp)
    if not model:
        raise SystemExit("llama.cpp could not load " + path)
    cp = llama_cpp.llama_context_default_params()
    cp.n_ctx = N_CTX
    cp.n_batch = N_CTX
    cp.n_ubatch = N_CTX
    cp.n_threads = threads
    cp.n_threads_batch = threads
    ctx = llama_cpp.llama_init_from_model(model, cp)
    load_s = time.perf_counter() - t0
    vocab = llama_cpp.llama_model_get_vocab(model)
    n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
    toks = tokens(N_CTX, n_vocab, llama_cpp.llama_vocab_bos(vocab))
    mem = llama_cpp.llama_get_memory(ctx)
    batch = llama_cpp.llama_batch_init(N_CTX, 0, 1)

    def decode(ids, pos0):
        batch.n_tokens = len(ids)
        for i, t in enumerate(ids):
            batch.token[i] = t
            batch.pos[i] = pos0 + i
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = 0
            batch.logits[i] = 1  # logits for every token, as evaluate computes them
        t0 = time.perf_counter()
        rc = llama_cpp.llama_decode(ctx, batch)
        dt = time.perf_counter() - t0
        if rc != 0:
            raise SystemExit("llama_decode returned %d" % rc)
        return dt

    decode(toks, 0)  # warm-up
    llama_cpp.llama_memory_clear(mem, True)
    prefill = decode(toks, 0)
    llama_cpp.llama_memory_clear(mem, True)
    decode(toks[:1], 0)  # warm-up step
    dec = sum(decode(toks[i:i + 1], i) for i in range(1, N_DEC + 1))
    llama_cpp.llama_batch_free(batch)
    llama_cpp.llama_free(ctx)
    llama_cpp.llama_model_free(model)
    print(json.dumps({"prefill_tok_s": N_CTX / prefill, "decode_tok_s": N_DEC / dec, "load_s": load_s,
                      "rss_before_mb": rss_before}))


def measured(cmd):
    """Run cmd in its own process and return (stdout, peak RSS MB) from
    os.wait4, which reports that child's own ru_maxrss."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # read everything first: a full pipe would block the child
    out = p.stdout.read()
    errs = p.stderr.read()
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise SystemExit("%s failed (%d):\n%s" % (" ".join(cmd), p.returncode, errs.decode(errors="replace")))
    return out.decode(), ru.ru_maxrss * 1024 / 1e6


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "--llama":
        llama_side(sys.argv[2], int(sys.argv[3]))
        return
    if len(sys.argv) < 3:
        sys.exit("usage: eval.py QPIPE SHARED_DIR [REPS]")
    qpipe, shared = (os.path.abspath(a) for a in sys.argv[1:3])
    reps = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    model = os.path.join(shared, "data", "models", "llama-docs-27m")
    t_start = time.perf_counter()
    # wall-clock rates on a shared machine: the load says how far to trust them
    load_before = os.getloadavg()[0]
    try:
        import llama_cpp  # noqa: F401
        have_llama = True
    except ImportError:  # the table says so rather than fail the whole bench
        have_llama = False

    with tempfile.TemporaryDirectory(prefix="qp-bench-eval-") as tmp:
        cache, log = os.path.join(tmp, "cache"), os.path.join(tmp, "log.jsonl")
        recipe = os.path.join(tmp, "eval.yaml")
        with open(recipe, "w") as f:
            f.write(RECIPE.format(model=model, types=", ".join(TYPES), presets=", ".join(PRESETS), n_ctx=N_CTX,
                                 n_dec=N_DEC))
        subprocess.run([qpipe, "run", recipe, "--cache-dir", cache, "--log-json", log, "-q", "-t", "2"],
                       check=True, capture_output=True)
        stages = {}
        with open(log) as f:
            for line in f:
                e = json.loads(line)
                if e.get("event") == "stage":
                    stages[e["stage"]] = e
        files = {t: stages["gguf%s%s" % (p, m)]["outputs"]["model.gguf"] for t, m, p in ROWS}
        evals = {t: "eval%s%s" % (p, m) for t, m, p in ROWS}

        def qpipe_side(t, threads):
            key = stages[evals[t]]["key"]
            subprocess.run([qpipe, "cache", "rm", key, "--cache-dir", cache], check=True, capture_output=True)
            _, rss = measured([qpipe, "stage", recipe, evals[t], "--cache-dir", cache, "-q",
                               "-t", str(threads)])
            with open(os.path.join(cache, "actions", key[:2], key[2:])) as f:
                m = json.load(f)["metrics"]
            if m["threads"] != threads:
                raise SystemExit("evaluate ran with %d threads, not %d" % (m["threads"], threads))
            return {"prefill_tok_s": m["prefill_tok_s"], "decode_tok_s": m["decode_tok_s"], "rss_mb": rss,
                    "stage_rss_mb": m["peak_rss_mb"]}

        def llama_run(t, threads):
            out, rss = measured([sys.executable, os.path.abspath(__file__), "--llama", files[t], str(threads)])
            r = json.loads(out)
            r["rss_mb"] = rss
            return r

        rows = []
        for t, _, _ in ROWS:
            for threads in THREADS:
                best = {"qp": {}, "ll": {}}
                for _ in range(reps):
                    sides = [("qp", qpipe_side)] + ([("ll", llama_run)] if have_llama else [])
                    for side, fn in sides:
                        r = fn(t, threads)
                        b = best[side]
                        for k in ("prefill_tok_s", "decode_tok_s"):
                            b[k] = max(b.get(k, 0.0), r[k])
                        for k in ("rss_mb", "stage_rss_mb", "rss_before_mb"):
                            if k in r:
                                b[k] = max(b.get(k, 0.0), r[k])
                rows.append({"type": t, "threads": threads, "size_mb": os.path.getsize(files[t]) / 1e6, **best})

    print("bench/eval: llama-docs-27m, qpipe's GGUF exports; prefill %d tokens, decode %d steps; best of %d; "
          "%d cores, load average %.1f before and %.1f after\n"
          % (N_CTX, N_DEC, reps, os.cpu_count(), load_before, os.getloadavg()[0]))
    print("| type | threads | qpipe prefill tok/s | llama.cpp prefill tok/s | prefill ratio "
          "| qpipe decode tok/s | llama.cpp decode tok/s | decode ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        qp, ll = r["qp"], r["ll"]
        f = lambda k: ("%.0f" % ll[k], "%.2f" % (qp[k] / ll[k])) if ll else ("-", "-")  # noqa: E731
        print("| %s | %d | %.0f | %s | %s | %.0f | %s | %s |" % (
            r["type"], r["threads"], qp["prefill_tok_s"], *f("prefill_tok_s"), qp["decode_tok_s"],
            *f("decode_tok_s")))
    print("\npeak RSS (MB = 10^6 bytes, the largest over the runs) against the GGUF file\n")
    print("| type | threads | file MB | qpipe RSS MB | qpipe RSS / file | llama.cpp RSS MB | llama.cpp RSS / file "
          "| llama.cpp process before loading MB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        qp, ll, size = r["qp"], r["ll"], r["size_mb"]
        print("| %s | %d | %.1f | %.1f | %.2f | %s | %s | %s |" % (
            r["type"], r["threads"], size, qp["rss_mb"], qp["rss_mb"] / size,
            "%.1f" % ll["rss_mb"] if ll else "-", "%.2f" % (ll["rss_mb"] / size) if ll else "-",
            "%.1f" % ll["rss_before_mb"] if ll else "-"))
    if not have_llama:
        print("\nllama-cpp-python is missing: no llama.cpp figures")
    print("\n" + llama_build.describe())
    print("qpipe RSS is the `qpipe stage` process's ru_maxrss (evaluate's own peak_rss_mb agrees); "
          "bench took %.0f s" % (time.perf_counter() - t_start))


if __name__ == "__main__":
    main()
