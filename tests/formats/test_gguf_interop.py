"""GGUF interop with llama.cpp's gguf-py, both directions.

usage: test_gguf_interop.py QP_FORMATS_TOOL

1. A file our writer makes (every metadata type, arrays, six tensor types,
   default and custom alignment) is read by gguf.GGUFReader: every key,
   value, type and tensor byte must equal what the tool wrote.
2. A file gguf.GGUFWriter makes with the same kinds of content is read by
   our reader (through the tool's JSON dump): everything must match.
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import gguf
from gguf import GGMLQuantizationType as QT, GGUFValueType as VT

TOOL = sys.argv[1]
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)


def fill(n, i):
    """Byte j of tensor i, as qp_formats_tool's fill()."""
    return bytes(((i * 37 + j * 11) & 0xFF) for j in range(n))


def finite(b, es):
    """The tool masks the top byte of each float so values stay finite."""
    b = bytearray(b)
    for j in range(es - 1, len(b), es):
        b[j] &= 0x3F
    return bytes(b)


# What write-gguf writes, in order: key -> (type, value[, arr_type]).
EXPECTED_KV = [
    ("general.architecture", VT.STRING, "llama"),
    ("general.name", VT.STRING, "qp \u00e9t\u00e9 \u2581"),
    ("test.u8", VT.UINT8, 250),
    ("test.i8", VT.INT8, -7),
    ("test.u16", VT.UINT16, 65000),
    ("test.i16", VT.INT16, -32000),
    ("test.u32", VT.UINT32, 4000000000),
    ("test.i32", VT.INT32, -2000000000),
    ("test.f32", VT.FLOAT32, 1.25),
    ("test.bool", VT.BOOL, True),
    ("test.u64", VT.UINT64, 18446744073709551000),
    ("test.i64", VT.INT64, -9000000000000000000),
    ("test.f64", VT.FLOAT64, 2.718281828459045),
    ("test.empty", VT.STRING, ""),
    ("arr.u8", VT.ARRAY, [0, 128, 255], VT.UINT8),
    ("arr.i8", VT.ARRAY, [-128, 0, 127], VT.INT8),
    ("arr.u16", VT.ARRAY, [0, 65535], VT.UINT16),
    ("arr.i16", VT.ARRAY, [-32768, 32767], VT.INT16),
    ("arr.u32", VT.ARRAY, [1, 2, 4294967295], VT.UINT32),
    ("tokenizer.ggml.token_type", VT.ARRAY, [1, 3, 6, -1], VT.INT32),
    ("tokenizer.ggml.scores", VT.ARRAY, [0.0, -1.5, 1000.25], VT.FLOAT32),
    ("arr.bool", VT.ARRAY, [True, False, False, True], VT.BOOL),
    ("arr.u64", VT.ARRAY, [0, 18446744073709551615], VT.UINT64),
    ("arr.i64", VT.ARRAY, [-9223372036854775808, 9223372036854775807], VT.INT64),
    ("arr.f64", VT.ARRAY, [-0.125, 1e-300], VT.FLOAT64),
    ("tokenizer.ggml.tokens", VT.ARRAY, ["<unk>", "\u2581the", "", "<0x0A>"], VT.STRING),
]

# name, type, ne (innermost first), bytes
EXPECTED_T = []
for i, (name, qt, ne, nbytes, es) in enumerate([
        ("token_embd.weight", QT.F32, [4, 3], 48, 4),
        ("blk.0.attn_q.weight", QT.F16, [8, 2], 32, 2),
        ("blk.0.ffn_up.weight", QT.Q8_0, [64, 3], 2 * 34 * 3, 0),
        ("blk.0.ffn_down.weight", QT.Q4_K, [256], 144, 0),
        ("output_norm.weight", QT.BF16, [5], 10, 2),
        ("pos", QT.I32, [3], 12, 0)]):
    data = fill(nbytes, i)
    if qt in (QT.F32, QT.F16, QT.BF16):
        data = finite(data, es)
    EXPECTED_T.append((name, qt, ne, data))


def tool(*args):
    out = subprocess.run([TOOL, *args], check=True, capture_output=True, text=True)
    return out.stdout


def ours_is_read_by_gguf_py(tmp, align):
    path = os.path.join(tmp, "ours-%s.gguf" % align)
    tool("write-gguf", path, *([str(align)] if align else []))
    r = gguf.GGUFReader(path)
    expected = list(EXPECTED_KV)
    if align:
        expected.insert(0, ("general.alignment", VT.UINT32, align))
    fields = [f for f in r.fields.values() if not f.name.startswith("GGUF.")]
    check([f.name for f in fields] == [e[0] for e in expected], "gguf-py sees our keys in order")
    for f, e in zip(fields, expected):
        check(f.types[0] == e[1], "%s: type %s, expected %s" % (f.name, f.types, e[1]))
        if e[1] == VT.ARRAY:
            check(len(f.types) > 1 and f.types[1] == e[3], "%s: element type %s" % (f.name, f.types))
        got = f.contents()
        if isinstance(e[2], float):
            check(float(got) == e[2], "%s: %r != %r" % (f.name, got, e[2]))
        else:
            check(got == e[2], "%s: %r != %r" % (f.name, got, e[2]))
    check(r.alignment == (align or 32), "alignment %d" % r.alignment)
    check(len(r.tensors) == len(EXPECTED_T), "tensor count")
    for t, (name, qt, ne, data) in zip(r.tensors, EXPECTED_T):
        check(t.name == name, "tensor name %s" % t.name)
        check(t.tensor_type == qt, "%s: type %s" % (name, t.tensor_type))
        check(list(map(int, t.shape)) == ne, "%s: shape %s != %s" % (name, list(t.shape), ne))
        check(int(t.n_bytes) == len(data), "%s: n_bytes %d" % (name, t.n_bytes))
        check(t.data.tobytes() == data, "%s: data differs" % name)
        check(t.data_offset % (align or 32) == 0, "%s: data offset %d unaligned" % (name, t.data_offset))
    # Our own reader agrees with gguf-py on the same file.
    dump = json.loads(tool("dump-gguf", path))
    check(dump["data_offset"] == r.data_offset, "data offset %d vs %d" % (dump["data_offset"], r.data_offset))
    for t, d in zip(r.tensors, dump["tensors"]):
        check(bytes.fromhex(d["data_hex"]) == t.data.tobytes(), "%s: our reader's bytes" % t.name)


def norm(v):
    """Our dump writes u64 past 2^63 as strings."""
    if isinstance(v, str) and v.isdigit():
        return int(v)
    return v


def gguf_py_is_read_by_ours(tmp, align):
    path = os.path.join(tmp, "theirs-%s.gguf" % align)
    w = gguf.GGUFWriter(path, "llama")
    if align:
        w.add_custom_alignment(align)
    w.add_name("gguf-py \u00e9")
    w.add_uint8("t.u8", 200)
    w.add_int8("t.i8", -100)
    w.add_uint16("t.u16", 60000)
    w.add_int16("t.i16", -30000)
    w.add_uint32("t.u32", 3000000000)
    w.add_int32("t.i32", -3)
    w.add_float32("t.f32", 0.5)
    w.add_uint64("t.u64", 2**64 - 1)
    w.add_int64("t.i64", -(2**63))
    w.add_float64("t.f64", 1.0 / 3.0)
    w.add_bool("t.bool", False)
    w.add_string("t.str", "\u65e5\u672c")
    w.add_key_value("t.arr_u8", [1, 2, 3], VT.ARRAY, sub_type=VT.UINT8)
    w.add_key_value("t.arr_i16", [-1, 1], VT.ARRAY, sub_type=VT.INT16)
    w.add_key_value("t.arr_u64", [2**64 - 1], VT.ARRAY, sub_type=VT.UINT64)
    w.add_key_value("t.arr_f64", [0.1, 0.2], VT.ARRAY, sub_type=VT.FLOAT64)
    w.add_key_value("t.arr_bool", [True, False], VT.ARRAY, sub_type=VT.BOOL)
    w.add_token_list(["<unk>", "<s>", "\u2581a"])
    w.add_token_scores([0.0, -1.0, -2.5])
    w.add_token_types([2, 3, 1])
    rng = np.random.default_rng(7)
    f32 = rng.standard_normal((3, 5)).astype(np.float32)
    f16 = rng.standard_normal((2, 8)).astype(np.float16)
    q8 = rng.integers(0, 256, size=(4, 34), dtype=np.uint8)  # 4 rows of one q8_0 block
    i8 = rng.integers(-128, 128, size=(7,), dtype=np.int8)
    w.add_tensor("a.f32", f32)
    w.add_tensor("b.f16", f16)
    w.add_tensor("c.q8_0", q8, raw_shape=(4, 34), raw_dtype=QT.Q8_0)
    w.add_tensor("d.i8", i8)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    r = gguf.GGUFReader(path)
    dump = json.loads(tool("dump-gguf", path))
    check(dump["version"] == 3, "version")
    check(dump["alignment"] == (align or 32), "alignment %s" % dump["alignment"])
    check(dump["data_offset"] == r.data_offset, "data offset")
    theirs = [f for f in r.fields.values() if not f.name.startswith("GGUF.")]
    check([kv["key"] for kv in dump["kv"]] == [f.name for f in theirs], "keys in order")
    for kv, f in zip(dump["kv"], theirs):
        want_type = f.types[0]
        check(kv["type"] == gguf_name(want_type), "%s: type %s" % (kv["key"], kv["type"]))
        want = f.contents()
        got = [norm(x) for x in kv["value"]] if isinstance(kv["value"], list) else norm(kv["value"])
        if want_type == VT.ARRAY:
            check(kv["arr_type"] == gguf_name(f.types[1]), "%s: element type" % kv["key"])
        if want_type == VT.FLOAT32 or (want_type == VT.ARRAY and f.types[1] == VT.FLOAT32):
            want = np.float32(want).tolist() if not isinstance(want, list) else [float(np.float32(x)) for x in want]
        check(got == want, "%s: ours %r, gguf-py %r" % (kv["key"], got, want))
    check(len(dump["tensors"]) == len(r.tensors), "tensor count")
    for d, t in zip(dump["tensors"], r.tensors):
        check(d["name"] == t.name, "tensor name")
        check(d["type"] == int(t.tensor_type), "%s: type" % t.name)
        check(d["ne"] == [int(x) for x in t.shape], "%s: ne %s vs %s" % (t.name, d["ne"], list(t.shape)))
        check(d["nbytes"] == int(t.n_bytes), "%s: nbytes" % t.name)
        check(bytes.fromhex(d["data_hex"]) == t.data.tobytes(), "%s: bytes" % t.name)
    want = {"a.f32": f32.tobytes(), "b.f16": f16.tobytes(), "c.q8_0": q8.tobytes(), "d.i8": i8.tobytes()}
    for d in dump["tensors"]:
        check(bytes.fromhex(d["data_hex"]) == want[d["name"]], "%s: bytes vs numpy" % d["name"])


def gguf_name(vt):
    return {VT.UINT8: "u8", VT.INT8: "i8", VT.UINT16: "u16", VT.INT16: "i16", VT.UINT32: "u32",
            VT.INT32: "i32", VT.FLOAT32: "f32", VT.BOOL: "bool", VT.STRING: "str",
            VT.ARRAY: "arr", VT.UINT64: "u64", VT.INT64: "i64", VT.FLOAT64: "f64"}[vt]


with tempfile.TemporaryDirectory() as tmp:
    for align in (None, 64):
        ours_is_read_by_gguf_py(tmp, align)
        gguf_py_is_read_by_ours(tmp, align)

if failures:
    print("%d failures" % len(failures))
    sys.exit(1)
print("ok")
