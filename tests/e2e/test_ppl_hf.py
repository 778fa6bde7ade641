"""evaluate with ppl_method: hf end to end, on a model folder: a recipe
runs model.local on stories260K and evaluates that folder directly (its
safetensors and tokenizer.model, no GGUF) with metrics [size, ppl, speed],
the strided sliding window of n_ctx 128 every 48 tokens over the first 5
windows of TinyStories; PPL equals the transformers docs loop over the
numpy forward pass (tests/model/test_ppl_hf.py) within 1e-5, the method,
n_ctx, stride and tokenizer are in the metrics and under the report's
table, and a stride longer than n_ctx fails the stage clearly. With
llama.cpp's method the folder's PPL equals its f32 GGUF's."""
import json
import math
import os
import sys
import unittest

import sentencepiece as spm

import qptest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "model"))
from llama_ref import LlamaRef  # noqa: E402
from test_ppl_hf import docs_loop  # noqa: E402

N_CTX, STRIDE, WINDOWS = 128, 48, 5

RECIPE = """\
stages:
  model: {{ uses: model.local, with: {{ path: {model} }} }}
  eval:
    uses: evaluate
    with: {{ model: model, gguf: model, metrics: [size, ppl, speed], text: {text}, n_ctx: {n_ctx},
            ppl_method: hf, stride: {stride}, chunks: {windows}, decode_tokens: 8 }}
  md: {{ uses: report.markdown, with: {{ from: eval }} }}
"""


FOLDER_VS_GGUF = """\
stages:
  model: {{ uses: model.local, with: {{ path: {model} }} }}
  quant: {{ uses: quantize, with: {{ model: model, type: f32 }} }}
  gguf: {{ uses: export.gguf, with: {{ model: quant }} }}
  eval_folder:
    uses: evaluate
    with: {{ model: model, gguf: model, metrics: [size, ppl], text: {text}, n_ctx: 128, chunks: 3 }}
  eval_gguf:
    uses: evaluate
    with: {{ model: quant, gguf: gguf, metrics: [size, ppl], text: {text}, n_ctx: 128, chunks: 3 }}
"""


class StridedPerplexityRecipe(unittest.TestCase):
    def setUp(self):
        self.w = qptest.Workdir()
        self.model = qptest.model_dir("stories260K")
        self.text = os.path.join(qptest.SHARED, "data", "text", "tinystories", "tinystories_validation_head.txt")

    def tearDown(self):
        self.w.cleanup()

    def metrics(self, key):
        with open(os.path.join(self.w.cache, "actions", key[:2], key[2:])) as f:
            return json.load(f)["metrics"]

    def test_folder_hf_ppl_equals_docs_loop(self):
        r = self.w.write("r.yaml", RECIPE.format(model=self.model, text=self.text, n_ctx=N_CTX, stride=STRIDE,
                                                 windows=WINDOWS))
        _, ev = self.w.run(r)
        st = qptest.stage_events(ev)
        m = self.metrics(st["eval"]["key"])
        sp = spm.SentencePieceProcessor(model_file=os.path.join(self.model, "tokenizer.model"))
        with open(self.text, encoding="utf-8") as f:
            ids = [sp.bos_id()] + sp.encode(f.read())
        nll, _, windows, scored = docs_loop(LlamaRef(self.model), ids, N_CTX, STRIDE, WINDOWS)
        self.assertEqual(windows, WINDOWS)
        self.assertEqual(m["chunks"], WINDOWS)
        self.assertEqual(m["tokens_scored"], scored)
        self.assertEqual(m["text_tokens"], len(ids))
        self.assertEqual((m["n_ctx"], m["stride"]), (N_CTX, STRIDE))
        self.assertTrue(m["ppl_method"].startswith("hf: strided sliding window"), m["ppl_method"])
        self.assertIn("sentencepiece", m["tokenizer"])
        self.assertLess(abs(m["ppl"] / math.exp(nll) - 1), 1e-5, (m["ppl"], math.exp(nll)))
        self.assertGreater(m["prefill_tok_s"], 0)
        with open(st["md"]["outputs"]["report.md"]) as f:
            md = f.read()
        self.assertIn("by hf: strided sliding window (transformers docs), windows of n_ctx every 48 tokens", md)
        self.assertIn("n_ctx 128, 5 chunk(s), %d tokens scored" % scored, md)

    def test_folder_llama_cpp_ppl_equals_its_f32_gguf(self):
        r = self.w.write("r.yaml", FOLDER_VS_GGUF.format(model=self.model, text=self.text))
        _, ev = self.w.run(r)
        st = qptest.stage_events(ev)
        folder, gguf = (self.metrics(st[s]["key"]) for s in ("eval_folder", "eval_gguf"))
        self.assertEqual(folder["chunks"], 3)
        self.assertEqual(folder["tokens_scored"], gguf["tokens_scored"])
        self.assertTrue(folder["ppl_method"].startswith("llama.cpp"))
        self.assertLess(abs(folder["ppl"] / gguf["ppl"] - 1), 1e-5, (folder["ppl"], gguf["ppl"]))
        # the folder's size is its safetensors' tensor data, as it is
        self.assertEqual(folder["n_params"], 260032)
        self.assertAlmostEqual(folder["size_mb"], 260032 * 4 / 1e6, places=9)

    def test_stride_longer_than_n_ctx_fails_clearly(self):
        r = self.w.write("r.yaml", RECIPE.format(model=self.model, text=self.text, n_ctx=N_CTX, stride=N_CTX + 1,
                                                 windows=WINDOWS))
        p, _ = self.w.run(r, check=1)
        self.assertIn("stride 129 is outside 1 .. 128, the window length (n_ctx)", p.stderr)


if __name__ == "__main__":
    qptest.setup_from_argv()
    unittest.main(verbosity=2)
