"""Our forward pass against an independent numpy one (llama_ref.py, from
the safetensors weights in Hugging Face's convention):

- the f32 GGUF's logits for a fixed prompt equal the reference's within
  1e-4 relative (per position, against the largest reference logit) on
  stories260K and llama-docs-27m, and pick the same top token;
- stories260K on TinyStories reproduces shared/data/README.md's reference
  number: 40 windows of BOS + the next 511 tokens of the file (tokenized
  without BOS), all 511 predictions scored, mean NLL 1.4486 nats.

    python3 test_llama_ref.py QP_MODEL_TOOL QPIPE
"""
import json
import os
import subprocess
import sys
import tempfile
import unittest

import numpy as np
import sentencepiece as spm

from llama_ref import LlamaRef
from mkgguf import exported

TOOL = QPIPE = None
SHARED = os.environ.get("QP_SHARED_DIR", "../shared")
PROMPT = ("Once upon a time, there was a little girl named Lily. She loved to play outside "
          "in the park. The kernel has to be built with CONFIG_DEBUG_INFO.")


def model_dir(name):
    return os.path.join(SHARED, "data", "models", name)


class LlamaAgainstNumpy(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="qp-model-")
        cls.files = {m: exported(QPIPE, cls.tmp.name, model_dir(m), ["f32"])
                     for m in ("stories260K", "llama-docs-27m")}

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def logits(self, path, ids, threads=2):
        out = os.path.join(self.tmp.name, "logits.bin")
        subprocess.run([TOOL, "logits", path, out, str(threads)] + [str(i) for i in ids], check=True)
        return np.fromfile(out, np.float32).reshape(len(ids), -1)

    def check_model(self, name):
        d = model_dir(name)
        sp = spm.SentencePieceProcessor(model_file=os.path.join(d, "tokenizer.model"))
        ids = [sp.bos_id()] + sp.encode(PROMPT)
        ref = LlamaRef(d).logits(np.array(ids))
        ours = self.logits(self.files[name]["f32"], ids)
        self.assertEqual(ours.shape, ref.shape)
        rel = np.abs(ours - ref).max(-1) / np.abs(ref).max(-1)
        self.assertLess(rel.max(), 1e-4, "worst position %d" % rel.argmax())
        self.assertTrue((ours.argmax(-1) == ref.argmax(-1)).all())
        one = self.logits(self.files[name]["f32"], ids, threads=1)
        self.assertTrue((one == ours).all(), "logits depend on the thread count")

    def test_stories260k_f32_logits_equal_numpy(self):
        self.check_model("stories260K")

    def test_llama_docs_27m_f32_logits_equal_numpy(self):
        self.check_model("llama-docs-27m")

    def test_stories260k_tinystories_nll_equals_readme_reference(self):
        d = model_dir("stories260K")
        sp = spm.SentencePieceProcessor(model_file=os.path.join(d, "tokenizer.model"))
        with open(os.path.join(SHARED, "data", "text", "tinystories",
                               "tinystories_validation_head.txt"), encoding="utf-8") as f:
            toks = sp.encode(f.read())
        windows = []
        for w in range(40):
            windows += [sp.bos_id()] + toks[w * 511:(w + 1) * 511]
        ids = os.path.join(self.tmp.name, "ids.txt")
        with open(ids, "w") as f:
            f.write(" ".join(map(str, windows)))
        p = subprocess.run([TOOL, "score", self.files["stories260K"]["f32"], ids, "512", "0", "2"],
                           capture_output=True, text=True, check=True)
        r = json.loads(p.stdout)
        self.assertEqual(r["n"], 40 * 511)
        self.assertAlmostEqual(r["nll"] / r["n"], 1.4486, delta=5e-5)


if __name__ == "__main__":
    TOOL = os.path.abspath(sys.argv.pop(1))
    QPIPE = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
