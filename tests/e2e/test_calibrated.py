"""GPTQ and AWQ through the pipeline on llama-docs-27m, calibrated on a
little WikiText (4 windows of 128 tokens, never the evaluation text):

- resume: a quantize stage killed (SIGKILL) after a few GPTQ tensors
  leaves them in the store's partial/<key>/; the rerun loads them instead
  of recomputing and ends with the same bytes as an uninterrupted run in
  another cache; the partial folder is gone once the result is stored.
  The same for true-sequential GPTQ killed inside layer 0's gate/up
  group: the rerun loads the finished tensors into the model, measures
  the group's input again for up_proj, and re-runs the layer;
- GPTQ with act-order exports to a GPTQ checkpoint (desc_act, g_idx)
  and AWQ to an AWQ GEMM checkpoint whose numpy unpacking equals qpipe's
  layout exactly; AWQ folded its scales into the norms (they changed) and
  its search never did worse than RTN on the loss it measures.

    test_calibrated.py QPIPE SHARED_DIR
"""
import hashlib
import json
import os
import unittest

import numpy as np
from safetensors import safe_open

import qptest
from test_hf_export import awq_weight, gptq_weight
from test_methods import decode_layout

RECIPE = """\
stages:
  model: {{ uses: model.local, with: {{ path: {model} }} }}
  base_q: {{ uses: quantize, with: {{ model: model, type: f16 }} }}
  base: {{ uses: export.gguf, with: {{ model: base_q }} }}
  calib: {{ uses: calibrate, with: {{ gguf: base, text: "{cal}", samples: 4, seq_len: 128 }} }}
  quant: {{ uses: quantize, with: {{ model: model, method: "{method}", calib: calib,
           overrides: ["model.embed_tokens.weight=f16", "lm_head.weight=f16"] }} }}
  hf: {{ uses: export.hf, with: {{ model: quant, format: {fmt} }} }}
"""


SEQ = """\
stages:
  model: {{ uses: model.local, with: {{ path: {model} }} }}
  base_q: {{ uses: quantize, with: {{ model: model, type: f16 }} }}
  base: {{ uses: export.gguf, with: {{ model: base_q }} }}
  calib: {{ uses: calibrate, with: {{ gguf: base, text: "{cal}", samples: 4, seq_len: 128 }} }}
  quant: {{ uses: quantize, with: {{ model: model, method: "gptq:bits=3:true_sequential", calib: calib,
           calib_model: base, overrides: ["model.embed_tokens.weight=f16", "lm_head.weight=f16"] }} }}
"""


PPL = """\
stages:
  model: {{ uses: model.local, with: {{ path: {model} }} }}
  base_q: {{ uses: quantize, with: {{ model: model, type: f16 }} }}
  base: {{ uses: export.gguf, with: {{ model: base_q }} }}
  calib: {{ uses: calibrate, with: {{ gguf: base, text: "{cal}", samples: 8, seq_len: 256 }} }}
  quant:
    uses: quantize
    matrix: {{ method: ["rtn:bits=3:group=128", "gptq:bits=3:group=128", "gptq:bits=3:group=128:true_sequential"] }}
    with: {{ model: model, method: "${{matrix.method}}", calib: calib, calib_model: base,
            overrides: ["model.embed_tokens.weight=f16", "lm_head.weight=f16"] }}
  gguf: {{ uses: export.gguf, with: {{ model: quant, dequantize: true }} }}
  eval: {{ uses: evaluate, with: {{ model: quant, gguf: gguf, metrics: [ppl], text: "{text}", n_ctx: 512, chunks: 4 }} }}
"""


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


class Calibrated(unittest.TestCase):
    def setUp(self):
        self.w = qptest.Workdir()
        self.model = qptest.model_dir("llama-docs-27m")
        self.cal = os.path.join(qptest.SHARED, "data", "text", "wikitext-2-raw-test", "wiki.test.hfrows.lf.raw")

    def tearDown(self):
        self.w.cleanup()

    def recipe(self, method, fmt="gptq"):
        return self.w.write("r.yaml", RECIPE.format(model=self.model, cal=self.cal, method=method, fmt=fmt))

    def metrics(self, cache, key):
        with open(os.path.join(cache, "actions", key[:2], key[2:])) as f:
            return json.load(f)["metrics"]

    def test_gptq__killed_quantize_resumes_and_ends_with_the_same_bytes(self):
        r = self.recipe("gptq:bits=4:group=128:act_order")
        _, ev = self.w.run(r)
        want = sha(qptest.stage_events(ev)["quant"]["outputs"]["model.safetensors"])
        other = os.path.join(self.w.dir, "cache2")
        p = self.w.qpipe("run", r, "--cache-dir", other, env={"QPIPE_TEST_KILL_AFTER_TENSORS": "7"})
        self.assertNotEqual(p.returncode, 0)
        parts = os.listdir(os.path.join(other, "partial"))
        self.assertEqual(len(parts), 1)
        saved = [f for f in os.listdir(os.path.join(other, "partial", parts[0])) if f.endswith(".safetensors")]
        self.assertEqual(len(saved), 7)
        log = os.path.join(self.w.dir, "log2.jsonl")
        self.w.qpipe("run", r, "--cache-dir", other, "--log-json", log, check=0)
        with open(log) as f:
            st = qptest.stage_events([json.loads(line) for line in f if line.strip()])
        self.assertEqual(sha(st["quant"]["outputs"]["model.safetensors"]), want)
        self.assertEqual(self.metrics(other, st["quant"]["key"])["resumed_tensors"], 7)
        self.assertEqual(os.listdir(os.path.join(other, "partial")), [])

    def test_gptq_true_sequential__killed_quantize_resumes_and_ends_with_the_same_bytes(self):
        r = self.w.write("r.yaml", SEQ.format(model=self.model, cal=self.cal))
        _, ev = self.w.run(r)
        st = qptest.stage_events(ev)
        want = sha(st["quant"]["outputs"]["model.safetensors"])
        self.assertEqual(self.metrics(self.w.cache, st["quant"]["key"])["type"],
                         "gptq:bits=3:group=128:asym:act_order=false:static_groups=false:damp=0.01:block=128"
                         ":scale=f16:true_sequential=true")
        other = os.path.join(self.w.dir, "cache2")
        # q, k, v, o, gate of layer 0: up_proj's Hessian must be measured again
        p = self.w.qpipe("run", r, "--cache-dir", other, env={"QPIPE_TEST_KILL_AFTER_TENSORS": "5"})
        self.assertNotEqual(p.returncode, 0)
        parts = os.listdir(os.path.join(other, "partial"))
        saved = sorted(f for f in os.listdir(os.path.join(other, "partial", parts[0])) if f.endswith(".safetensors"))
        self.assertEqual(saved, ["model.layers.0.%s.weight.safetensors" % m for m in
                                 ("mlp.gate_proj", "self_attn.k_proj", "self_attn.o_proj", "self_attn.q_proj",
                                  "self_attn.v_proj")])
        log = os.path.join(self.w.dir, "log2.jsonl")
        self.w.qpipe("run", r, "--cache-dir", other, "--log-json", log, check=0)
        with open(log) as f:
            st2 = qptest.stage_events([json.loads(line) for line in f if line.strip()])
        self.assertEqual(sha(st2["quant"]["outputs"]["model.safetensors"]), want)
        self.assertEqual(self.metrics(other, st2["quant"]["key"])["resumed_tensors"], 5)
        self.assertEqual(os.listdir(os.path.join(other, "partial")), [])

    def test_gptq_true_sequential__needs_calib_model(self):
        r = self.w.write("r.yaml", SEQ.format(model=self.model, cal=self.cal).replace("calib_model: base, ", ""))
        p = self.w.qpipe("run", r, "--cache-dir", self.w.cache)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("method 'gptq:bits=3:true_sequential' needs 'calib_model' (the export.gguf stage calib ran)",
                      p.stderr)

    def test_gptq_true_sequential__perplexity_at_3_bits_beside_static(self):
        # figures only: which GPTQ wins by a little is calibration noise, so no order is asserted
        text = os.path.join(qptest.SHARED, "data", "text", "kernel-docs-heldout", "heldout.txt")
        _, ev = self.w.run(self.w.write("r.yaml", PPL.format(model=self.model, cal=self.cal, text=text)))
        st = qptest.stage_events(ev)
        ppl = {}
        for m in ("rtn:bits=3:group=128", "gptq:bits=3:group=128", "gptq:bits=3:group=128:true_sequential"):
            ppl[m] = self.metrics(self.w.cache, st["eval[method=%s]" % m]["key"])["ppl"]
            self.assertTrue(1 < ppl[m] < 1e4, m)
        print("\n  llama-docs-27m 3-bit g128, calibrated on 8 x 256 tokens of WikiText, ppl of 4 x 512 held-out "
              "tokens: " + ", ".join("%s %.4f" % (m, v) for m, v in ppl.items()))

    def check_export(self, st, fmt):
        out = st["hf"]["outputs"]
        with safe_open(out["model.safetensors"], "numpy") as f:
            t = {k: f.get_tensor(k) for k in f.keys()}
        with open(out["config.json"]) as f:
            qc = json.load(f)["quantization_config"]
        layout, _ = decode_layout(st["quant"]["outputs"]["model.safetensors"])
        n = 0
        for name, v in layout.items():
            if name.startswith("model.layers.") and name.endswith("_proj.weight"):
                stem = name[:-len(".weight")]
                got = gptq_weight(t, stem, 4, qc["checkpoint_format"] == "gptq_v2") if fmt == "gptq" \
                    else awq_weight(t, stem, 128)
                np.testing.assert_array_equal(got, v, err_msg=name)
                n += 1
        self.assertEqual(n, 6 * 7)
        return t, qc, layout

    def test_gptq__act_order_exports_desc_act_with_g_idx(self):
        _, ev = self.w.run(self.recipe("gptq:bits=4:group=128:act_order"))
        t, qc, _ = self.check_export(qptest.stage_events(ev), "gptq")
        self.assertTrue(qc["desc_act"])
        g = t["model.layers.0.self_attn.q_proj.g_idx"]
        self.assertFalse(np.array_equal(g, np.arange(len(g)) // 128))
        self.assertEqual(sorted(np.bincount(g)), [128] * 4)

    def test_awq__folds_scales_into_norms_and_exports_gemm(self):
        _, ev = self.w.run(self.recipe("awq:bits=4:group=128", fmt="awq"))
        st = qptest.stage_events(ev)
        _, qc, layout = self.check_export(st, "awq")
        self.assertEqual(qc["quant_method"], "awq")
        with safe_open(os.path.join(self.model, "model.safetensors"), "numpy") as f:
            src = f.get_tensor("model.layers.0.input_layernorm.weight").astype(np.float32)
        self.assertFalse(np.allclose(layout["model.layers.0.input_layernorm.weight"], src))
        report = self.metrics(self.w.cache, st["quant"]["key"])["awq"]
        self.assertEqual(len(report), 6 * 3)  # qkv, gate/up, down per layer; o_proj: GQA shapes differ
        for name, r in report.items():
            self.assertLessEqual(r["loss_awq"], r["loss_rtn"], name)
        self.assertTrue(any(r["alpha"] > 0 for r in report.values()))


SMOOTH = """\
stages:
  model: {{ uses: model.local, with: {{ path: {model} }} }}
  base_q: {{ uses: quantize, with: {{ model: model, type: f32 }} }}
  base: {{ uses: export.gguf, with: {{ model: base_q }} }}
  calib: {{ uses: calibrate, with: {{ gguf: base, text: "{cal}", samples: 4, seq_len: 128, hessian: false }} }}
  smooth: {{ uses: quantize, with: {{ model: model, method: "smoothquant:alpha=0.5", calib: calib }} }}
  smooth_gguf: {{ uses: export.gguf, with: {{ model: smooth }} }}
  eval:
    uses: evaluate
    matrix: {{ act_quant: [none, w8a8] }}
    with: {{ model: smooth, gguf: smooth_gguf, base: base, metrics: [ppl, kld], text: "{text}", n_ctx: 128,
            chunks: 4, act_quant: "${{matrix.act_quant}}" }}
"""


class SmoothQuant(unittest.TestCase):
    def setUp(self):
        self.w = qptest.Workdir()

    def tearDown(self):
        self.w.cleanup()

    def test_smoothquant__keeps_the_f32_model_and_w8a8_changes_it(self):
        text = os.path.join(qptest.SHARED, "data", "text", "kernel-docs-heldout", "heldout.txt")
        cal = os.path.join(qptest.SHARED, "data", "text", "wikitext-2-raw-test", "wiki.test.hfrows.lf.raw")
        r = self.w.write("r.yaml", SMOOTH.format(model=qptest.model_dir("llama-docs-27m"), cal=cal, text=text))
        _, ev = self.w.run(r)
        st = qptest.stage_events(ev)

        def met(stage):
            with open(os.path.join(self.w.cache, "actions", st[stage]["key"][:2], st[stage]["key"][2:])) as f:
                return json.load(f)["metrics"]
        plain, w8 = met("eval[act_quant=none]"), met("eval[act_quant=w8a8]")
        # smoothing moves factors between norms and weights: the f32 model computes the same function
        self.assertLess(plain["kld"], 1e-6)
        self.assertEqual(plain["act_quant"], "none")
        self.assertEqual(w8["act_quant"], "w8a8")
        self.assertGreater(w8["kld"], 10 * max(plain["kld"], 1e-9))
        self.assertEqual(met("smooth")["type"], "smoothquant:alpha=0.5")


if __name__ == "__main__":
    qptest.main()
