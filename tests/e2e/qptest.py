"""Shared helpers for qpipe's end-to-end tests.

Tests get the qpipe binary and the shared data folder from the command
line (meson passes them): python3 test_x.py QPIPE SHARED_DIR [unittest args].
"""
import json
import os
import subprocess
import sys
import tempfile
import unittest

QPIPE = None
SHARED = None


def setup_from_argv():
    global QPIPE, SHARED
    if len(sys.argv) < 3:
        sys.exit("usage: %s QPIPE SHARED_DIR [unittest args]" % sys.argv[0])
    QPIPE = os.path.abspath(sys.argv[1])
    SHARED = os.path.abspath(sys.argv[2])
    del sys.argv[1:3]


def model_dir(name):
    return os.path.join(SHARED, "data", "models", name)


class Workdir:
    """A temporary folder holding a recipe, a cache and a run log."""

    def __init__(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="qpipe-test-")
        self.dir = self.tmp.name
        self.cache = os.path.join(self.dir, "cache")
        self.log = os.path.join(self.dir, "log.jsonl")

    def cleanup(self):
        self.tmp.cleanup()

    def write(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def qpipe(self, *args, env=None, check=None):
        e = dict(os.environ)
        e.update(env or {})
        p = subprocess.run([QPIPE, *args], capture_output=True, text=True, env=e, timeout=900)
        if check is not None and p.returncode != check:
            raise AssertionError("qpipe %s exited %d, expected %d\nstdout:\n%s\nstderr:\n%s"
                                 % (" ".join(args), p.returncode, check, p.stdout, p.stderr))
        return p

    def run(self, recipe, *extra, env=None, check=0):
        """qpipe run with this workdir's cache and a fresh log; returns
        (process, events)."""
        if os.path.exists(self.log):
            os.unlink(self.log)
        p = self.qpipe("run", recipe, "--cache-dir", self.cache, "--log-json", self.log,
                       *extra, env=env, check=check)
        events = []
        if os.path.exists(self.log):
            with open(self.log) as f:
                events = [json.loads(line) for line in f if line.strip()]
        return p, events


def stage_events(events):
    return {e["stage"]: e for e in events if e["event"] == "stage"}


def main():
    setup_from_argv()
    unittest.main(verbosity=2)
