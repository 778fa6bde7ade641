"""safetensors interop with the reference Python package, both directions.

usage: test_safetensors_interop.py QP_FORMATS_TOOL

1. A file our writer makes with every dtype is read by the reference core
   (safetensors.deserialize, which insists on contiguous, complete data):
   dtypes, shapes, bytes and metadata must match, and the header must be
   sorted by name and space-padded to 8 bytes.
2. A file our writer makes with numpy dtypes is read by
   safetensors.numpy.load_file with equal arrays.
3. With one dtype, our writer reproduces the reference writer's bytes.
4. Files the reference writer makes (every dtype, and both shared models)
   are read by our reader with the same bytes.
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import safetensors
import safetensors.numpy as stnp
from safetensors._safetensors_rust import TensorSpec

TOOL = sys.argv[1]
SHARED = os.environ["QP_SHARED_DIR"]
failures = []

# Our dtype order, element sizes, and the reference's TensorSpec names.
DTYPES = [("BOOL", 1, "bool"), ("U8", 1, "uint8"), ("I8", 1, "int8"), ("U16", 2, "uint16"),
          ("I16", 2, "int16"), ("F16", 2, "float16"), ("BF16", 2, "bfloat16"),
          ("U32", 4, "uint32"), ("I32", 4, "int32"), ("F32", 4, "float32"),
          ("U64", 8, "uint64"), ("I64", 8, "int64"), ("F64", 8, "float64"),
          ("F8_E4M3", 1, "float8_e4m3fn"), ("F8_E5M2", 1, "float8_e5m2")]


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)


def fill(n, i):
    """Byte j of tensor i, as qp_formats_tool's fill()."""
    return bytes(((i * 37 + j * 11) & 0xFF) for j in range(n))


def expected_tensors():
    """What `qp_formats_tool write-st` writes: name -> (dtype, shape, bytes)."""
    out = {}
    for i, (dt, size, _) in enumerate(DTYPES):
        data = fill(6 * size, i)
        if dt == "BOOL":
            data = bytes(b & 1 for b in data)
        out["layer.%s.weight" % dt] = (dt, [2, 3], data)
    return out


def tool(*args):
    return subprocess.run([TOOL, *args], check=True, capture_output=True, text=True).stdout


def header(path):
    raw = open(path, "rb").read()
    n = int.from_bytes(raw[:8], "little")
    return raw, n, raw[8:8 + n]


def ours_is_read_by_the_reference_core(tmp):
    path = os.path.join(tmp, "ours.safetensors")
    tool("write-st", path)
    raw, n, hdr = header(path)
    check((8 + n) % 8 == 0, "data section starts 8-byte aligned")
    body = hdr.rstrip(b" ")
    check(len(hdr) - len(body) < 8 and body.endswith(b"}"), "header padded with spaces")
    meta = json.loads(hdr)
    check(list(meta)[0] == "__metadata__" and meta["__metadata__"] == {"format": "pt"}, "metadata first")
    names = [k for k in meta if k != "__metadata__"]
    check(names == sorted(names), "tensors sorted by name")
    want = expected_tensors()
    got = dict(safetensors.deserialize(raw))
    check(set(got) == set(want), "the reference sees every tensor")
    for name, (dt, shape, data) in want.items():
        g = got.get(name, {})
        check(g.get("dtype") == dt, "%s: dtype %s" % (name, g.get("dtype")))
        check(list(g.get("shape", [])) == shape, "%s: shape" % name)
        check(bytes(g.get("data", b"")) == data, "%s: bytes" % name)
    with safetensors.safe_open(path, framework="numpy") as f:
        check(f.metadata() == {"format": "pt"}, "safe_open metadata")


def numpy_load_file_reads_ours(tmp):
    rng = np.random.default_rng(5)
    arrays = {"f64": rng.standard_normal((2, 3)), "f32": rng.standard_normal((4,)).astype(np.float32),
              "f16": rng.standard_normal((3, 1, 2)).astype(np.float16),
              "i64": rng.integers(-2**62, 2**62, size=(3,)), "u8": rng.integers(0, 255, (5,), dtype=np.uint8),
              "i8": rng.integers(-128, 127, (2, 2), dtype=np.int8), "u16": np.arange(4, dtype=np.uint16),
              "i16": -np.arange(4, dtype=np.int16), "u32": np.arange(3, dtype=np.uint32),
              "i32": -np.arange(3, dtype=np.int32), "u64": np.array([2**64 - 1], dtype=np.uint64),
              "bool": np.array([True, False, True]), "scalar": np.array(1.5, dtype=np.float32),
              "empty": np.zeros((0, 4), dtype=np.float32)}
    ref = os.path.join(tmp, "ref-numpy.safetensors")
    ours = os.path.join(tmp, "ours-numpy.safetensors")
    stnp.save_file(arrays, ref, metadata={"format": "np"})
    tool("copy-st", ref, ours, "format")
    back = stnp.load_file(ours)
    check(set(back) == set(arrays), "load_file sees every tensor")
    for k, a in arrays.items():
        b = back.get(k)
        check(b is not None and b.dtype == a.dtype and b.shape == a.shape and b.tobytes() == a.tobytes(),
              "%s: load_file returns the same array" % k)


def one_dtype_is_byte_identical(tmp):
    rng = np.random.default_rng(3)
    arrays = {"b.weight": rng.standard_normal((3, 4)).astype(np.float32),
              "a.bias": rng.standard_normal((5,)).astype(np.float32),
              "c.scalar": np.array(2.5, dtype=np.float32),
              "d.empty": np.zeros((0,), dtype=np.float32),
              "model.layers.10.x": rng.standard_normal((7,)).astype(np.float32)}
    ref = os.path.join(tmp, "ref-f32.safetensors")
    ours = os.path.join(tmp, "ours-f32.safetensors")
    stnp.save_file(arrays, ref, metadata={"format": "pt"})
    tool("copy-st", ref, ours, "format")
    check(open(ours, "rb").read() == open(ref, "rb").read(), "our writer reproduces the reference bytes")


def reference_is_read_by_ours(tmp):
    want = expected_tensors()
    keep = []
    specs = {}
    for name, (dt, shape, data) in want.items():
        buf = np.frombuffer(data, dtype=np.uint8).copy()
        keep.append(buf)
        ref_name = [d[2] for d in DTYPES if d[0] == dt][0]
        specs[name] = TensorSpec(dtype=ref_name, shape=tuple(shape), data_ptr=buf.ctypes.data,
                                 data_len=len(data))
    path = os.path.join(tmp, "ref-all.safetensors")
    with open(path, "wb") as f:
        f.write(bytes(safetensors.serialize(specs, metadata={"format": "np", "x": "y"})))
    dump = json.loads(tool("dump-st", path, "format", "x", "absent"))
    check(dump["metadata"] == {"format": "np", "x": "y", "absent": None}, "metadata %r" % dump["metadata"])
    check(len(dump["tensors"]) == len(want), "tensor count")
    for t in dump["tensors"]:
        dt, shape, data = want[t["name"]]
        check(t["dtype"] == dt, "%s: dtype" % t["name"])
        check(t["shape"] == shape, "%s: shape" % t["name"])
        check(bytes.fromhex(t["data_hex"]) == data, "%s: bytes" % t["name"])


def shared_models_match_the_reference():
    for model, count in (("stories260K", 47), ("llama-docs-27m", 57)):
        path = os.path.join(SHARED, "data/models", model, "model.safetensors")
        ref = stnp.load_file(path)
        dump = json.loads(tool("dump-st", path, "format"))
        check(len(dump["tensors"]) == count == len(ref), "%s: %d tensors" % (model, len(dump["tensors"])))
        check(dump["metadata"] == {"format": "pt"}, "%s: metadata" % model)
        for t in dump["tensors"]:
            a = ref[t["name"]]
            check(t["shape"] == list(a.shape), "%s: shape" % t["name"])
            check(bytes.fromhex(t["data_hex"]) == a.tobytes(), "%s: bytes" % t["name"])


with tempfile.TemporaryDirectory() as tmp:
    ours_is_read_by_the_reference_core(tmp)
    numpy_load_file_reads_ours(tmp)
    one_dtype_is_byte_identical(tmp)
    reference_is_read_by_ours(tmp)
    shared_models_match_the_reference()

if failures:
    print("%d failures" % len(failures))
    sys.exit(1)
print("ok")
