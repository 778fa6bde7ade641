"""Conformance: llama.cpp (llama-cpp-python) loads every GGUF qpipe
exports and generates from it. The f16 and q8_0 files must also continue
"Once upon a time" on stories260K as the unquantized model does (the
greedy sample in shared/data/README.md)."""
import unittest

import qptest
from test_gguf_export import exported, TYPES

K_TYPES = ["q6_K", "q5_K", "q4_K", "q3_K", "q2_K", "tq2_0", "tq1_0"]

try:
    from llama_cpp import Llama
except ImportError as e:  # the conformance suite needs it; say so loudly
    raise SystemExit("conformance suite needs llama-cpp-python: %s" % e)


class LlamaCpp(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.w = qptest.Workdir()
        cls.files = {m: exported(cls.w, qptest.model_dir(m), TYPES, "auto")
                     for m in ("stories260K", "llama-docs-27m")}
        # k-quant and ternary rows need 256-element blocks: llama-docs-27m only
        cls.files["llama-docs-27m"].update(
            exported(cls.w, qptest.model_dir("llama-docs-27m"), K_TYPES, "auto"))

    @classmethod
    def tearDownClass(cls):
        cls.w.cleanup()

    def generate(self, path, prompt, n=24):
        llm = Llama(model_path=path, n_ctx=256, n_threads=2, verbose=False, seed=0)
        out = llm.create_completion(prompt, max_tokens=n, temperature=0.0, top_k=1)
        return out["choices"][0]["text"], out["usage"]["completion_tokens"]

    def test_every_export_loads_and_generates(self):
        for model, files in self.files.items():
            for t, path in files.items():
                with self.subTest(model=model, type=t):
                    text, n = self.generate(path, "The kernel" if model != "stories260K" else "Once upon a time")
                    self.assertGreater(n, 0)
                    self.assertTrue(text.strip(), "empty generation")

    def test_stories260k_f16_reproduces_the_reference_sample(self):
        text, _ = self.generate(self.files["stories260K"]["f16"], "Once upon a time", n=20)
        self.assertTrue(text.startswith(", there was a little girl named Lily."), text)

    def test_k_quant_exports_carry_their_types_and_run(self):
        from gguf import GGUFReader
        for t in K_TYPES:
            path = self.files["llama-docs-27m"][t]
            types = {x.tensor_type.name.lower() for x in GGUFReader(path).tensors if len(x.shape) == 2}
            self.assertEqual(types, {t.lower()}, t)
        text, _ = self.generate(self.files["llama-docs-27m"]["q6_K"], "The kernel", n=8)
        self.assertTrue(text.startswith(" has to be built"), text)

    def test_llama_docs_q8_0_generates_like_the_reference(self):
        text, _ = self.generate(self.files["llama-docs-27m"]["q8_0"], "The kernel", n=8)
        self.assertTrue(text.startswith(" has to be built"), text)


if __name__ == "__main__":
    qptest.main()
