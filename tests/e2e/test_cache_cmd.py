"""qpipe cache gc and rm: the store shrinks to a budget, least recently
used first, stays valid, and a rerun restores exactly what was dropped."""
import re
import unittest

import qptest

RECIPE = """\
stages:
  model: { uses: model.local, with: { path: MODEL } }
  quant:
    uses: quantize
    matrix: { type: [f32, q8_0, q4_0] }
    with: { model: model, type: "${matrix.type}" }
  gguf: { uses: export.gguf, with: { model: quant } }
"""


def read(path):
    with open(path, "rb") as f:
        return f.read()


class CacheCmd(unittest.TestCase):
    def setUp(self):
        self.w = qptest.Workdir()
        self.r = self.w.write("r.yaml", RECIPE.replace("MODEL", qptest.model_dir("stories260K")))

    def tearDown(self):
        self.w.cleanup()

    def cache(self, *args, check=0):
        return self.w.qpipe("cache", *args, "--cache-dir", self.w.cache, check=check)

    def test_gc_to_a_budget_keeps_the_store_valid_and_rerun_restores(self):
        _, ev = self.w.run(self.r)
        # read the outputs now: gc will remove some of these objects
        before_bytes = {sid: {n: read(p) for n, p in e["outputs"].items()}
                        for sid, e in qptest.stage_events(ev).items() if sid != "model"}
        out = self.cache("gc", "--grace", "0")
        self.assertIn("removed 0 action record(s), 0 object(s)", out.stdout)
        out = self.cache("gc", "--grace", "0", "--max-size", "1M")
        m = re.search(r"([\d.]+) MB in use now", out.stdout)
        self.assertLessEqual(float(m.group(1)), 1.0, out.stdout)
        self.assertIn("0 bad", self.cache("verify").stdout)
        plan = self.w.qpipe("plan", self.r, "--cache-dir", self.w.cache, check=0).stdout
        self.assertIn("run ", plan)
        before = before_bytes
        _, ev2 = self.w.run(self.r)
        after = {sid: {n: read(p) for n, p in e["outputs"].items()}
                 for sid, e in qptest.stage_events(ev2).items() if sid != "model"}
        self.assertEqual(before.keys(), after.keys())
        self.assertTrue(before == after, "rerun outputs differ from the first run's")
        self.assertIn("0 bad", self.cache("verify").stdout)

    def test_gc_grace_spares_young_objects(self):
        self.w.run(self.r)
        out = self.cache("gc", "--max-size", "1")
        self.assertIn("removed 0 action record(s), 0 object(s)", out.stdout)

    def test_rm_forgets_a_result(self):
        _, ev = self.w.run(self.r)
        key = qptest.stage_events(ev)["gguf[type=q4_0]"]["key"]
        self.cache("rm", key)
        plan = self.w.qpipe("plan", self.r, "--cache-dir", self.w.cache, check=0).stdout
        self.assertIn("run     gguf[type=q4_0] (its last result is no longer in the store)", plan)
        self.assertIn("cached  gguf[type=q8_0]", plan)
        p = self.cache("rm", "nothex", check=2)
        self.assertIn("'nothex' is not a 32-digit key", p.stderr)


if __name__ == "__main__":
    qptest.main()
