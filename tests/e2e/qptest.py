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


def gpu_recipe(marks, n, gpus=1):
    """n run stages that each need gpus GPUs and record, in marks/sN, their
    devices and their start and end times; plus one that needs none."""
    stages = "".join(
        '  s%d: { uses: run, with: { gpus: %d, cmd: "echo start $(date +%%s.%%N) '
        '[$CUDA_VISIBLE_DEVICES] [$QPIPE_GPUS] > %s/s%d; sleep 0.3; '
        'echo end $(date +%%s.%%N) >> %s/s%d" } }\n' % (i, gpus, marks, i, marks, i)
        for i in range(n))
    return ("stages:\n" + stages +
            '  cpu: { uses: run, with: { cmd: "echo [$CUDA_VISIBLE_DEVICES] > $QPIPE_OUT/o", outs: [o] } }\n')


def gpu_spans(marks, n):
    """[(start, end, devices, qpipe_gpus)] of the n stages of gpu_recipe."""
    spans = []
    for i in range(n):
        with open(os.path.join(marks, "s%d" % i)) as f:
            start, end = f.read().splitlines()
        _, t0, dev, qdev = start.split(" ")
        spans.append((float(t0), float(end.split(" ")[1]), dev.strip("[]"), qdev.strip("[]")))
    return spans


def most_at_once(spans):
    """The largest number of spans open at one moment, and whether any two
    overlapping spans shared a device."""
    most, shared = 0, False
    for t, _, _, _ in spans:
        open_now = [s for s in spans if s[0] <= t < s[1]]
        most = max(most, len(open_now))
        devs = [d for s in open_now for d in s[2].split(",") if d]
        shared |= len(devs) != len(set(devs))
    return most, shared


def main():
    setup_from_argv()
    unittest.main(verbosity=2)
