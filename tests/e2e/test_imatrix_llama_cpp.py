"""An imatrix from calibrate changes the k-quant blocks exactly as llama.cpp
does with the same imatrix.

qpipe exports llama-docs-27m as f32 GGUF, calibrates on WikiText and
quantizes to q2_K, q3_K, q4_K and q6_K with that imatrix, then exports.
llama.cpp (llama-cpp-python's llama_model_quantize, params.pure) quantizes
the same f32 GGUF with the same importance matrix: its entries read from
our imatrix.gguf with gguf-py and turned into importances as
llama-quantize's load_imatrix does (in_sum2 / counts, in float32), then
passed through llama_model_quantize_params.imatrix (the C array of
llama_model_imatrix_data that llama.h takes). Every tensor of the
requested type must be byte-identical between the two files.

llama-cpp-python exposes that C entry point but not llama.cpp's imatrix
file loader (common_imatrix_load lives in the tools' common library, not
in libllama), so the file-to-importances step is the few lines of
load_imatrix re-done here.

To show that the comparison has teeth, llama.cpp also quantizes q4_K
without the imatrix: its blocks of the calibrated weights must differ.

    python3 test_imatrix_llama_cpp.py QPIPE SHARED_DIR
"""
import ctypes
import json
import os
import sys
import unittest

import numpy as np

import qptest

try:
    import gguf
    import llama_cpp
except ImportError as e:
    sys.exit(f"conformance suite needs gguf and llama-cpp-python: {e}")

T = gguf.GGMLQuantizationType
TYPES = {"q2_K": ("LLAMA_FTYPE_MOSTLY_Q2_K", T.Q2_K), "q3_K": ("LLAMA_FTYPE_MOSTLY_Q3_K_M", T.Q3_K),
         "q4_K": ("LLAMA_FTYPE_MOSTLY_Q4_K_M", T.Q4_K), "q6_K": ("LLAMA_FTYPE_MOSTLY_Q6_K", T.Q6_K)}

RECIPE = """\
stages:
  model: {{ uses: model.local, with: {{ path: {model} }} }}
  base: {{ uses: quantize, with: {{ model: model, type: f32 }} }}
  base_gguf: {{ uses: export.gguf, with: {{ model: base }} }}
  cal:
    uses: calibrate
    with: {{ gguf: base_gguf, text: {text}, samples: 6, seq_len: 256, seed: 3, hessian: false }}
  quant:
    uses: quantize
    matrix: {{ type: [{types}] }}
    with: {{ model: model, type: "${{matrix.type}}", imatrix: cal }}
  gguf: {{ uses: export.gguf, with: {{ model: quant }} }}
"""

_QUIET = llama_cpp.llama_log_callback(lambda level, text, user: None)


def importances(path):
    """{name: float32 importances} as llama-quantize's load_imatrix makes them."""
    r = gguf.GGUFReader(path)
    for key in ("imatrix.datasets", "imatrix.chunk_count", "imatrix.chunk_size"):
        assert key in r.fields, "missing " + key
    t = {x.name: np.asarray(x.data, dtype=np.float32).reshape(-1) for x in r.tensors}
    out = {}
    for name in t:
        if not name.endswith(".in_sum2"):
            continue
        w = name[:-len(".in_sum2")]
        count = np.float32(round(float(t[w + ".counts"][0])))
        out[w] = (t[name] / count).astype(np.float32) if count > 0 else np.ones_like(t[name])
    return out


def llama_quantize(src, dst, ftype_name, imat=None):
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, ftype_name)
    params.pure = True
    params.nthread = 2
    keep = []
    if imat:
        arr = (llama_cpp.llama_model_imatrix_data * (len(imat) + 1))()
        for i, (name, v) in enumerate(sorted(imat.items())):
            v = np.ascontiguousarray(v, dtype=np.float32)
            keep.append((name.encode(), v))
            arr[i].name = keep[-1][0]
            arr[i].data = v.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
            arr[i].size = v.size
        arr[len(imat)].name = None  # the terminator
        params.imatrix = arr
        keep.append(arr)
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params))
    if rc != 0:
        raise AssertionError(f"llama_model_quantize({ftype_name}) returned {rc}")


def tensor_bytes(path):
    return {t.name: (t.tensor_type, bytes(np.asarray(t.data).reshape(-1).view(np.uint8)))
            for t in gguf.GGUFReader(path).tensors}


class ImatrixAgainstLlamaCpp(unittest.TestCase):
    def test_imatrix_kquant_blocks_equal_llama_quantize(self):
        llama_cpp.llama_log_set(_QUIET, ctypes.c_void_p())
        w = qptest.Workdir()
        self.addCleanup(w.cleanup)
        text = os.path.join(qptest.SHARED, "data", "text", "wikitext-2-raw-test", "wiki.test.hfrows.lf.raw")
        recipe = w.write("r.yaml", RECIPE.format(model=qptest.model_dir("llama-docs-27m"), text=text,
                                                 types=", ".join(TYPES)))
        _, events = w.run(recipe)
        st = qptest.stage_events(events)
        base = st["base_gguf"]["outputs"]["model.gguf"]
        imat = importances(st["cal"]["outputs"]["imatrix.gguf"])
        self.assertEqual(len(imat), 6 * 7)
        for type_name, (ftype, qtype) in TYPES.items():
            key = st["quant[type=%s]" % type_name]["key"]
            with open(os.path.join(w.cache, "actions", key[:2], key[2:])) as f:
                self.assertEqual(json.load(f)["metrics"]["imatrix_tensors"], 42)
            ours = tensor_bytes(st["gguf[type=%s]" % type_name]["outputs"]["model.gguf"])
            dst = os.path.join(w.dir, type_name + ".gguf")
            llama_quantize(base, dst, ftype, imat)
            theirs = tensor_bytes(dst)
            compared = weighted = 0
            for name, (tt, data) in theirs.items():
                if tt != qtype:
                    continue
                compared += 1
                weighted += name in imat
                self.assertEqual(ours[name][0], tt, name)
                if ours[name][1] != data:
                    a = np.frombuffer(ours[name][1], np.uint8)
                    b = np.frombuffer(data, np.uint8)
                    bad = int((a != b).sum()) if a.size == b.size else -1
                    self.fail(f"{type_name} {name}: {bad} bytes differ from llama.cpp's")
            print(f"{type_name}: {compared} tensors byte-identical to llama_model_quantize with the imatrix "
                  f"({weighted} of them weighted by it)")
            self.assertEqual(weighted, 42)
            if type_name == "q4_K":
                plain = os.path.join(w.dir, "plain.gguf")
                llama_quantize(base, plain, ftype)
                differ = sum(tensor_bytes(plain)[n][1] != theirs[n][1] for n in imat)
                print(f"q4_K without the imatrix: {differ} of 42 calibrated tensors differ")
                self.assertGreater(differ, 30)
            os.unlink(dst)


if __name__ == "__main__":
    qptest.main()
