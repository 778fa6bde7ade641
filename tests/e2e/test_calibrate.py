"""calibrate end to end.

- llama-docs-27m: calibrate on WikiText (never on the evaluation text),
  quantize q2_K and q3_K with and without its imatrix, export, and
  measure perplexity on the held-out kernel documentation: the imatrix
  lowers both. A changed quantize parameter then reruns quantize but
  reuses the cached calibration.
- bad input fails the stage with a message naming what is wrong: text
  shorter than one window; an imatrix of another model (its rows do not
  fit the weights), named by tensor and weight.

(tests/model/test_calibrate.py checks the numbers against numpy; the
conformance suite checks the quantized blocks against llama.cpp.)
"""
import json
import os
import unittest

import qptest

CAL_SAMPLES, CHUNKS = 16, 12

RECIPE = """\
stages:
  model: {{ uses: model.local, with: {{ path: {model} }} }}
  base: {{ uses: quantize, with: {{ model: model, type: f32 }} }}
  base_gguf: {{ uses: export.gguf, with: {{ model: base }} }}
  cal:
    uses: calibrate
    with: {{ gguf: base_gguf, text: {cal_text}, samples: {samples}, seq_len: 512, hessian: false }}
  quant:
    uses: quantize
    matrix: {{ type: [q2_K, q3_K] }}
    with: {{ model: model, type: "${{matrix.type}}" }}
  quant_im:
    uses: quantize
    matrix: {{ type: [q2_K, q3_K] }}
    with: {{ model: model, type: "${{matrix.type}}", imatrix: cal }}
  gguf: {{ uses: export.gguf, with: {{ model: quant }} }}
  gguf_im: {{ uses: export.gguf, with: {{ model: quant_im }} }}
  eval:
    uses: evaluate
    with: {{ model: quant, gguf: gguf, metrics: [ppl], text: {eval_text}, chunks: {chunks} }}
  eval_im:
    uses: evaluate
    with: {{ model: quant_im, gguf: gguf_im, metrics: [ppl], text: {eval_text}, chunks: {chunks} }}
"""


class Calibrate(unittest.TestCase):
    def setUp(self):
        self.w = qptest.Workdir()

    def tearDown(self):
        self.w.cleanup()

    def metrics(self, ev):
        with open(os.path.join(self.w.cache, "actions", ev["key"][:2], ev["key"][2:])) as f:
            return json.load(f)["metrics"]

    def test_imatrix_lowers_kquant_perplexity_and_calibration_is_reused(self):
        text = os.path.join(qptest.SHARED, "data", "text")
        r = self.w.write("r.yaml", RECIPE.format(
            model=qptest.model_dir("llama-docs-27m"), samples=CAL_SAMPLES, chunks=CHUNKS,
            cal_text=os.path.join(text, "wikitext-2-raw-test", "wiki.test.hfrows.lf.raw"),
            eval_text=os.path.join(text, "kernel-docs-heldout", "heldout.txt")))
        _, ev = self.w.run(r)
        st = qptest.stage_events(ev)
        cal = self.metrics(st["cal"])
        self.assertEqual(cal["tokens"], CAL_SAMPLES * 512)
        self.assertEqual(cal["inputs"], 6 * 4)
        self.assertGreater(cal["tokens_per_s"], 0)
        print("\ncalibrate: %d tokens at %.0f tok/s (%d threads)" % (cal["tokens"], cal["tokens_per_s"],
                                                                  cal["threads"]))
        for t in ("q2_K", "q3_K"):
            plain = self.metrics(st["eval[type=%s]" % t])
            im = self.metrics(st["eval_im[type=%s]" % t])
            self.assertEqual(self.metrics(st["quant_im[type=%s]" % t])["imatrix_tensors"], 42)
            print("%s: ppl %.4f +- %.4f without imatrix, %.4f +- %.4f with (%d chunks of 512)"
                  % (t, plain["ppl"], plain["ppl_err"], im["ppl"], im["ppl_err"], plain["chunks"]))
            self.assertLess(im["ppl"], plain["ppl"], t)

        # a quantize parameter changes: quantize reruns, calibration does not
        _, ev = self.w.run(r, "--set", "quant_im.fallback=f32")
        st = qptest.stage_events(ev)
        self.assertEqual(st["cal"]["status"], "cached")
        self.assertEqual(st["quant_im[type=q2_K]"]["status"], "ran")

    def test_text_shorter_than_a_window_is_refused(self):
        short = self.w.write("short.txt", "Once upon a time there was a tiny text.\n")
        r = self.w.write("r.yaml", """\
stages:
  model: {{ uses: model.local, with: {{ path: {model} }} }}
  base: {{ uses: quantize, with: {{ model: model, type: f32 }} }}
  gguf: {{ uses: export.gguf, with: {{ model: base }} }}
  cal: {{ uses: calibrate, with: {{ gguf: gguf, text: short.txt, samples: 2, seq_len: 64 }} }}
""".format(model=qptest.model_dir("stories260K")))
        p, ev = self.w.run(r, check=1)
        self.assertIn("failed  cal: %s: 17 tokens, fewer than seq_len 64" % short, p.stderr)
        self.assertEqual(qptest.stage_events(ev)["cal"]["status"], "failed")

    def test_imatrix_of_another_model_names_tensor_and_weight(self):
        r = self.w.write("r.yaml", """\
stages:
  small: {{ uses: model.local, with: {{ path: {small} }} }}
  small_f32: {{ uses: quantize, with: {{ model: small, type: f32 }} }}
  small_gguf: {{ uses: export.gguf, with: {{ model: small_f32 }} }}
  cal: {{ uses: calibrate, with: {{ gguf: small_gguf, text: {text}, samples: 1, seq_len: 32 }} }}
  big: {{ uses: model.local, with: {{ path: {big} }} }}
  q: {{ uses: quantize, with: {{ model: big, type: q4_K, imatrix: cal }} }}
""".format(small=qptest.model_dir("stories260K"), big=qptest.model_dir("llama-docs-27m"),
           text=os.path.join(qptest.SHARED, "data", "text", "tinystories", "tinystories_validation_head.txt")))
        p, ev = self.w.run(r, check=1)
        st = qptest.stage_events(ev)
        imat = st["cal"]["outputs"]["imatrix.gguf"]
        self.assertIn("failed  q: tensor 'model.layers.0.mlp.down_proj.weight': imatrix from 'cal': %s: "
                      "weight 'blk.0.ffn_down.weight' has 172 importances, its rows 1536 columns" % imat,
                      p.stderr)
        self.assertEqual(st["q"]["status"], "failed")


if __name__ == "__main__":
    qptest.main()
