"""evaluate's ppl metric end to end: a recipe quantizes stories260K,
exports GGUF files and evaluates them with metrics [size, ppl]; the f32
file's perplexity equals the one computed by the independent numpy
forward pass (tests/model/llama_ref.py) over the same chunks, and the
bad inputs fail the stage with a clear message instead of a NaN."""
import json
import math
import os
import sys
import unittest

import numpy as np
import sentencepiece as spm

import qptest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "model"))
from llama_ref import LlamaRef  # noqa: E402

N_CTX, CHUNKS = 128, 4

RECIPE = """\
stages:
  model: {{ uses: model.local, with: {{ path: {model} }} }}
  quant:
    uses: quantize
    matrix: {{ type: [f32, q8_0] }}
    with: {{ model: model, type: "${{matrix.type}}" }}
  gguf: {{ uses: export.gguf, with: {{ model: quant }} }}
  eval:
    uses: evaluate
    with: {{ model: quant, gguf: gguf, metrics: [size, ppl], text: {text}, n_ctx: {n_ctx}, chunks: {chunks} }}
"""


def numpy_ppl(model_dir, text):
    sp = spm.SentencePieceProcessor(model_file=os.path.join(model_dir, "tokenizer.model"))
    toks = [sp.bos_id()] + sp.encode(text)
    ref = LlamaRef(model_dir)
    nll = []
    for c in range(CHUNKS):
        chunk = toks[c * N_CTX:(c + 1) * N_CTX]
        chunk[0] = sp.bos_id()
        lg = ref.logits(np.array(chunk))
        for j in range(N_CTX // 2, N_CTX - 1):
            row = lg[j] - lg[j].max()
            nll.append(np.log(np.exp(row).sum()) - row[chunk[j + 1]])
    return math.exp(np.mean(nll)), len(nll)


class Perplexity(unittest.TestCase):
    def setUp(self):
        self.w = qptest.Workdir()
        self.model = qptest.model_dir("stories260K")
        self.text = os.path.join(qptest.SHARED, "data", "text", "tinystories", "tinystories_validation_head.txt")

    def tearDown(self):
        self.w.cleanup()

    def metrics(self, key):
        with open(os.path.join(self.w.cache, "actions", key[:2], key[2:])) as f:
            return json.load(f)["metrics"]

    def test_recipe_ppl_equals_numpy_reference(self):
        r = self.w.write("r.yaml", RECIPE.format(model=self.model, text=self.text, n_ctx=N_CTX, chunks=CHUNKS))
        _, ev = self.w.run(r)
        st = qptest.stage_events(ev)
        f32, q8 = (self.metrics(st["eval[type=%s]" % t]["key"]) for t in ("f32", "q8_0"))
        with open(self.text, encoding="utf-8") as f:
            want, n = numpy_ppl(self.model, f.read())
        self.assertEqual(f32["chunks"], CHUNKS)
        self.assertEqual(f32["n_ctx"], N_CTX)
        self.assertEqual(f32["tokens_scored"], n)
        self.assertEqual(f32["gguf"], "gguf[type=f32]")
        self.assertLess(abs(f32["ppl"] / want - 1), 1e-4, (f32["ppl"], want))
        self.assertGreater(f32["ppl_err"], 0)
        self.assertLess(abs(q8["ppl"] / want - 1), 0.02)
        self.assertIn("size_mb", q8)

    def test_text_shorter_than_one_chunk_fails_clearly(self):
        short = self.w.write("short.txt", "Once upon a time.")
        r = self.w.write("r.yaml", RECIPE.format(model=self.model, text=short, n_ctx=N_CTX, chunks=CHUNKS))
        p, _ = self.w.run(r, check=1)
        self.assertIn("short.txt: the text is 6 tokens long, shorter than one chunk of n_ctx 128 tokens",
                      p.stderr)
        self.assertNotIn("nan", p.stderr.lower())

    def test_ppl_without_text_or_gguf_names_the_parameter(self):
        r = self.w.write("r.yaml", RECIPE.format(model=self.model, text=self.text, n_ctx=N_CTX, chunks=CHUNKS)
                         .replace("text: %s, " % self.text, ""))
        p, _ = self.w.run(r, check=1)
        self.assertIn("metric 'ppl' needs parameter 'text' (a text file)", p.stderr)
        r = self.w.write("r2.yaml", RECIPE.format(model=self.model, text=self.text, n_ctx=N_CTX, chunks=CHUNKS)
                         .replace("gguf: gguf, ", ""))
        p, _ = self.w.run(r, check=1)
        self.assertIn("metric 'ppl' needs parameter 'gguf' (the export.gguf stage)", p.stderr)


if __name__ == "__main__":
    qptest.main()
