"""evaluate's kld, speed and memory metrics end to end on stories260K: a
recipe exports f32 and q4_0 GGUF files and a separate f32 base export
(no matrix coordinate, so it pairs with every instance) and evaluates
them with metrics [ppl, kld, speed, memory]. The f32 file against the
f32 base has KLD 0 and 100% same top token; q4_0's KLD statistics equal
an independent computation from the numpy reference forward pass
(tests/model/llama_ref.py): on the safetensors weights for the base, on
the q4_0 weights dequantized by the gguf package, with activations
rounded as llama.cpp's CPU dot products round them, for the quantized
model. (llama-cpp-python's logits were tried and are not close enough:
its f16 KV cache alone moves stories260K's logits by 2e-3, q4_0's by 2%.)
Speed and memory metrics are present and positive.

The same evaluations reading the base from an evaluate.base stage (its
distributions stored once, model/logits_file.h) give the live path's
statistics within the file's rounding, and an evaluate.base made on other
chunks or another text is refused with a message saying which."""
import json
import os
import sys
import unittest

import gguf
import numpy as np
import sentencepiece as spm

import qptest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "model"))
from llama_ref import LlamaRef  # noqa: E402

# ten chunks (630 scored tokens): with three, which blocks' activation
# rounding flips (below) moved rms_dp by 0.2 to 0.4% from one dot-product
# arithmetic to another; with ten both stay within 0.15%
N_CTX, CHUNKS = 128, 10

RECIPE = """\
stages:
  model: {{ uses: model.local, with: {{ path: {model} }} }}
  quant:
    uses: quantize
    matrix: {{ type: [f32, q4_0] }}
    with: {{ model: model, type: "${{matrix.type}}" }}
  gguf: {{ uses: export.gguf, with: {{ model: quant }} }}
  base_q: {{ uses: quantize, with: {{ model: model, type: f32 }} }}
  base_gguf: {{ uses: export.gguf, with: {{ model: base_q }} }}
  eval:
    uses: evaluate
    with: {{ model: quant, gguf: gguf, base: base_gguf, metrics: [size, ppl, kld, speed, memory],
            text: {text}, n_ctx: {n_ctx}, chunks: {chunks}, decode_tokens: 16 }}
"""


def log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def percentile(v, f):
    # llama.cpp's: linear between sorted values at f * (n - 1)
    v = np.sort(v)
    p = f * (len(v) - 1)
    i = int(p)
    p -= i
    return (1 - p) * v[i] + p * v[min(i + 1, len(v) - 1)]


def q8_0_activations(x):
    """x rounded as llama.cpp's quantize_row_q8_0 rounds a dot product's
    activations: blocks of 32, d = amax / 127 (stored as fp16), q =
    roundf(x * (1 / d)), in float32 arithmetic as the C code does."""
    b = x.astype(np.float32).reshape(x.shape[0], -1, 32)
    d = np.abs(b).max(-1, keepdims=True) / np.float32(127)
    inv = np.where(d > 0, np.float32(1) / np.where(d > 0, d, np.float32(1)), np.float32(0)).astype(np.float32)
    v = b * inv
    q = np.sign(v) * np.floor(np.abs(v) + np.float32(0.5))
    return (q * d.astype(np.float16).astype(np.float64)).reshape(x.shape)


ACTIVATIONS = {
    gguf.GGMLQuantizationType.Q4_0: q8_0_activations,
    gguf.GGMLQuantizationType.Q8_0: q8_0_activations,
    gguf.GGMLQuantizationType.F16: lambda x: x.astype(np.float16).astype(np.float64),
    gguf.GGMLQuantizationType.F32: lambda x: x.astype(np.float32).astype(np.float64),
}


class QuantWeight:
    """A dequantized [out, in] weight that LlamaRef's `x @ w.T` multiplies
    the way llama.cpp's CPU backend does: the activations rounded to the
    weight type's dot-product type first."""
    __array_ufunc__ = None  # numpy defers x @ self to __rmatmul__

    def __init__(self, w, act):
        self.w, self.act = w, act

    @property
    def T(self):
        return self

    def __getitem__(self, i):  # embedding rows
        return self.w[i]

    def __rmatmul__(self, x):
        return self.act(x) @ self.w.T


def quantized_ref(model_dir, quant_gguf):
    """LlamaRef with the weights of the quantize stage's model.gguf (HF
    names and row order), dequantized by the gguf package."""
    ref = LlamaRef(model_dir)
    for t in gguf.GGUFReader(quant_gguf).tensors:
        w = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float64)
        if len(t.shape) >= 2:
            ref.w[t.name] = QuantWeight(w.reshape(-1, int(t.shape[0])), ACTIVATIONS[t.tensor_type])
        else:
            ref.w[t.name] = w.reshape(-1)
    return ref


def reference_kld(model_dir, quant_gguf, text):
    sp = spm.SentencePieceProcessor(model_file=os.path.join(model_dir, "tokenizer.model"))
    toks = [sp.bos_id()] + sp.encode(text[:200000])
    base, quant = LlamaRef(model_dir), quantized_ref(model_dir, quant_gguf)
    kld, dp, same = [], [], 0
    for c in range(CHUNKS):
        chunk = toks[c * N_CTX:(c + 1) * N_CTX]
        chunk[0] = sp.bos_id()
        lp = log_softmax(base.logits(np.array(chunk)))
        lq = log_softmax(quant.logits(np.array(chunk)))
        for j in range(N_CTX // 2, N_CTX - 1):
            p = np.exp(lp[j])
            kld.append(float((p * (lp[j] - lq[j])).sum()))
            t = chunk[j + 1]
            dp.append(np.exp(lq[j][t]) - p[t])
            same += int(lp[j].argmax() == lq[j].argmax())
    kld, dp = np.array(kld), np.array(dp)
    return {"kld": kld.mean(), "kld_median": percentile(kld, 0.5), "kld_p99": percentile(kld, 0.99),
            "rms_dp": 100 * np.sqrt((dp * dp).mean()), "top1_pct": 100.0 * same / len(kld), "n": len(kld)}


class Kld(unittest.TestCase):
    def setUp(self):
        self.w = qptest.Workdir()
        self.model = qptest.model_dir("stories260K")
        self.text = os.path.join(qptest.SHARED, "data", "text", "tinystories", "tinystories_validation_head.txt")

    def tearDown(self):
        self.w.cleanup()

    def action(self, key):
        with open(os.path.join(self.w.cache, "actions", key[:2], key[2:])) as f:
            return json.load(f)

    def test_kld_speed_memory(self):
        r = self.w.write("r.yaml", RECIPE.format(model=self.model, text=self.text, n_ctx=N_CTX, chunks=CHUNKS))
        _, ev = self.w.run(r)
        st = qptest.stage_events(ev)
        f32, q4 = (self.action(st["eval[type=%s]" % t]["key"])["metrics"] for t in ("f32", "q4_0"))
        # the f32 export against the f32 base: identical logits
        for k in ("kld", "kld_median", "kld_p99", "rms_dp"):
            self.assertEqual(f32[k], 0.0, k)
        self.assertEqual(f32["top1_pct"], 100.0)
        self.assertEqual(f32["base"], "base_gguf")
        self.assertEqual(q4["tokens_scored"], CHUNKS * (N_CTX // 2 - 1))
        # q4_0 against the independent computation
        q4_path = st["quant[type=q4_0]"]["outputs"]["model.gguf"]
        with open(self.text, encoding="utf-8") as f:
            want = reference_kld(self.model, q4_path, f.read())
        self.assertEqual(want["n"], q4["tokens_scored"])
        self.assertGreater(q4["kld"], 0.01)
        # Rounding activations to q8_0 is discontinuous: the ~1e-7
        # differences between float32 C and float64 numpy flip a rounding
        # in a few blocks, which moves a few tokens' logits by ~0.1. The
        # mean statistics absorb that to about 1e-3 (measured on 10
        # chunks: kld 0.110554 vs 0.110540, rms_dp 12.196 vs 12.189); the
        # median and 99th percentile of 630 values and the top-1 count
        # move more.
        for k, tol in (("kld", 3e-3), ("rms_dp", 3e-3), ("kld_median", 3e-2), ("kld_p99", 6e-2)):
            self.assertLess(abs(q4[k] / want[k] - 1), tol, (k, q4[k], want[k]))
        self.assertLess(abs(q4["top1_pct"] - want["top1_pct"]), 1.5, (q4["top1_pct"], want["top1_pct"]))
        self.assertLess(q4["top1_pct"], 100.0)
        # speed and memory
        for m in (f32, q4):
            for k in ("prefill_tok_s", "decode_tok_s", "load_s", "peak_rss_mb"):
                self.assertGreater(m[k], 0, k)
            self.assertGreaterEqual(m["threads"], 1)
            self.assertEqual(m["prefill_tokens"], N_CTX)
            self.assertEqual(m["decode_tokens"], 16)

    def test_kld_without_base_names_the_parameter(self):
        r = self.w.write("r.yaml", RECIPE.format(model=self.model, text=self.text, n_ctx=N_CTX, chunks=CHUNKS)
                         .replace("base: base_gguf, ", ""))
        p, _ = self.w.run(r, check=1)
        self.assertIn("metric 'kld' needs parameter 'base' (the evaluate.base or export.gguf stage of the "
                      "unquantized model)",
                      p.stderr)


STORED = """\
stages:
  model: {{ uses: model.local, with: {{ path: {model} }} }}
  quant:
    uses: quantize
    matrix: {{ type: [f32, q4_0] }}
    with: {{ model: model, type: "${{matrix.type}}" }}
  gguf: {{ uses: export.gguf, with: {{ model: quant }} }}
  base_q: {{ uses: quantize, with: {{ model: model, type: f32 }} }}
  base_gguf: {{ uses: export.gguf, with: {{ model: base_q }} }}
  base: {{ uses: evaluate.base, with: {{ gguf: base_gguf, text: {base_text}, n_ctx: {n_ctx}, chunks: {base_chunks} }} }}
  eval:
    uses: evaluate
    with: {{ model: quant, gguf: gguf, base: base, metrics: [ppl, kld], text: {text}, n_ctx: {n_ctx}, chunks: {chunks} }}
  live:
    uses: evaluate
    with: {{ model: quant, gguf: gguf, base: base_gguf, metrics: [ppl, kld], text: {text}, n_ctx: {n_ctx},
            chunks: {chunks} }}
"""


class StoredBase(unittest.TestCase):
    def setUp(self):
        self.w = qptest.Workdir()
        self.model = qptest.model_dir("stories260K")
        self.text = os.path.join(qptest.SHARED, "data", "text", "tinystories", "tinystories_validation_head.txt")

    def tearDown(self):
        self.w.cleanup()

    def recipe(self, **kw):
        args = dict(model=self.model, text=self.text, base_text=self.text, n_ctx=N_CTX, chunks=CHUNKS,
                    base_chunks=CHUNKS)
        args.update(kw)
        return self.w.write("r.yaml", STORED.format(**args))

    def metrics(self, st, name):
        key = st[name]["key"]
        with open(os.path.join(self.w.cache, "actions", key[:2], key[2:])) as f:
            return json.load(f)["metrics"]

    def test_stored_base_gives_the_live_statistics(self):
        _, ev = self.w.run(self.recipe())
        st = qptest.stage_events(ev)
        base = self.metrics(st, "base")
        self.assertEqual(base["tokens_scored"], CHUNKS * (N_CTX // 2 - 1))
        self.assertGreater(base["file_bytes"], 0)
        self.assertEqual(os.path.getsize(st["base"]["outputs"]["base_logits.qpl"]), base["file_bytes"])
        for t in ("f32", "q4_0"):
            s, l = self.metrics(st, "eval[type=%s]" % t), self.metrics(st, "live[type=%s]" % t)
            self.assertEqual(l["base_logits"], "live")
            self.assertTrue(s["base_logits"].startswith("base_gguf (key "), s["base_logits"])
            self.assertEqual(s["tokens_scored"], l["tokens_scored"])
            self.assertEqual(s["ppl"], l["ppl"])
            self.assertEqual(s["top1_pct"], l["top1_pct"])
            self.assertLess(abs(s["rms_dp"] - l["rms_dp"]), 1e-9 + 1e-9 * l["rms_dp"])
            if t == "f32":
                # the base itself: 0 up to the file's float rounding
                for k in ("kld", "kld_p99", "kld_max"):
                    self.assertLess(abs(s[k]), 1e-9, (k, s[k]))
                continue
            # the header's bound: 1.2e-4 of sum p|r| per token, of no sign
            for k in ("kld", "kld_median", "kld_p99"):
                self.assertLess(abs(s[k] / l[k] - 1), 1e-3, (k, s[k], l[k]))

    def test_stored_base_of_other_chunks_or_text_is_refused(self):
        p, _ = self.w.run(self.recipe(base_chunks=CHUNKS - 1), check=1)
        self.assertIn("kld: base 'base' holds %d chunks of n_ctx %d, this evaluate scores %d of n_ctx %d "
                      "(give both the same text, n_ctx and chunks)" % (CHUNKS - 1, N_CTX, CHUNKS, N_CTX), p.stderr)
        other = os.path.join(qptest.SHARED, "data", "text", "wikitext-2-raw-test", "wiki.test.hfrows.lf.raw")
        p, _ = self.w.run(self.recipe(base_text=other), check=1)
        self.assertRegex(p.stderr, r"kld: base 'base' was computed on other tokens: chunk 0 position \d+ is token "
                                   r"\d+ there, \d+ here \(text or tokenizer differ; its text: "
                                   r"wiki.test.hfrows.lf.raw \(\d+ bytes, xxh128 [0-9a-f]{32}\)\)")


if __name__ == "__main__":
    qptest.main()
