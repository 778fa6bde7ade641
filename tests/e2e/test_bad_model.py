"""A damaged model fails its stage with the file, tensor and byte offset
named, exit status 1, and leaves nothing in the store for that stage."""
import os
import shutil
import unittest

import qptest


class BadModel(unittest.TestCase):
    def setUp(self):
        self.w = qptest.Workdir()
        self.model = os.path.join(self.w.dir, "model")
        shutil.copytree(qptest.model_dir("stories260K"), self.model)
        for f in os.listdir(self.model):
            os.chmod(os.path.join(self.model, f), 0o644)
        self.recipe = self.w.write("r.yaml", """\
stages:
  m: { uses: model.local, with: { path: model } }
  q: { uses: quantize, with: { model: m, type: q8_0 } }
""")

    def tearDown(self):
        self.w.cleanup()

    def test_truncated_safetensors_names_tensor_and_offset(self):
        st = os.path.join(self.model, "model.safetensors")
        os.truncate(st, 900000)
        p, ev = self.w.run(self.recipe, check=1)
        self.assertIn("failed  m: %s: tensor 'model.layers.4.mlp.down_proj.weight': data at offset "
                      "863232 + 44032 runs past end of file (900000 bytes)" % st, p.stderr)
        st_ev = qptest.stage_events(ev)
        self.assertEqual(st_ev["m"]["status"], "failed")
        self.assertEqual(st_ev["q"]["status"], "skipped")
        ls = self.w.qpipe("cache", "ls", "--cache-dir", self.w.cache, check=0)
        self.assertEqual(ls.stdout, "")
        tmp = os.path.join(self.w.cache, "tmp")
        self.assertEqual(os.listdir(tmp) if os.path.isdir(tmp) else [], [])

    def test_corrupt_header_is_reported_not_crashed(self):
        st = os.path.join(self.model, "model.safetensors")
        with open(st, "r+b") as f:
            f.seek(8)
            f.write(b"[")
        p, _ = self.w.run(self.recipe, check=1)
        self.assertIn("failed  m: %s:" % st, p.stderr)

    def test_repaired_model_runs(self):
        st = os.path.join(self.model, "model.safetensors")
        os.truncate(st, 900000)
        self.w.run(self.recipe, check=1)
        shutil.copy(os.path.join(qptest.model_dir("stories260K"), "model.safetensors"), st)
        _, ev = self.w.run(self.recipe, check=0)
        self.assertEqual({e["status"] for e in qptest.stage_events(ev).values()}, {"ran"})


if __name__ == "__main__":
    qptest.main()
