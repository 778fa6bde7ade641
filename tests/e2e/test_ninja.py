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


    def gpu_env(self):
        return {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}

    def test_gpu_stages_go_in_a_pool_as_deep_as_the_gpus(self):
        marks = os.path.join(self.w.dir, "marks")
        os.mkdir(marks)
        r = self.w.write("g.yaml", qptest.gpu_recipe(marks, 4))
        out = os.path.join(self.w.dir, "build.ninja")
        self.w.qpipe("ninja", r, "--cache-dir", self.w.cache, "--gpus", "2", "-o", out, check=0)
        with open(out) as f:
            text = f.read()
        self.assertIn("\ngpus = '0,1'\n\npool gpu\n  depth = 2\n", text)
        self.assertIn(" --gpus $gpus ", text)
        edges = text.split("\nbuild ")[2:]
        pooled = sorted(e.split("id = ")[1].split("\n")[0] for e in edges if "pool = gpu" in e)
        self.assertEqual(pooled, ["'s0'", "'s1'", "'s2'", "'s3'"])
        p = subprocess.run(["ninja", "-C", self.w.dir, "-j", "4"], capture_output=True, text=True,
                           timeout=300, env=self.gpu_env())
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        spans = qptest.gpu_spans(marks, 4)
        most, shared = qptest.most_at_once(spans)
        self.assertLessEqual(most, 2, spans)
        self.assertFalse(shared, spans)
        # one device, a single one, is written as a list
        self.w.qpipe("ninja", r, "--cache-dir", self.w.cache, "--gpus", "3,", "-o", out, check=0)
        with open(out) as f:
            self.assertIn("\ngpus = '3,'\n\npool gpu\n  depth = 1\n", f.read())

    def test_stage_processes_share_the_devices_through_locks(self):
        # four edges at once, with no ninja pool to hold them back: the
        # devices' locks in the store still give each its own device
        marks = os.path.join(self.w.dir, "marks")
        os.mkdir(marks)
        r = self.w.write("g.yaml", qptest.gpu_recipe(marks, 4))
        procs = [subprocess.Popen([qptest.QPIPE, "stage", r, "s%d" % i, "--cache-dir", self.w.cache,
                                   "--gpus", "2", "-q"], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env=self.gpu_env())
                 for i in range(4)]
        for p in procs:
            _, err = p.communicate(timeout=300)
            self.assertEqual(p.returncode, 0, err)
        spans = qptest.gpu_spans(marks, 4)
        most, shared = qptest.most_at_once(spans)
        self.assertLessEqual(most, 2, spans)
        self.assertFalse(shared, spans)

if __name__ == "__main__":
    qptest.main()
