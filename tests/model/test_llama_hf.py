"""The forward pass over Hugging Face folders (model/llama_hf.c) and RoPE
scaling (model/rope.c), against the numpy reference (llama_ref.py):

- stories260K (f32) and an f32 copy of llama-docs-27m made here: logits
  for a fixed prompt within 1e-4 relative (per position, against the
  largest reference logit), same top token;
- the f32 copy against the f32 GGUF export.gguf makes of it (q/k rows
  permuted, RoPE in the interleaved layout, ggml's angle arithmetic)
  within 1e-5 (measured 4e-7);
- llama-docs-27m's own f16 folder: the f16 kernels round activations to
  f16 (as llama.cpp's do), so against float64 numpy, and against its f16
  GGUF, it is held to 2e-3. Two f16 passes that differ only in summation
  order (the permuted head dimensions in q.k) drift apart by as much as
  either is from float64 (measured 3.9e-4 against 4.4e-4 and 4.7e-4):
  one flipped f16 rounding cascades through the layers;
- RoPE scaling: folders with the weights symlinked and config.json edited
  (linear factor 2, dynamic, yarn, llama3, in rope_scaling and in
  transformers 5's rope_parameters), the context lengths shrunk so the
  prompt crosses them, within 1e-4; and the f32 GGUF given the keys
  llama.cpp's converter writes (scaling.type linear and yarn, llama3's
  rope_freqs.weight computed as the converter does), within 1e-4; and
  export.gguf of scaled folders: the keys (or rope_freqs.weight) it
  writes give numpy's logits within 1e-4, and dynamic NTK and yarn with
  truncate false, which have no GGUF form, are refused;
- a sharded folder (index + two files) equals the single file; a BF16
  folder runs in place (to 2e-2: bf16 activations);
- errors: another architecture, an unknown RoPE type, a missing tensor.

    python3 test_llama_hf.py QP_MODEL_TOOL QPIPE
"""
import json
import math
import os
import subprocess
import sys
import tempfile
import unittest

import gguf
import numpy as np
import sentencepiece as spm
from safetensors.numpy import load_file, save_file

from llama_ref import LlamaRef
from mkgguf import exported

TOOL = QPIPE = None
SHARED = os.environ.get("QP_SHARED_DIR", "../shared")
PROMPT = ("Once upon a time, there was a little girl named Lily. She loved to play outside "
          "in the park. The kernel has to be built with CONFIG_DEBUG_INFO.")


def model_dir(name):
    return os.path.join(SHARED, "data", "models", name)


def rel_err(ours, ref):
    return (np.abs(ours - ref).max(-1) / np.abs(ref).max(-1)).max()


class LlamaHfFolder(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="qp-llama-hf-")
        src = model_dir("llama-docs-27m")
        cls.docs_w = load_file(os.path.join(src, "model.safetensors"))
        # the f32 copy: same values, widened
        cls.docs32 = cls.folder("docs32", src, weights={k: v.astype(np.float32) for k, v in cls.docs_w.items()})
        cls.ids = {}
        for m in ("llama-docs-27m", "stories260K"):
            sp = spm.SentencePieceProcessor(model_file=os.path.join(model_dir(m), "tokenizer.model"))
            cls.ids[m] = [sp.bos_id()] + sp.encode(PROMPT)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    @classmethod
    def folder(cls, name, src, weights=None, config=None):
        """A model folder under tmp: src's config.json (edited by config, a
        function of the dict) and its weights (symlinked unless given)."""
        d = os.path.join(cls.tmp.name, name)
        os.makedirs(d)
        with open(os.path.join(src, "config.json")) as f:
            c = json.load(f)
        if config:
            config(c)
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(c, f)
        for side in ("tokenizer.model", "tokenizer_config.json"):
            if os.path.exists(os.path.join(src, side)):
                os.symlink(os.path.abspath(os.path.join(src, side)), os.path.join(d, side))
        if weights is None:
            os.symlink(os.path.abspath(os.path.join(src, "model.safetensors")),
                       os.path.join(d, "model.safetensors"))
        else:
            save_file(weights, os.path.join(d, "model.safetensors"))
        return d

    def logits(self, path, ids, threads=2):
        out = os.path.join(self.tmp.name, "logits.bin")
        p = subprocess.run([TOOL, "logits", path, out, str(threads)] + [str(i) for i in ids],
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        return np.fromfile(out, np.float32).reshape(len(ids), -1)

    def fails(self, path, *needles):
        out = os.path.join(self.tmp.name, "never.bin")
        p = subprocess.run([TOOL, "logits", path, out, "1", "1", "5"], capture_output=True, text=True)
        self.assertNotEqual(p.returncode, 0)
        for n in needles:
            self.assertIn(n, p.stderr)
        self.assertFalse(os.path.exists(out))
        return p.stderr

    def against_numpy(self, d, tol, weights=None):
        ids = self.ids_of(d)
        ref = LlamaRef(d, weights).logits(np.array(ids))
        ours = self.logits(d, ids)
        self.assertEqual(ours.shape, ref.shape)
        self.assertLess(rel_err(ours, ref), tol)
        self.assertTrue((ours.argmax(-1) == ref.argmax(-1)).all())
        return ours

    def ids_of(self, d):
        """The prompt's ids in the tokenizer of folder d's model (by vocabulary size)."""
        with open(os.path.join(d, "config.json")) as f:
            n = json.load(f)["vocab_size"]
        return self.ids["stories260K" if n == 512 else "llama-docs-27m"]

    def test_stories260k_folder_equals_numpy(self):
        d = model_dir("stories260K")
        ours = self.against_numpy(d, 1e-4)
        one = self.logits(d, self.ids_of(d), threads=1)
        self.assertTrue((one == ours).all(), "logits depend on the thread count")

    def test_llama_docs_f32_folder_equals_numpy_and_gguf(self):
        ours = self.against_numpy(self.docs32, 1e-4, self.docs_w)
        g = exported(QPIPE, self.tmp.name, self.docs32, ["f32"])["f32"]
        self.assertLess(rel_err(self.logits(g, self.ids_of(self.docs32)), ours), 1e-5)

    def test_llama_docs_f16_folder_near_numpy_equals_gguf(self):
        d = model_dir("llama-docs-27m")
        ours = self.against_numpy(d, 2e-3, self.docs_w)
        g = exported(QPIPE, self.tmp.name, d, ["f16"])["f16"]
        self.assertLess(rel_err(self.logits(g, self.ids_of(d)), ours), 2e-3)

    def scaled(self, src, name, kind, params, key="rope_scaling", ctx=None, weights=None):
        """src with RoPE scaling {kind, params} under key, the context
        lengths set to ctx (max_position_embeddings) so the prompt
        crosses them; logits against numpy within 1e-4, and different
        from the unscaled model's."""
        def edit(c):
            if key == "rope_parameters":
                c["rope_parameters"] = dict(params, rope_type=kind, rope_theta=c.get("rope_theta", 10000.0))
            else:
                c.pop("rope_parameters", None)
                c["rope_scaling"] = dict(params, type=kind) if kind == "linear" else dict(params, rope_type=kind)
            if ctx:
                c["max_position_embeddings"] = ctx
        d = self.folder(name, src, config=edit)
        ours = self.against_numpy(d, 1e-4, weights)
        base = self.logits(src, self.ids_of(src))
        self.assertGreater(rel_err(ours, base), 1e-3, "the scaling changed nothing")

    def test_rope_scaling_stories260k(self):
        src = model_dir("stories260K")
        self.scaled(src, "s-linear", "linear", {"factor": 2.0})
        self.scaled(src, "s-dynamic", "dynamic", {"factor": 3.0}, ctx=24)
        self.scaled(src, "s-yarn", "yarn", {"factor": 4.0, "original_max_position_embeddings": 16})
        self.scaled(src, "s-llama3", "llama3", {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                                "original_max_position_embeddings": 32})

    def test_rope_scaling_llama_docs(self):
        # rope_parameters (transformers 5) on the f32 copy, whose 64-dim
        # heads spread the wavelengths across yarn's ramp and llama3's band
        src = self.docs32
        w = self.docs_w
        self.scaled(src, "d-linear", "linear", {"factor": 2.0}, key="rope_parameters", weights=w)
        self.scaled(src, "d-dynamic", "dynamic", {"factor": 2.0}, key="rope_parameters", ctx=20, weights=w)
        self.scaled(src, "d-yarn", "yarn", {"factor": 4.0, "original_max_position_embeddings": 64,
                                            "beta_fast": 16, "beta_slow": 2},
                    key="rope_parameters", weights=w)
        self.scaled(src, "d-yarn-mscale", "yarn", {"factor": 4.0, "original_max_position_embeddings": 64,
                                                   "mscale": 0.8, "mscale_all_dim": 0.5, "truncate": False},
                    weights=w)
        self.scaled(src, "d-llama3", "llama3", {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                                "original_max_position_embeddings": 64},
                    key="rope_parameters", weights=w)

    def gguf_with(self, src, name, kv, tensors=None):
        """A copy of GGUF src with keys kv {key: (value, GGUFValueType)}
        and f32 tensors added, as llama.cpp's converter writes them."""
        r = gguf.GGUFReader(src)
        dst = os.path.join(self.tmp.name, name + ".gguf")
        w = gguf.GGUFWriter(dst, arch="llama")
        for f in r.fields.values():
            if f.name == gguf.Keys.General.ARCHITECTURE or f.name.startswith("GGUF."):
                continue
            t = f.types[0]
            if t == gguf.GGUFValueType.ARRAY and not f.contents():
                continue  # the writer takes no empty arrays; none is read for logits
            w.add_key_value(f.name, f.contents(), t, sub_type=f.types[-1] if t == gguf.GGUFValueType.ARRAY else None)
        for k, (v, t) in kv.items():
            w.add_key_value(k, v, t)
        for t in r.tensors:
            w.add_tensor(t.name, np.array(t.data))
        for k, v in (tensors or {}).items():
            w.add_tensor(k, v.astype(np.float32))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        return dst

    def test_rope_scaling_from_gguf_keys(self):
        # the f32 GGUF of the f32 copy, given the scaling keys llama.cpp's
        # converter writes, against numpy on the same scaling in config.json
        g = exported(QPIPE, self.tmp.name, self.docs32, ["f32"])["f32"]
        S, F, U = gguf.GGUFValueType.STRING, gguf.GGUFValueType.FLOAT32, gguf.GGUFValueType.UINT32
        ids = self.ids_of(self.docs32)

        def check(name, kv, params, tensors=None):
            d = self.folder(name, self.docs32, config=lambda c: c.update(rope_scaling=params, rope_parameters=None))
            ref = LlamaRef(d, self.docs_w).logits(np.array(ids))
            ours = self.logits(self.gguf_with(g, name, kv, tensors), ids)
            self.assertLess(rel_err(ours, ref), 1e-4, name)
        check("g-linear", {"llama.rope.scaling.type": ("linear", S), "llama.rope.scaling.factor": (2.0, F)},
              {"rope_type": "linear", "factor": 2.0})
        check("g-yarn", {"llama.rope.scaling.type": ("yarn", S), "llama.rope.scaling.factor": (4.0, F),
                         "llama.rope.scaling.original_context_length": (64, U)},
              {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64})
        # llama3 as llama.cpp's converter stores it: a divisor per pair
        # (convert_hf_to_gguf.py, LlamaModel's rope_freqs), written here
        # from that script, not from transformers' formula
        factor, lo, hi, old = 8.0, 1.0, 4.0, 64
        freqs = 1.0 / (10000.0 ** (np.arange(0, 64, 2, dtype=np.float32) / 64))
        rope_factors = []
        for freq in freqs:
            wavelen = 2 * math.pi / freq
            if wavelen < old / hi:
                rope_factors.append(1)
            elif wavelen > old / lo:
                rope_factors.append(factor)
            else:
                smooth = (old / wavelen - lo) / (hi - lo)
                rope_factors.append(1 / ((1 - smooth) / factor + smooth))
        check("g-llama3", {}, {"rope_type": "llama3", "factor": factor, "low_freq_factor": lo,
                               "high_freq_factor": hi, "original_max_position_embeddings": old},
              {"rope_freqs.weight": np.array(rope_factors)})

    def test_rope_scaling_exported(self):
        # export.gguf writes the scaling the way llama.cpp's converter does;
        # the GGUF it makes of each scaled f32 folder gives numpy's logits
        ids = self.ids_of(self.docs32)
        cases = [("x-linear", {"rope_type": "linear", "factor": 2.0},
                  {"llama.rope.scaling.type": "linear", "llama.rope.scaling.factor": 2.0}),
                 ("x-yarn", {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64,
                             "beta_fast": 16, "beta_slow": 2},
                  {"llama.rope.scaling.type": "yarn", "llama.rope.scaling.factor": 4.0,
                   "llama.rope.scaling.original_context_length": 64, "llama.rope.scaling.yarn_beta_fast": 16.0,
                   "llama.rope.scaling.yarn_beta_slow": 2.0}),
                 # ggml's own 1 + 0.1 ln 4 times attn_factor gives transformers' mscale ratio
                 ("x-yarn-mscale", {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64,
                                    "mscale": 0.8, "mscale_all_dim": 0.5},
                  {"llama.rope.scaling.attn_factor": (0.08 * math.log(4) + 1) / (0.05 * math.log(4) + 1)
                   / (0.1 * math.log(4) + 1)}),
                 ("x-llama3", {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                               "high_freq_factor": 4.0, "original_max_position_embeddings": 64}, {})]
        for name, params, keys in cases:
            with self.subTest(name):
                d = self.folder(name, self.docs32, config=lambda c: c.update(rope_scaling=params,
                                                                             rope_parameters=None))
                g = exported(QPIPE, self.tmp.name, d, ["f32"])["f32"]
                r = gguf.GGUFReader(g)
                for k, v in keys.items():
                    f = r.fields[k]
                    got = f.contents()
                    if isinstance(v, str):
                        self.assertEqual(got, v, k)
                    else:
                        self.assertAlmostEqual(got, v, places=5, msg=k)
                freqs = [t for t in r.tensors if t.name == "rope_freqs.weight"]
                self.assertEqual(len(freqs), 1 if "llama3" in name else 0)
                if freqs:
                    # the converter's divisors: 1 at high frequencies, factor at low
                    self.assertEqual(freqs[0].data[0], 1.0)
                    self.assertEqual(freqs[0].data[-1], 8.0)
                ref = LlamaRef(d, self.docs_w).logits(np.array(ids))
                self.assertLess(rel_err(self.logits(g, ids), ref), 1e-4)
        for name, params, msg in (("x-dynamic", {"rope_type": "dynamic", "factor": 2.0},
                                   "RoPE scaling 'dynamic' (NTK) has no GGUF form"),
                                  ("x-yarn-notrunc", {"rope_type": "yarn", "factor": 4.0, "truncate": False,
                                                      "original_max_position_embeddings": 64},
                                   "'yarn' with truncate false has no GGUF form")):
            d = self.folder(name, self.docs32, config=lambda c: c.update(rope_scaling=params, rope_parameters=None))
            with self.assertRaises(RuntimeError) as e:
                exported(QPIPE, self.tmp.name, d, ["f32"])
            self.assertIn(msg, str(e.exception))
            self.assertIn("failed  gguf[type=f32]: config.json of 'quant[type=f32]': ", str(e.exception))

    def test_sharded_and_bf16_folders(self):
        # two shards and an index: the same logits as the single file
        src = model_dir("stories260K")
        w = load_file(os.path.join(src, "model.safetensors"))
        d = self.folder("sharded", src, weights={})
        os.unlink(os.path.join(d, "model.safetensors"))
        names = sorted(w)
        index = {"metadata": {}, "weight_map": {}}
        for i, part in enumerate((names[:20], names[20:])):
            fn = "model-%05d-of-00002.safetensors" % (i + 1)
            save_file({k: w[k] for k in part}, os.path.join(d, fn))
            index["weight_map"].update({k: fn for k in part})
        with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
            json.dump(index, f)
        ids = self.ids_of(src)
        self.assertTrue((self.logits(d, ids) == self.logits(src, ids)).all())
        # BF16 (numpy has none: the bytes are written here) runs in place;
        # the bf16 kernels round activations to bf16, hence 2e-2 against
        # numpy on the bf16 values, and the top token mostly kept
        wb = {}
        for k, v in w.items():
            u = v.astype(np.float32).view(np.uint32)
            u = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)  # round to nearest even
            wb[k] = (u, (u.astype(np.uint32) << 16).view(np.float32))
        d = os.path.join(self.tmp.name, "bf16")
        os.makedirs(d)
        os.symlink(os.path.abspath(os.path.join(src, "config.json")), os.path.join(d, "config.json"))
        header, off, blobs = {}, 0, []
        for k in sorted(wb):
            b = wb[k][0].tobytes()
            header[k] = {"dtype": "BF16", "shape": list(w[k].shape), "data_offsets": [off, off + len(b)]}
            off += len(b)
            blobs.append(b)
        h = json.dumps(header).encode()
        h += b" " * (-len(h) % 8)
        with open(os.path.join(d, "model.safetensors"), "wb") as f:
            f.write(len(h).to_bytes(8, "little") + h + b"".join(blobs))
        ref = LlamaRef(d, {k: v[1] for k, v in wb.items()}).logits(np.array(ids))
        ours = self.logits(d, ids)
        self.assertLess(rel_err(ours, ref), 2e-2)
        self.assertGreater((ours.argmax(-1) == ref.argmax(-1)).mean(), 0.9)

    def test_errors_name_what_is_wrong(self):
        src = model_dir("stories260K")
        d = self.folder("e-arch", src, config=lambda c: c.update(architectures=["GPT2LMHeadModel"]))
        self.fails(d, "config.json", "GPT2LMHeadModel", "supported: LlamaForCausalLM, MistralForCausalLM")
        d = self.folder("e-rope", src, config=lambda c: c.update(rope_scaling={"rope_type": "longrope",
                                                                                "factor": 2.0}))
        self.fails(d, "config.json", "'longrope'", "supported: default, linear, dynamic, yarn, llama3")
        d = self.folder("e-act", src, config=lambda c: c.update(hidden_act="gelu"))
        self.fails(d, "hidden_act 'gelu' is not supported")
        # Mistral is the same pass while its sliding window covers n_ctx (2 here)
        d = self.folder("e-mistral", src, config=lambda c: c.update(architectures=["MistralForCausalLM"],
                                                                      model_type="mistral", sliding_window=1))
        self.fails(d, "sliding_window 1 is shorter than n_ctx 2")
        d = self.folder("mistral", src, config=lambda c: c.update(architectures=["MistralForCausalLM"],
                                                                    model_type="mistral", sliding_window=4096))
        ids = self.ids_of(src)
        self.assertTrue((self.logits(d, ids) == self.logits(src, ids)).all())
        d = self.folder("e-factor", src, config=lambda c: c.update(rope_scaling={"type": "linear"}))
        self.fails(d, "config.json", "linear needs a positive 'factor'")
        w = load_file(os.path.join(src, "model.safetensors"))
        del w["model.layers.2.mlp.up_proj.weight"]
        d = self.folder("e-missing", src, weights=w)
        self.fails(d, os.path.join(d, "model.safetensors"), "'model.layers.2.mlp.up_proj.weight' is missing")
        w = load_file(os.path.join(src, "model.safetensors"))
        w["model.layers.0.self_attn.q_proj.bias"] = np.zeros(64, np.float32)
        d = self.folder("e-bias", src, weights=w)
        self.fails(d, "'model.layers.0.self_attn.q_proj.bias' is not one the Llama forward pass computes")
        w = load_file(os.path.join(src, "model.safetensors"))
        w["model.norm.weight"] = w["model.norm.weight"].astype(np.float64)
        d = self.folder("e-dtype", src, weights=w)
        self.fails(d, "'model.norm.weight' has dtype F64")


if __name__ == "__main__":
    TOOL = os.path.abspath(sys.argv.pop(1))
    QPIPE = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
