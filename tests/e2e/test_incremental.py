"""Cache v0: a second run executes nothing; a changed parameter reruns
exactly the stages downstream of it. Asserted from the JSON run log."""
import json
import os
import shutil
import textwrap
import unittest

import qptest

RECIPE = """\
name: incremental
stages:
  model:
    uses: model.local
    with: { path: MODEL }
  quant:
    uses: quantize
    matrix: { type: [q8_0, q4_0] }
    with: { model: model, type: "${matrix.type}", fallback: FALLBACK }
  gguf:
    uses: export.gguf
    with: { model: quant }
  eval:
    uses: evaluate
    with: { model: quant, reference: model }
  table:
    uses: report.markdown
    with: { from: eval, rows: type, columns: [size_mb, bits_per_weight, rel_err] }
"""


class Incremental(unittest.TestCase):
    def setUp(self):
        self.w = qptest.Workdir()

    def tearDown(self):
        self.w.cleanup()

    def recipe(self, fallback="f16", types="[q8_0, q4_0]"):
        text = RECIPE.replace("MODEL", qptest.model_dir("stories260K"))
        text = text.replace("FALLBACK", fallback).replace("[q8_0, q4_0]", types)
        return self.w.write("r.yaml", text)

    def statuses(self, events):
        return {k: v["status"] for k, v in qptest.stage_events(events).items()}

    def test_second_run_executes_no_stage(self):
        r = self.recipe()
        p, ev = self.w.run(r)
        st = self.statuses(ev)
        self.assertEqual(len(st), 8)
        self.assertEqual(set(st.values()), {"ran"})
        self.assertIn("| q4_0 |", p.stdout)
        p2, ev2 = self.w.run(r)
        self.assertEqual(set(self.statuses(ev2).values()), {"cached"})
        summary = [e for e in ev2 if e["event"] == "summary"][0]
        self.assertEqual(summary["ran"], 0)
        self.assertEqual(p.stdout, p2.stdout)
        plan = self.w.qpipe("plan", r, "--cache-dir", self.w.cache, check=0)
        self.assertIn("8 stage(s): 8 cached, 0 to run", plan.stdout)

    def test_changed_parameter_reruns_exactly_its_downstream(self):
        r = self.recipe()
        self.w.run(r)
        # Adding a matrix value adds one branch: quant, gguf and eval for it,
        # and the table that gathers every eval; nothing else.
        r = self.recipe(types="[q8_0, q4_0, q5_1]")
        plan = self.w.qpipe("plan", r, "--cache-dir", self.w.cache, check=0)
        self.assertIn("run     quant[type=q5_1] (new)", plan.stdout)
        self.assertIn("cached  quant[type=q4_0]", plan.stdout)
        _, ev = self.w.run(r)
        ran = sorted(k for k, v in self.statuses(ev).items() if v == "ran")
        self.assertEqual(ran, ["eval[type=q5_1]", "gguf[type=q5_1]", "quant[type=q5_1]", "table"])
        # Changing a parameter every quant instance uses reruns every quant
        # and its dependants, but not the model stage.
        r = self.recipe(fallback="f32", types="[q8_0, q4_0, q5_1]")
        _, ev = self.w.run(r)
        st = self.statuses(ev)
        self.assertEqual(st["model"], "cached")
        self.assertEqual(sorted(k for k, v in st.items() if v == "ran"), sorted(k for k in st if k != "model"))

    def records_read(self, events):
        return [e for e in events if e["event"] == "io"][0]["records_read"]

    def meta(self, name):
        d = os.path.join(self.w.cache, "meta")
        paths = [os.path.join(d, f) for f in os.listdir(d) if f.startswith(name)]
        st = os.stat(paths[0])
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def test_noop_rerun_reads_no_record_and_writes_nothing(self):
        r = self.recipe()
        p, ev = self.w.run(r)
        self.assertEqual(self.records_read(ev), 8)  # each new key looked up, and missed
        index, actlog = self.meta("index-"), self.meta("actlog")
        p2, ev2 = self.w.run(r)
        self.assertEqual(set(self.statuses(ev2).values()), {"cached"})
        self.assertEqual(self.records_read(ev2), 0)
        self.assertEqual(self.meta("index-"), index)
        self.assertEqual(self.meta("actlog"), actlog)
        self.assertEqual(p.stdout, p2.stdout)

    def test_a_rerun_stage_reads_its_cached_inputs_metrics(self):
        r = self.recipe()
        self.w.run(r)
        self.w.run(r)
        with open(r) as f:
            text = f.read().replace("columns: [size_mb, bits_per_weight, rel_err]",
                                    "columns: [rel_err, size_mb]")
        r = self.w.write("r.yaml", text)
        p, ev = self.w.run(r)
        st = self.statuses(ev)
        self.assertEqual([k for k, v in st.items() if v == "ran"], ["table"])
        # the two evals' records, for their metrics; nothing else
        self.assertEqual(self.records_read(ev), 3)
        rows = [l for l in p.stdout.splitlines() if l.startswith("| q")]
        self.assertEqual(len(rows), 2, p.stdout)
        for row in rows:
            cells = [c.strip() for c in row.strip("|").split("|")]
            self.assertEqual(len(cells), 3, row)
            float(cells[1]), float(cells[2])  # both metrics are there

    def record_path(self, key):
        return os.path.join(self.w.cache, "actions", key[:2], key[2:])

    def test_a_record_changed_behind_the_log_is_read_again(self):
        r = self.recipe()
        _, ev = self.w.run(r)
        self.w.run(r)
        path = self.record_path(qptest.stage_events(ev)["gguf[type=q4_0]"]["key"])
        os.chmod(path, 0o644)
        with open(path, "w") as f:
            f.write("{not json")
        plan = self.w.qpipe("plan", r, "--cache-dir", self.w.cache, check=0).stdout
        self.assertIn("run     gguf[type=q4_0] (record unusable: %s:1:4: string or '}' expected "
                      "near 'not')" % path, plan)
        self.assertIn("cached  gguf[type=q8_0]", plan)

    def test_an_object_deleted_by_hand_fails_its_reader_once(self):
        r = self.recipe()
        _, ev = self.w.run(r)
        self.w.run(r)
        st = qptest.stage_events(ev)
        for p in st["quant[type=q4_0]"]["outputs"].values():
            os.unlink(p)
        # gguf[type=q4_0] must run again; the log still vouches for the
        # quant it reads, which finds an object gone and fails it, naming it ...
        self.w.qpipe("cache", "rm", st["gguf[type=q4_0]"]["key"], "--cache-dir", self.w.cache, check=0)
        p, ev = self.w.run(r, check=1)
        self.assertIn("failed  gguf[type=q4_0]: the cached result of 'quant[type=q4_0]' is no "
                      "longer usable: %s: output '" % self.record_path(st["quant[type=q4_0]"]["key"]),
                      p.stderr)
        self.assertEqual(self.statuses(ev)["gguf[type=q8_0]"], "cached")
        # ... and the next run no longer trusts it: quant runs again (under
        # the same key, so its other readers stay cached), then gguf
        _, ev = self.w.run(r)
        ran = sorted(k for k, v in self.statuses(ev).items() if v == "ran")
        self.assertEqual(ran, ["gguf[type=q4_0]", "quant[type=q4_0]"])

    def test_plan_says_why_each_stage_runs(self):
        r = self.recipe()
        self.w.run(r)
        r = self.recipe(fallback="f32")
        plan = self.w.qpipe("plan", r, "--cache-dir", self.w.cache, check=0).stdout
        self.assertIn("run     quant[type=q4_0] (parameter 'fallback' changed (f16 -> f32))", plan)
        self.assertIn("run     gguf[type=q4_0] (upstream 'quant[type=q4_0]' reruns)", plan)
        self.assertIn("run     table (upstream 'eval[type=q8_0]' reruns)", plan)
        self.assertIn("cached  model", plan)
        js = json.loads(self.w.qpipe("plan", r, "--cache-dir", self.w.cache, "--format", "json",
                                     check=0).stdout)
        by = {e["stage"]: e for e in js}
        self.assertEqual(by["quant[type=q8_0]"]["status"], "run")
        self.assertEqual(by["quant[type=q8_0]"]["why"], "parameter 'fallback' changed (f16 -> f32)")
        self.assertEqual(by["gguf[type=q8_0]"]["needs"], ["quant[type=q8_0]"])

    def test_changed_input_file_reruns_from_the_model(self):
        # A private copy of the model whose config we then touch.
        src = qptest.model_dir("stories260K")
        dst = os.path.join(self.w.dir, "model")
        os.mkdir(dst)
        for f in os.listdir(src):
            with open(os.path.join(src, f), "rb") as a, open(os.path.join(dst, f), "wb") as b:
                b.write(a.read())
        text = RECIPE.replace("MODEL", dst).replace("FALLBACK", "f16")
        r = self.w.write("r.yaml", text)
        self.w.run(r)
        with open(os.path.join(dst, "generation_config.json"), "a") as f:
            f.write("\n")
        plan = self.w.qpipe("plan", r, "--cache-dir", self.w.cache, check=0).stdout
        self.assertIn("run     model (content of 'path' changed)", plan)
        _, ev = self.w.run(r)
        self.assertEqual(set(self.statuses(ev).values()), {"ran"})

    def io(self, recipe):
        log = os.path.join(self.w.dir, "plan.jsonl")
        if os.path.exists(log):
            os.unlink(log)
        out = self.w.qpipe("plan", recipe, "--cache-dir", self.w.cache, "--log-json", log, check=0).stdout
        with open(log) as f:
            return out, [json.loads(x) for x in f if '"io"' in x][0]

    def test_stat_cache_skips_rehashing_unchanged_inputs(self):
        dst = os.path.join(self.w.dir, "model")
        shutil.copytree(qptest.model_dir("stories260K"), dst)
        r = self.w.write("r.yaml", RECIPE.replace("MODEL", dst).replace("FALLBACK", "f16"))
        _, first = self.io(r)
        self.assertEqual(first["inputs_hashed"], 6)
        self.assertGreater(first["bytes_hashed"], 1000000)   # the 1 MB model was read
        _, second = self.io(r)
        self.assertEqual(second["inputs_hashed"], 0)
        self.assertEqual(second["bytes_hashed"], 0)          # ...and now it is not
        # (rchar is no measure here: sanitizer runtimes read /proc themselves)
        self.w.run(r)
        # same size, mtime put back: ctime still gives the edit away
        st = os.path.join(dst, "model.safetensors")
        info = os.stat(st)
        with open(st, "r+b") as f:
            f.seek(info.st_size - 4)
            f.write(b"\x00\x00\x80\x3f")
        os.utime(st, ns=(info.st_atime_ns, info.st_mtime_ns))
        plan, third = self.io(r)
        self.assertEqual(third["inputs_hashed"], 1)
        self.assertIn("run     model (content of 'path' changed)", plan)

    def test_set_overrides_and_matrix_rules(self):
        r = self.w.write("m.yaml", """\
vars: { greeting: hello }
stages:
  a:
    uses: run
    matrix:
      x: [1, 2]
      y: [a, b]
      exclude: [{x: 2, y: b}]
      include: [{x: 1, y: a, extra: "yes"}, {x: 9, y: z}]
    with: { cmd: "echo ${greeting} ${matrix.x}${matrix.y} > $QPIPE_OUT/o", outs: [o] }
  b:
    uses: run
    matrix: { include: [{p: 1}, {p: 2, q: 3}] }
    with: { cmd: "true" }
""")
        plan = self.w.qpipe("plan", r, "--cache-dir", self.w.cache, check=0).stdout
        ids = [l.split()[1] for l in plan.splitlines() if l.startswith("run")]
        self.assertEqual(ids, ["a[x=1,y=a,extra=yes]", "a[x=1,y=b]", "a[x=2,y=a]", "a[x=9,y=z]",
                               "b[p=1]", "b[p=2,q=3]"])
        _, ev = self.w.run(r)
        out = qptest.stage_events(ev)["a[x=9,y=z]"]["outputs"]["o"]
        with open(out) as f:
            self.assertEqual(f.read(), "hello 9z\n")
        _, ev = self.w.run(r, "--set", "greeting=hi", "--set", "b.cmd=false", "-k", check=1)
        st = {k: v["status"] for k, v in qptest.stage_events(ev).items()}
        self.assertEqual(st["a[x=1,y=b]"], "ran")
        self.assertEqual(st["b[p=1]"], "failed")
        with open(qptest.stage_events(ev)["a[x=9,y=z]"]["outputs"]["o"]) as f:
            self.assertEqual(f.read(), "hi 9z\n")

    def test_included_recipe_contributes_stages_and_vars(self):
        self.w.write("base.yaml", "vars: { who: base, model: %s }\nstages:\n"
                     "  model: { uses: model.local, with: { path: \"${model}\" } }\n"
                     % qptest.model_dir("stories260K"))
        r = self.w.write("main.yaml", """\
include: base.yaml
vars: { who: main }
stages:
  quant: { uses: quantize, with: { model: model, type: q8_0 } }
  hello: { uses: run, with: { cmd: "echo ${who} > $QPIPE_OUT/o", outs: [o] } }
""")
        _, ev = self.w.run(r)
        st = qptest.stage_events(ev)
        self.assertEqual(sorted(st), ["hello", "model", "quant"])
        with open(st["hello"]["outputs"]["o"]) as f:
            self.assertEqual(f.read(), "main\n")

    def test_fallback_tensors_are_reported(self):
        p, _ = self.w.run(self.recipe())
        # stories260K's FFN is 172 wide: 32-element blocks do not divide it.
        self.assertIn("eval[type=q4_0]: 5 tensor(s) whose rows do not divide into the type's "
                      "blocks are stored as f16: model.layers.0.mlp.down_proj.weight,", p.stdout)


if __name__ == "__main__":
    qptest.main()
