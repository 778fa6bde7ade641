"""url.download: pinned files over file:// and HTTP (the mock Hub), and
archives unpacked with members selected, while crafted archives
(traversal, absolute path, symlink and hardlink escapes, device files, a
bomb past the cap) are refused naming the member."""
import hashlib
import io
import os
import shutil
import subprocess
import tarfile
import unittest
import zipfile

import hubtest
import qptest

RECIPE = """\
name: url
stages:
  get:
    uses: url.download
    with: WITH
"""

TREE = {"data/a.txt": b"alpha\n", "data/sub/b.txt": b"beta\n" * 100, "README": b"readme\n"}


def sha256(b):
    return hashlib.sha256(b).hexdigest()


def tar_bytes(members, mode="w"):
    """members: list of (TarInfo kwargs, data or None)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as t:
        for kw, data in members:
            ti = tarfile.TarInfo(kw.pop("name"))
            for k, v in kw.items():
                setattr(ti, k, v)
            if data is not None:
                ti.size = len(data)
            t.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


class UrlDownload(unittest.TestCase):
    def setUp(self):
        self.w = qptest.Workdir()

    def tearDown(self):
        self.w.cleanup()

    def put(self, name, data):
        path = os.path.join(self.w.dir, name)
        with open(path, "wb") as f:
            f.write(data)
        return path, "file://" + path

    def run_with(self, with_, check=0, env=None):
        r = self.w.write("r.yaml", RECIPE.replace("WITH", with_))
        p, ev = self.w.run(r, check=check, env=env)
        return p, qptest.stage_events(ev).get("get")

    def read(self, path):
        with open(path, "rb") as f:
            return f.read()

    def test_pinned_file_is_stored_under_its_name(self):
        data = b"hello world\n" * 1000
        _, url = self.put("hello.txt", data)
        _, get = self.run_with('{ url: "%s", sha256: %s }' % (url, sha256(data)))
        self.assertEqual(get["status"], "ran")
        self.assertEqual(list(get["outputs"]), ["hello.txt"])
        self.assertTrue(get["outputs"]["hello.txt"].startswith(self.w.cache))
        self.assertEqual(self.read(get["outputs"]["hello.txt"]), data)

    def test_wrong_sha256_is_reported_and_nothing_stored(self):
        _, url = self.put("hello.txt", b"hello\n")
        p, get = self.run_with('{ url: "%s", sha256: %s }' % (url, "0" * 64), check=1)
        self.assertRegex(get["error"], r"content has sha256 [0-9a-f]{64}, expected 0{64} "
                         r"\(gave up after 5 attempts\)")
        self.assertFalse(os.path.exists(os.path.join(self.w.cache, "actions")) and
                         os.listdir(os.path.join(self.w.cache, "actions")))

    def test_sha256_is_required_unless_unpinned(self):
        _, url = self.put("hello.txt", b"hello\n")
        p, _ = self.run_with('{ url: "%s" }' % url, check=3)
        self.assertIn("stage 'get': parameter 'sha256' is required unless 'unpinned: true'", p.stderr)
        _, get = self.run_with('{ url: "%s", unpinned: true }' % url)
        self.assertEqual(get["status"], "ran")

    def test_http_download_follows_the_hub_redirect(self):
        hub = hubtest.MockHub(qptest.SHARED)
        try:
            src = os.path.join(qptest.model_dir("stories260K"), "model.safetensors")
            data = self.read(src)
            _, get = self.run_with('{ url: "%s/karpathy/stories260K/resolve/main/model.safetensors", '
                                   'sha256: %s }' % (hub.url, sha256(data)))
            self.assertEqual(self.read(get["outputs"]["model.safetensors"]), data)
        finally:
            hub.stop()

    def check_tree(self, get, names):
        self.assertEqual(get["status"], "ran", get.get("error"))
        self.assertEqual(sorted(get["outputs"]), sorted(names))
        for n in names:
            self.assertEqual(self.read(get["outputs"][n]), TREE[n])

    def archive_formats(self):
        tar = tar_bytes([({"name": n}, d) for n, d in TREE.items()])
        zbuf = io.BytesIO()
        with zipfile.ZipFile(zbuf, "w", zipfile.ZIP_DEFLATED) as z:
            for n, d in TREE.items():
                z.writestr(n, d)
        out = {"t.zip": zbuf.getvalue(),
               "t.tar.gz": tar_bytes([({"name": n}, d) for n, d in TREE.items()], "w:gz"),
               "t.tar.xz": tar_bytes([({"name": n}, d) for n, d in TREE.items()], "w:xz")}
        if shutil.which("zstd"):
            out["t.tar.zst"] = subprocess.run(["zstd", "-q", "-c"], input=tar, capture_output=True,
                                              check=True).stdout
        return out

    def test_each_archive_format_unpacks_selected_members(self):
        for name, data in self.archive_formats().items():
            with self.subTest(name):
                _, url = self.put(name, data)
                _, get = self.run_with('{ url: "%s", sha256: %s, extract: ["data/*"] }' % (url, sha256(data)))
                self.check_tree(get, ["data/a.txt", "data/sub/b.txt"])
                _, get = self.run_with('{ url: "%s", sha256: %s, extract: "*" }' % (url, sha256(data)))
                self.check_tree(get, list(TREE))

    def rejected(self, data, message, extra=""):
        _, url = self.put("evil.tar", data)
        _, get = self.run_with('{ url: "%s", sha256: %s, extract: "*"%s }' % (url, sha256(data), extra),
                               check=1)
        self.assertEqual(get["status"], "failed")
        self.assertEqual(get["error"], "evil.tar: " + message)
        outside = [f for f in os.listdir(self.w.dir) if f not in ("evil.tar", "r.yaml", "cache", "log.jsonl")]
        self.assertEqual(outside, [])

    def test_traversal_member_is_refused(self):
        self.rejected(tar_bytes([({"name": "ok.txt"}, b"x"), ({"name": "../evil.txt"}, b"x")]),
                      "member '../evil.txt': path escapes the destination ('..')")
        self.rejected(tar_bytes([({"name": "a/../../evil.txt"}, b"x")]),
                      "member 'a/../../evil.txt': path escapes the destination ('..')")

    def test_absolute_member_is_refused(self):
        self.rejected(tar_bytes([({"name": "/tmp/evil.txt"}, b"x")]),
                      "member '/tmp/evil.txt': absolute path")

    def test_symlink_escaping_is_refused(self):
        self.rejected(tar_bytes([({"name": "a/link", "type": tarfile.SYMTYPE, "linkname": "../../etc/passwd"},
                                  None)]),
                      "member 'a/link': symlink to '../../etc/passwd' points outside the destination")
        self.rejected(tar_bytes([({"name": "link", "type": tarfile.SYMTYPE, "linkname": "/etc/passwd"}, None)]),
                      "member 'link': symlink to '/etc/passwd' points outside the destination")

    def test_hardlink_escaping_is_refused(self):
        self.rejected(tar_bytes([({"name": "hl", "type": tarfile.LNKTYPE, "linkname": "../outside.txt"}, None)]),
                      "member 'hl': hardlink to '../outside.txt' points outside the destination")

    def test_device_member_is_refused(self):
        self.rejected(tar_bytes([({"name": "dev/null", "type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3},
                                  None)]),
                      "member 'dev/null': device, fifo or socket (refused)")

    def test_bomb_past_the_cap_is_refused(self):
        zbuf = io.BytesIO()
        with zipfile.ZipFile(zbuf, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("zeros.bin", b"\0" * (8 << 20))
        data = zbuf.getvalue()
        self.assertLess(len(data), 64 << 10)
        self.rejected(data, "member 'zeros.bin': archive expands past the cap of 1000000 bytes",
                      ", max_bytes: 1000000")

    def test_links_inside_the_archive_become_copies(self):
        data = tar_bytes([({"name": "d/real.txt"}, b"real\n"),
                          ({"name": "d/sym", "type": tarfile.SYMTYPE, "linkname": "real.txt"}, None),
                          ({"name": "hard", "type": tarfile.LNKTYPE, "linkname": "d/real.txt"}, None)])
        _, url = self.put("links.tar", data)
        _, get = self.run_with('{ url: "%s", sha256: %s, extract: "*" }' % (url, sha256(data)))
        self.assertEqual(sorted(get["outputs"]), ["d/real.txt", "d/sym", "hard"])
        for n in get["outputs"].values():
            self.assertFalse(os.path.islink(n))
            self.assertEqual(self.read(n), b"real\n")


if __name__ == "__main__":
    qptest.main()
