"""Conformance: RoPE scaling that export.gguf writes means to llama.cpp
what it means to qpipe and transformers. llama-docs-27m's folder with
config.json given linear (factor 2), yarn (factor 4 over 64 positions)
and llama3 scaling (factor 8, band 1..4 over 64 positions) is exported to
f16 GGUF; llama.cpp (llama-cpp-python, f32 KV cache) and qpipe run the
same 256 tokens of held-out text over each file:

- their logits agree as closely as on the unscaled file (f16 kernels on
  both sides: measured 5.6e-4 unscaled, 6.0e-4 to 7.2e-4 scaled, relative
  to each position's largest logit); held to 2e-3 and the top token on
  at least 99% of positions;
- the scaling matters: llama.cpp's logits of each scaled file are more
  than 1e-2 away from its logits of the unscaled one, so a file whose
  keys llama.cpp ignored could not pass.

(tests/model/test_llama_hf.py holds the same exports against numpy.)

    python3 test_rope_llama_cpp.py QP_MODEL_TOOL QPIPE
"""
import json
import os
import subprocess
import sys
import tempfile
import unittest

import numpy as np
import sentencepiece as spm

from llama_cpp_kld import llama_cpp_logits
from mkgguf import exported

TOOL = QPIPE = None
SHARED = os.environ.get("QP_SHARED_DIR", "../shared")
SRC = os.path.join(SHARED, "data", "models", "llama-docs-27m")
N = 256

SCALINGS = [("linear", {"rope_type": "linear", "factor": 2.0}),
            ("yarn", {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64}),
            ("llama3", {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                        "original_max_position_embeddings": 64})]


def rel_err(a, b):
    return (np.abs(a - b).max(-1) / np.abs(b).max(-1)).max()


class RopeLlamaCpp(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="qp-rope-")
        sp = spm.SentencePieceProcessor(model_file=os.path.join(SRC, "tokenizer.model"))
        with open(os.path.join(SHARED, "data", "text", "kernel-docs-heldout", "heldout.txt"), encoding="utf-8") as f:
            cls.ids = ([sp.bos_id()] + sp.encode(f.read(8000)))[:N]
        assert len(cls.ids) == N

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def export(self, name, scaling):
        d = os.path.join(self.tmp.name, name)
        os.makedirs(d)
        with open(os.path.join(SRC, "config.json")) as f:
            c = json.load(f)
        if scaling:
            c.pop("rope_parameters", None)
            c["rope_scaling"] = scaling
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(c, f)
        for side in ("tokenizer.model", "tokenizer_config.json", "model.safetensors"):
            os.symlink(os.path.abspath(os.path.join(SRC, side)), os.path.join(d, side))
        return exported(QPIPE, self.tmp.name, d, ["f16"])["f16"]

    def both(self, gguf_path):
        out = os.path.join(self.tmp.name, "logits.bin")
        p = subprocess.run([TOOL, "logits", gguf_path, out, "2"] + [str(i) for i in self.ids],
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        ours = np.fromfile(out, np.float32).reshape(N, -1)
        theirs = llama_cpp_logits(gguf_path, [self.ids], N)[0][0]
        return ours, theirs

    def test_scaled_exports_run_alike_in_llama_cpp(self):
        ours, plain = self.both(self.export("plain", None))
        base = rel_err(ours, plain)
        print("\n  unscaled: qpipe vs llama.cpp %.2e" % base)
        for name, scaling in SCALINGS:
            with self.subTest(name):
                ours, theirs = self.both(self.export(name, scaling))
                e = rel_err(ours, theirs)
                moved = rel_err(theirs, plain)
                agree = (ours.argmax(-1) == theirs.argmax(-1)).mean()
                print("  %s: qpipe vs llama.cpp %.2e, top token %.3f; llama.cpp scaled vs unscaled %.2e"
                      % (name, e, agree, moved))
                self.assertLess(e, 2e-3)
                self.assertGreaterEqual(agree, 0.99)
                self.assertGreater(moved, 1e-2)


if __name__ == "__main__":
    TOOL = os.path.abspath(sys.argv.pop(1))
    QPIPE = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
