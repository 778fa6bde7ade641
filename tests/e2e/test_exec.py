"""The executor: failure isolation, crashes, concurrent processes on one
store, and SIGKILL at random moments. Asserted from run logs, action
records and `qpipe cache verify`, never from timing."""
import hashlib
import json
import os
import random
import signal
import subprocess
import time
import unittest

import qptest

ISOLATION = """\
stages:
  ok1:  { uses: run, with: { cmd: "echo one > $QPIPE_OUT/a", outs: [a] } }
  segv: { uses: run, with: { cmd: "kill -SEGV $$" } }
  hog:
    uses: run
    with: { cmd: "python3 -c 'b = bytearray(1 << 31)'", memory: 256M }
  ok2:  { uses: run, with: { cmd: "echo two > $QPIPE_OUT/b", outs: [b] } }
  after: { uses: run, needs: [segv], with: { cmd: "true" } }
"""

PIPELINE = """\
stages:
  model: { uses: model.local, with: { path: MODEL } }
  quant:
    uses: quantize
    matrix: { type: [f16, q8_0, q5_1, q4_1, q4_0] }
    with: { model: model, type: "${matrix.type}" }
  gguf: { uses: export.gguf, with: { model: quant } }
  eval: { uses: evaluate, with: { model: quant, reference: model } }
  table: { uses: report.markdown, with: { from: eval, rows: type } }
"""


def statuses(events):
    return {k: v["status"] for k, v in qptest.stage_events(events).items()}


def children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except FileNotFoundError:
        return []


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except FileNotFoundError:
        return ""


def outputs_digest(events):
    """stage -> {output name: sha256 of its bytes}."""
    def sha(path):
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    return {sid: {n: sha(p) for n, p in e["outputs"].items() if not p.startswith(qptest.SHARED)}
            for sid, e in qptest.stage_events(events).items()}


class Exec(unittest.TestCase):
    def setUp(self):
        self.w = qptest.Workdir()

    def tearDown(self):
        self.w.cleanup()

    def test_failing_stages_fail_alone_and_siblings_are_cached(self):
        r = self.w.write("r.yaml", ISOLATION)
        p, ev = self.w.run(r, "-k", "-j", "2", check=1)
        st = statuses(ev)
        self.assertEqual(st, {"ok1": "ran", "segv": "failed", "hog": "failed", "ok2": "ran",
                              "after": "skipped"})
        self.assertIn("failed  segv: command killed by signal 11 (Segmentation fault)", p.stderr)
        self.assertIn("failed  hog: command exited with status 1: MemoryError", p.stderr)
        _, ev = self.w.run(r, "-k", check=1)
        st = statuses(ev)
        self.assertEqual((st["ok1"], st["ok2"], st["segv"]), ("cached", "cached", "failed"))

    def test_without_keep_going_the_run_stops_at_the_first_failure(self):
        r = self.w.write("r.yaml", ISOLATION)
        _, ev = self.w.run(r, check=1)
        st = statuses(ev)
        self.assertEqual(st["ok1"], "ran")
        self.assertEqual(st["segv"], "failed")
        self.assertEqual({st["hog"], st["ok2"], st["after"]}, {"skipped"})

    def test_a_crashed_stage_process_fails_alone(self):
        r = self.w.write("r.yaml", """\
stages:
  slow: { uses: run, with: { cmd: "sleep 60" } }
  fast: { uses: run, with: { cmd: "echo hi > $QPIPE_OUT/x", outs: [x] } }
""")
        # under AddressSanitizer, let SIGSEGV kill the process as it would
        # without it, instead of ASan reporting and exiting 1
        env = dict(os.environ, ASAN_OPTIONS="handle_segv=0:" + os.environ.get("ASAN_OPTIONS", ""))
        p = subprocess.Popen([qptest.QPIPE, "run", r, "--cache-dir", self.w.cache, "-j", "2", "-k",
                              "--log-json", self.w.log], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env)
        # the stage processes are qpipe's children; the one running 'slow'
        # is the parent of the shell running sleep
        victim = None
        for _ in range(200):
            for k in children(p.pid):
                if any("sleep" in cmdline(g) for g in children(int(k))):
                    victim = int(k)
            if victim:
                break
            time.sleep(0.05)
        self.assertIsNotNone(victim, "no stage process found")
        os.kill(victim, signal.SIGSEGV)
        out, err = p.communicate(timeout=60)
        self.assertEqual(p.returncode, 1, err)
        self.assertIn("failed  slow: crashed: killed by signal 11 (Segmentation fault)", err)
        with open(self.w.log) as f:
            ev = [json.loads(line) for line in f]
        self.assertEqual(statuses(ev)["fast"], "ran")

    def test_memory_budget_limits_what_runs_at_once(self):
        # each stage declares 300M and appends start/end marks to one file;
        # under a 500M budget no two may overlap, whatever -j says
        marks = os.path.join(self.w.dir, "marks")
        stages = "\n".join(
            '  s%d: { uses: run, with: { cmd: "echo start >> %s; sleep 0.2; echo end >> %s # %d", memory: 300M } }'
            % (i, marks, marks, i) for i in range(4))
        r = self.w.write("r.yaml", "stages:\n" + stages + "\n")
        _, ev = self.w.run(r, "-j", "4", "--memory", "500M")
        with open(marks) as f:
            seq = f.read().split()
        self.assertEqual(seq, ["start", "end"] * 4)
        est = {e["mem_estimate"] for e in qptest.stage_events(ev).values()}
        self.assertEqual(est, {300 << 20})

    def test_four_processes_on_one_store_run_each_stage_once(self):
        r = self.w.write("r.yaml", PIPELINE.replace("MODEL", qptest.model_dir("stories260K")))
        logs = [os.path.join(self.w.dir, "log%d.jsonl" % i) for i in range(4)]
        procs = [subprocess.Popen([qptest.QPIPE, "run", r, "--cache-dir", self.w.cache, "-q",
                                   "--log-json", logs[i], "-j", "2"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for i in range(4)]
        outs = [p.communicate(timeout=300) for p in procs]
        for p, (o, e) in zip(procs, outs):
            self.assertEqual(p.returncode, 0, e)
        self.assertEqual(len({o for o, _ in outs}), 1, "the four reports differ")
        ran = {}
        for log in logs:
            with open(log) as f:
                for e in (json.loads(line) for line in f):
                    if e["event"] == "stage" and e["status"] == "ran":
                        ran[e["stage"]] = ran.get(e["stage"], 0) + 1
        self.assertEqual(len(ran), 17)
        self.assertEqual(set(ran.values()), {1}, ran)
        v = self.w.qpipe("cache", "verify", "--cache-dir", self.w.cache, check=0)
        self.assertIn("0 bad; 17 action record(s), 0 unusable", v.stdout)

    def test_sigkill_at_random_moments_never_corrupts_the_store(self):
        n = int(os.environ.get("QPIPE_KILL_RUNS", "50"))
        r = self.w.write("r.yaml", PIPELINE.replace("MODEL", qptest.model_dir("stories260K")))
        ref = qptest.Workdir()
        try:
            _, ev = ref.run(r)
            want = outputs_digest(ev)
        finally:
            ref.cleanup()
        rng = random.Random(1234)
        for i in range(n):
            # rm part of the store now and then, so runs start from varied states
            p = subprocess.Popen([qptest.QPIPE, "run", r, "--cache-dir", self.w.cache, "-q",
                                  "-j", str(1 + i % 2)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(0.0, 0.4))
            # kill qpipe and its stage processes at once, as an OOM killer
            # or a lost machine would
            kids = children(p.pid)
            p.kill()
            for k in kids:
                try:
                    os.kill(k, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            p.wait()
            v = self.w.qpipe("cache", "verify", "--cache-dir", self.w.cache)
            self.assertEqual(v.returncode, 0, "after kill %d: %s" % (i, v.stdout))
        _, ev = self.w.run(r)
        self.assertEqual(outputs_digest(ev), want)


if __name__ == "__main__":
    qptest.main()
