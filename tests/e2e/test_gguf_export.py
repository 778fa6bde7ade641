"""The GGUF files qpipe writes, read back with gguf-py's GGUFReader:
every tensor's bytes equal gguf-py's own quantizer applied to the source
weights (rows of q/k permuted as llama.cpp's converter does), for every
kernel level, on both shared models; the metadata is what llama.cpp needs
plus qpipe's provenance keys.

Q4_0 note: gguf-py warns that its Q4_0 rounding "depends on FMA". qpipe's
reference follows llama.cpp's C reference, compiled without contraction
(x*id rounded, then +8.5 rounded), which is also what numpy computes, so
the comparison is exact; the kernel tests check every variant against that
reference.
"""
import json
import os
import subprocess
import unittest

import numpy as np
from gguf import GGUFReader, GGMLQuantizationType as T
from gguf.quants import quantize
from safetensors.numpy import load_file

import qptest

TYPES = ["f16", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0"]
GT = {"f32": T.F32, "f16": T.F16, "bf16": T.BF16, "q8_0": T.Q8_0, "q5_1": T.Q5_1,
      "q5_0": T.Q5_0, "q4_1": T.Q4_1, "q4_0": T.Q4_0}

RECIPE = """\
stages:
  model: {{ uses: model.local, with: {{ path: {model} }} }}
  quant:
    uses: quantize
    matrix: {{ type: [{types}] }}
    with: {{ model: model, type: "${{matrix.type}}" }}
  gguf: {{ uses: export.gguf, with: {{ model: quant }} }}
"""


def hf_to_gguf_name(name):
    top = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
           "lm_head.weight": "output.weight"}
    if name in top:
        return top[name]
    parts = name.split(".")
    layer, rest = parts[2], ".".join(parts[3:])
    m = {"input_layernorm.weight": "attn_norm.weight", "self_attn.q_proj.weight": "attn_q.weight",
         "self_attn.k_proj.weight": "attn_k.weight", "self_attn.v_proj.weight": "attn_v.weight",
         "self_attn.o_proj.weight": "attn_output.weight",
         "post_attention_layernorm.weight": "ffn_norm.weight", "mlp.gate_proj.weight": "ffn_gate.weight",
         "mlp.up_proj.weight": "ffn_up.weight", "mlp.down_proj.weight": "ffn_down.weight"}
    return "blk.%s.%s" % (layer, m[rest])


def permute(w, n_head):
    # llama.cpp convert_hf_to_gguf.py's LlamaModel.permute, written anew
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def exported(w, model, types, level):
    recipe = w.write("r-%s.yaml" % level, RECIPE.format(model=model, types=", ".join(types)))
    _, ev = w.run(recipe, "--kernels", level)
    out = {}
    for sid, e in qptest.stage_events(ev).items():
        if sid.startswith("gguf["):
            out[sid[len("gguf[type="):-1]] = e["outputs"]["model.gguf"]
    return out


def levels(w):
    p = w.qpipe("version", "--kernels", check=0)
    have = ["scalar"]
    # a level runs the levels below it
    if "kernels: avx2" in p.stdout or "kernels: avx512" in p.stdout:
        have.append("avx2")
    if "kernels: avx512" in p.stdout:
        have.append("avx512")
    return have


class GgufExport(unittest.TestCase):
    maxDiff = 2000

    def setUp(self):
        self.w = qptest.Workdir()

    def tearDown(self):
        self.w.cleanup()

    def check_model(self, name):
        model = qptest.model_dir(name)
        cfg = json.load(open(os.path.join(model, "config.json")))
        src = load_file(os.path.join(model, "model.safetensors"))
        for level in levels(self.w):
            files = exported(self.w, model, TYPES, level)
            self.assertEqual(sorted(files), sorted(TYPES))
            for t, path in files.items():
                with self.subTest(model=name, level=level, type=t):
                    self.check_file(path, t, src, cfg)

    def check_file(self, path, t, src, cfg):
        r = GGUFReader(path)
        kv = {f.name: f for f in r.fields.values()}
        self.assertEqual(kv["general.architecture"].contents(), "llama")
        self.assertEqual(kv["llama.block_count"].contents(), cfg["num_hidden_layers"])
        self.assertEqual(kv["llama.attention.head_count_kv"].contents(), cfg["num_key_value_heads"])
        self.assertEqual(kv["llama.embedding_length"].contents(), cfg["hidden_size"])
        self.assertEqual(kv["qpipe.method"].contents(), t)
        self.assertEqual(len(kv["qpipe.stage_key"].contents()), 32)
        self.assertEqual(len(kv["tokenizer.ggml.tokens"].contents()), cfg["vocab_size"])
        tensors = {x.name: x for x in r.tensors}
        self.assertEqual(len(tensors), len(src))
        for hf, w in src.items():
            g = tensors[hf_to_gguf_name(hf)]
            w = w.astype(np.float32)
            if hf.endswith("q_proj.weight"):
                w = permute(w, cfg["num_attention_heads"])
            elif hf.endswith("k_proj.weight"):
                w = permute(w, cfg["num_key_value_heads"])
            if w.ndim == 1:
                want_type = T.F32
            elif w.shape[-1] % 32 != 0 and t not in ("f16", "f32", "bf16"):
                want_type = T.F16   # the documented fallback
            else:
                want_type = GT[t]
            self.assertEqual(g.tensor_type, want_type, hf)
            self.assertEqual(list(g.shape), list(reversed(w.shape)), hf)
            want = quantize(w, want_type).tobytes()
            got = bytes(g.data.tobytes())
            if got != want:
                a, b = np.frombuffer(got, np.uint8), np.frombuffer(want, np.uint8)
                first = int(np.nonzero(a != b)[0][0]) if len(a) == len(b) else -1
                self.fail("%s (%s): bytes differ from gguf-py, first at byte %d" % (hf, t, first))

    def test_stories260k_blocks_equal_gguf_py(self):
        self.check_model("stories260K")

    def test_llama_docs_27m_blocks_equal_gguf_py(self):
        self.check_model("llama-docs-27m")


if __name__ == "__main__":
    qptest.main()
