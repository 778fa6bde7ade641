"""hf.download against the mock Hub: huggingface_hub's cache layout, keys
that follow the commit, include/exclude, offline mode, and every injected
fault retried, resumed or reported, with nothing unverified left visible."""
import hashlib
import os
import time
import unittest

import hubtest
import qptest

RECIPE = """\
name: hf
stages:
  fetch:
    uses: hf.download
    with: { repo: REPO, revision: REV EXTRA }
  quant:
    uses: quantize
    with: { model: fetch, type: q8_0 }
  gguf:
    uses: export.gguf
    with: { model: quant }
  eval:
    uses: evaluate
    with: { model: quant, reference: fetch }
  table:
    uses: report.markdown
    with: { from: eval, columns: [size_mb, rel_err] }
"""

FETCH_ONLY = """\
name: hf
stages:
  fetch:
    uses: hf.download
    with: { repo: REPO, revision: REV EXTRA }
"""

STORIES = "karpathy/stories260K"
MOVING = "qpipe/moving"
FILES = ["config.json", "generation_config.json", "model.safetensors", "special_tokens_map.json",
         "tokenizer.model", "tokenizer_config.json"]


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def git_sha1(path):
    with open(path, "rb") as f:
        d = f.read()
    return hashlib.sha1(b"blob %d\0" % len(d) + d).hexdigest()


class HfDownload(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.hub = hubtest.MockHub(qptest.SHARED)

    @classmethod
    def tearDownClass(cls):
        cls.hub.stop()

    def setUp(self):
        self.w = qptest.Workdir()
        self.hub.reset()

    def tearDown(self):
        self.w.cleanup()

    def recipe(self, repo=STORIES, rev="main", extra="", text=FETCH_ONLY):
        t = text.replace("REPO", repo).replace("REV", rev).replace(" EXTRA", extra)
        return self.w.write("r.yaml", t)

    def run_q(self, recipe, check=0, **env):
        return self.w.run(recipe, env=hubtest.hf_env(self.w, self.hub, **env), check=check)

    def assert_cache_verified(self, repo):
        """Every blob hashes to its name; every snapshot link is relative and
        resolves to a blob."""
        d = hubtest.repo_dir(self.w, repo)
        blobs = os.path.join(d, "blobs")
        for name in os.listdir(blobs) if os.path.isdir(blobs) else []:
            if name.endswith(".incomplete"):
                continue
            p = os.path.join(blobs, name)
            got = sha256(p) if len(name) == 64 else git_sha1(p)
            self.assertEqual(got, name, "blob %s is not what its name says" % name)
        snaps = os.path.join(d, "snapshots")
        for root, _, files in os.walk(snaps):
            for f in files:
                p = os.path.join(root, f)
                self.assertTrue(os.path.islink(p), p)
                target = os.readlink(p)
                self.assertFalse(os.path.isabs(target), target)
                self.assertTrue(os.path.isfile(p), "%s -> %s dangles" % (p, target))

    def test_fetch_lands_in_huggingface_hub_layout_and_feeds_quantize(self):
        p, ev = self.run_q(self.recipe(text=RECIPE))
        st = qptest.stage_events(ev)
        self.assertEqual({k: v["status"] for k, v in st.items()},
                         {"fetch": "ran", "quant": "ran", "gguf": "ran", "eval": "ran", "table": "ran"})
        self.assertIn("| eval |", p.stdout)
        commit = self.hub.commit(STORIES)
        d = hubtest.repo_dir(self.w, STORIES)
        with open(os.path.join(d, "refs", "main")) as f:
            self.assertEqual(f.read(), commit)
        snap = os.path.join(d, "snapshots", commit)
        self.assertEqual(sorted(os.listdir(snap)), FILES)
        link = os.readlink(os.path.join(snap, "model.safetensors"))
        self.assertEqual(link, "../../blobs/" + sha256(os.path.join(snap, "model.safetensors")))
        self.assertEqual(os.readlink(os.path.join(snap, "config.json")),
                         "../../blobs/" + git_sha1(os.path.join(snap, "config.json")))
        self.assertEqual(st["fetch"]["outputs"], {f: os.path.join(snap, f) for f in FILES})
        self.assert_cache_verified(STORIES)
        self.assertEqual(self.hub.bodies(), len(FILES))
        # A second run resolves main again (one API request) and reuses all.
        self.hub.reset()
        _, ev = self.run_q(self.recipe(text=RECIPE))
        self.assertEqual({v["status"] for v in qptest.stage_events(ev).values()}, {"cached"})
        self.assertEqual(self.hub.bodies(), 0)

    def test_moved_branch_changes_the_key_and_fetches_only_the_new_file(self):
        r = self.recipe(repo=MOVING)
        _, ev = self.run_q(r)
        old_key = qptest.stage_events(ev)["fetch"]["key"]
        new = self.hub.bump(MOVING)
        self.hub.reset()
        plan = self.w.qpipe("plan", r, "--cache-dir", self.w.cache,
                            env=hubtest.hf_env(self.w, self.hub), check=0)
        self.assertIn("run     fetch (source now resolves to ", plan.stdout)
        _, ev = self.run_q(r)
        fetch = qptest.stage_events(ev)["fetch"]
        self.assertEqual(fetch["status"], "ran")
        self.assertNotEqual(fetch["key"], old_key)
        self.assertIn("README.md", fetch["outputs"])
        self.assertEqual(self.hub.stats()["body"], {"README.md": 1})
        with open(os.path.join(hubtest.repo_dir(self.w, MOVING), "refs", "main")) as f:
            self.assertEqual(f.read(), new)
        # The old commit, asked for by sha, is still cached.
        self.hub.reset()
        _, ev = self.run_q(self.recipe(repo=MOVING, rev=self.hub.commit(MOVING, "v1.0")))
        self.assertEqual(qptest.stage_events(ev)["fetch"]["status"], "ran")
        self.assertEqual(self.hub.bodies(), 0)

    def test_include_and_exclude_select_files(self):
        _, ev = self.run_q(self.recipe(extra=', include: ["*.json", "*.model"], exclude: ["generation_*"]'))
        outs = sorted(qptest.stage_events(ev)["fetch"]["outputs"])
        self.assertEqual(outs, ["config.json", "special_tokens_map.json", "tokenizer.model",
                                "tokenizer_config.json"])
        p, ev = self.run_q(self.recipe(extra=', include: ["*.nothing"]'), check=1)
        self.assertIn("no file matches include/exclude", qptest.stage_events(ev)["fetch"]["error"])

    def test_dataset_repo_uses_datasets_folder(self):
        _, ev = self.run_q(self.recipe(repo="qpipe/tiny-text", extra=", repo_type: dataset"))
        outs = qptest.stage_events(ev)["fetch"]["outputs"]
        self.assertEqual(sorted(outs), ["stories260K.bin", "tok512.bin", "tok512.model"])
        self.assertIn("/datasets--qpipe--tiny-text/snapshots/", outs["tok512.model"])

    def test_offline_with_warm_cache_runs_without_a_request(self):
        self.run_q(self.recipe(text=RECIPE))
        self.hub.reset()
        self.w.cache = os.path.join(self.w.dir, "cache2")   # the stages really run again
        p, ev = self.run_q(self.recipe(text=RECIPE), HF_HUB_OFFLINE="1", HF_ENDPOINT="http://127.0.0.1:9")
        st = qptest.stage_events(ev)
        self.assertEqual(st["fetch"]["status"], "ran")
        self.assertEqual(sorted(st["fetch"]["outputs"]), FILES)
        self.assertEqual(self.hub.stats()["api"], 0)
        self.assertEqual(self.hub.bodies(), 0)

    def test_offline_with_cold_cache_fails_at_once(self):
        r = self.recipe(text=RECIPE)
        env = hubtest.hf_env(self.w, self.hub, HF_HUB_OFFLINE="1")
        plan = self.w.qpipe("plan", r, "--cache-dir", self.w.cache, env=env, check=0)
        self.assertIn("run     fetch ('karpathy/stories260K' revision 'main' is not in the Hugging Face "
                      "cache", plan.stdout)
        t0 = time.monotonic()
        p, ev = self.run_q(r, check=1, HF_HUB_OFFLINE="1")
        self.assertLess(time.monotonic() - t0, 5)
        st = qptest.stage_events(ev)
        self.assertEqual(st["fetch"]["status"], "failed")
        self.assertIn("HF_HUB_OFFLINE=1 forbids fetching it", st["fetch"]["error"])
        self.assertEqual(st["quant"]["status"], "skipped")
        self.assertEqual(self.hub.stats()["api"], 0)

    # ---- faults ----

    def fault_run(self, fault, check=0, **env):
        p, ev = self.run_q(self.recipe(repo="faults/" + fault), check=check, **env)
        self.assert_cache_verified("faults/" + fault)
        return p, qptest.stage_events(ev)["fetch"], self.hub.stats()

    def test_truncated_body_is_resumed_with_range(self):
        _, fetch, stats = self.fault_run("truncated")
        self.assertEqual(fetch["status"], "ran")
        ranges = [r for r in stats["ranges"] if r[1] == "model.safetensors"]
        self.assertEqual(len(ranges), 1)
        self.assertRegex(ranges[0][2], r"^bytes=[1-9][0-9]*-$")

    def test_connection_reset_mid_file_is_resumed(self):
        _, fetch, stats = self.fault_run("reset")
        self.assertEqual(fetch["status"], "ran")
        self.assertEqual(stats["body"]["model.safetensors"], 2)

    def test_server_error_is_retried_with_backoff(self):
        _, fetch, stats = self.fault_run("flaky")
        self.assertEqual(fetch["status"], "ran")
        self.assertEqual(stats["body"]["model.safetensors"], 3)
        self.assertGreaterEqual(stats["status"]["500"], 1 + 2 * len(FILES))

    def test_wrong_content_once_is_fetched_again(self):
        _, fetch, stats = self.fault_run("corrupt-once")
        self.assertEqual(fetch["status"], "ran")
        self.assertEqual(stats["body"]["model.safetensors"], 2)

    def test_wrong_content_is_reported_and_never_stored(self):
        p, fetch, stats = self.fault_run("corrupt", check=1)
        self.assertEqual(fetch["status"], "failed")
        self.assertRegex(fetch["error"], r"(model\.safetensors|tokenizer\.model): content has sha256 [0-9a-f]{64}, "
                         r"expected [0-9a-f]{64} \(gave up after 5 attempts\)|"
                         r"\.json: content has git blob sha1 [0-9a-f]{40}, expected [0-9a-f]{40} "
                         r"\(gave up after 5 attempts\)")
        d = hubtest.repo_dir(self.w, "faults/corrupt")
        visible = [f for f in os.listdir(os.path.join(d, "blobs")) if not f.endswith(".incomplete")]
        self.assertEqual(visible, [])
        self.assertFalse(os.path.exists(os.path.join(d, "snapshots")))
        # qpipe's store holds no record and no object of the stage.
        self.assertFalse([f for f in hubtest.cache_listing(self.w) if f.startswith("cache/actions/")])

    def test_gated_repo_tells_the_user_to_set_hf_token(self):
        r = self.recipe(repo="faults/gated")
        p, ev = self.run_q(r, check=1)
        err = qptest.stage_events(ev)["fetch"]["error"]
        self.assertIn("'faults/gated': access denied (HTTP 401, no token): set HF_TOKEN", err)
        self.assertIn("accept the model's license at %s/faults/gated" % self.hub.url, err)
        # HF_TOKEN works, and so does the token huggingface_hub stores.
        _, ev = self.run_q(r, HF_TOKEN=hubtest.TOKEN)
        self.assertEqual(qptest.stage_events(ev)["fetch"]["status"], "ran")
        w2 = self.w
        self.w = qptest.Workdir()
        try:
            os.makedirs(os.path.join(self.w.dir, "hf"))
            self.w.write("hf/token", hubtest.TOKEN + "\n")
            _, ev = self.run_q(self.recipe(repo="faults/gated"))
            self.assertEqual(qptest.stage_events(ev)["fetch"]["status"], "ran")
        finally:
            self.w.cleanup()
            self.w = w2
        # The token never went to the blob host (another origin).
        self.assertTrue(all(a in ("", "Bearer " + hubtest.TOKEN) for a in self.hub.stats()["auth"]))

    def test_partial_file_from_an_earlier_run_is_resumed(self):
        src = os.path.join(qptest.model_dir("stories260K"), "model.safetensors")
        etag = sha256(src)
        blobs = os.path.join(hubtest.repo_dir(self.w, STORIES), "blobs")
        os.makedirs(blobs)
        with open(src, "rb") as f:
            data = f.read()
        with open(os.path.join(blobs, etag + ".incomplete"), "wb") as f:
            f.write(data[:1000])
        _, ev = self.run_q(self.recipe())
        self.assertEqual(qptest.stage_events(ev)["fetch"]["status"], "ran")
        self.assertIn([STORIES, "model.safetensors", "bytes=1000-"], self.hub.stats()["ranges"])
        self.assertEqual(sha256(os.path.join(blobs, etag)), etag)
        self.assertFalse(os.path.exists(os.path.join(blobs, etag + ".incomplete")))


if __name__ == "__main__":
    qptest.main()
