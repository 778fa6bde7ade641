"""Hugging Face's strided perplexity (qp_ppl_hf_run) against the loop of
the transformers docs page "Perplexity of fixed-length models", written
here over the numpy forward pass (llama_ref.py): input_ids[begin:end],
target_ids = a copy with all but the last trg_len set to -100, the labels
shifted inside the window, and the NLL summed over the scored tokens and
divided by their count (the exact mean; see model/perplexity.h for how
that differs from the page's num_valid_tokens - 1 weighting, which is
computed here too and must be close, not equal). The text is a short
slice tokenized once with BOS; several windows, stride < max_length, and
a last window shorter than max_length. 1e-5 relative on PPL.

    python3 test_ppl_hf.py QP_MODEL_TOOL
"""
import json
import os
import subprocess
import sys
import tempfile
import unittest

import numpy as np
import sentencepiece as spm
from safetensors.numpy import load_file, save_file

from llama_ref import LlamaRef

TOOL = None
SHARED = os.environ.get("QP_SHARED_DIR", "../shared")


def model_dir(name):
    return os.path.join(SHARED, "data", "models", name)


def log_softmax(x):
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def docs_loop(ref, ids, max_length, stride, max_windows=None):
    """(exact mean NLL, the docs page's weighted mean, windows, tokens
    scored), over the first max_windows windows if given."""
    ids = np.asarray(ids)
    seq_len = len(ids)
    nll_sum = weighted = 0.0
    n_tokens = n_weights = 0
    prev_end_loc = 0
    windows = 0
    for begin_loc in range(0, seq_len, stride):
        end_loc = min(begin_loc + max_length, seq_len)
        trg_len = end_loc - prev_end_loc
        input_ids = ids[begin_loc:end_loc]
        target_ids = input_ids.copy()
        target_ids[:-trg_len] = -100
        # the model's loss: logits[:-1] against labels[1:], -100 ignored
        lp = log_softmax(ref.logits(input_ids))[:-1]
        labels = target_ids[1:]
        valid = labels != -100
        nll = -lp[np.arange(len(labels))[valid], labels[valid]]
        nll_sum += nll.sum()
        n_tokens += valid.sum()
        num_loss_tokens = (target_ids != -100).sum() - 1
        weighted += nll.mean() * num_loss_tokens
        n_weights += num_loss_tokens
        windows += 1
        prev_end_loc = end_loc
        if end_loc == seq_len or windows == max_windows:
            break
    return nll_sum / n_tokens, weighted / n_weights, windows, n_tokens


class StridedPerplexity(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="qp-pplhf-")

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def check(self, model, text_rel, n_bytes, max_length, stride, weights=None, src=None):
        src = src or model
        sp = spm.SentencePieceProcessor(model_file=os.path.join(src, "tokenizer.model"))
        with open(os.path.join(SHARED, "data", "text", text_rel), "rb") as f:
            raw = f.read(n_bytes)
        text = raw.decode("utf-8", "ignore")
        path = os.path.join(self.tmp.name, "slice.txt")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        ids = [sp.bos_id()] + sp.encode(text)
        exact, weighted, windows, scored = docs_loop(LlamaRef(model, weights), ids, max_length, stride)
        self.assertGreaterEqual(windows, 3)
        self.assertNotEqual((len(ids) - max_length) % stride, 0, "want a short last window")
        p = subprocess.run([TOOL, "pplhf", model, path, str(max_length), str(stride), "0", "2"],
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        r = json.loads(p.stdout)
        self.assertEqual(r["tokens"], len(ids))
        self.assertEqual(r["windows"], windows)
        self.assertEqual(r["scored"], scored)
        self.assertEqual(scored, len(ids) - 1)  # stride <= max_length: every token but the first, once
        self.assertLess(abs(r["ppl"] / np.exp(exact) - 1), 1e-5)
        # the page's weighting is a different (close) figure
        self.assertNotEqual(exact, weighted)
        self.assertLess(abs(weighted / exact - 1), 2e-2)

    def test_stories260k_tinystories(self):
        self.check(model_dir("stories260K"), "tinystories/tinystories_validation_head.txt", 1400, 128, 48)

    def test_llama_docs_f32_heldout(self):
        src = model_dir("llama-docs-27m")
        w = {k: v.astype(np.float32) for k, v in load_file(os.path.join(src, "model.safetensors")).items()}
        d = os.path.join(self.tmp.name, "docs32")
        os.makedirs(d)
        save_file(w, os.path.join(d, "model.safetensors"))
        for side in ("config.json", "tokenizer.model", "tokenizer_config.json"):
            os.symlink(os.path.abspath(os.path.join(src, side)), os.path.join(d, side))
        self.check(d, "kernel-docs-heldout/heldout.txt", 1500, 96, 40, weights=w, src=src)

    def test_bad_parameters_are_refused(self):
        path = os.path.join(self.tmp.name, "short.txt")
        with open(path, "w") as f:
            f.write("Once upon a time")
        for args, msg in ((["16", "17"], "stride 17 is outside 1 .. 16, the window length"),
                          (["16", "0"], "stride 0 is outside"), (["1", "1"], "a window of 1 token(s) leaves none to score")):
            p = subprocess.run([TOOL, "pplhf", model_dir("stories260K"), path] + args + ["0", "1"],
                               capture_output=True, text=True)
            self.assertNotEqual(p.returncode, 0)
            self.assertIn(msg, p.stderr)


if __name__ == "__main__":
    TOOL = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
