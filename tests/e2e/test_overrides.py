"""quantize's mixed precision (overrides) and its type/preset checks, on
stories260K: overridden tensors get the asked type in the exported GGUF,
first match wins, rows that do not divide fall back and are listed, and
mistakes (a pattern matching nothing, a malformed item, an unknown type,
neither or both of type and preset) fail with a message naming them.

    test_overrides.py QPIPE SHARED_DIR
"""
import json
import os
import unittest

from gguf import GGUFReader

import qptest

RECIPE = """\
stages:
  model: {{ uses: model.local, with: {{ path: {model} }} }}
  quant: {{ uses: quantize, with: {{ model: model, {quant} }} }}
  gguf: {{ uses: export.gguf, with: {{ model: quant }} }}
"""


class Overrides(unittest.TestCase):
    def setUp(self):
        self.w = qptest.Workdir()
        self.model = qptest.model_dir("stories260K")

    def tearDown(self):
        self.w.cleanup()

    def run_quant(self, quant, check=0):
        r = self.w.write("r.yaml", RECIPE.format(model=self.model, quant=quant))
        return self.w.run(r, check=check)

    def metrics(self, key):
        with open(os.path.join(self.w.cache, "actions", key[:2], key[2:])) as f:
            return json.load(f)["metrics"]

    def test_overrides__types_land_as_asked_first_match_wins(self):
        _, ev = self.run_quant('type: q8_0, overrides: ["*embed_tokens*=f16", "model.layers.0.*=q4_0", '
                               '"*.self_attn.*=q5_0"]')
        st = qptest.stage_events(ev)
        types = {t.name: t.tensor_type.name for t in GGUFReader(st["gguf"]["outputs"]["model.gguf"]).tensors}
        self.assertEqual(types["token_embd.weight"], "F16")
        # layer 0: the layer pattern comes first; its 172-wide down_proj does
        # not divide into 32-element blocks and takes the fallback (f16)
        for t in ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up"):
            self.assertEqual(types["blk.0.%s.weight" % t], "Q4_0", t)
        self.assertEqual(types["blk.0.ffn_down.weight"], "F16")
        for t in ("attn_q", "attn_k", "attn_v", "attn_output"):
            self.assertEqual(types["blk.3.%s.weight" % t], "Q5_0", t)
        self.assertEqual(types["blk.3.ffn_gate.weight"], "Q8_0")
        self.assertEqual(types["blk.3.attn_norm.weight"], "F32")
        m = self.metrics(st["quant"]["key"])
        self.assertEqual(m["tensor_types"]["model.layers.0.self_attn.q_proj.weight"], "q4_0")
        self.assertEqual(sum(m["type_counts"].values()), len(m["tensor_types"]))
        self.assertEqual(m["type_counts"]["q5_0"], 4 * 4)
        self.assertIn("model.layers.0.mlp.down_proj.weight", m["fallback"])

    def test_overrides__pattern_matching_nothing_fails_naming_it(self):
        p, _ = self.run_quant('type: q8_0, overrides: ["*.mpl.*=q4_0"]', check=None)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("override '*.mpl.*=q4_0': pattern '*.mpl.*' matches no 2-D weight tensor", p.stderr)

    def test_overrides__malformed_item_or_unknown_type_fails_at_plan(self):
        for item, msg in (("lm_head.weight", "override 'lm_head.weight' is not PATTERN=TYPE"),
                          ("*.mlp.*=q9_K", "override '*.mlp.*=q9_K': unknown tensor type 'q9_K'")):
            with self.subTest(item=item):
                p, ev = self.run_quant('type: q8_0, overrides: ["%s"]' % item, check=None)
                self.assertNotEqual(p.returncode, 0)
                self.assertIn(msg, p.stderr)
                self.assertNotIn("quant", qptest.stage_events(ev))

    def test_quantize__needs_exactly_one_of_type_and_preset(self):
        for quant, msg in (("fallback: f16", "quantize needs 'type', 'preset' or 'method'"),
                           ("type: q8_0, preset: Q4_K_M", "give one of 'type', 'preset' and 'method'"),
                           ("type: q8_0, method: nf4", "give one of 'type', 'preset' and 'method'"),
                           ("method: nf5", "method 'nf5' is not one of rtn, binary, ternary, nf4, fp8, kmeans")):
            with self.subTest(quant=quant):
                p, _ = self.run_quant(quant, check=None)
                self.assertNotEqual(p.returncode, 0)
                self.assertIn(msg, p.stderr)

    def test_preset__llama_cpp_fallbacks_and_tied_embeddings_on_stories260K(self):
        _, ev = self.run_quant('preset: Q4_K_M, overrides: ["*.gate_proj.*=q8_0"]')
        st = qptest.stage_events(ev)
        r = GGUFReader(st["gguf"]["outputs"]["model.gguf"])
        types = {t.name: t.tensor_type.name for t in r.tensors}
        f = r.fields["general.file_type"]
        self.assertEqual(int(f.parts[f.data[0]][0]), 15)
        # 64-wide rows fit no 256-element block: q4_K falls back to q5_0; the
        # tied embedding is the output, whose rule gives q8_0; 172-wide rows
        # fit neither q4_K nor q5_0: f16
        self.assertEqual(types["token_embd.weight"], "Q8_0")
        self.assertEqual(types["blk.1.attn_q.weight"], "Q5_0")
        self.assertEqual(types["blk.1.ffn_down.weight"], "F16")
        self.assertEqual(types["blk.1.ffn_gate.weight"], "Q8_0")
        m = self.metrics(st["quant"]["key"])
        self.assertEqual(m["preset"], "Q4_K_M")
        # embedding, 5 gate_proj, and attn_v of layers 2 and 4 (q6_K, falling back)
        self.assertEqual(m["type_counts"]["q8_0"], 1 + 5 + 2)


if __name__ == "__main__":
    qptest.main()
