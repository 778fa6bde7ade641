"""calibrate's outputs against an independent numpy computation.

qpipe exports a model as f32 GGUF and runs calibrate on it; this test
draws the same windows itself (sentencepiece tokens with BOS, splitmix64
offsets as calibrate's header specifies them, first token replaced by
BOS), runs them through tests/model/llama_ref.py (float64, Hugging Face
layout) with a tap on every weight's input, and sums x, x^2, |x|, max |x|
and X^T X itself. Then:

- imatrix.gguf, read with gguf-py's GGUFReader: general.type, the
  imatrix.* keys, one in_sum2 / counts / in_sum per weight under llama.cpp
  names, in_sum2 equal to the numpy sums within 1e-4 relative;
- stats.safetensors, read with the safetensors package: the Hessian of
  each distinct input (q_proj for q/k/v, gate_proj for gate/up), mean and
  max |x|, the .input / .tokens metadata and the sample offsets;
- windows.safetensors: the token ids of the windows, BOS first, I32.

Cases: stories260K (3 windows of 64 tokens of TinyStories, tied output
so process_output collects nothing, as in llama.cpp) and llama-docs-27m
(2 windows of 64 tokens of WikiText, process_output on: output.weight).

    python3 test_calibrate.py QPIPE
"""
import json
import os
import subprocess
import sys
import tempfile
import unittest

import gguf
import numpy as np
import sentencepiece as spm
from safetensors import safe_open

from llama_ref import LlamaRef

QPIPE = None
SHARED = os.environ.get("QP_SHARED_DIR", "../shared")

RECIPE = """\
stages:
  model: {{ uses: model.local, with: {{ path: {model} }} }}
  base: {{ uses: quantize, with: {{ model: model, type: f32 }} }}
  gguf: {{ uses: export.gguf, with: {{ model: base }} }}
  cal:
    uses: calibrate
    with: {{ gguf: gguf, text: {text}, samples: {samples}, seq_len: {seq_len}, seed: {seed},
            process_output: {output} }}
"""

TO_GGUF = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
           "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
           "mlp.down_proj": "ffn_down"}
OWNER = {"self_attn.k_proj": "self_attn.q_proj", "self_attn.v_proj": "self_attn.q_proj",
         "mlp.up_proj": "mlp.gate_proj"}


def gguf_name(hf):
    if hf == "lm_head.weight":
        return "output.weight"
    parts = hf.split(".")  # model.layers.N.<a>.<b>.weight
    return "blk.%s.%s.weight" % (parts[2], TO_GGUF[parts[3] + "." + parts[4]])


def owner_of(hf):
    parts = hf.split(".")
    if hf == "lm_head.weight":
        return hf
    mod = parts[3] + "." + parts[4]
    return ".".join(parts[:3] + OWNER.get(mod, mod).split(".") + ["weight"])


def splitmix64_offsets(seed, count, modulus):
    mask = (1 << 64) - 1
    state, out = seed, []
    for _ in range(count):
        state = (state + 0x9E3779B97F4A7C15) & mask
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        z ^= z >> 31
        out.append(z % modulus)
    return out


class Sums:
    """What calibrate sums, per Hugging Face weight, in float64."""

    def __init__(self):
        self.s = {}

    def tap(self, name, x):
        if name == "model.embed_tokens.weight":
            return  # a tied output: llama-imatrix collects only output.weight
        e = self.s.setdefault(name, {"n": 0, "sum": 0.0, "sum2": 0.0, "abs": 0.0, "max": 0.0, "h": 0.0})
        e["n"] += x.shape[0]
        e["sum"] = e["sum"] + x.sum(0)
        e["sum2"] = e["sum2"] + (x * x).sum(0)
        e["abs"] = e["abs"] + np.abs(x).sum(0)
        e["max"] = np.maximum(e["max"], np.abs(x).max(0))
        e["h"] = e["h"] + x.T @ x


class Calibrate(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="qp-calib-")

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def run_case(self, model, text, samples, seq_len, seed, output):
        d = os.path.join(SHARED, "data", "models", model)
        recipe = os.path.join(self.tmp.name, model + ".yaml")
        log = os.path.join(self.tmp.name, model + ".jsonl")
        with open(recipe, "w") as f:
            f.write(RECIPE.format(model=d, text=text, samples=samples, seq_len=seq_len, seed=seed,
                                  output="true" if output else "false"))
        p = subprocess.run([QPIPE, "run", recipe, "--cache-dir", os.path.join(self.tmp.name, "cache"),
                            "--log-json", log], capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        with open(log) as f:
            ev = {e["stage"]: e for e in map(json.loads, f) if e.get("event") == "stage"}
        outs = ev["cal"]["outputs"]

        sp = spm.SentencePieceProcessor(model_file=os.path.join(d, "tokenizer.model"))
        with open(text, encoding="utf-8") as f:
            ids = [sp.bos_id()] + sp.encode(f.read())
        offsets = splitmix64_offsets(seed, samples, len(ids) - seq_len + 1)
        ref = LlamaRef(d)
        sums = Sums()
        wins = []
        for o in offsets:
            win = np.array([sp.bos_id()] + ids[o + 1:o + seq_len])
            wins.append(win)
            ref.logits(win, tap=sums.tap)
        with safe_open(outs["windows.safetensors"], "np") as f:
            self.assertEqual(list(f.keys()), ["tokens"])
            got = f.get_tensor("tokens")
        self.assertEqual(got.dtype, np.int32)
        np.testing.assert_array_equal(got, np.stack(wins))
        n_tok = samples * seq_len
        self.check_imatrix(outs["imatrix.gguf"], sums.s, samples, seq_len, n_tok, text)
        self.check_stats(outs["stats.safetensors"], sums.s, offsets, n_tok)
        return sums.s

    def check_imatrix(self, path, ref, samples, seq_len, n_tok, text):
        r = gguf.GGUFReader(path)
        self.assertEqual(r.fields["general.type"].contents(), "imatrix")
        self.assertEqual(r.fields["imatrix.datasets"].contents(), [os.path.basename(text)])
        self.assertEqual(r.fields["imatrix.chunk_count"].contents(), samples)
        self.assertEqual(r.fields["imatrix.chunk_size"].contents(), seq_len)
        t = {x.name: x for x in r.tensors}
        want = sorted(gguf_name(hf) for hf in ref)
        got = sorted(n[:-len(".in_sum2")] for n in t if n.endswith(".in_sum2"))
        self.assertEqual(got, want)
        self.assertEqual(len(t), 3 * len(want))
        names = [x.name for x in r.tensors]
        self.assertEqual(names[::3], sorted(names[::3]), "entries are not in name order")
        worst = 0.0
        for hf, e in ref.items():
            g = gguf_name(hf)
            s2 = t[g + ".in_sum2"]
            self.assertEqual(s2.tensor_type, gguf.GGMLQuantizationType.F32)
            self.assertEqual(list(s2.shape), [len(e["sum2"]), 1])
            ours = np.asarray(s2.data, dtype=np.float64).reshape(-1)
            rel = np.abs(ours - e["sum2"]) / e["sum2"]
            worst = max(worst, rel.max())
            self.assertLess(rel.max(), 1e-4, "%s.in_sum2: channel %d" % (g, rel.argmax()))
            self.assertEqual(float(np.asarray(t[g + ".counts"].data).reshape(-1)[0]), n_tok)
            ours = np.asarray(t[g + ".in_sum"].data, dtype=np.float64).reshape(-1)
            # a signed sum cancels: held against the sum of magnitudes
            self.assertLess((np.abs(ours - e["sum"]) / e["abs"]).max(), 1e-4, g + ".in_sum")
        print("  imatrix: %d entries, worst in_sum2 relative error %.2e" % (len(ref), worst))

    def check_stats(self, path, ref, offsets, n_tok):
        with safe_open(path, "np") as f:
            meta = f.metadata()
            keys = set(f.keys())
            self.assertEqual(meta["qpipe.sample_offsets"], ",".join(map(str, offsets)))
            owners = sorted({owner_of(hf) for hf in ref})
            self.assertEqual(keys, {o + s for o in owners for s in (".hessian", ".act_mean_abs", ".act_max_abs")})
            worst = 0.0
            for hf in ref:
                self.assertEqual(meta[hf + ".input"], owner_of(hf))
            for o in owners:
                e = ref[o]
                self.assertEqual(meta[o + ".tokens"], str(n_tok))
                h = f.get_tensor(o + ".hessian").astype(np.float64)
                self.assertEqual(h.shape, e["h"].shape)
                self.assertTrue((h == h.T).all(), o + ".hessian is not symmetric")
                d = np.sqrt(np.outer(np.diag(e["h"]), np.diag(e["h"])))
                rel = np.abs(h - e["h"]) / d
                worst = max(worst, rel.max())
                self.assertLess(rel.max(), 1e-4, o + ".hessian")
                ma = f.get_tensor(o + ".act_mean_abs").astype(np.float64)
                self.assertLess((np.abs(ma - e["abs"] / n_tok) / (e["abs"] / n_tok)).max(), 1e-4, o)
                mx = f.get_tensor(o + ".act_max_abs").astype(np.float64)
                self.assertLess((np.abs(mx - e["max"]) / e["max"]).max(), 1e-4, o)
            print("  stats: %d inputs, worst Hessian error %.2e (of sqrt(H_ii H_jj))" % (len(owners), worst))

    def test_stories260k_tinystories_matches_numpy(self):
        # calibrate tokenizes with the GGUF's vocabulary, which (like
        # llama.cpp) keeps runs of spaces that tok512's sentencepiece
        # normalizer collapses: the two first differ at token 186974 of
        # this file, so the case uses its first 200 kB
        src = os.path.join(SHARED, "data", "text", "tinystories", "tinystories_validation_head.txt")
        text = os.path.join(self.tmp.name, "tinystories_head_200k.txt")
        with open(src, "rb") as f:
            head = f.read(200000)
        with open(text, "wb") as f:
            f.write(head[:head.rindex(b"\n") + 1])
        ref = self.run_case("stories260K", text, 3, 64, 7, True)
        self.assertEqual(len(ref), 5 * 7)  # tied: no output entry

    def test_llama_docs_27m_wikitext_matches_numpy(self):
        text = os.path.join(SHARED, "data", "text", "wikitext-2-raw-test", "wiki.test.hfrows.lf.raw")
        ref = self.run_case("llama-docs-27m", text, 2, 64, 1, True)
        self.assertIn("lm_head.weight", ref)
        self.assertEqual(len(ref), 6 * 7 + 1)


if __name__ == "__main__":
    QPIPE = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
