"""Token ids from model/tokenizer's tokenizer.json loader equal HF
`tokenizers` (Tokenizer.from_file) on the text files in shared/data/text
(the first 128 KB of each whole, and every fourth paragraph or wikitext
row), every fourth task JSONL item and an adversarial set, with and
without the special tokens; and our decode of the ids equals HF's
decode(ids, skip_special_tokens=True).

Tokenizers held against HF:
  - llama-docs-27m's own tokenizer.json (SentencePiece-style BPE, byte
    fallback, normalizer Prepend+Replace, pairs form of merges), and two
    rewrites of it onto the Metaspace pre-tokenizer (prepend_scheme
    "first"/"always", split on/off, Metaspace decoder), one with an added
    normalized token;
  - byte-level BPE trained here (tokenizers' BpeTrainer, vocab 2000, on a
    slice of the shared text): GPT-2's ByteLevel pre-tokenizer (merges
    written in the "a b" string form, an lstrip added token), Digits +
    ByteLevel(add_prefix_space), Llama-3's Split pattern +
    ByteLevel(use_regex=False) with ignore_merges and a BOS template, and
    Qwen2's pattern with its NFC normalizer (held against HF on every
    character with a canonical decomposition, written decomposed),
    and each Split behavior after Digits(individual_digits=False).

Invalid UTF-8: HF takes a str, so the reference is HF on the bytes decoded
with errors="replace" (one U+FFFD per maximal invalid subsequence); we
encode the raw bytes and must give the same ids.

QP_TOKJSON_FULL=1 runs every paragraph, whole file and task context
(10 MB of text, about 5x the time): CI runs the sample.

    python3 test_tokenizer_json.py QP_MODEL_TOOL
"""
import glob
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import unittest

import unicodedata

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

TOOL = None
SHARED = os.environ.get("QP_SHARED_DIR", "../shared")
DOCS = os.path.join(SHARED, "data", "models", "llama-docs-27m")

GPT2_RE = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
LLAMA3_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
             r"\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
            r"\s*[\r\n]+|\s+(?!\S)|\s+")

ADVERSARIAL = [
    "", " ", "  ", "   ", "\t", "\n", "\n\n\n", "\r\n", "\r\n\r\n", "\t \t", " \n ", "  \n  x", "x  \n",
    "a", " a", "a ", "  a  b  ", "a\u00a0b", "a\u3000b", "a\u2028b", "a\u0085b", "x\u200bx", "\u1680",
    "trailing spaces   ", "   leading", "mixed\ttabs and  spaces   here\n\n\tnext",
    "héllo wörld", "e\u0301 combining", "日本語のテキスト", "中文，标点。", "한국어",
    "😀🎉 emoji 👩‍👩‍👧", "مرحبا بالعالم", "שלום עולם", "\u202eRTL override", "ﬁ ligature",
    "1234567890", "3.14159 2,000,000", "٣٤٥ Ⅻ ½ ²", "x" * 2000, "ab " * 500, "0" * 100,
    "it's don't I'M we'RE they'll you'd 's 'S 'ſ 'ſt ''s", "'", "''", "'re'", "O'Neil's",
    "\u2581 already a mark", "\u2581\u2581x", "<0x41>", "<unk>", "\u0000nul", "'\"`~!@#$%^&*()",
    "<s> not special </s>", "<s>", "</s>", "a<s>b", " <s> ", "<s><s></s>",
    "<|endoftext|>", "x<|endoftext|>y", " <|begin_of_text|> hi", "kernel the kernel kernels",
    "<mask> x  <mask>", "word<mask>",
    "e\u0301\u0323 d\u0307\u0323 a\u0328\u0301 \u212b \u2126 \u0958 \u1100\u1161\u11a8 \u1100\u1161 \uac00\u11a8",
    "\u0301 leading mark", "Caf\u00e9 vs Cafe\u0301", "\u1e9b\u0323 \u0344 \u0f73 \u2adc",
]


def nfc_stress():
    """Every character with a canonical decomposition, written decomposed
    (NFD), fifty to a text; and Hangul syllables decomposed to jamo.

    Left out: characters whose NFC differs between HF's own tables (crate
    unicode-normalization-alignments, older Unicode) and Python's
    unicodedata, from which model/unicode_tables.c is generated. With
    tokenizers 0.23 and Python's Unicode 14 that is U+11938 (DIVES AKURU
    VOWEL SIGN O, Unicode 13), which HF leaves decomposed."""
    hf_nfc = normalizers.NFC()
    chars = [chr(c) for c in range(0x110000) if unicodedata.decomposition(chr(c))[:1] not in ("", "<")]
    newer = [c for c in chars if hf_nfc.normalize_str(unicodedata.normalize("NFD", c))
             != unicodedata.normalize("NFC", c)]
    assert len(newer) <= 4, ["U+%04X" % ord(c) for c in newer]
    chars = [c for c in chars if c not in newer]
    texts = ["".join(unicodedata.normalize("NFD", c) + " " for c in chars[i:i + 50]) for i in range(0, len(chars), 50)]
    hangul = [chr(c) for c in range(0xAC00, 0xD7A4, 97)]
    texts.append(unicodedata.normalize("NFD", "".join(hangul)))
    return [("nfc%d" % i, t.encode("utf-8")) for i, t in enumerate(texts)]

INVALID_UTF8 = [
    b"\xc3a", b"\xff\xfe", b"\xe6\x97", b"\xe6\x97a", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf",
    b"abc\xe2\x82", b"\x80\x80 x", b"ok \xf0\x9f\x98 then", b"\xf0\x9f\x98\x80\xf0", b"<s>\xff</s>",
]


def paragraphs(text):
    """Blank-line separated paragraphs; the lines of a file that has none
    (the wikitext rows)."""
    ps = text.split("\n\n")
    if len(ps) == 1:
        ps = text.split("\n")
    return [p for p in ps if p.strip()]


FULL = os.environ.get("QP_TOKJSON_FULL") == "1"
WHOLE_BYTES = 128 * 1024  # of each file, cut after a line break
STRIDE = 4  # every fourth paragraph and task item


def corpus():
    """(label, bytes) of each text file, whole (its first WHOLE_BYTES) and
    per paragraph, and the task contexts; all of them if FULL."""
    stride = 1 if FULL else STRIDE
    out = []
    files = sorted(glob.glob(os.path.join(SHARED, "data", "text", "*", "*")))
    assert len(files) >= 3, files
    for path in files:
        with open(path, "rb") as f:
            raw = f.read()
        name = os.path.basename(path)
        whole = raw
        if not FULL and len(raw) > WHOLE_BYTES:
            whole = raw[:raw.rindex(b"\n", 0, WHOLE_BYTES) + 1]
        out.append((name, whole))
        for i, p in enumerate(paragraphs(raw.decode("utf-8"))):
            if i % stride == 0:
                out.append(("%s#%d" % (name, i), p.encode("utf-8")))
    for task, keys in (("hellaswag_validation.jsonl", ("ctx",)), ("piqa_validation.jsonl", ("goal", "sol1", "sol2"))):
        with open(os.path.join(SHARED, "data", "tasks", task), encoding="utf-8") as f:
            for i, line in enumerate(f):
                if i % stride:
                    continue
                item = json.loads(line)
                for k in keys:
                    out.append(("%s#%d.%s" % (task, i, k), item[k].encode("utf-8")))
                for j, e in enumerate(item.get("endings", [])[:1]):
                    out.append(("%s#%d.ending%d" % (task, i, j), (" " + e).encode("utf-8")))
    return out


_CORPUS = []


def corpus_once():
    if not _CORPUS:
        _CORPUS.extend(corpus())
    return _CORPUS


def adversarial():
    return [("adv%d" % i, s.encode("utf-8")) for i, s in enumerate(ADVERSARIAL)] + \
           [("bad%d" % i, b) for i, b in enumerate(INVALID_UTF8)]


def ours(src, texts):
    """For each bytes text: (ids, ids with specials, decoded bytes)."""
    with tempfile.NamedTemporaryFile(suffix=".bin") as f:
        for t in texts:
            f.write(struct.pack("<I", len(t)) + t)
        f.flush()
        p = subprocess.run([TOOL, "tokenize-batch", src, f.name], capture_output=True, text=True)
    if p.returncode != 0:
        raise AssertionError(p.stderr)
    lines = p.stdout.split("\n")
    assert len(lines) == 3 * len(texts) + 1, (len(lines), len(texts))
    res = []
    for i in range(len(texts)):
        a, b, d = lines[3 * i:3 * i + 3]
        res.append(([int(x) for x in a.split()], [int(x) for x in b.split()], bytes.fromhex(d)))
    return res


class Base(unittest.TestCase):
    def compare(self, src, hf, items, wrap=None):
        """wrap: where tokenizer_config.json sets add_bos_token/add_eos_token,
        transformers (not tokenizers) rebuilds the template from it; wrap
        gives those ids around the plain ones."""
        got = ours(src, [b for _, b in items])
        strs = [raw.decode("utf-8", errors="replace") for _, raw in items]
        wants = [e.ids for e in hf.encode_batch(strs, add_special_tokens=False)]
        swants = [wrap(w) for w in wants] if wrap else [e.ids for e in hf.encode_batch(strs)]
        dwants = [d.encode("utf-8") for d in hf.decode_batch(wants)]
        bad = 0
        for (label, raw), (ids, sids, text), want, swant, dwant in zip(items, got, wants, swants, dwants):
            for what, g, w in (("ids", ids, want), ("ids with specials", sids, swant), ("decode", text, dwant)):
                if g != w:
                    bad += 1
                    if bad <= 5:
                        first = next((i for i, (x, y) in enumerate(zip(g, w)) if x != y), min(len(g), len(w)))
                        print("%s: %s %r: differ at %d of %d/%d: ours %r, HF %r" % (
                            src, what, raw[:60], first, len(g), len(w), g[first:first + 8], w[first:first + 8]),
                            file=sys.stderr)
        self.assertEqual(bad, 0, "%s: %d mismatches in %d texts (first ones above)" % (src, bad, len(items)))


def training_text():
    chunks = []
    for path in sorted(glob.glob(os.path.join(SHARED, "data", "text", "*", "*"))):
        with open(path, encoding="utf-8") as f:
            chunks.append(f.read(120000))
    return [p for c in chunks for p in c.split("\n")]


def train_bytelevel(pre, specials, vocab=2000):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(training_text(), trainer=trainer)
    return tok


def save(tok, d, config, edit=None):
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "tokenizer.json")
    tok.save(path)
    if edit:
        with open(path, encoding="utf-8") as f:
            j = json.load(f)
        edit(j)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(j, f, ensure_ascii=False)
    with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f)
    return d


class LlamaDocs(Base):
    """SentencePiece-style BPE with byte fallback: the shipped file."""

    @classmethod
    def setUpClass(cls):
        cls.hf = Tokenizer.from_file(os.path.join(DOCS, "tokenizer.json"))
        cls.tmp = tempfile.mkdtemp(prefix="qp-tokjson-")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp)

    def test_shared_text_and_tasks(self):
        self.compare(DOCS, self.hf, corpus_once())

    def test_adversarial(self):
        self.compare(DOCS, self.hf, adversarial())

    def test_json_and_model_files_agree(self):
        """The folder ships tokenizer.model too: both loaders give the same
        ids, except where HF splits out "<s>", "</s>" or "<unk>", which
        sentencepiece reads as text, and on invalid UTF-8 (U+FFFD here, the
        raw bytes there)."""
        def plain(b):
            return all(t not in b for t in (b"<s>", b"</s>", b"<unk>")) and \
                b.decode("utf-8", "replace") == b.decode("utf-8", "ignore")
        items = [x for x in corpus_once() + adversarial() if plain(x[1])]
        texts = [b for _, b in items]
        a = ours(os.path.join(DOCS, "tokenizer.json"), texts)
        b = ours(os.path.join(DOCS, "tokenizer.model"), texts)
        diff = [items[i][0] for i in range(len(texts)) if a[i][:2] != b[i][:2]]
        self.assertEqual(diff, [])

    def test_metaspace_rewrites(self):
        with open(os.path.join(DOCS, "tokenizer_config.json"), encoding="utf-8") as f:
            config = json.load(f)
        for scheme, split, dec in (("first", False, "docs"), ("always", True, "metaspace"), ("never", True, "docs")):
            def edit(j):
                j["normalizer"] = None
                j["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": scheme,
                                      "split": split}
                if dec == "metaspace":
                    j["decoder"] = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": scheme,
                                    "split": split}
            tok = Tokenizer.from_file(os.path.join(DOCS, "tokenizer.json"))
            if scheme == "always":
                tok.add_tokens([AddedToken("the kernel", normalized=True, special=False)])
            d = save(tok, os.path.join(self.tmp, "ms-" + scheme), config, edit)
            hf = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
            with self.subTest(scheme=scheme):
                self.compare(d, hf, adversarial() + corpus_once()[:400])


class ByteLevel(Base):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="qp-tokjson-")
        cls.texts = adversarial() + [x for x in corpus_once() if "#" in x[0]][::7] + \
            [x for x in corpus_once() if "#" not in x[0]]

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp)

    def check(self, name, tok, config, edit=None, wrap=None):
        d = save(tok, os.path.join(self.tmp, name), config, edit)
        hf = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
        self.compare(d, hf, self.texts, wrap)

    def test_gpt2(self):
        tok = train_bytelevel(pre_tokenizers.ByteLevel(add_prefix_space=False), ["<|endoftext|>"])
        tok.add_tokens([AddedToken("<mask>", lstrip=True, special=False, normalized=False)])

        def edit(j):  # the older "a b" string form of merges
            j["model"]["merges"] = [a + " " + b for a, b in j["model"]["merges"]]
        self.check("gpt2", tok, {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>",
                                 "add_bos_token": False}, edit)

    def test_digits_prefix_space(self):
        pre = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                       pre_tokenizers.ByteLevel(add_prefix_space=True)])
        tok = train_bytelevel(pre, ["<|endoftext|>"])
        tok.add_tokens([AddedToken("kernel", normalized=True, special=False)])
        eos = tok.token_to_id("<|endoftext|>")
        self.check("digits", tok, {"eos_token": "<|endoftext|>", "add_eos_token": True},
                   wrap=lambda ids: ids + [eos])

    def test_llama3(self):
        pre = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(LLAMA3_RE), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])
        tok = train_bytelevel(pre, ["<|begin_of_text|>", "<|end_of_text|>"])
        bos = tok.token_to_id("<|begin_of_text|>")
        tok.post_processor = processors.Sequence([
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A $B",
                                          special_tokens=[("<|begin_of_text|>", bos)])])

        def edit(j):
            j["model"]["ignore_merges"] = True
        self.check("llama3", tok, {"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>"}, edit)

    def test_qwen2(self):
        pre = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(QWEN2_RE), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)])
        tok = train_bytelevel(pre, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
        tok.normalizer = normalizers.NFC()
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
        config = {"bos_token": None, "eos_token": "<|endoftext|>", "add_prefix_space": False}
        d = save(tok, os.path.join(self.tmp, "qwen2"), config)
        hf = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
        self.compare(d, hf, self.texts + nfc_stress())

    def test_split_behaviors_and_digit_runs(self):
        texts = adversarial() + [x for x in corpus_once() if "#" in x[0]][::40]
        for behavior in ("removed", "merged_with_previous", "merged_with_next", "contiguous"):
            pre = pre_tokenizers.Sequence([
                pre_tokenizers.Digits(individual_digits=False),
                pre_tokenizers.Split(Regex(QWEN2_RE), behavior=behavior, invert=False),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
            tok = train_bytelevel(pre, ["<|endoftext|>"], vocab=600)
            d = save(tok, os.path.join(self.tmp, "split-" + behavior), {})
            with self.subTest(behavior=behavior):
                self.compare(d, Tokenizer.from_file(os.path.join(d, "tokenizer.json")), texts)

    def test_gpt2_pattern_as_split(self):
        pre = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(GPT2_RE), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        tok = train_bytelevel(pre, ["<|endoftext|>"])
        self.check("gpt2split", tok, {})


if __name__ == "__main__":
    TOOL = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
