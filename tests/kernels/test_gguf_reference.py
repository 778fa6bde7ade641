#!/usr/bin/env python3
"""qpipe's quantized blocks against gguf-py's numpy reference, on real models.

    test_gguf_reference.py QP_QUANTIZE_RAW SHARED_DIR

For both shared models and every 2-D tensor (as float32), plus one synthetic
tensor of edge cases, for Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, F16, BF16, TQ1_0 and
TQ2_0 (the types gguf-py can quantize), and at every kernel level this
machine runs, qp_quantize_raw's bytes must equal
gguf.quants.quantize(arr, type).tobytes(). Block types need rows that are a
multiple of their block (32, or 256); other tensors are skipped for them,
and the skips listed.

gguf-py cannot quantize the k-quants (Q2_K..Q6_K); their blocks are held to
llama.cpp's own quantizer in test_llama_quantize.py (conformance suite).
Here every type with a gguf-py dequantizer, k-quants and ternary included,
is read back: qp_quantize_raw --dequantize of our blocks (of llama-docs-27m's
first layer and the synthetic tensor, and of random bytes) at every level
must give gguf.quants.dequantize's floats bit for bit (NaN equals NaN).

On Q4_0 and FMA. llama.cpp's C reference computes q = trunc(x * id + 8.5).
Built with floating-point contraction (GCC's default outside ISO C mode)
where FMA is available, x * id + 8.5 becomes one fused multiply-add, rounded
once instead of twice, and q moves wherever x * id falls within an ulp of a
truncation boundary. Measured on llama-docs-27m: the reference compiled with
gcc -std=gnu11 -O2 -mfma differs from gguf-py in 113 of 851968 Q4_0 blocks
(and 154 Q5_0 blocks; Q4_1, Q5_1 and Q8_0: none), and compiled without
contraction in none. gguf-py does a float32 multiply, then a float32 add:
the unfused C reference, operation for operation. qpipe builds with
-ffp-contract=off and its AVX2 kernels multiply, then add, so it matches
the unfused C reference, and this test asserts exactly that by comparing
with gguf-py; test_kernels' 'near-ties' rows catch a fused variant.

Where gguf-py and the C reference do part is on zeros, which have two
signs. The C loops keep the first element of the extreme value they meet,
and Q4_0/Q5_0 start from max = +0, replaced only by a nonzero, so a block of
zeros gets d = +0 / -8 = -0 (fp16 0x8000); gguf-py divides the block's first
element instead. For Q4_1/Q5_1 the C reference's min is the first zero of
the block, and an all-zero block's max - min is x - x = +0, while numpy's
min and max may return either zero. c_reference_zeros() puts the C
reference's bytes into those blocks, so the test holds qpipe to the C
reference there too; no block of the shared models is affected, the
synthetic tensor's zero rows are.
"""
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

try:
    import gguf
    from gguf import GGMLQuantizationType as T
    from safetensors.numpy import load_file
except ImportError as e:  # pragma: no cover - environment check
    print(f"skipping: {e}")
    sys.exit(77)

MODELS = ["llama-docs-27m", "stories260K"]
TYPES = [
    ("q8_0", T.Q8_0),
    ("q4_0", T.Q4_0),
    ("q4_1", T.Q4_1),
    ("q5_0", T.Q5_0),
    ("q5_1", T.Q5_1),
    ("f16", T.F16),
    ("bf16", T.BF16),
    ("tq1_0", T.TQ1_0),
    ("tq2_0", T.TQ2_0),
]

# read back through gguf-py's dequantize: every new type it has a class for
DEQUANT_TYPES = [
    ("q2_K", T.Q2_K),
    ("q3_K", T.Q3_K),
    ("q4_K", T.Q4_K),
    ("q5_K", T.Q5_K),
    ("q6_K", T.Q6_K),
    ("tq1_0", T.TQ1_0),
    ("tq2_0", T.TQ2_0),
    ("q4_0", T.Q4_0),
    ("q8_0", T.Q8_0),
]
DEQUANT_TENSORS = ("model.layers.0.", "synthetic")


F16_ZERO = np.frombuffer(np.float16(0.0).tobytes(), dtype=np.uint8)
F16_NEG_ZERO = np.frombuffer(np.float16(-0.0).tobytes(), dtype=np.uint8)


def c_reference_zeros(arr, qtype, raw):
    """gguf-py's bytes, with the C reference's signs of zero (see above):
    (d, m) live at bytes 0-1 and 2-3 of a block."""
    if qtype not in (T.Q4_0, T.Q5_0, T.Q4_1, T.Q5_1):
        return raw
    blocks = arr.reshape(-1, 32)
    size = gguf.GGML_QUANT_SIZES[qtype][1]
    out = np.frombuffer(raw, dtype=np.uint8).reshape(-1, size).copy()
    all_zero = ~np.any(blocks != 0, axis=1)
    if qtype in (T.Q4_0, T.Q5_0):
        out[all_zero, 0:2] = F16_NEG_ZERO
    else:
        out[all_zero, 0:2] = F16_ZERO
        zero_min = blocks.min(axis=1) == 0
        first_zero = np.argmax(blocks == 0, axis=1)
        negative = np.signbit(blocks[np.arange(len(blocks)), first_zero])
        out[zero_min & negative, 2:4] = F16_NEG_ZERO
        out[zero_min & ~negative, 2:4] = F16_ZERO
    return out.tobytes()


def reference(arr, qtype):
    if qtype == T.F16:
        return arr.astype(np.float16).tobytes()
    return c_reference_zeros(arr, qtype, gguf.quants.quantize(arr, qtype).tobytes())


def synthetic(seed=20240601):
    """16 rows of 256 (one super-block each): blocks of zeros of both signs (rows 0-3), blocks
    whose x / d lands exactly on a rounding boundary for one format each
    (4-9), and the same within a few ulps, with scales that are not powers
    of two (10-15)."""
    rng = np.random.default_rng(seed)
    rows = np.zeros((16, 256), dtype=np.float32)
    rows[0] = -0.0
    rows[1, ::3] = -0.0
    rows[2, 1::32] = -0.0
    rows[3, 0::32] = -0.0
    rows[3, 5::32] = 1.5  # nonnegative blocks whose minimum is a -0
    anchors = [(-8, -8, 16, -8), (127, 127, 254, -127), (0, 15, 15, 0), (0, 31, 31, 0), (-16, -16, 32, -16)]
    for r in range(4, 16):
        for b in range(8):
            lo_anchor, other_anchor, span, base = anchors[(r + b) % 5]
            block = (rng.integers(0, span, 32) + base).astype(np.float32) + np.float32(0.5)
            block[0] = lo_anchor
            block[1 + rng.integers(0, 31)] = other_anchor
            if r >= 10:
                block *= np.float32(1.0 + rng.random())
                for _ in range(2):
                    step = rng.integers(-1, 2, 32)
                    block = np.where(step < 0, np.nextafter(block, np.float32(-np.inf)),
                                     np.where(step > 0, np.nextafter(block, np.float32(np.inf)), block))
            rows[r, 32 * b:32 * b + 32] = block
    return rows


def first_difference(got, want, block_bytes, blocks_per_row):
    a = np.frombuffer(got, dtype=np.uint8)
    b = np.frombuffer(want, dtype=np.uint8)
    at = int(np.flatnonzero(a != b)[0])
    block = at // block_bytes
    return (f"row {block // blocks_per_row} block {block % blocks_per_row} "
            f"(byte {at % block_bytes}: got 0x{a[at]:02x}, want 0x{b[at]:02x}); "
            f"{int(np.count_nonzero((a != b).reshape(-1, block_bytes).any(axis=1)))} blocks differ")


def tensors(shared):
    for model in MODELS:
        path = os.path.join(shared, "data", "models", model, "model.safetensors")
        loaded = load_file(path)
        for name in sorted(loaded):
            if loaded[name].ndim == 2:
                yield model, name, loaded[name]
    yield "synthetic", "zeros-and-ties", synthetic()


def main():
    if len(sys.argv) != 3:
        print("usage: test_gguf_reference.py QP_QUANTIZE_RAW SHARED_DIR", file=sys.stderr)
        return 2
    tool, shared = sys.argv[1], sys.argv[2]
    levels = subprocess.run([tool, "--list-levels"], check=True, capture_output=True,
                            text=True).stdout.split()
    print(f"levels: {' '.join(levels)}")

    start = time.monotonic()
    passed = failed = 0
    skipped = []
    with tempfile.TemporaryDirectory(prefix="qp-gguf-ref-") as tmp:
        src = os.path.join(tmp, "in.f32")
        dst = os.path.join(tmp, "out.bin")
        for model, name, t in tensors(shared):
            arr = np.ascontiguousarray(t.astype(np.float32))
            rows, row_len = arr.shape
            arr.tofile(src)
            for type_name, qtype in TYPES:
                block, block_bytes = gguf.GGML_QUANT_SIZES[qtype]
                if row_len % block != 0:
                    skipped.append(f"{model}: {name} {list(arr.shape)} for {type_name}")
                    continue
                want = reference(arr, qtype)
                for level in levels:
                    subprocess.run([tool, "--kernels", level, "--type", type_name, src,
                                    str(row_len), dst], check=True)
                    with open(dst, "rb") as f:
                        got = f.read()
                    what = f"{model}: {name} as {type_name} at {level}"
                    if len(got) != len(want):
                        print(f"FAIL {what}: {len(got)} bytes, want {len(want)}")
                        failed += 1
                    elif got != want:
                        print(f"FAIL {what}: first difference at "
                              f"{first_difference(got, want, block_bytes, row_len // block)}")
                        failed += 1
                    else:
                        passed += 1
        # dequantize: our blocks and random bytes, read by both
        for model, name, t in tensors(shared):
            if not (name.startswith(DEQUANT_TENSORS[0]) or model == DEQUANT_TENSORS[1]):
                continue
            arr = np.ascontiguousarray(t.astype(np.float32))
            rows, row_len = arr.shape
            arr.tofile(src)
            for type_name, qtype in DEQUANT_TYPES:
                block, block_bytes = gguf.GGML_QUANT_SIZES[qtype]
                if row_len % block != 0:
                    skipped.append(f"{model}: {name} {list(arr.shape)} for {type_name} (dequantize)")
                    continue
                subprocess.run([tool, "--kernels", levels[0], "--type", type_name, src, str(row_len), dst],
                               check=True)
                with open(dst, "rb") as f:
                    ours = f.read()
                noise = np.random.default_rng(row_len + block_bytes).integers(
                    0, 256, len(ours), dtype=np.uint8).tobytes()
                for what_blocks, blocks in (("our blocks", ours), ("random bytes", noise)):
                    q = os.path.join(tmp, "blocks.bin")
                    with open(q, "wb") as f:
                        f.write(blocks)
                    raw = np.frombuffer(blocks, dtype=np.uint8).reshape(rows, -1)
                    with np.errstate(all="ignore"):
                        want = gguf.quants.dequantize(raw, qtype).astype(np.float32).reshape(-1)
                    for level in levels:
                        back = os.path.join(tmp, "back.f32")
                        subprocess.run([tool, "--kernels", level, "--type", type_name, "--dequantize", q,
                                        str(row_len), back], check=True)
                        got = np.fromfile(back, dtype=np.float32)
                        what = f"{model}: {name} {what_blocks} read as {type_name} at {level}"
                        same = (got.view(np.uint32) == want.view(np.uint32)) | (np.isnan(got) & np.isnan(want))
                        if got.shape != want.shape:
                            print(f"FAIL {what}: {got.size} floats, want {want.size}")
                            failed += 1
                        elif not same.all():
                            at = int(np.flatnonzero(~same)[0])
                            print(f"FAIL {what}: element {at} (block {at // block}) is {got[at]!r}, "
                                  f"want {want[at]!r}; {int(np.count_nonzero(~same))} differ")
                            failed += 1
                        else:
                            passed += 1
    if skipped:
        print(f"skipped (row length not a multiple of the block): {len(skipped)}")
        for s in skipped:
            print(f"  {s}")
    print(f"compared {passed + failed} (tensor, type, level) cases in "
          f"{time.monotonic() - start:.1f} s")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
