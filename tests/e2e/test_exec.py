"""The executor: failure isolation, crashes, concurrent processes on one
store, and SIGKILL at random moments. Asserted from run logs, action
records and `qpipe cache verify`, never from timing."""
import hashlib
import json
import os
import random
import shutil
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


    def gpu_env(self, visible=None):
        env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
        if visible is not None:
            env["CUDA_VISIBLE_DEVICES"] = visible
        return env

    def run_env(self, r, env, *args, check=0):
        if os.path.exists(self.w.log):
            os.unlink(self.w.log)
        p = subprocess.run([qptest.QPIPE, "run", r, "--cache-dir", self.w.cache, "--log-json",
                            self.w.log, *args], capture_output=True, text=True, env=env, timeout=300)
        self.assertEqual(p.returncode, check, p.stderr)
        ev = []
        if os.path.exists(self.w.log):
            with open(self.w.log) as f:
                ev = [json.loads(line) for line in f]
        return p, ev

    def test_gpu_pool_runs_at_most_its_size_on_disjoint_devices(self):
        marks = os.path.join(self.w.dir, "marks")
        os.mkdir(marks)
        r = self.w.write("r.yaml", qptest.gpu_recipe(marks, 4))
        _, ev = self.run_env(r, self.gpu_env(), "-j", "4", "--gpus", "2")
        spans = qptest.gpu_spans(marks, 4)
        most, shared = qptest.most_at_once(spans)
        self.assertLessEqual(most, 2, spans)
        self.assertFalse(shared, spans)
        # each had one device of the pool, named alike in both variables;
        # the first two started together, so both devices were used
        self.assertTrue(all(s[2] == s[3] and s[2] in ("0", "1") for s in spans), spans)
        self.assertEqual({s[2] for s in spans}, {"0", "1"})
        # the log's start events and the action records say the same
        starts = {e["stage"]: e["gpus"] for e in ev if e["event"] == "start"}
        self.assertEqual({"s%d" % i: [spans[i][2]] for i in range(4)},
                         {k: v for k, v in starts.items() if k != "cpu"})
        self.assertEqual(starts["cpu"], [])
        for sid, e in qptest.stage_events(ev).items():
            path = os.path.join(self.w.cache, "actions", e["key"][:2], e["key"][2:])
            with open(path) as f:
                self.assertEqual(json.load(f).get("gpus"), starts[sid] or None, sid)
        # a stage that declares no GPU sees none
        with open(qptest.stage_events(ev)["cpu"]["outputs"]["o"]) as f:
            self.assertEqual(f.read(), "[]\n")

    def test_gpu_stage_without_a_gpu_fails_at_plan_time(self):
        marks = os.path.join(self.w.dir, "marks")
        os.mkdir(marks)
        r = self.w.write("r.yaml", qptest.gpu_recipe(marks, 2))
        p, ev = self.run_env(r, self.gpu_env(""), check=4)
        self.assertEqual(p.stderr, "qpipe: stage 's0' needs 1 GPU; this machine has none "
                                   "(--gpus to set the pool)\n")
        self.assertEqual(os.listdir(marks), [])
        self.assertEqual(qptest.stage_events(ev), {})
        p = self.w.qpipe("plan", r, "--cache-dir", self.w.cache, env={"CUDA_VISIBLE_DEVICES": ""},
                         check=4)
        self.assertIn("needs 1 GPU; this machine has none", p.stderr)
        r2 = self.w.write("r2.yaml", qptest.gpu_recipe(marks, 1, gpus=3))
        p, _ = self.run_env(r2, self.gpu_env(), "--gpus", "2", check=4)
        self.assertEqual(p.stderr, "qpipe: stage 's0' needs 3 GPUs; the pool has 2 "
                                   "(--gpus to set it)\n")
        # what is cached needs no GPU: a CPU-only machine reruns it as a no-op
        self.run_env(r, self.gpu_env(), "--gpus", "1")
        _, ev = self.run_env(r, self.gpu_env(""))
        self.assertEqual({e["status"] for e in qptest.stage_events(ev).values()}, {"cached"})

    def test_cuda_visible_devices_is_the_default_pool(self):
        marks = os.path.join(self.w.dir, "marks")
        os.mkdir(marks)
        r = self.w.write("r.yaml", qptest.gpu_recipe(marks, 3))
        self.run_env(r, self.gpu_env("3,GPU-5"), "-j", "3")
        spans = qptest.gpu_spans(marks, 3)
        self.assertLessEqual(qptest.most_at_once(spans)[0], 2, spans)
        self.assertEqual({s[2] for s in spans}, {"3", "GPU-5"})
        # --gpus N takes the first N of them; a LIST, exactly those
        shutil.rmtree(self.w.cache)
        self.run_env(r, self.gpu_env("3,GPU-5"), "-j", "3", "--gpus", "1")
        self.assertEqual({s[2] for s in qptest.gpu_spans(marks, 3)}, {"3"})
        shutil.rmtree(self.w.cache)
        self.run_env(r, self.gpu_env("3,GPU-5"), "-j", "3", "--gpus", "7,")
        self.assertEqual({s[2] for s in qptest.gpu_spans(marks, 3)}, {"7"})
        p, _ = self.run_env(r, self.gpu_env("3,GPU-5"), "--gpus", "4", check=2)
        self.assertEqual(p.stderr, "qpipe: run: --gpus must be a count or a list of device ids "
                                   "like 0,2, not '4' (CUDA_VISIBLE_DEVICES names 2 device(s))\n")
        p, _ = self.run_env(r, self.gpu_env(), "--gpus", "0,0", check=2)
        self.assertIn("(device '0' is listed twice)", p.stderr)

if __name__ == "__main__":
    qptest.main()
