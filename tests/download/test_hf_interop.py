"""qpipe and huggingface_hub share one cache: each finds and reuses what
the other fetched from the mock Hub (needs huggingface_hub from pip)."""
import filecmp
import os
import subprocess
import sys
import unittest

import hubtest
import qptest

RECIPE = """\
name: interop
stages:
  fetch:
    uses: hf.download
    with: { repo: karpathy/stories260K }
"""

REPO = "karpathy/stories260K"


def hf_python(w, hub, code, **env):
    """Run code with huggingface_hub in a child, so it reads our env."""
    e = dict(os.environ)
    e.update(hubtest.hf_env(w, hub, **env))
    for k in [k for k, v in e.items() if v == "" and k.startswith(("HF_", "HUGGINGFACE_"))]:
        del e[k]
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=e, timeout=120)
    if p.returncode != 0:
        raise AssertionError("huggingface_hub failed:\n" + p.stderr[-3000:])
    return p.stdout.strip()


class Interop(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        try:
            import huggingface_hub  # noqa: F401
        except ImportError:
            raise unittest.SkipTest("huggingface_hub is not installed (scripts/bootstrap --test)")
        cls.hub = hubtest.MockHub(qptest.SHARED)

    @classmethod
    def tearDownClass(cls):
        cls.hub.stop()

    def setUp(self):
        self.w = qptest.Workdir()
        self.hub.reset()

    def tearDown(self):
        self.w.cleanup()

    def test_huggingface_hub_finds_offline_what_qpipe_fetched(self):
        r = self.w.write("r.yaml", RECIPE)
        _, ev = self.w.run(r, env=hubtest.hf_env(self.w, self.hub))
        outs = qptest.stage_events(ev)["fetch"]["outputs"]
        self.hub.reset()
        snap = hf_python(self.w, self.hub,
                         "from huggingface_hub import snapshot_download as s\n"
                         "print(s(%r, local_files_only=True, cache_dir=%r))"
                         % (REPO, os.path.join(self.w.dir, "hf", "hub")))
        self.assertEqual(snap, os.path.dirname(outs["config.json"]))
        for name, path in outs.items():
            self.assertTrue(filecmp.cmp(os.path.join(snap, name), qptest.model_dir("stories260K") + "/" + name,
                                        shallow=False))
        # and through the environment alone, offline
        snap2 = hf_python(self.w, self.hub,
                          "from huggingface_hub import snapshot_download as s\nprint(s(%r))" % REPO,
                          HF_HUB_OFFLINE="1")
        self.assertEqual(snap2, snap)
        self.assertEqual(self.hub.stats()["api"] + self.hub.stats()["head"], 0)

    def test_qpipe_reuses_a_snapshot_huggingface_hub_fetched_without_body_requests(self):
        hf_python(self.w, self.hub, "from huggingface_hub import snapshot_download as s\ns(%r)" % REPO)
        self.assertEqual(self.hub.bodies(), 6)
        self.hub.reset()
        r = self.w.write("r.yaml", RECIPE)
        _, ev = self.w.run(r, env=hubtest.hf_env(self.w, self.hub))
        fetch = qptest.stage_events(ev)["fetch"]
        self.assertEqual(fetch["status"], "ran")
        self.assertEqual(self.hub.stats()["body"], {})
        self.assertEqual(self.hub.stats()["head"], 0)
        commit = self.hub.commit(REPO)
        self.assertEqual(fetch["outputs"]["model.safetensors"],
                         os.path.join(hubtest.repo_dir(self.w, REPO), "snapshots", commit, "model.safetensors"))


if __name__ == "__main__":
    qptest.main()
