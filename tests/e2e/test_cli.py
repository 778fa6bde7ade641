"""The command line: help, exit codes, messages."""
import os
import unittest

import qptest


class Cli(unittest.TestCase):
    def setUp(self):
        self.w = qptest.Workdir()

    def tearDown(self):
        self.w.cleanup()

    def test_no_arguments_is_a_usage_error(self):
        p = self.w.qpipe(check=2)
        self.assertIn("usage: qpipe COMMAND", p.stderr)

    def test_help_lists_commands_and_exit_codes(self):
        p = self.w.qpipe("--help", check=0)
        for word in ("run", "plan", "cache", "version", "stages", "Exit status:", "130"):
            self.assertIn(word, p.stdout)

    def test_each_subcommand_has_help_with_exit_codes(self):
        for sub in ("run", "plan", "cache", "version", "stages"):
            p = self.w.qpipe(sub, "--help", check=0)
            self.assertIn("usage: qpipe " + sub, p.stdout)
            self.assertIn("3    the recipe is invalid", p.stdout)

    def test_unknown_command_suggests_nearest(self):
        p = self.w.qpipe("rnu", check=2)
        self.assertEqual(p.stderr, "qpipe: 'rnu' is not a qpipe command (did you mean 'run'?)\n")

    def test_unknown_option_is_usage_error(self):
        p = self.w.qpipe("run", "--bogus", "x.yaml", check=2)
        self.assertIn("unknown option '--bogus'", p.stderr)

    def test_missing_recipe_is_io_error(self):
        p = self.w.qpipe("run", self.w.dir + "/nope.yaml", "--cache-dir", self.w.cache, check=4)
        self.assertIn("nope.yaml: cannot open: No such file or directory", p.stderr)

    def test_bad_kernel_level_is_usage_error(self):
        r = self.w.write("r.yaml", "stages: {}\n")
        p = self.w.qpipe("run", r, "--kernels", "sse9", "--cache-dir", self.w.cache, check=2)
        self.assertIn("sse9", p.stderr)

    def test_version_reports_kernel_level_and_reason(self):
        p = self.w.qpipe("version", "--kernels", check=0)
        self.assertRegex(p.stdout, r"qpipe \d+\.\d+\.\d+\nkernels: (scalar|avx2|avx512) \(.+\)\n")
        p = self.w.qpipe("version", "--kernels", env={"QPIPE_KERNELS": "scalar"}, check=0)
        self.assertIn("kernels: scalar", p.stdout)

    def test_stages_documents_declared_parameters(self):
        p = self.w.qpipe("stages", check=0)
        for kind in ("model.local", "quantize", "export.gguf", "evaluate", "report.markdown"):
            self.assertIn(kind, p.stdout)
        p = self.w.qpipe("stages", "quantize", check=0)
        self.assertIn("type", p.stdout)
        self.assertIn("q4_0", p.stdout)
        self.assertIn("[default: f16]", p.stdout)
        p = self.w.qpipe("stages", "quantise", check=2)
        self.assertIn("did you mean 'quantize'", p.stderr)

    def test_interrupt_stops_cleanly_with_130(self):
        # 18 stages of ~0.1 s each (the base logits cut to one chunk):
        # SIGINT after the first one has run lands while later stages are
        # still to come.
        import signal, subprocess
        r = self.w.write("r.yaml", open(os.path.join(os.path.dirname(__file__), "..", "..",
                                                    "recipes", "demo.yaml")).read().replace(
            "../../shared", qptest.SHARED))
        # perplexity would take a minute
        fast = ["--set", "eval.metrics=size,weight_error", "--set", "base.chunks=1"]
        p = subprocess.Popen([qptest.QPIPE, "run", r, "--cache-dir", self.w.cache] + fast,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first = p.stderr.readline()
        self.assertTrue(first.startswith("ran     model"), first)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=120)
        self.assertEqual(p.returncode, 130, err)
        self.assertIn("(interrupted)", err)
        self.assertRegex(err, r"qpipe: interrupted")
        self.assertEqual(out, "")
        # what was interrupted left nothing half-made: a rerun completes
        p2 = self.w.qpipe("run", r, "--cache-dir", self.w.cache, *fast, check=0)
        self.assertIn("| q4_0 |", p2.stdout)
        tmp = os.path.join(self.w.cache, "tmp")
        self.assertEqual(os.listdir(tmp), [])

    def test_cache_dir_and_empty_ls(self):
        p = self.w.qpipe("cache", "dir", "--cache-dir", self.w.cache, check=0)
        self.assertEqual(p.stdout.strip(), self.w.cache)
        p = self.w.qpipe("cache", "ls", "--cache-dir", self.w.cache, check=0)
        self.assertEqual(p.stdout, "")


if __name__ == "__main__":
    qptest.main()
