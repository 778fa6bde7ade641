"""Helpers for the download tests: start the mock Hub, give each test a
fresh HF_HOME and qpipe cache, read the mock's counters.

Tests get the qpipe binary and the shared folder from the command line:
python3 test_x.py QPIPE SHARED_DIR [unittest args]."""
import json
import os
import subprocess
import sys
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
import qptest  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
TOKEN = "hf_mock_token"


class MockHub:
    def __init__(self, shared):
        self.proc = subprocess.Popen([sys.executable, os.path.join(HERE, "mock_hub.py"), shared],
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            self.proc.kill()
            raise RuntimeError("mock hub did not start: %r" % line)
        self.port = int(line.split()[1])
        self.url = "http://127.0.0.1:%d" % self.port

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.proc.stdout.close()

    def _call(self, path, method="GET"):
        req = urllib.request.Request(self.url + path, method=method, data=b"" if method == "POST" else None)
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())

    def stats(self):
        return self._call("/_stats")

    def reset(self):
        self._call("/_control/reset", "POST")

    def bump(self, repo):
        return self._call("/_control/bump?repo=" + repo, "POST")["sha"]

    def commit(self, repo, rev="main", rtype="models"):
        return self._call("/api/%s/%s/revision/%s" % (rtype, repo, rev))["sha"]

    def bodies(self):
        """Number of requests that asked for file content."""
        return sum(self.stats()["body"].values())


def hf_env(w, hub, **extra):
    """Environment for a workdir: its own HF_HOME, the mock as endpoint, no
    token, online."""
    env = {"HF_HOME": os.path.join(w.dir, "hf"), "HF_ENDPOINT": hub.url,
           "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_XET": "1",
           "HF_HUB_OFFLINE": "0", "HF_TOKEN": "", "HF_HUB_CACHE": "",
           "HUGGINGFACE_HUB_CACHE": "", "HF_TOKEN_PATH": "", "NO_PROXY": "*",
           "no_proxy": "*", "http_proxy": "", "https_proxy": "", "HTTP_PROXY": "",
           "HTTPS_PROXY": ""}
    env.update(extra)
    return env


def repo_dir(w, repo, rtype="models"):
    return os.path.join(w.dir, "hf", "hub", "%s--%s" % (rtype, repo.replace("/", "--")))


def cache_listing(w):
    """Every path under the HF cache and qpipe's store, relative."""
    out = []
    for root in (os.path.join(w.dir, "hf"), w.cache):
        for d, dirs, files in os.walk(root):
            for f in files:
                out.append(os.path.relpath(os.path.join(d, f), w.dir))
    return sorted(out)
