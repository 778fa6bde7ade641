"""quantize's presets against llama.cpp's own mixtures.

One qpipe run exports llama-docs-27m twice over: as F32 (quantize type f32,
export.gguf), the file llama-quantize starts from, and with each preset
under test. llama_model_quantize (llama-cpp-python's bundled llama.cpp,
default parameters, not pure, so it picks its per-tensor mixture) turns
that F32 file into the same preset. Every tensor of qpipe's file must then
have llama.cpp's name, type, shape and bytes, and general.file_type must be
llama.cpp's number for the preset.

Both sides start from the same F32 GGUF, whose q/k rows export.gguf has
already permuted into llama.cpp's order; quantizing rows is row-wise, so
qpipe quantizing before the permutation gives the same bytes.

    test_presets_llama_cpp.py QPIPE SHARED_DIR
"""
import ctypes
import json
import os
import time
import unittest

import numpy as np

import qptest

try:
    import llama_cpp
    from gguf import GGUFReader
except ImportError as e:  # the conformance suite exists to run this
    raise SystemExit(f"conformance suite needs gguf and llama-cpp-python: {e}")

# every preset quantize offers, with llama.cpp's general.file_type for it
PRESETS = {"Q4_K_M": 15, "Q6_K": 18, "Q2_K": 10, "Q3_K_M": 12, "Q5_K_M": 17, "Q8_0": 7, "TQ1_0": 36, "TQ2_0": 37}

RECIPE = """\
stages:
  model: {{ uses: model.local, with: {{ path: {model} }} }}
  f32: {{ uses: quantize, with: {{ model: model, type: f32 }} }}
  f32gguf: {{ uses: export.gguf, with: {{ model: f32, name: f32 }} }}
  quant:
    uses: quantize
    matrix: {{ preset: [{presets}] }}
    with: {{ model: model, preset: "${{matrix.preset}}" }}
  gguf: {{ uses: export.gguf, with: {{ model: quant }} }}
"""

# llama.cpp logs every tensor it converts; keep the test's output readable
_QUIET = llama_cpp.llama_log_callback(lambda level, text, user: None)


def llama_quantize(src, dst, preset):
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, "LLAMA_FTYPE_MOSTLY_" + preset)
    params.nthread = os.cpu_count() or 1
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params))
    if rc != 0:
        raise AssertionError(f"llama_model_quantize({preset}) returned {rc}")


def tensors(path):
    return {t.name: t for t in GGUFReader(path).tensors}


def file_type(path):
    f = GGUFReader(path).fields["general.file_type"]
    return int(f.parts[f.data[0]][0])


class PresetsMatchLlamaCpp(unittest.TestCase):
    def setUp(self):
        llama_cpp.llama_log_set(_QUIET, ctypes.c_void_p())
        self.w = qptest.Workdir()

    def tearDown(self):
        self.w.cleanup()

    def check(self, model_name, presets):
        model = qptest.model_dir(model_name)
        r = self.w.write("r.yaml", RECIPE.format(model=model, presets=", ".join(presets)))
        t0 = time.monotonic()
        _, ev = self.w.run(r)
        st = qptest.stage_events(ev)
        src = st["f32gguf"]["outputs"]["model.gguf"]
        print(f"{model_name}: qpipe made f32 and {len(presets)} presets in {time.monotonic() - t0:.1f} s",
              flush=True)
        for preset in presets:
            with self.subTest(model=model_name, preset=preset):
                ours_path = st["gguf[preset=%s]" % preset]["outputs"]["model.gguf"]
                want_path = os.path.join(self.w.dir, preset + ".gguf")
                t0 = time.monotonic()
                llama_quantize(src, want_path, preset)
                t_llama = time.monotonic() - t0
                ours, want = tensors(ours_path), tensors(want_path)
                self.assertEqual(sorted(ours), sorted(want))
                bad, counts = [], {}
                for name, w in want.items():
                    o = ours[name]
                    counts[w.tensor_type.name] = counts.get(w.tensor_type.name, 0) + 1
                    if o.tensor_type != w.tensor_type:
                        bad.append(f"{name}: {o.tensor_type.name}, llama.cpp {w.tensor_type.name}")
                    elif list(o.shape) != list(w.shape):
                        bad.append(f"{name}: shape {list(o.shape)}, llama.cpp {list(w.shape)}")
                    elif not np.array_equal(np.asarray(o.data).reshape(-1).view(np.uint8),
                                            np.asarray(w.data).reshape(-1).view(np.uint8)):
                        bad.append(f"{name}: {w.tensor_type.name} bytes differ")
                print(f"{model_name} {preset}: {len(want) - len(bad)} of {len(want)} tensors match llama.cpp "
                      f"({json.dumps(counts, sort_keys=True)}); llama.cpp took {t_llama:.1f} s", flush=True)
                self.assertEqual(bad, [])
                self.assertEqual(file_type(ours_path), PRESETS[preset])
                self.assertEqual(file_type(want_path), PRESETS[preset])
                os.unlink(want_path)

    def test_presets__types_and_bytes_equal_llama_model_quantize_on_llama_docs_27m(self):
        self.check("llama-docs-27m", list(PRESETS))

    def test_presets__fallbacks_and_tied_embeddings_equal_llama_cpp_on_stories260K(self):
        # 64- and 172-wide rows: llama.cpp's fallback types, and F16 where
        # even those do not fit; no lm_head, so the embedding is the output
        self.check("stories260K", list(PRESETS))


if __name__ == "__main__":
    qptest.main()
