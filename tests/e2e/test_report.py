"""Report stages: golden markdown and CSV from fixed metrics (metrics.file),
published numbers beside ours, SVG that parses and renders, the regression
gate (run --check) and report diff."""
import json
import os
import re
import shutil
import struct
import subprocess
import tempfile
import unittest
import xml.etree.ElementTree as ET

import qptest

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "report")

RECIPE = """
name: golden
stages:
  m:
    uses: metrics.file
    matrix: { type: [f16, q8_0, q4_0] }
    with: { path: metrics.json, key: "${matrix.type}" }
  md:
    uses: report.markdown
    with: { from: m, rows: type, columns: [size_mb, bits_per_weight, rel_err, ppl, ppl_err] }
  csv:
    uses: report.csv
    with: { from: m, rows: type, columns: [size_mb, bits_per_weight, rel_err, ppl] }
  js:
    uses: report.json
    with: { from: m, rows: type, columns: [size_mb, rel_err, ppl] }
"""

REF_RECIPE = """
name: golden-ref
stages:
  m:
    uses: metrics.file
    matrix: { type: [f16, q8_0, q4_0] }
    with: { path: metrics.json, key: "${matrix.type}" }
  md:
    uses: report.markdown
    with:
      from: m
      rows: type
      columns: [size_mb, ppl]
      sort: "ppl:desc"
      formats: ["ppl=%.2f"]
      title: "with a reference"
      reference: REFFILE
      reference_match: [FP16=f16, 8-bit=q8_0, PPL=ppl, Size=size_mb]
      reference_source: "a paper, table 2"
      reference_setting: [model=fixture-27m, n_ctx=2048, text=heldout.txt]
  csv:
    uses: report.csv
    with:
      from: m
      rows: type
      columns: [ppl]
      reference_rows: ["f16: ppl=12.0", "GPTQ: ppl=12.9"]
  svg:
    uses: report.svg
    with:
      from: m
      rows: type
      columns: [size_mb, ppl]
      title: "size against perplexity"
      reference: REFFILE
      reference_match: [FP16=f16, 8-bit=q8_0, PPL=ppl, Size=size_mb]
      reference_source: "a paper"
  bars:
    uses: report.svg
    with: { from: m, rows: type, columns: [ppl], chart: bars, y: ppl, title: "perplexity" }
"""

GOLDEN_MD = """## md

| type | size_mb | bits_per_weight | rel_err | ppl | ppl_err |
|---|---:|---:|---:|---:|---:|
| f16 | 54.55 | 16.00 | 0.0003 | 12.3456 | 0.2101 |
| q8_0 | 28.99 | 8.50 | 0.0053 | 12.4002 | 0.2113 |
| q4_0 | 15.36 | 4.50 | 0.0856 | 13.0001 | 0.2299 |

size_mb: tensor data in 10^6 bytes; bits_per_weight: tensor data bits per element, all tensors; rmse, max_abs, rel_err: dequantized 2-D weights against the source weights (rel_err = ||w - q|| / ||w||).
ppl: perplexity ± its standard error by llama.cpp; n_ctx 512, 8 chunk(s), 2048 tokens scored of heldout.txt; tokenizer: sentencepiece.
setting: model fixture-27m; text heldout.txt; n_ctx 512; threads 2; host HOST; qpipe VERSION.

m[type=q4_0]: 1 tensor(s) whose rows do not divide into the type's blocks are stored as f16: blk.0.ffn_down.weight

"""

GOLDEN_CSV = """type,size_mb,bits_per_weight,rel_err,ppl
f16,54.55,16.00,0.0003,12.3456
q8_0,28.99,8.50,0.0053,12.4002
q4_0,15.36,4.50,0.0856,13.0001
"""

GOLDEN_REF_MD = """## with a reference

| type | size_mb | size_mb (theirs) | Δ | Δ% | ppl | ppl (theirs) | Δ | Δ% |
|---|---:|---:|---:|---:|---:|---:|---:|---:|
| q4_0 | 15.36 | – | – | – | 13.00 | – | – | – |
| q8_0 | 28.99 | 29.00 | -0.01 | -0.0% | 12.40 | 12.20 | +0.20 | +1.6% |
| f16 | 54.55 | 55.00 | -0.45 | -0.8% | 12.35 | 12.00 | +0.35 | +2.9% |
| GPTQ | – | 16.00 | – | – | – | 12.90 | – | – |

size_mb: tensor data in 10^6 bytes; bits_per_weight: tensor data bits per element, all tensors; rmse, max_abs, rel_err: dequantized 2-D weights against the source weights (rel_err = ||w - q|| / ||w||).
ppl: perplexity ± its standard error by llama.cpp; n_ctx 512, 8 chunk(s), 2048 tokens scored of heldout.txt; tokenizer: sentencepiece.
setting: model fixture-27m; text heldout.txt; n_ctx 512; threads 2; host HOST; qpipe VERSION.

m[type=q4_0]: 1 tensor(s) whose rows do not divide into the type's blocks are stored as f16: blk.0.ffn_down.weight

reference: a paper, table 2; Δ = ours − theirs, Δ% relative to theirs. Their setting: model fixture-27m, n_ctx 2048, text heldout.txt.

**settings differ** from the reference: n_ctx (theirs 2048, ours 512).

"""

GOLDEN_REF_CSV = """type,ppl,ppl_theirs,ppl_delta,ppl_delta_pct
f16,12.3456,12.0000,+0.3456,+2.9
q8_0,12.4002,,,
q4_0,13.0001,,,
GPTQ,,12.9000,,
"""


def normalize(text):
    """The setting line names this machine; make it stable."""
    return re.sub(r"host [^;]*; qpipe [^.]*\.\d+\.\d+\.", "host HOST; qpipe VERSION.", text)


def outputs(events, stage, name):
    return qptest.stage_events(events)[stage]["outputs"][name]


def read(path):
    with open(path) as f:
        return f.read()


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        p = shutil.which(name)
        if p:
            return p
    return None


class Golden(unittest.TestCase):
    def setUp(self):
        self.w = qptest.Workdir()
        shutil.copy(os.path.join(DATA, "metrics.json"), self.w.dir)
        shutil.copy(os.path.join(DATA, "published.md"), self.w.dir)
        shutil.copy(os.path.join(DATA, "published.csv"), self.w.dir)

    def tearDown(self):
        self.w.cleanup()

    def test_markdown_and_csv_are_exact(self):
        r = self.w.write("r.yaml", RECIPE)
        p, ev = self.w.run(r, "-t", "2", "-q")
        self.assertEqual(normalize(p.stdout), GOLDEN_MD)
        self.assertEqual(read(outputs(ev, "csv", "report.csv")), GOLDEN_CSV)
        md = read(outputs(ev, "md", "report.md"))
        self.assertEqual(normalize(md) + "\n", GOLDEN_MD)

    def test_json_report_keeps_full_precision_and_setting(self):
        r = self.w.write("r.yaml", RECIPE)
        p, ev = self.w.run(r, "-t", "2", "-q")
        t = json.loads(read(outputs(ev, "js", "report.json")))
        self.assertEqual(t["qpipe_report"], 1)
        self.assertEqual(t["stage"], "js")
        self.assertEqual(t["columns"], ["size_mb", "rel_err", "ppl"])
        self.assertEqual([row["label"] for row in t["rows"]], ["f16", "q8_0", "q4_0"])
        self.assertAlmostEqual(t["rows"][0]["values"]["ppl"], 12.34561, places=12)
        self.assertEqual(t["caption"]["model"], "fixture-27m")
        self.assertEqual(t["caption"]["n_ctx"], 512)
        self.assertIn("host", t["caption"])
        self.assertIn("qpipe", t["caption"])

    def check_reference(self, reffile):
        r = self.w.write("r.yaml", REF_RECIPE.replace("REFFILE", reffile))
        p, ev = self.w.run(r, "-t", "2", "-q")
        mds = normalize(read(outputs(ev, "md", "report.md"))) + "\n"
        self.assertEqual(mds, GOLDEN_REF_MD)
        self.assertEqual(read(outputs(ev, "csv", "report.csv")), GOLDEN_REF_CSV)
        return ev

    def test_reference_from_markdown_file(self):
        self.check_reference("published.md")

    def test_reference_from_csv_file(self):
        # the CSV names the same rows and metrics; only its header differs
        with open(os.path.join(self.w.dir, "published.csv")) as f:
            text = f.read().replace("label,ppl,size_mb", "Method,PPL,Size")
        self.w.write("published2.csv", text)
        self.check_reference("published2.csv")

    def test_svg_parses_and_renders(self):
        r = self.w.write("r.yaml", REF_RECIPE.replace("REFFILE", "published.md"))
        p, ev = self.w.run(r, "-t", "2", "-q")
        for stage in ("svg", "bars"):
            path = outputs(ev, stage, "report.svg")
            root = ET.parse(path).getroot()
            self.assertEqual(root.tag, "{http://www.w3.org/2000/svg}svg")
            texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
            self.assertIn("perplexity", texts)
            for label in ("f16", "q8_0", "q4_0"):
                self.assertIn(label, texts)
            if stage == "svg":
                self.assertIn("size (MB)", texts)
                self.assertIn("GPTQ", texts)  # a published-only point, labelled
                self.assertTrue(any(t and t.startswith("hollow: published") for t in texts))
        self.render(outputs(ev, "svg", "report.svg"))

    def render(self, svg):
        exe = chromium()
        if not exe:
            self.skipTest("chromium not installed (scripts/bootstrap --test installs it)")
        out = os.path.join(self.w.dir, "chart.png")
        shutil.copy(svg, os.path.join(self.w.dir, "chart.svg"))
        try:
            p = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu",
                                "--screenshot=" + out, "--window-size=860,520",
                                "file://" + os.path.join(self.w.dir, "chart.svg")],
                               capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as e:
            self.skipTest("chromium cannot run here: %s" % e)
        if p.returncode != 0 or not os.path.exists(out):
            self.skipTest("chromium cannot run here (exit %d): %s" % (p.returncode, p.stderr[-300:]))
        with open(out, "rb") as f:
            head = f.read(24)
        self.assertEqual(head[:8], b"\x89PNG\r\n\x1a\n")
        self.assertEqual(struct.unpack(">II", head[16:24]), (860, 520))
        keep = os.environ.get("QPIPE_TEST_KEEP_PNG")
        if keep:
            shutil.copy(out, keep)

    def test_bad_format_and_sort_fail_the_stage(self):
        r = self.w.write("r.yaml", RECIPE.replace("columns: [size_mb, rel_err, ppl] }",
                                                  "columns: [size_mb, rel_err, ppl], formats: [\"ppl=%s\"] }"))
        p, ev = self.w.run(r, "-q", check=1)
        self.assertIn("parameter 'formats': 'ppl=%s' must be METRIC=FORMAT", p.stderr)
        r = self.w.write("r.yaml", RECIPE.replace("columns: [size_mb, rel_err, ppl] }",
                                                  "columns: [size_mb, rel_err, ppl], sort: kld }"))
        p, ev = self.w.run(r, "-q", check=1)
        self.assertIn("parameter 'sort': 'kld' is not one of the columns", p.stderr)


class Check(unittest.TestCase):
    """run --check against a baseline report.json, and report diff."""

    def setUp(self):
        self.w = qptest.Workdir()
        shutil.copy(os.path.join(DATA, "metrics.json"), self.w.dir)
        self.recipe = self.w.write("r.yaml", RECIPE)
        p, ev = self.w.run(self.recipe, "-q")
        self.baseline = os.path.join(self.w.dir, "baseline.json")
        shutil.copy(outputs(ev, "js", "report.json"), self.baseline)

    def tearDown(self):
        self.w.cleanup()

    def inject(self, typ, metric, value):
        path = os.path.join(self.w.dir, "metrics.json")
        with open(path) as f:
            m = json.load(f)
        m[typ][metric] = value
        with open(path, "w") as f:
            json.dump(m, f)

    def test_unchanged_run_passes(self):
        p, _ = self.w.run(self.recipe, "-q", "--check", self.baseline)
        self.assertIn("check: 9 value(s) of stage 'js' within tolerance", p.stdout)
        p, _ = self.w.run(self.recipe, "-q", "--check", self.baseline, "--tolerance", "ppl=+0.5%")
        self.assertIn("check: 3 value(s)", p.stdout)

    def test_injected_regression_fails_naming_the_metric(self):
        self.inject("q4_0", "ppl", 13.0001 * 1.01)  # +1% perplexity
        p, _ = self.w.run(self.recipe, "-q", "--check", self.baseline,
                          "--tolerance", "ppl=+0.5%,rel_err=+10%", check=1)
        check = p.stdout.split("## check:")[1]
        self.assertIn("| q4_0 | ppl | 13.0001 | 13.1301 | +0.13 | +1.00% | +0.5% | **REGRESSED** |",
                      check)
        self.assertNotIn("| f16 |", check)  # only what regressed
        self.assertIn("check failed: 1 value(s) regressed", p.stderr)

    def test_within_tolerance_and_good_direction_pass(self):
        self.inject("q4_0", "ppl", 13.0001 * 1.004)  # +0.4%: within +0.5%
        self.inject("q8_0", "ppl", 11.0)             # better: never a regression under '+'
        self.w.run(self.recipe, "-q", "--check", self.baseline, "--tolerance", "ppl=+0.5%")
        # a decrease is what '-' guards against
        p, _ = self.w.run(self.recipe, "-q", "--check", self.baseline, "--tolerance", "ppl=-5%",
                          check=1)
        self.assertIn("| q8_0 | ppl |", p.stdout)
        # an absolute amount
        self.w.run(self.recipe, "-q", "--check", self.baseline, "--tolerance", "ppl=+0.06")

    def test_missing_row_is_a_regression(self):
        r = self.w.write("r2.yaml", RECIPE.replace("[f16, q8_0, q4_0]", "[f16, q8_0]"))
        p, _ = self.w.run(r, "-q", "--check", self.baseline, "--tolerance", "ppl=+1%", check=1)
        self.assertIn("| q4_0 | ppl | 13.0001 | missing |", p.stdout)

    def test_bad_tolerance_is_a_usage_error(self):
        p, _ = self.w.run(self.recipe, "-q", "--check", self.baseline, "--tolerance", "ppl=+lots",
                          check=2)
        self.assertIn("tolerance 'ppl=+lots'", p.stderr)

    def test_baseline_that_is_not_a_report(self):
        bad = self.w.write("bad.json", '{"rows": []}')
        p, _ = self.w.run(self.recipe, "-q", "--check", bad, check=4)
        self.assertIn("no 'qpipe_report' version", p.stderr)

    def test_report_diff(self):
        self.inject("f16", "ppl", 12.5)
        p, ev = self.w.run(self.recipe, "-q")
        now = outputs(ev, "js", "report.json")
        d = self.w.qpipe("report", "diff", self.baseline, now, check=0)
        self.assertIn("| f16 | ppl | 12.3456 | 12.5 | +0.1544 | +1.25% | exact | **REGRESSED** |", d.stdout)
        self.assertIn("| q8_0 | size_mb | 28.99 | 28.99 | +0 | +0.00% | exact | ok |", d.stdout)
        d = self.w.qpipe("report", "diff", self.baseline, now, "--tolerance", "ppl=+2%", check=0)
        self.assertIn("0 regression(s)", d.stdout)
        d = self.w.qpipe("report", "diff", self.baseline, now, "--tolerance", "ppl=+1%", check=1)
        self.assertIn("1 regression(s)", d.stdout)
        self.w.qpipe("report", "frobnicate", check=2)


if __name__ == "__main__":
    qptest.main()
