"""The same recipe gives bit-identical metrics whatever the thread count.

llama-docs-27m is quantized to q4_0 (q8_0 activations), q4_K (q8_K
activations) and, as kld's base, f16; evaluate measures ppl, kld and mc
(HellaSwag and PIQA, a few items) on each, once as it is and once with
act_quant w8a8 (the int8 product). The recipe runs at -t 1, then, after
`qpipe cache rm` of the evaluate results alone, at -t 2 and -t 3 over the
same quantized files. Every metric must be exactly equal: the JSON
numbers, compared as Python floats, hold all 17 digits of the doubles.
Threads split outputs (rows of a product, heads of attention, tokens of
a batch), never a sum, so nothing about the result may depend on them."""
import json
import os
import unittest

import qptest

N_CTX, CHUNKS, MC_LIMIT = 128, 2, 4
THREADS = [1, 2, 3]

RECIPE = """\
stages:
  model: {{ uses: model.local, with: {{ path: {model} }} }}
  quant:
    uses: quantize
    matrix: {{ type: [q4_0, q4_K] }}
    with: {{ model: model, type: "${{matrix.type}}" }}
  gguf: {{ uses: export.gguf, with: {{ model: quant }} }}
  base_q: {{ uses: quantize, with: {{ model: model, type: f16 }} }}
  base_gguf: {{ uses: export.gguf, with: {{ model: base_q }} }}
  eval:
    uses: evaluate
    matrix: {{ act: [none, w8a8] }}
    with: {{ model: quant, gguf: gguf, base: base_gguf, metrics: [ppl, kld, mc], text: {text},
            n_ctx: {n_ctx}, chunks: {chunks}, tasks: [{tasks}], mc_limit: {limit}, act_quant: "${{matrix.act}}" }}
"""


class ThreadInvariance(unittest.TestCase):
    def setUp(self):
        self.w = qptest.Workdir()

    def tearDown(self):
        self.w.cleanup()

    def metrics(self, key):
        with open(os.path.join(self.w.cache, "actions", key[:2], key[2:])) as f:
            return json.load(f)["metrics"]

    def test_metrics_are_bit_identical_at_1_2_and_3_threads(self):
        data = os.path.join(qptest.SHARED, "data")
        tasks = ", ".join(os.path.join(data, "tasks", t) for t in ("hellaswag_validation.jsonl",
                                                                   "piqa_validation.jsonl"))
        r = self.w.write("r.yaml", RECIPE.format(
            model=qptest.model_dir("llama-docs-27m"), text=os.path.join(data, "text", "kernel-docs-heldout",
                                                                       "heldout.txt"),
            n_ctx=N_CTX, chunks=CHUNKS, tasks=tasks, limit=MC_LIMIT))
        runs = {}
        evals = None
        for t in THREADS:
            if evals:
                self.w.qpipe("cache", "rm", *(e["key"] for e in evals.values()), "--cache-dir", self.w.cache,
                             check=0)
            _, ev = self.w.run(r, "-t", str(t))
            st = qptest.stage_events(ev)
            evals = {k: e for k, e in st.items() if k.startswith("eval[")}
            self.assertEqual(len(evals), 4, sorted(st))
            if t != THREADS[0]:
                # only evaluate ran again: the quantized files are the first run's
                ran = sorted(k for k, e in st.items() if e["status"] != "cached")
                self.assertEqual(ran, sorted(evals), ran)
            runs[t] = {k: self.metrics(e["key"]) for k, e in evals.items()}

        first = runs[THREADS[0]]
        for name, m in first.items():
            # what is compared is really there and non-trivial
            for k in ("ppl", "kld", "kld_p99", "rms_dp", "top1_pct", "hellaswag_acc_norm", "piqa_acc_norm"):
                self.assertIn(k, m, name)
            self.assertGreater(m["kld"], 0.0, name)
            self.assertEqual(m["tokens_scored"], CHUNKS * (N_CTX // 2 - 1), name)
            self.assertEqual(m["hellaswag_n"], MC_LIMIT, name)
        for t in THREADS[1:]:
            for name, m in runs[t].items():
                self.assertEqual(sorted(m), sorted(first[name]), (t, name))
                for k, v in first[name].items():
                    self.assertEqual(m[k], v, "%s at %d threads: %s = %r, %r at %d" % (
                        name, t, k, m[k], v, THREADS[0]))


if __name__ == "__main__":
    qptest.main()
