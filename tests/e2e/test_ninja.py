"""qpipe ninja: real ninja (Debian's ninja-build) runs a recipe through
build.ninja with the same cached results as qpipe run, regenerates it when
the recipe changes, and reruns only what changed."""
import os
import shutil
import subprocess
import unittest

import qptest

RECIPE = """\
stages:
  model: { uses: model.local, with: { path: MODEL } }
  quant:
    uses: quantize
    matrix: { type: [q8_0, q4_0] }
    with: { model: model, type: "${matrix.type}", fallback: FALLBACK }
  eval: { uses: evaluate, with: { model: quant, reference: model } }
  table: { uses: report.markdown, with: { from: eval, rows: type } }
"""


@unittest.skipUnless(shutil.which("ninja"), "ninja-build is not installed")
class Ninja(unittest.TestCase):
    def setUp(self):
        self.w = qptest.Workdir()

    def tearDown(self):
        self.w.cleanup()

    def write(self, fallback):
        return self.w.write("r.yaml", RECIPE.replace("MODEL", qptest.model_dir("stories260K"))
                            .replace("FALLBACK", fallback))

    def ninja(self):
        p = subprocess.run(["ninja", "-C", self.w.dir], capture_output=True, text=True, timeout=300)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        return [l for l in p.stdout.splitlines() if "] qpipe " in l]

    def test_ninja_builds_what_qpipe_run_would_and_reruns_only_changes(self):
        r = self.write("f16")
        self.w.qpipe("ninja", r, "--cache-dir", self.w.cache, "-o",
                     os.path.join(self.w.dir, "build.ninja"), check=0)
        self.assertEqual(len(self.ninja()), 6)
        # the same store: qpipe run finds everything cached
        _, ev = self.w.run(r)
        self.assertEqual({e["status"] for e in qptest.stage_events(ev).values()}, {"cached"})
        self.assertEqual(self.ninja(), [])
        # an edited parameter: ninja regenerates build.ninja and reruns the
        # quant branch and what depends on it, never the model stage
        r = self.write("f32")
        ran = self.ninja()
        self.assertTrue(any("qpipe ninja" in l for l in ran), ran)
        stages = sorted(l.split("] qpipe ")[1] for l in ran if "qpipe ninja" not in l)
        self.assertEqual(stages, ["'eval[type=q4_0]'", "'eval[type=q8_0]'", "'quant[type=q4_0]'",
                                  "'quant[type=q8_0]'", "'table'"])
        _, ev = self.w.run(r)
        self.assertEqual({e["status"] for e in qptest.stage_events(ev).values()}, {"cached"})

    def test_stage_refuses_when_upstream_has_not_run(self):
        r = self.write("f16")
        p = self.w.qpipe("stage", r, "table", "--cache-dir", self.w.cache, check=2)
        self.assertIn("stage 'table' needs 'eval[type=q8_0]', which has not run yet", p.stderr)
        p = self.w.qpipe("stage", r, "nope", "--cache-dir", self.w.cache, check=2)
        self.assertIn("the recipe has no stage instance 'nope'", p.stderr)


if __name__ == "__main__":
    qptest.main()
