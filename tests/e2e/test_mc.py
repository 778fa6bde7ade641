"""evaluate's mc metric end to end: a recipe quantizes llama-docs-27m to
f16 and q4_0, exports GGUF files, scores the first 50 items of HellaSwag
and PIQA on each, and a report.markdown table shows acc and acc_norm per
task; a bad task file and a missing 'tasks' fail the stage naming what is
wrong. (The log-likelihoods themselves are checked against numpy in
tests/model/test_mc_ref.py.)"""
import json
import math
import os
import unittest

import qptest

LIMIT = 50

RECIPE = """\
stages:
  model: {{ uses: model.local, with: {{ path: {model} }} }}
  quant:
    uses: quantize
    matrix: {{ type: [f16, q4_0] }}
    with: {{ model: model, type: "${{matrix.type}}" }}
  gguf: {{ uses: export.gguf, with: {{ model: quant }} }}
  eval:
    uses: evaluate
    with: {{ model: quant, gguf: gguf, metrics: [mc], tasks: [{tasks}], mc_limit: {limit} }}
  table:
    uses: report.markdown
    with: {{ from: eval, rows: type, columns: [hellaswag_acc, hellaswag_acc_norm, piqa_acc, piqa_acc_norm] }}
"""


class MultipleChoice(unittest.TestCase):
    def setUp(self):
        self.w = qptest.Workdir()
        self.model = qptest.model_dir("llama-docs-27m")
        tasks = os.path.join(qptest.SHARED, "data", "tasks")
        self.hellaswag = os.path.join(tasks, "hellaswag_validation.jsonl")
        self.piqa = os.path.join(tasks, "piqa_validation.jsonl")

    def tearDown(self):
        self.w.cleanup()

    def metrics(self, key):
        with open(os.path.join(self.w.cache, "actions", key[:2], key[2:])) as f:
            return json.load(f)["metrics"]

    def recipe(self, tasks, limit=LIMIT):
        return self.w.write("r.yaml", RECIPE.format(model=self.model, tasks=", ".join(tasks), limit=limit))

    def test_recipe_reports_acc_and_acc_norm_per_task(self):
        _, ev = self.w.run(self.recipe([self.hellaswag, self.piqa]))
        st = qptest.stage_events(ev)
        table = {}
        for t in ("f16", "q4_0"):
            m = self.metrics(st["eval[type=%s]" % t]["key"])
            for task in ("hellaswag", "piqa"):
                self.assertEqual(m[task + "_n"], LIMIT)
                for k in ("acc", "acc_norm"):
                    p = m["%s_%s" % (task, k)]
                    # a whole number of the 50 items, and lm-eval's standard error
                    self.assertAlmostEqual(p * LIMIT, round(p * LIMIT), places=9)
                    self.assertAlmostEqual(m["%s_%s_stderr" % (task, k)],
                                           math.sqrt(p * (1 - p) / (LIMIT - 1)), places=12)
                    table[(t, task, k)] = p
            self.assertEqual(m["hellaswag_file"], self.hellaswag)
            self.assertIn("lm-eval", m["mc_method"])
        # a 27M documentation model is near chance on HellaSwag (0.25) and
        # PIQA (0.5), but not far below it
        for (t, task, k), p in table.items():
            self.assertGreater(p, 0.1 if task == "hellaswag" else 0.3, (t, task, k))
        with open(st["table"]["outputs"]["report.md"]) as f:
            md = f.read()
        self.assertIn("| type | hellaswag_acc | hellaswag_acc_norm | piqa_acc | piqa_acc_norm |", md)
        for t in ("f16", "q4_0"):
            row = next(line for line in md.splitlines() if line.startswith("| %s |" % t))
            for task in ("hellaswag", "piqa"):
                for k in ("acc", "acc_norm"):
                    self.assertIn(" %.4f |" % table[(t, task, k)], row)

    def test_bad_task_line_fails_naming_file_and_line(self):
        bad = self.w.write("bad.jsonl", '{"goal": "g", "sol1": "a", "sol2": "b", "label": 0}\n'
                                        '{"goal": "g", "sol1": "a", "label": 1}\n')
        p, _ = self.w.run(self.recipe([bad]), check=1)
        self.assertIn("%s:2: piqa item has no string 'sol2'" % bad, p.stderr)

    def test_two_files_of_one_task_are_refused(self):
        p, _ = self.w.run(self.recipe([self.piqa, self.piqa], limit=2), check=1)
        self.assertIn("tasks: %s and %s are both piqa tasks (give one of each)" % (self.piqa, self.piqa),
                      p.stderr)

    def test_mc_without_tasks_names_the_parameter(self):
        r = self.w.write("r.yaml", RECIPE.format(model=self.model, tasks="", limit=LIMIT)
                         .replace("tasks: [], ", ""))
        p, _ = self.w.run(r, check=1)
        self.assertIn("metric 'mc' needs parameter 'tasks' (HellaSwag or PIQA JSONL files)", p.stderr)


if __name__ == "__main__":
    qptest.main()
