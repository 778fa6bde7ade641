#!/usr/bin/env python3
"""Write the seed corpora for the formats fuzzers into corpus/<parser>/.

Seeds are tiny files built here from the format specifications with the
standard library only (never copies of the shared models): valid files
that reach deep into each parser, and a few near-misses. The output is
checked in; rerun after changing a seed. Inputs that once crashed a
fuzzer are checked in beside them as regress-*, and this script leaves
those alone.

usage: tests/fuzz/gen_corpus.py
"""
import gzip
import io
import json
import lzma
import os
import struct
import tarfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))


def out(parser, name, data):
    d = os.path.join(HERE, "corpus", parser)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- GGUF ----

def gstr(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q",
          11: "<q", 12: "<d"}


def gval(t, v, sub=None):
    if t == 8:
        return struct.pack("<I", 8) + gstr(v)
    if t == 9:
        body = struct.pack("<IQ", sub, len(v))
        for x in v:
            body += gstr(x) if sub == 8 else struct.pack(SCALAR[sub], x)
        return struct.pack("<I", 9) + body
    return struct.pack("<I", t) + struct.pack(SCALAR[t], v)


def gguf(kvs, tensors, version=3, align=32):
    """tensors: (name, type, ne, nbytes); data is a byte pattern."""
    h = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs))
    for k, t, v, *sub in kvs:
        h += gstr(k) + gval(t, v, *sub)
    off, blobs = 0, []
    for name, typ, ne, nbytes in tensors:
        h += gstr(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<q", x) for x in ne)
        h += struct.pack("<IQ", typ, off)
        blob = bytes((i * 7 + len(name)) & 0x3F for i in range(nbytes))
        blob += b"\0" * ((-nbytes) % align)
        blobs.append(blob)
        off += len(blob)
    if tensors:
        h += b"\0" * ((-len(h)) % align)
    return h + b"".join(blobs)


ALL_KV = [("general.architecture", 8, "llama"), ("u8", 0, 1), ("i8", 1, -1), ("u16", 2, 2),
          ("i16", 3, -2), ("u32", 4, 3), ("i32", 5, -3), ("f32", 6, 0.5), ("bool", 7, True),
          ("u64", 10, 2**64 - 1), ("i64", 11, -2**63), ("f64", 12, 0.25),
          ("tokenizer.ggml.tokens", 9, ["<unk>", "<s>", "\u2581a", ""], 8),
          ("tokenizer.ggml.scores", 9, [0.0, -1.0, -2.0, -3.0], 6),
          ("tokenizer.ggml.token_type", 9, [2, 3, 1, 1], 5), ("arr.bool", 9, [True, False], 7),
          ("arr.u64", 9, [1, 2], 10)]
out("gguf", "v3-all-types.gguf", gguf(ALL_KV, [("tok", 0, [4, 2], 32), ("q", 8, [32, 1], 34),
                                                ("h", 1, [8], 16), ("k", 12, [256], 144)]))
out("gguf", "v2-minimal.gguf", gguf([("general.name", 8, "x")], [("w", 0, [2], 8)], version=2))
out("gguf", "align64.gguf", gguf([("general.alignment", 4, 64)], [("a", 0, [3], 12), ("b", 30, [5], 10)],
                                 align=64))
out("gguf", "no-tensors.gguf", gguf([("a", 8, "b"), ("c", 9, [1, 2, 3], 0)], []))
out("gguf", "empty-tensor.gguf", gguf([], [("z", 0, [0, 4], 0), ("w", 1, [4, 1, 1, 2], 16)]))
out("gguf", "header-only.gguf", gguf([], []))
out("gguf", "v1.gguf", b"GGUF" + struct.pack("<III", 1, 0, 0))
out("gguf", "nested-array.gguf", b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + gstr("a") +
    struct.pack("<IIQ", 9, 9, 1) + struct.pack("<IQ", 0, 1) + b"\1")

# ---- safetensors ----

ST = [("BOOL", 1), ("U8", 1), ("I8", 1), ("U16", 2), ("I16", 2), ("F16", 2), ("BF16", 2),
      ("U32", 4), ("I32", 4), ("F32", 4), ("U64", 8), ("I64", 8), ("F64", 8), ("F8_E4M3", 1),
      ("F8_E5M2", 1)]


def safetensors(entries, metadata=None):
    """entries: (name, dtype, shape, nbytes); offsets assigned in order."""
    hdr, off = {}, 0
    if metadata is not None:
        hdr["__metadata__"] = metadata
    for name, dt, shape, nbytes in entries:
        hdr[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + nbytes]}
        off += nbytes
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * ((-len(h)) % 8)
    return struct.pack("<Q", len(h)) + h + bytes(i & 0x3F for i in range(off))


out("safetensors", "all-dtypes.safetensors",
    safetensors([("t." + dt, dt, [2, 2], 4 * sz) for dt, sz in ST], {"format": "pt"}))
out("safetensors", "scalar-and-empty.safetensors",
    safetensors([("s", "F32", [], 4), ("e", "F16", [0, 3], 0), ("m", "I64", [1, 1, 1, 1, 1, 1, 1, 1], 8)]))
out("safetensors", "empty.safetensors", struct.pack("<Q", 8) + b"{}      ")
out("safetensors", "metadata-only.safetensors", safetensors([], {"a": "b", "c": "d"}))
bad = safetensors([("a", "F32", [2], 8), ("b", "F32", [2], 8)])
out("safetensors", "overlap.safetensors", bad.replace(b"[8,16]", b"[4,12]"))

# ---- qpipe's quantized layout (formats/qlayout.h) ----

def layout(entries, tensors):
    """entries: {name: metadata dict}; tensors: (name, dtype, shape, bytes)."""
    meta = {"qpipe.layout": "1"}
    for name, m in entries.items():
        meta["qpipe.tensor." + name] = json.dumps(m, separators=(",", ":"))
    hdr, off, data = {"__metadata__": meta}, 0, b""
    for name, dt, shape, b in tensors:
        hdr[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(b)]}
        off += len(b)
        data += b
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * ((-len(h)) % 8)
    return struct.pack("<Q", len(h)) + h + data


F16_ONE = struct.pack("<e", 0.5)
QL = {
    "rtn": ({"r": {"shape": [2, 16], "method": "rtn:bits=4:group=8:asym:scale=f16"}},
            [("r.qcodes", "U8", [2, 8], bytes(range(16))), ("r.qscales", "F16", [2, 2], F16_ONE * 4),
             ("r.qzeros", "U8", [2, 2], bytes([1, 7, 8, 15]))]),
    "rtn-gidx": ({"g": {"shape": [1, 8], "method": "rtn:bits=8:group=4:sym:scale=f32"}},
                 [("g.qcodes", "U8", [1, 8], bytes(range(120, 128))), ("g.qscales", "F32", [1, 2], struct.pack("<2f", 1, 2)),
                  ("g.qzeros", "U8", [1, 2], bytes([128, 128])), ("g.qg_idx", "I32", [8], struct.pack("<8i", 0, 1, 0, 1, 1, 0, 1, 0))]),
    "nf4-dq": ({"n": {"shape": [1, 128], "method": "nf4:group=64:dq=true"}},
               [("n.qcodes", "U8", [1, 64], bytes(range(64))), ("n.qabsmax_codes", "U8", [2], bytes([3, 250])),
                ("n.qabsmax_scales", "F32", [1], struct.pack("<f", 0.25)),
                ("n.qabsmax_offset", "F32", [1], struct.pack("<f", 0.5))]),
    "kmeans": ({"k": {"shape": [4, 8], "method": "kmeans:bits=2:gran=tensor:channel_scale=true:seed=0:iters=5"}},
               [("k.qcodes", "U8", [4, 2], bytes(range(0, 256, 33))), ("k.qscales", "F32", [4, 1], struct.pack("<4f", 1, 2, 0, 3)),
                ("k.qlut", "F32", [1, 4], struct.pack("<4f", -1, -0.5, 0.5, 1))]),
    "ternary": ({"t": {"shape": [2, 8], "method": "ternary:gran=channel:rule=absmean:scale=f16"}},
                [("t.qcodes", "U8", [2, 2], bytes([0x55, 0x24, 0x12, 0x00])), ("t.qscales", "F16", [2, 1], F16_ONE * 2)]),
    "fp8": ({"f": {"shape": [2, 4], "method": "fp8:format=e5m2:gran=tensor"}},
            [("f.qcodes", "U8", [2, 4], bytes([0, 1, 0x7b, 0x7c, 0x7f, 0x80, 0xfc, 0x3c])),
             ("f.qscales", "F32", [1, 1], struct.pack("<f", 2))]),
    "binary-gguf-float": ({"b": {"shape": [2, 16], "method": "binary:group=8:scale=f16"},
                           "q": {"shape": [2, 32], "type": "q8_0"}},
                          [("b.qcodes", "U8", [2, 2], bytes([0xa5, 0x0f, 0xf0, 0x5a])), ("b.qscales", "F16", [2, 2], F16_ONE * 4),
                           ("q.qblocks", "U8", [2, 34], (F16_ONE + bytes(range(32))) * 2),
                           ("norm", "F32", [4], struct.pack("<4f", 1, 2, 3, 4))]),
}
for name, (entries, tensors) in QL.items():
    out("qlayout", name + ".safetensors", layout(entries, tensors))


# ---- SentencePiece ----

def varint(v):
    b = b""
    v &= (1 << 64) - 1
    while True:
        c = v & 0x7F
        v >>= 7
        b += bytes([c | (0x80 if v else 0)])
        if not v:
            return b


def field(num, wire, payload):
    tag = varint(num << 3 | wire)
    if wire == 2:
        return tag + varint(len(payload)) + payload
    return tag + payload


def piece(p, score, typ=None):
    body = field(1, 2, p.encode()) + field(2, 5, struct.pack("<f", score))
    if typ is not None:
        body += field(3, 0, varint(typ))
    return field(1, 2, body)


def spm(pieces, trainer, normalizer, extra=b""):
    m = b"".join(pieces) + field(2, 2, trainer) + field(3, 2, normalizer) + extra
    return m


PIECES = [piece("<unk>", 0, 2), piece("<s>", 0, 3), piece("</s>", 0, 3)]
PIECES += [piece("<0x%02X>" % i, 0, 6) for i in range(4)]
PIECES += [piece(p, -float(i)) for i, p in enumerate(["\u2581the", "\u2581a", "e", "\u2581", "xyz"])]
TRAINER = (field(1, 2, b"corpus.txt") + field(3, 0, varint(2)) + field(4, 0, varint(12)) +
           field(10, 5, struct.pack("<f", 0.9995)) + field(35, 0, varint(1)) +
           field(40, 0, varint(0)) + field(41, 0, varint(1)) + field(42, 0, varint(2)) +
           field(43, 0, varint(-1)))
NORMALIZER = field(1, 2, b"identity") + field(3, 0, varint(1)) + field(4, 0, varint(0))
out("spm", "bpe-byte-fallback.model", spm(PIECES, TRAINER, NORMALIZER,
                                          field(4, 2, b"") + field(300, 1, b"\0" * 8)))
out("spm", "unigram-defaults.model", b"".join(PIECES[:3]) + piece("a", -1.5, 4) + piece("b", -2, 5))
out("spm", "no-pieces.model", field(2, 2, TRAINER))
out("spm", "long-varint.model", b"\x0a" + b"\xff" * 11)

# ---- config.json / tokenizer_config.json ----

LLAMA = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64,
         "intermediate_size": 172, "num_hidden_layers": 2, "num_attention_heads": 8,
         "num_key_value_heads": 4, "head_dim": 8, "vocab_size": 512, "max_position_embeddings": 512,
         "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "tie_word_embeddings": True,
         "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float32"}
out("hfconfig", "llama.json", json.dumps(LLAMA, indent=2).encode())
v5 = dict(LLAMA)
del v5["rope_theta"], v5["torch_dtype"]
v5.update({"rope_parameters": {"rope_theta": 500000.0, "rope_type": "default"}, "dtype": "bfloat16",
           "eos_token_id": [128001, 128009], "bos_token_id": None, "head_dim": None})
out("hfconfig", "transformers5.json", json.dumps(v5).encode())
out("hfconfig", "tokenizer-config.json", json.dumps(
    {"add_bos_token": True, "add_eos_token": False, "bos_token": "<s>", "legacy": True,
     "model_max_length": 512, "added_tokens_decoder": {"0": {"content": "<unk>"}}}).encode())
out("hfconfig", "missing-key.json", b'{"model_type": "llama", "hidden_size": 64}')
out("hfconfig", "syntax-error.json", b'{"model_type": "llama",\n "x": }')

# ---- archives (url.download's extraction) ----


def tar(members, mode="w"):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode, format=tarfile.GNU_FORMAT) as t:
        for name, kind, arg in members:
            ti = tarfile.TarInfo(name)
            ti.mtime = 0
            if kind == "file":
                ti.size = len(arg)
                t.addfile(ti, io.BytesIO(arg))
                continue
            ti.type = {"dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE, "hard": tarfile.LNKTYPE,
                       "chr": tarfile.CHRTYPE}[kind]
            if kind in ("sym", "hard"):
                ti.linkname = arg
            t.addfile(ti)
    return buf.getvalue()


def gz(data):
    return gzip.compress(data, mtime=0)


TREE = [("d", "dir", None), ("d/a.txt", "file", b"alpha\n"), ("d/s", "sym", "a.txt"),
        ("h", "hard", "d/a.txt")]
out("archive", "tree.tar", tar(TREE))
out("archive", "tree.tar.gz", gz(tar(TREE)))
out("archive", "tree.tar.xz", lzma.compress(tar(TREE)))
zbuf = io.BytesIO()
with zipfile.ZipFile(zbuf, "w", zipfile.ZIP_DEFLATED) as z:
    for name, data in [("d/a.txt", b"alpha\n"), ("b.bin", bytes(range(256)) * 4)]:
        z.writestr(zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0)), data, zipfile.ZIP_DEFLATED)
out("archive", "two.zip", zbuf.getvalue())
out("archive", "traversal.tar", tar([("../evil", "file", b"x")]))
out("archive", "symlink-escape.tar", tar([("s", "sym", "../../etc/passwd")]))
out("archive", "hardlink-escape.tar", tar([("h", "hard", "../x")]))
out("archive", "device.tar", tar([("null", "chr", None)]))
out("archive", "bomb.tar.gz", gz(tar([("zeros", "file", b"\0" * (5 << 20))])))
