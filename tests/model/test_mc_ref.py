"""model/mc against an independent scorer: the queries and choices built
here from lm-evaluation-harness's task definitions (Python's re and str, as
lm-eval runs them), tokens from the sentencepiece package, log-likelihoods
from the numpy forward pass (llama_ref.py, float64, from the safetensors
weights). On the first items of HellaSwag and PIQA with llama-docs-27m's
f32 GGUF, every choice's log-likelihood equals ours within 1e-4 relative,
its continuation has the same number of tokens, and acc and acc_norm pick
the same choices.

    python3 test_mc_ref.py QP_MC_TOOL QPIPE
"""
import json
import os
import re
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
MODEL = os.path.join(SHARED, "data", "models", "llama-docs-27m")
TASKS = os.path.join(SHARED, "data", "tasks")
N_ITEMS = 5


def preprocess(text):
    # lm_eval/tasks/hellaswag/utils.py
    text = text.strip()
    text = text.replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    return text.replace("  ", " ")


def items(path, n):
    """(context, choices, label) of the first n items, as lm-eval builds them."""
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            if "goal" in d:
                out.append(("Question: " + d["goal"] + "\nAnswer:", [d["sol1"], d["sol2"]], int(d["label"])))
            elif "ctx_a" in d:
                ctx = d["ctx_a"] + " " + d["ctx_b"].capitalize()
                out.append((preprocess(d["activity_label"] + ": " + ctx),
                            [preprocess(e) for e in d["endings"]], int(d["label"])))
            else:
                out.append((preprocess(d["ctx"]), [preprocess(e) for e in d["endings"]], int(d["label"])))
            if len(out) == n:
                break
    return out


def tool(*args):
    p = subprocess.run([TOOL] + [str(a) for a in args], capture_output=True, text=True)
    if p.returncode != 0:
        raise AssertionError("qp_mc_tool %s failed:\n%s" % (args[0], p.stderr))
    return [json.loads(line) for line in p.stdout.splitlines()]


class McAgainstNumpy(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="qp-mc-")
        cls.gguf = exported(QPIPE, cls.tmp.name, MODEL, ["f32"])["f32"]
        cls.sp = spm.SentencePieceProcessor(model_file=os.path.join(MODEL, "tokenizer.model"))
        cls.ref = LlamaRef(MODEL)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def reference(self, context, choice):
        """(log-likelihood, continuation tokens) of " " + choice after context,
        tokenized as lm-eval's _encode_pair does, BOS first."""
        cont = " " + choice
        n = len(context) - len(context.rstrip())
        if n:
            context, cont = context[:-n], context[-n:] + cont
        bos = [self.sp.bos_id()]
        ctx = bos + self.sp.encode(context)
        whole = bos + self.sp.encode(context + cont)
        cont_ids = whole[len(ctx):]
        ids = np.array(ctx + cont_ids)
        lg = self.ref.logits(ids[:-1])
        lg = lg - lg.max(-1, keepdims=True)
        logp = lg - np.log(np.exp(lg).sum(-1, keepdims=True))
        pos = np.arange(len(ctx) - 1, len(ids) - 1)
        return float(logp[pos, ids[pos + 1]].sum()), len(cont_ids)

    def check_task(self, name):
        path = os.path.join(TASKS, name)
        want = items(path, N_ITEMS)
        got_items = tool("items", path, N_ITEMS)
        self.assertEqual([(i["context"], i["choices"], i["label"]) for i in got_items[:-1]],
                         [(c, ch, l) for c, ch, l in want])
        ours = tool("score", self.gguf, path, N_ITEMS, 2, 512)
        rows, total = ours[:-1], ours[-1]
        self.assertEqual(len(rows), N_ITEMS)
        correct = correct_norm = 0
        worst = 0.0
        for (context, choices, label), row in zip(want, rows):
            ll, nt = zip(*(self.reference(context, c) for c in choices))
            self.assertEqual(list(nt), row["n_tokens"], "line %d" % row["line"])
            rel = np.abs(np.array(row["ll"]) - ll) / np.maximum(1.0, np.abs(ll))
            worst = max(worst, rel.max())
            self.assertLess(rel.max(), 1e-4, (row["line"], row["ll"], ll))
            lens = np.array([float(len(c)) for c in choices])
            pred, pred_norm = int(np.argmax(ll)), int(np.argmax(np.array(ll) / lens))
            self.assertEqual((row["pred"], row["pred_norm"]), (pred, pred_norm), "line %d" % row["line"])
            correct += pred == label
            correct_norm += pred_norm == label
        p, pn = correct / N_ITEMS, correct_norm / N_ITEMS
        self.assertEqual((total["n"], total["correct"], total["correct_norm"]),
                         (N_ITEMS, correct, correct_norm))
        self.assertAlmostEqual(total["acc_stderr"], np.sqrt(p * (1 - p) / (N_ITEMS - 1)), places=12)
        self.assertAlmostEqual(total["acc_norm_stderr"], np.sqrt(pn * (1 - pn) / (N_ITEMS - 1)), places=12)
        print("%s: worst relative ll difference %.2e" % (name, worst), file=sys.stderr)

    def test_hellaswag_log_likelihoods_equal_numpy(self):
        self.check_task("hellaswag_validation.jsonl")

    def test_piqa_log_likelihoods_equal_numpy(self):
        self.check_task("piqa_validation.jsonl")

    def test_original_hellaswag_fields_are_preprocessed_as_lm_eval(self):
        # the original layout (ctx_a, ctx_b, activity_label), with WikiHow's
        # bracket markers, built from the first items of the shared file
        path = os.path.join(self.tmp.name, "hs_orig.jsonl")
        with open(os.path.join(TASKS, "hellaswag_validation.jsonl"), encoding="utf-8") as f, \
                open(path, "w", encoding="utf-8") as o:
            for k, line in zip(range(4), f):
                d = json.loads(line)
                label, _, ctx = d["ctx"].partition(": ")
                a, _, b = ctx.rpartition(". ")
                o.write(json.dumps({"activity_label": label, "ctx_a": a + ".", "ctx_b": b.upper(),
                                    "endings": ["[step] " + e + " [title] More  text." for e in d["endings"]],
                                    "label": str(d["label"])}) + "\n")
        want = items(path, 0)
        got = tool("items", path, 0)[:-1]
        self.assertEqual([(i["context"], i["choices"], i["label"]) for i in got], want)


if __name__ == "__main__":
    TOOL, QPIPE = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    unittest.main(argv=sys.argv[:1], verbosity=2)
