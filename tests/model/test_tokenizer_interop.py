"""Token ids from model/tokenizer equal the sentencepiece package's on
every text file in shared/data/text and on an adversarial set, for both
shared tokenizer.model files.

Invalid UTF-8 cannot be given to sentencepiece (it takes str); there we
follow llama.cpp (raw bytes fall back to byte tokens, and decode gives
the bytes back), checked in tests/model/test_tokenizer.c and against
llama.cpp itself in tests/e2e/test_perplexity.py.

    python3 test_tokenizer_interop.py QP_MODEL_TOOL
"""
import glob
import os
import subprocess
import sys
import tempfile
import unittest

import sentencepiece as spm

TOOL = None
SHARED = os.environ.get("QP_SHARED_DIR", "../shared")
MODELS = ["stories260K", "llama-docs-27m"]

ADVERSARIAL = [
    "", " ", "   ", "\n", "\n\n\n", "\t \t", "a", " a", "a ", "  a  b  ", "a\u00a0b",
    "héllo wörld", "日本語のテキスト", "😀🎉 emoji 👩‍👩‍👧", "e\u0301", "\u2581 already a mark",
    "<s> not special </s>", "<0x41>", "1234567890", "x" * 2000, "ab " * 500,
    "\r\n\r\n", "mixed\ttabs and  spaces   here", "\u0000nul", "'\"`~!@#$%^&*()",
]


def ours(model_dir, text_bytes):
    with tempfile.NamedTemporaryFile(suffix=".txt") as f:
        f.write(text_bytes)
        f.flush()
        p = subprocess.run([TOOL, "tokenize", model_dir, f.name, "--no-special"],
                           capture_output=True, text=True)
    if p.returncode != 0:
        raise AssertionError(p.stderr)
    return [int(x) for x in p.stdout.split()]


class TokenizerInterop(unittest.TestCase):
    def check(self, model, text):
        d = os.path.join(SHARED, "data", "models", model)
        sp = spm.SentencePieceProcessor(model_file=os.path.join(d, "tokenizer.model"))
        want = sp.encode(text)
        # the tokenizer.model file itself: the folder's tokenizer.json, where
        # there is one, is held against HF tokenizers in test_tokenizer_json.py
        got = ours(os.path.join(d, "tokenizer.model"), text.encode("utf-8"))
        if got != want:
            first = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
            self.fail("%s: %r: ids differ at %d of %d/%d: ours %s, sentencepiece %s"
                      % (model, text[:40], first, len(got), len(want), got[first:first + 8], want[first:first + 8]))

    def test_every_shared_text_file(self):
        files = sorted(glob.glob(os.path.join(SHARED, "data", "text", "*", "*")))
        self.assertGreaterEqual(len(files), 3)
        for path in files:
            with open(path, "rb") as f:
                text = f.read().decode("utf-8")
            for model in MODELS:
                with self.subTest(model=model, file=os.path.basename(path)):
                    self.check(model, text)

    def test_adversarial_strings(self):
        for text in ADVERSARIAL:
            for model in MODELS:
                with self.subTest(model=model, text=text[:20]):
                    self.check(model, text)


if __name__ == "__main__":
    TOOL = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
