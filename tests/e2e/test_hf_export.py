"""export.hf on llama-docs-27m: GPTQ and AWQ checkpoints, unpacked by an
independent numpy reader of each layout written here from AutoGPTQ's and
autoawq's packing (GPTQ: 32/b inputs per int32 word, zeros stored minus
one; AWQ GEMM: 8 outputs per word in the order 0 2 4 6 1 3 5 7), give
exactly the weights qpipe's own layout holds, and config.json carries
the quantization_config fields transformers' GPTQConfig / AwqConfig read,
with their types. Exports that cannot be expressed are refused.

    test_hf_export.py QPIPE SHARED_DIR
"""
import json
import os
import shutil
import tempfile
import unittest

import numpy as np
from safetensors import safe_open
from transformers import AutoConfig
from transformers.utils.quantization_config import AwqConfig, GPTQConfig

import qptest
from test_methods import decode_layout

RECIPE = """\
stages:
  model: {{ uses: model.local, with: {{ path: {model} }} }}
  quant: {{ uses: quantize, with: {{ model: model, method: "{method}" }} }}
  hf: {{ uses: export.hf, with: {{ model: quant, format: {fmt} }} }}
"""

AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7]


def words(a, bits, per):
    """Unpack the last axis of uint32 words into per values of bits each."""
    u = a.view(np.uint32)[..., None] >> (bits * np.arange(per, dtype=np.uint32))
    return (u & ((1 << bits) - 1)).astype(np.int64)


def gptq_weight(t, name, bits, v2):
    qw, qz = t[name + ".qweight"], t[name + ".qzeros"]
    scales, g_idx = t[name + ".scales"].astype(np.float32), t[name + ".g_idx"]
    per = 32 // bits
    q = words(qw, bits, per).transpose(0, 2, 1).reshape(-1, qw.shape[1])  # [in, out]
    z = words(qz, bits, per).reshape(qz.shape[0], -1)  # [G, out]
    if not v2:
        z = z + 1
    return (scales[g_idx] * (q - z[g_idx]).astype(np.float32)).T


def awq_weight(t, name, group):
    qw, qz, scales = t[name + ".qweight"], t[name + ".qzeros"], t[name + ".scales"].astype(np.float32)
    q = np.empty((qw.shape[0], qw.shape[1] * 8), dtype=np.int64)
    q.reshape(qw.shape[0], -1, 8)[:, :, AWQ_ORDER] = words(qw, 4, 8)
    z = np.empty((qz.shape[0], qz.shape[1] * 8), dtype=np.int64)
    z.reshape(qz.shape[0], -1, 8)[:, :, AWQ_ORDER] = words(qz, 4, 8)
    g = np.arange(q.shape[0]) // group
    return (scales[g] * (q - z[g]).astype(np.float32)).T


class HfExport(unittest.TestCase):
    def setUp(self):
        self.w = qptest.Workdir()
        self.model = qptest.model_dir("llama-docs-27m")

    def tearDown(self):
        self.w.cleanup()

    def export(self, method, fmt, check=0):
        r = self.w.write("r.yaml", RECIPE.format(model=self.model, method=method, fmt=fmt))
        p, ev = self.w.run(r, check=check)
        return p, qptest.stage_events(ev)

    def load(self, st):
        out = st["hf"]["outputs"]
        with safe_open(out["model.safetensors"], "numpy") as f:
            t = {k: f.get_tensor(k) for k in f.keys()}
        with open(out["config.json"]) as f:
            cfg = json.load(f)
        layout, _ = decode_layout(st["quant"]["outputs"]["model.safetensors"])
        return t, cfg, layout

    def transformers_config(self, st, cls):
        """The exported folder's config as transformers reads it
        (AutoConfig), its quantization_config through transformers' own
        quantizer config class, whose post_init validates names, types
        and values (bits, group size, format ...) as from_pretrained does."""
        folder = tempfile.mkdtemp(dir=self.w.dir)
        shutil.copy(st["hf"]["outputs"]["config.json"], os.path.join(folder, "config.json"))
        cfg = AutoConfig.from_pretrained(folder)
        self.assertEqual(cfg.model_type, "llama")
        return cls.from_dict(dict(cfg.quantization_config))

    def test_gptq__unpacks_to_qpipes_weights_with_its_config(self):
        for method, bits, group in (("rtn:bits=4:group=128", 4, 128), ("rtn:bits=8:group=64:sym", 8, 64),
                                    ("rtn:bits=2:gran=channel", 2, -1)):
            with self.subTest(method=method):
                _, st = self.export(method, "gptq")
                t, cfg, layout = self.load(st)
                qc = cfg["quantization_config"]
                self.assertEqual(qc["quant_method"], "gptq")
                self.assertEqual((qc["bits"], qc["group_size"]), (bits, group))
                for k, typ in (("bits", int), ("group_size", int), ("desc_act", bool), ("sym", bool),
                               ("damp_percent", float), ("static_groups", bool), ("true_sequential", bool),
                               ("checkpoint_format", str)):
                    self.assertIsInstance(qc[k], typ, k)
                self.assertEqual(qc["sym"], "sym" in method)
                tc = self.transformers_config(st, GPTQConfig)
                self.assertEqual((tc.bits, tc.group_size, tc.desc_act, tc.sym, tc.format),
                                 (bits, group, qc["desc_act"], qc["sym"], qc["checkpoint_format"]))
                v2 = qc["checkpoint_format"] == "gptq_v2"
                n = 0
                for name, v in layout.items():
                    if name.startswith("model.layers.") and name.endswith("_proj.weight"):
                        stem = name[:-len(".weight")]
                        np.testing.assert_array_equal(gptq_weight(t, stem, bits, v2), v, err_msg=name)
                        self.assertEqual(t[stem + ".scales"].dtype, np.float16)
                        n += 1
                    else:
                        np.testing.assert_array_equal(t[name], v.astype(np.float16), err_msg=name)
                self.assertEqual(n, 6 * 7)

    def test_awq__unpacks_to_qpipes_weights_with_its_config(self):
        _, st = self.export("rtn:bits=4:group=64", "awq")
        t, cfg, layout = self.load(st)
        qc = cfg["quantization_config"]
        self.assertEqual(qc, {"quant_method": "awq", "bits": 4, "group_size": 64, "zero_point": True,
                              "version": "gemm", "modules_to_not_convert": None})
        tc = self.transformers_config(st, AwqConfig)
        self.assertEqual((tc.bits, tc.group_size, tc.zero_point, tc.format), (4, 64, True, "gemm"))
        for name, v in layout.items():
            if name.endswith("_proj.weight") and name.startswith("model.layers."):
                np.testing.assert_array_equal(awq_weight(t, name[:-len(".weight")], 64), v, err_msg=name)

    def test_hf_export__refuses_what_the_layout_cannot_hold(self):
        for method, fmt, msg in (("rtn:bits=3:group=128", "gptq", "GPTQ checkpoints hold 2, 4 or 8-bit weights, not 3"),
                                 ("rtn:bits=8:group=128", "awq", "AWQ checkpoints hold 4-bit weights, not 8"),
                                 ("rtn:bits=4:group=128:scale=f32", "gptq", "GPTQ checkpoints store f16 scales"),
                                 ("nf4", "gptq", "GPTQ stores round-to-nearest integer weights only")):
            with self.subTest(method=method, fmt=fmt):
                p, _ = self.export(method, fmt, check=None)
                self.assertNotEqual(p.returncode, 0)
                self.assertIn(msg, p.stderr)


if __name__ == "__main__":
    qptest.main()
