"""The recipes that start from real Hub repos validate and plan without
the network: against a mock Hub that does not know them, each hf.download
is planned as unresolved (it would fail at run time), and every other
stage is planned as usual."""
import glob
import os
import unittest

import hubtest
import qptest

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


class Recipes(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.hub = hubtest.MockHub(qptest.SHARED)

    @classmethod
    def tearDownClass(cls):
        cls.hub.stop()

    def test_hub_recipes_plan_offline_with_the_revision_unresolved(self):
        recipes = []
        for p in sorted(glob.glob(os.path.join(ROOT, "recipes", "*.yaml"))):
            with open(p) as f:
                if "hf.download" in f.read():
                    recipes.append(p)
        self.assertEqual([os.path.basename(p) for p in recipes],
                         ["llama-3-8b.yaml", "qwen2-0.5b.yaml", "tinyllama-1.1b-chat.yaml"])
        for path in recipes:
            with self.subTest(os.path.basename(path)):
                w = qptest.Workdir()
                try:
                    p = w.qpipe("plan", path, "--cache-dir", w.cache,
                                env=hubtest.hf_env(w, self.hub), check=0)
                    fetch = [l for l in p.stdout.splitlines() if l.startswith("run     fetch (")]
                    self.assertEqual(len(fetch), 1, p.stdout)
                    self.assertIn("(HTTP 404)", fetch[0])
                    self.assertRegex(p.stdout, r"\d+ stage\(s\): 0 cached, \d+ to run")
                    # Offline with a cold cache: the same, without a request.
                    p = w.qpipe("plan", path, "--cache-dir", w.cache,
                                env=hubtest.hf_env(w, self.hub, HF_HUB_OFFLINE="1"), check=0)
                    self.assertIn("HF_HUB_OFFLINE=1 forbids fetching it", p.stdout)
                finally:
                    w.cleanup()


if __name__ == "__main__":
    qptest.main()
