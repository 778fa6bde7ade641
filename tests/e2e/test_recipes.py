"""Every recipe under recipes/ validates (qpipe plan); the seed recipes,
whose methods all exist, run on the small shared model and print their
tables with the published numbers beside ours. A method qpipe lacks fails
validation with a clear message, never a silent skip."""
import glob
import os
import unittest

import qptest

RECIPES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "recipes")


def all_recipes():
    return sorted(glob.glob(os.path.join(RECIPES, "**", "*.yaml"), recursive=True))


# Seed recipes that run in CI, with a published row each must show.
RUNS = {
    "seeds/bits-framework.yaml": "| 1-bit | – |",
    "seeds/ternary.yaml": "| tq1_0 |",
    "seeds/seven-methods.yaml": "| GPTQ 4-bit | – |",
    "seeds/llama3-precision.yaml": "| FP8-W8A8 | – |",
    "seeds/qwen-gptq-awq-gguf.yaml": "| Int4 (AWQ) | – |",
}


class Recipes(unittest.TestCase):
    def setUp(self):
        self.w = qptest.Workdir()

    def tearDown(self):
        self.w.cleanup()

    def test_every_recipe_validates(self):
        found = all_recipes()
        self.assertGreaterEqual(len(found), 6)
        for r in found:
            with self.subTest(recipe=os.path.relpath(r, RECIPES)):
                self.w.qpipe("plan", r, "--cache-dir", self.w.cache, check=0)

    def test_every_seed_has_a_recipe_that_runs(self):
        seeds = [f for f in os.listdir(os.path.join(qptest.SHARED, "seeds")) if f.endswith(".txt")]
        self.assertEqual(len(seeds), len(RUNS))
        listed = {os.path.relpath(r, RECIPES) for r in all_recipes()}
        for name in RUNS:
            self.assertIn(name, listed)
        texts = []
        for n in RUNS:
            with open(os.path.join(RECIPES, n)) as f:
                texts.append(f.read())
        for s in seeds:  # each recipe names its seed file
            self.assertTrue(any(s in t for t in texts), s)

    def test_seed_recipes_run(self):
        for name, row in RUNS.items():
            with self.subTest(recipe=name):
                p, ev = self.w.run(os.path.join(RECIPES, name), "-q")
                self.assertIn("scaled down", p.stdout)
                self.assertIn("reference: ", p.stdout)
                self.assertIn("**settings differ**", p.stdout)
                self.assertIn(row, p.stdout)
                print("\n" + p.stdout)

    def test_a_pending_method_fails_validation(self):
        with open(os.path.join(RECIPES, "seeds", "seven-methods.yaml")) as f:
            text = f.read().replace("type: [f16, q8_0, q4_0]", "type: [f16, q8_0, q4_0, gptq]")
        r = self.w.write("pending.yaml", text.replace("../../../shared", qptest.SHARED))
        p = self.w.qpipe("plan", r, "--cache-dir", self.w.cache, check=3)
        self.assertIn("parameter 'type' of stage 'quant': unknown value 'gptq'", p.stderr)
        self.assertIn("nothing was run", p.stderr)


if __name__ == "__main__":
    qptest.main()
