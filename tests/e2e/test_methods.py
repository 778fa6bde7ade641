"""quantize's methods (RTN, binary, ternary, NF4, FP8, k-means LUT) through
the whole pipeline on stories260K: the model.safetensors they write is
decoded here by an independent numpy reader of qpipe's layout
(formats/qlayout.h, written from its documentation), and must hold

  - for RTN, exactly the values of a numpy RTN of the source weights
    (GPTQ's quantizer, as kernels/qmethod.h specifies it);
  - for every method, the same values export.gguf writes (F32 with
    dequantize: true, or the GGUF type that holds them exactly: q8_0 for
    RTN 8-bit symmetric in f16-scaled groups of 32, read back and
    dequantized by gguf-py);

and evaluate's size is the bytes of every stored part. Mixed precision
puts each tensor where its override says; exporting a method without a
GGUF type fails with a message, and perplexity runs on the F32 export.

    test_methods.py QPIPE SHARED_DIR
"""
import json
import os
import unittest

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize
from safetensors import safe_open

import qptest

RECIPE = """\
stages:
  model: {{ uses: model.local, with: {{ path: {model} }} }}
  quant: {{ uses: quantize, with: {{ model: model, method: "{method}"{extra} }} }}
  gguf: {{ uses: export.gguf, with: {{ model: quant, dequantize: {deq} }} }}
  eval: {{ uses: evaluate, with: {{ model: quant, reference: model, gguf: gguf, metrics: [size, weight_error{ppl}],
          text: "{text}", n_ctx: 64, chunks: 2 }} }}
"""

NF4 = np.array([-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
                -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
                0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
                0.7229568362236023, 1.0], dtype=np.float32)


def dynamic_map():
    """bitsandbytes' signed dynamic 8-bit map (create_dynamic_map)."""
    data = []
    for i in range(7):
        b = np.linspace(0.1, 1, 2 ** i + 1)
        means = (b[:-1] + b[1:]) / 2.0
        data += list(10.0 ** (-6 + i) * means) + list(-(10.0 ** (-6 + i)) * means)
    data += [0.0, 1.0]
    return np.array(sorted(data), dtype=np.float32)


def fp8_decode(codes, fmt):
    """FP8 bit patterns to float32: E4M3 (fn: no infinities) or E5M2."""
    e_bits, m_bits = (4, 3) if fmt == "e4m3" else (5, 2)
    bias = (1 << (e_bits - 1)) - 1
    c = codes.astype(np.int64)
    sign = np.where(c >> 7, -1.0, 1.0)
    e = (c >> m_bits) & ((1 << e_bits) - 1)
    m = c & ((1 << m_bits) - 1)
    val = np.where(e == 0, m / (1 << m_bits) * 2.0 ** (1 - bias), (1 + m / (1 << m_bits)) * 2.0 ** (e - bias))
    if fmt == "e4m3":
        val = np.where((e == 15) & (m == 7), np.nan, val)
    else:
        val = np.where(e == 31, np.where(m == 0, np.inf, np.nan), val)
    return (sign * val).astype(np.float32)


def parse_spec(text):
    parts = text.split(":")
    spec = {"method": parts[0]}
    for p in parts[1:]:
        k, _, v = p.partition("=")
        spec[k] = v if v else True
    return spec


def unpack_codes(codes, bits, cols):
    b = np.unpackbits(codes, axis=1, bitorder="little")[:, :cols * bits]
    b = b.reshape(codes.shape[0], cols, bits).astype(np.int64)
    return (b << np.arange(bits)).sum(-1)


def decode_layout(path):
    """{name: float32 values} of every tensor in a qpipe layout file."""
    out = {}
    with safe_open(path, "numpy") as f:
        meta = f.metadata()
        assert meta["qpipe.layout"] == "1"
        names = set(f.keys())
        T = {n: f.get_tensor(n) for n in names}
    entries = {k[len("qpipe.tensor."):]: json.loads(v) for k, v in meta.items() if k.startswith("qpipe.tensor.")}
    for n, t in T.items():
        if not n.rsplit(".", 1)[-1].startswith("q") or n in entries:
            out[n] = t.astype(np.float32)
    for name, e in entries.items():
        rows, cols = e["shape"]
        if "type" in e:
            out[name] = dequantize(T[name + ".qblocks"], {"q8_0": 8, "q4_0": 2, "q5_0": 6}[e["type"]]).reshape(rows, cols)
            continue
        s = parse_spec(e["method"])
        m = s["method"]
        bits = {"binary": 1, "ternary": 2, "nf4": 4, "fp8": 8}.get(m) or int(s["bits"])
        q = unpack_codes(T[name + ".qcodes"], bits, cols)
        c = np.arange(cols)
        if m in ("rtn", "binary", "ternary", "fp8"):
            sc = T[name + ".qscales"].astype(np.float32)
            srows, scols = sc.shape
            gi = T[name + ".qg_idx"] if name + ".qg_idx" in T else c * scols // cols
            S = sc[np.arange(rows)[:, None] % srows, gi[None, :]]
            if m == "rtn":
                Z = T[name + ".qzeros"][np.arange(rows)[:, None] % srows, gi[None, :]].astype(np.int64)
                v = S * (q - Z).astype(np.float32)
            elif m == "binary":
                v = np.where(q == 1, S, -S)
            elif m == "ternary":
                v = S * (q - 1).astype(np.float32)
            else:
                v = S * fp8_decode(q, s["format"])
        elif m == "nf4":
            g = int(s["group"])
            if s["dq"] == "true":
                code = T[name + ".qabsmax_codes"]
                m2 = np.repeat(T[name + ".qabsmax_scales"], 256)[:len(code)]
                a = dynamic_map()[code] * m2 + T[name + ".qabsmax_offset"][0]
            else:
                a = T[name + ".qscales"]
            v = (np.repeat(a.astype(np.float32), g) * NF4[q.reshape(-1)]).reshape(rows, cols)
        else:  # kmeans
            lut = T[name + ".qlut"]
            per = rows // lut.shape[0]
            v = lut[(np.arange(rows) // per)[:, None], q]
            if name + ".qscales" in T:
                v = v * T[name + ".qscales"]
        out[name] = v.astype(np.float32)
    return out, entries


def rtn_reference(w, bits, group, sym):
    """GPTQ's quantizer with f16 scales, per group of a row, in numpy."""
    maxq = 2 ** bits - 1
    rows, cols = w.shape
    g = w.reshape(rows, cols // group, group).astype(np.float32)
    if sym:
        a = np.abs(g).max(-1)
        a = np.where(a == 0, 1, a)
        s = (2 * a / maxq).astype(np.float16).astype(np.float32)
        z = np.full_like(s, (maxq + 1) // 2)
    else:
        lo, hi = np.minimum(g.min(-1), 0), np.maximum(g.max(-1), 0)
        both0 = (lo == 0) & (hi == 0)
        lo, hi = np.where(both0, -1, lo), np.where(both0, 1, hi)
        s = ((hi - lo) / maxq).astype(np.float16).astype(np.float32)
        z = np.clip(np.round(-lo / s), 0, maxq)
    q = np.clip(np.round(g / s[..., None]) + z[..., None], 0, maxq)
    return (s[..., None] * (q - z[..., None])).reshape(rows, cols).astype(np.float32)


def permute_back(values, name, heads):
    """llama.cpp's q/k row order back to Hugging Face's."""
    if not any(k in name for k in ("attn_q.", "attn_k.")):
        return values
    rows = values.shape[0]
    hd = rows // heads
    return values.reshape(heads, hd // 2, 2, -1).swapaxes(1, 2).reshape(rows, -1)


GG = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight"}
LAYER = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
         "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output", "post_attention_layernorm": "ffn_norm",
         "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}


def gguf_name(hf):
    if hf in GG:
        return GG[hf]
    parts = hf.split(".")
    return "blk.%s.%s.weight" % (parts[2], LAYER[".".join(parts[3:-1])])


class Methods(unittest.TestCase):
    def setUp(self):
        self.w = qptest.Workdir()
        self.model = qptest.model_dir("stories260K")
        self.text = os.path.join(qptest.SHARED, "data", "text", "tinystories")
        with open(os.path.join(self.model, "config.json")) as f:
            cfg = json.load(f)
        self.heads = {"attn_q.": cfg["num_attention_heads"], "attn_k.": cfg["num_key_value_heads"]}
        with safe_open(os.path.join(self.model, "model.safetensors"), "numpy") as f:
            self.src = {k: f.get_tensor(k) for k in f.keys()}

    def tearDown(self):
        self.w.cleanup()

    def text_file(self):
        for root, _, files in os.walk(self.text):
            for n in sorted(files):
                if n.endswith(".txt"):
                    return os.path.join(root, n)
        self.skipTest("no tinystories text")

    def run_method(self, method, extra="", deq="true", ppl=False, check=0):
        r = self.w.write("r.yaml", RECIPE.format(model=self.model, method=method, extra=extra, deq=deq,
                                                 ppl=", ppl" if ppl else "", text=self.text_file()))
        p, ev = self.w.run(r, check=check)
        return p, qptest.stage_events(ev)

    def metrics(self, st, stage):
        with open(os.path.join(self.w.cache, "actions", st[stage]["key"][:2], st[stage]["key"][2:])) as f:
            return json.load(f)["metrics"]

    def gguf_values(self, path):
        out = {}
        for t in GGUFReader(path).tensors:
            shape = tuple(reversed([int(x) for x in t.shape]))
            v = dequantize(t.data, t.tensor_type).reshape(shape) if t.tensor_type.name != "F32" else \
                np.asarray(t.data, dtype=np.float32).reshape(shape)
            h = next((n for n, k in self.heads.items() if n in t.name), None)
            out[t.name] = permute_back(v, t.name, self.heads[h]) if h else v
        return out

    def check_export_matches_layout(self, st, expect_types=None):
        layout, entries = decode_layout(st["quant"]["outputs"]["model.safetensors"])
        gg = self.gguf_values(st["gguf"]["outputs"]["model.gguf"])
        self.assertEqual(len(gg), len(layout))
        for name, v in layout.items():
            g = gg[gguf_name(name)].reshape(v.shape)
            np.testing.assert_array_equal(g, v, err_msg=name)
        return layout, entries

    def test_methods__rtn_equals_numpy_reference_and_export(self):
        for bits, sym in ((4, False), (3, True), (8, True)):
            with self.subTest(bits=bits, sym=sym):
                _, st = self.run_method("rtn:bits=%d:group=32:%s" % (bits, "sym" if sym else "asym"))
                layout, entries = self.check_export_matches_layout(st)
                n = 0
                for name, e in entries.items():
                    want = rtn_reference(self.src[name], bits, 32, sym)
                    np.testing.assert_array_equal(layout[name], want, err_msg=name)
                    n += 1
                # stories260K: 7 projections x 5 layers + embeddings; the 172-wide down_proj rows
                # do not split into groups of 32 and fall back to f16
                self.assertEqual(n, 5 * 6 + 1)
                m = self.metrics(st, "quant")
                self.assertEqual(m["format"], "qpipe-safetensors")
                self.assertEqual(len(m["fallback"]), 5)
                ev = self.metrics(st, "eval")
                with safe_open(st["quant"]["outputs"]["model.safetensors"], "numpy") as f:
                    stored = sum(f.get_tensor(k).nbytes for k in f.keys())
                self.assertAlmostEqual(ev["size_mb"], stored / 1e6, places=9)
                self.assertLess(ev["rel_err"], {3: 0.3, 4: 0.15, 8: 0.01}[bits])

    def test_methods__every_method_exports_its_exact_values(self):
        for method in ("binary", "ternary", "ternary:rule=absmean:group=64", "nf4", "nf4:dq=false",
                       "fp8", "fp8:format=e5m2:gran=tensor", "kmeans:bits=3", "kmeans:bits=4:group=4:channel_scale=true",
                       "rtn:bits=2:gran=channel"):
            with self.subTest(method=method):
                _, st = self.run_method(method)
                layout, _ = self.check_export_matches_layout(st)
                ev = self.metrics(st, "eval")
                self.assertGreater(ev["bits_per_weight"], 0)
                for name, v in layout.items():
                    self.assertTrue(np.isfinite(v).all(), name)

    def test_methods__q8_0_holds_rtn8_sym_g32_exactly(self):
        _, st = self.run_method("rtn:bits=8:group=32:sym", deq="false")
        types = {t.name: t.tensor_type.name for t in GGUFReader(st["gguf"]["outputs"]["model.gguf"]).tensors}
        self.assertEqual(types["blk.0.attn_q.weight"], "Q8_0")
        self.assertEqual(types["blk.0.ffn_down.weight"], "F16")
        self.check_export_matches_layout(st)

    def test_methods__export_without_gguf_type_is_refused(self):
        p, st = self.run_method("nf4", deq="false", check=None)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("nf4:group=64:dq=true has no GGUF type with the same values; set 'dequantize: true'", p.stderr)
        self.assertNotIn("gguf", {k for k, v in st.items() if v.get("status") == "ok"})

    def test_methods__mixed_precision_by_override(self):
        _, st = self.run_method("rtn:bits=4:gran=channel",
                                extra=', overrides: ["*embed_tokens*=q8_0", "*.mlp.*=nf4", "*.v_proj.*=f16"]')
        _, entries = self.check_export_matches_layout(st)
        m = self.metrics(st, "quant")["tensor_types"]
        self.assertEqual(m["model.embed_tokens.weight"], "q8_0")
        self.assertEqual(entries["model.embed_tokens.weight"]["type"], "q8_0")
        self.assertEqual(m["model.layers.0.mlp.up_proj.weight"], "nf4:group=64:dq=true")
        self.assertEqual(m["model.layers.0.self_attn.v_proj.weight"], "f16")
        self.assertEqual(m["model.layers.0.self_attn.q_proj.weight"], "rtn:bits=4:gran=channel:asym:scale=f16")
        # 172 x 64 = 11008 elements: 172 blocks of 64
        self.assertIn("model.layers.0.mlp.down_proj.weight", entries)

    def test_methods__perplexity_runs_on_the_f32_export(self):
        _, st = self.run_method("rtn:bits=8:gran=channel:sym", ppl=True)
        ev = self.metrics(st, "eval")
        self.assertTrue(1 < ev["ppl"] < 1e4, ev["ppl"])


if __name__ == "__main__":
    qptest.main()
