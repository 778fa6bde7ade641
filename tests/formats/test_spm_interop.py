"""SentencePiece interop: our tokenizer.model reader against sentencepiece.

usage: test_spm_interop.py QP_FORMATS_TOOL

For both shared models, every piece, score and type our reader decodes
must equal what sentencepiece's own processor reports, and so must the
special ids.
"""
import json
import os
import subprocess
import sys

import sentencepiece as spm

TOOL = sys.argv[1]
SHARED = os.environ["QP_SHARED_DIR"]
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)


NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

for model, n in (("stories260K", 512), ("llama-docs-27m", 8192)):
    path = os.path.join(SHARED, "data/models", model, "tokenizer.model")
    sp = spm.SentencePieceProcessor(model_file=path)
    ours = json.loads(subprocess.run([TOOL, "dump-spm", path], check=True, capture_output=True,
                                     text=True).stdout)
    check(len(ours["pieces"]) == sp.get_piece_size() == n, "%s: %d pieces" % (model, len(ours["pieces"])))
    for k in ("unk_id", "bos_id", "eos_id", "pad_id"):
        check(ours[k] == getattr(sp, k)(), "%s: %s %d vs %d" % (model, k, ours[k], getattr(sp, k)()))
    bad = 0
    for i, (piece, score, typ) in enumerate(ours["pieces"]):
        want = (UNKNOWN if sp.is_unknown(i) else CONTROL if sp.is_control(i) else
                UNUSED if sp.is_unused(i) else BYTE if sp.is_byte(i) else None)
        ok = piece == sp.id_to_piece(i) and score == sp.get_score(i)
        ok = ok and (typ == want if want is not None else typ in (NORMAL, USER_DEFINED))
        if not ok and bad < 5:
            check(False, "%s: piece %d: ours %r, sentencepiece %r %r" % (
                model, i, (piece, score, typ), sp.id_to_piece(i), sp.get_score(i)))
        bad += not ok
    check(bad == 0, "%s: %d pieces differ" % (model, bad))
    # Llama-style settings, as data/README.md documents for both models.
    check(ours["model_type"] == 2, "%s: model_type %d (bpe)" % (model, ours["model_type"]))
    check(ours["byte_fallback"] is True, "%s: byte_fallback" % model)
    check(ours["add_dummy_prefix"] is True, "%s: add_dummy_prefix" % model)

if failures:
    print("%d failures" % len(failures))
    sys.exit(1)
print("ok")
