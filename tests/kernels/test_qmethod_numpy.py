#!/usr/bin/env python3
"""qpipe's quantization methods (kernels/qmethod.h) against numpy.

    test_qmethod_numpy.py QP_QMETHOD_RAW SHARED_DIR

Every method is written again here, vectorized, from the formulas in
kernels/qmethod.h (not from the C): RTN, binary, ternary (threshold and
absmean), NF4 with and without double quantization, FP8 E4M3/E5M2 (the
codes by the ml_dtypes package, an independent float8 implementation) and
k-means LUTs (the same splitmix64 k-means++ and Lloyd, in numpy). They run
on real tensors of llama-docs-27m (an attention q_proj, an mlp down_proj,
embed_tokens) and stories260K (rows of 64 and 172), and on generated edge
cases (zero, constant, negative and outlier rows, subnormals, values on
rounding ties). qp_qmethod_raw quantizes the same f32 matrix and writes its
codes, scales, zeros, LUTs, absmax arrays and dequantized values.

Asserted: codes identical; scales, zeros, LUTs and absmax arrays identical;
dequantized values equal to 1e-6 relative (in practice they are equal bit
for bit, and the summary says how many cases were); bits per weight as the
header counts them. K-means on tensors of more than 4096 values per LUT may
in principle part from numpy, whose D^2 running sums are sequential where
qpipe adds block totals: there the test asserts the dequantized values to
1e-6 relative and that every point is at its nearest centroid, and codes
identical on the smaller tensors. NF4's table is checked against the
literal list below; bitsandbytes' dynamic map is rebuilt with
np.linspace. FP8: all 256 codes decode as ml_dtypes does, and encoding
matches ml_dtypes (after clamping to +-max, as FP8 quantizers do) on every
code value, every midpoint between neighbouring codes and the floats either
side of it, random floats over the whole exponent range, f32 subnormals,
zeros of both signs, infinities and NaNs.
"""
import os
import subprocess
import sys
import tempfile
import time

try:
    import numpy as np
    import ml_dtypes
    from safetensors.numpy import load_file
except ImportError as e:  # pragma: no cover - environment check
    print(f"skipping: {e}")
    sys.exit(77)

F32 = np.float32
F64 = np.float64
MASK = (1 << 64) - 1

# bitsandbytes' NF4 (QLoRA appendix E), literally
NF4 = np.array([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0], dtype=F32)

FP8 = {
    "e4m3": (ml_dtypes.float8_e4m3fn, F32(448.0)),
    "e5m2": (ml_dtypes.float8_e5m2, F32(57344.0)),
}


# ---------------------------------------------------------------- tools

def read_qm(path):
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == b"QPQMRAW1", f"{path}: bad magic"
    out, at = {}, 8
    while at < len(data):
        n = data[at]
        name = data[at + 1:at + 1 + n].decode()
        at += 1 + n
        dtype = "<" + data[at:at + 2].decode()
        count = int.from_bytes(data[at + 2:at + 10], "little")
        at += 10
        arr = np.frombuffer(data, dtype=dtype, count=count, offset=at)
        at += arr.nbytes
        out[name] = arr
    return out


class Tool:
    def __init__(self, path, tmp):
        self.path, self.tmp = path, tmp

    def run(self, *args):
        return subprocess.run([self.path, *map(str, args)], capture_output=True, text=True)

    def quantize(self, w, opts):
        src, dst = os.path.join(self.tmp, "in.f32"), os.path.join(self.tmp, "out.qm")
        np.ascontiguousarray(w, dtype=F32).tofile(src)
        r = self.run("quantize", *opts, src, w.shape[0], w.shape[1], dst)
        if r.returncode != 0:
            raise RuntimeError(f"qp_qmethod_raw {' '.join(opts)}: {r.stderr.strip()}")
        return read_qm(dst)


def unpack(codes, rows, cols, bits):
    """Codes of each row at bit j * bits, least significant bit first."""
    b = np.unpackbits(codes.reshape(rows, -1), axis=1, bitorder="little")[:, :cols * bits]
    shifted = b.reshape(rows, cols, bits) << np.arange(bits, dtype=np.uint8)
    return shifted.sum(axis=2, dtype=np.uint16).astype(np.int64)


def pack(q, bits):
    rows, cols = q.shape
    b = ((q.astype(np.uint8)[:, :, None] >> np.arange(bits, dtype=np.uint8)) & 1).reshape(rows, cols * bits)
    return np.packbits(b, axis=1, bitorder="little").reshape(-1)


class SplitMix64:
    def __init__(self, seed):
        self.s = seed & MASK

    def next(self):
        self.s = (self.s + 0x9E3779B97F4A7C15) & MASK
        z = self.s
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)

    def unit(self):
        return float(self.next() >> 11) * 2.0 ** -53


# ------------------------------------------------------- the references

def f16(x):
    """Round to f16 and back; past 65504 saturate (qmethod.h)."""
    with np.errstate(over="ignore"):
        r = x.astype(np.float16).astype(F32)
    return np.where(np.isinf(r) & np.isfinite(x), np.copysign(F32(65504), x), r).astype(F32)


def units(w, gran, group):
    n = w.size
    length = n if gran == "tensor" else w.shape[1] if gran == "channel" else group
    return w.reshape(-1, length)


def mean_abs(u):
    return (np.abs(u.astype(F64)).sum(axis=1) / u.shape[1]).astype(F32)


def ref_rtn(w, bits, gran, group, sym, scale_f16):
    u = units(w, gran, group)
    maxq = F32(2 ** bits - 1)
    lo = np.minimum(u.min(axis=1), F32(0))
    hi = np.maximum(u.max(axis=1), F32(0))
    if sym:
        a = np.maximum(-lo, hi)
        a = np.where(a == 0, F32(1), a)
        s = (a + a) / maxq
    else:
        both = (lo == 0) & (hi == 0)
        lo = np.where(both, F32(-1), lo)
        hi = np.where(both, F32(1), hi)
        s = (hi - lo) / maxq
    if scale_f16:
        s = f16(s)
        s = np.where(s > 0, s, F32(2.0 ** -24))
    else:
        s = np.where(np.isinf(s), F32(np.finfo(F32).max), s)
        s = np.where(s > 0, s, F32(np.finfo(F32).smallest_subnormal))
    s = s.astype(F32)
    if sym:
        z = np.full(s.shape, F32((int(maxq) + 1) // 2))
    else:
        z = np.clip(np.round(-lo / s), 0, maxq).astype(F32)
    q = np.clip(np.round(u / s[:, None]) + z[:, None], 0, maxq)
    v = s[:, None] * (q - z[:, None])
    return dict(codes=q.astype(np.int64).reshape(w.shape), scales=s, zeros=z.astype(np.uint8),
                dequant=v.astype(F32).reshape(w.shape))


def ref_binary(w, gran, group, scale_f16):
    u = units(w, gran, group)
    m = mean_abs(u)
    s = f16(m) if scale_f16 else m
    q = u >= 0
    v = np.where(q, s[:, None], -s[:, None])
    return dict(codes=q.astype(np.int64).reshape(w.shape), scales=s, dequant=v.reshape(w.shape))


def ref_ternary(w, gran, group, scale_f16, rule, threshold=0.45):
    u = units(w, gran, group)
    g = mean_abs(u)
    if rule == "absmean":
        t = np.clip(np.round(u / (g + F32(1e-5))[:, None]), -1, 1)
        s = g
    else:
        d = F32(threshold) * g
        kept = np.abs(u) > d[:, None]
        count = kept.sum(axis=1)
        total = np.where(kept, np.abs(u.astype(F64)), 0.0).sum(axis=1)
        s = np.where(count > 0, (total / np.maximum(count, 1)).astype(F32), F32(0))
        t = np.where(kept, np.sign(u), F32(0))
    s = (f16(s) if scale_f16 else s).astype(F32)
    v = s[:, None] * t.astype(F32)
    return dict(codes=(t + 1).astype(np.int64).reshape(w.shape), scales=s, dequant=v.reshape(w.shape))


def dynamic_map():
    """bitsandbytes' create_dynamic_map(signed=True, max_exponent_bits=7,
    total_bits=8), in double, rounded once to float."""
    data = []
    for i in range(7):
        b = np.linspace(0.1, 1, 2 ** i + 1)
        means = (b[:-1] + b[1:]) / 2.0
        data += list(10.0 ** (i - 6) * means) + list(-(10.0 ** (i - 6)) * means)
    data += [0.0, 1.0]
    return np.array(sorted(data), dtype=F64).astype(F32)


def nearest(table, x):
    """Index of the nearest table entry, lower on a tie, by midpoints in
    double (exact for two floats)."""
    mids = (table[:-1].astype(F64) + table[1:].astype(F64)) * 0.5
    return np.searchsorted(mids, x.astype(F64), side="left")


def ref_nf4(w, block, double_quant):
    b = w.reshape(-1, block)
    a = np.abs(b).max(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        x = b / a[:, None]
    q = np.where(a[:, None] == 0, 7, nearest(NF4, np.nan_to_num(x)))
    out = dict(codes=q.reshape(w.shape))
    if double_quant:
        dmap = dynamic_map()
        c = F32(a.astype(F64).mean())
        diff = a - c
        nb = a.size
        groups = [diff[i:i + 256] for i in range(0, nb, 256)]
        m = np.array([np.abs(g).max() for g in groups], dtype=F32)
        mm = np.repeat(m, 256)[:nb]
        with np.errstate(invalid="ignore", divide="ignore"):
            xx = np.where(mm == 0, F32(0), diff / mm)
        codes = nearest(dmap, xx)
        a2 = dmap[codes] * mm + c
        out.update(absmax_codes=codes.astype(np.uint8), absmax_scales=m, absmax_offset=np.array([c], F32))
    else:
        a2 = a
        out.update(scales=a)
    out["dequant"] = (a2[:, None] * NF4[q]).astype(F32).reshape(w.shape)
    return out


def fp8_encode(x, fmt):
    dt, fmax = FP8[fmt]
    # clamp, then cast: how FP8 quantizers saturate; E5M2 keeps infinity
    y = np.clip(x, -fmax, fmax) if fmt == "e4m3" else np.where(np.isinf(x), x, np.clip(x, -fmax, fmax))
    return y.astype(F32).astype(dt).view(np.uint8)


def fp8_decode(codes, fmt):
    return codes.astype(np.uint8).view(FP8[fmt][0]).astype(F32)


def ref_fp8(w, gran, fmt):
    u = units(w, gran, 0)
    fmax = FP8[fmt][1]
    amax = np.where(np.isfinite(u), np.abs(u), F32(0)).max(axis=1)
    s = np.where(amax == 0, F32(1), amax / fmax)
    s = np.where(s > 0, s, F32(np.finfo(F32).smallest_subnormal)).astype(F32)
    with np.errstate(invalid="ignore"):
        codes = fp8_encode(u / s[:, None], fmt)
        v = s[:, None] * fp8_decode(codes, fmt)
    return dict(codes=codes.astype(np.int64).reshape(w.shape), scales=s, dequant=v.reshape(w.shape))


def kmeans_1d(x, k, rng, iters):
    """k-means++ then Lloyd on sorted float32 values x (qmethod.h)."""
    n = x.size
    x64 = x.astype(F64)
    first = min(int(rng.unit() * n), n - 1)
    cents = [x[first]]
    d2 = (x64 - F64(x[first])) ** 2
    while len(cents) < k:
        cum = np.cumsum(d2)
        total = cum[-1]
        if not total > 0:
            break
        target = rng.unit() * total
        i = int(np.searchsorted(cum, target, side="right"))
        if i >= n:
            i = int(np.flatnonzero(d2 > 0)[-1])
        cents.append(x[i])
        d2 = np.minimum(d2, (x64 - F64(x[i])) ** 2)
    c = np.sort(np.array(cents + [max(cents)] * (k - len(cents)), dtype=F32))
    pre = np.concatenate([[0.0], np.cumsum(x64)])
    prev = None
    for _ in range(iters):
        mids = (c[:-1].astype(F64) + c[1:].astype(F64)) * 0.5
        b = np.searchsorted(x64, mids, side="right")
        if prev is not None and np.array_equal(b, prev):
            break
        lo = np.concatenate([[0], b])
        hi = np.concatenate([b, [n]])
        full = hi > lo
        m = (pre[hi] - pre[lo]) / np.maximum(hi - lo, 1)
        m = np.clip(m, x64[np.minimum(lo, n - 1)], x64[np.maximum(hi - 1, 0)])
        c = np.where(full, m.astype(F32), c)
        prev = b
    return c


def ref_kmeans(w, bits, gran, group, channel_scale, seed, iters):
    rows, cols = w.shape
    k = 2 ** bits
    out = {}
    if channel_scale:
        a = np.abs(w).max(axis=1)
        sc = np.where(a > 0, a, F32(1)).astype(F32)
        x = (w / sc[:, None]).astype(F32)
        out["scales"] = sc
    else:
        x = w
    gr = rows if gran == "tensor" else group
    luts, codes = [], []
    for g in range(rows // gr):
        xs = x[g * gr:(g + 1) * gr]
        rng = SplitMix64(seed + g * 0xD1B54A32D192ED03)
        c = kmeans_1d(np.sort(xs.reshape(-1), kind="stable"), k, rng, iters)
        luts.append(c)
        codes.append(nearest(c, xs))
    lut = np.stack(luts)
    q = np.concatenate(codes)
    v = lut[np.repeat(np.arange(len(luts)), gr)[:, None], q]
    if channel_scale:
        v = v * out["scales"][:, None]
    out.update(codes=q, lut=lut.reshape(-1), dequant=v.astype(F32))
    return out


def ref_bpw(spec, got, rows, cols):
    """Bits per weight as the header counts them, from the arrays' sizes."""
    method, bits = spec["method"], spec["bits"]
    f16_scales = spec.get("scale_f16", False) and method in ("rtn", "binary", "ternary")
    bpw = got["codes"].size * 8
    if "scales" in got:
        bpw += got["scales"].size * (16 if f16_scales else 32)
    if "zeros" in got:
        bpw += got["zeros"].size * bits
    if "lut" in got:
        bpw += got["lut"].size * 32
    if "absmax_codes" in got:
        bpw += got["absmax_codes"].size * 8 + got["absmax_scales"].size * 32 + 32
    return bpw / (rows * cols)


# ------------------------------------------------------------ the cases

def options(spec):
    o = ["--method", spec["method"], "--bits", spec["bits"]]
    for key in ("gran", "group", "rule", "fp8", "seed", "iters", "threads"):
        if key in spec:
            o += [f"--{key}", spec[key]]
    for flag, on, off in (("scale_f16", "--scale-f16", "--no-scale-f16"), ("sym", "--sym", None),
                          ("double_quant", "--double-quant", "--no-double-quant"),
                          ("channel_scale", "--channel-scale", None)):
        if flag in spec:
            o += [on] if spec[flag] else ([off] if off else [])
    return o


def reference(spec, w):
    m = spec["method"]
    if m == "rtn":
        return ref_rtn(w, spec["bits"], spec["gran"], spec.get("group", 0), spec["sym"], spec["scale_f16"])
    if m == "binary":
        return ref_binary(w, spec["gran"], spec.get("group", 0), spec["scale_f16"])
    if m == "ternary":
        return ref_ternary(w, spec["gran"], spec.get("group", 0), spec["scale_f16"], spec["rule"])
    if m == "nf4":
        return ref_nf4(w, spec["group"], spec["double_quant"])
    if m == "fp8":
        return ref_fp8(w, spec["gran"], spec["fp8"])
    if m == "kmeans":
        return ref_kmeans(w, spec["bits"], spec["gran"], spec.get("group", 0), spec["channel_scale"],
                          spec["seed"], spec["iters"])
    raise ValueError(m)


def group_of(cols):
    return 128 if cols % 128 == 0 else 64 if cols % 64 == 0 else 43 if cols % 43 == 0 else cols


def specs(w, level):
    """The specs a tensor runs: 'full' on small tensors, fewer on large."""
    rows, cols = w.shape
    g = group_of(cols)
    out = []
    rtn_bits = range(2, 9) if level == "full" else (2, 3, 4, 8) if level == "mid" else (4,)
    grans = ("tensor", "channel", "group") if level != "light" else ("group",)
    for bits in rtn_bits:
        # mid-size tensors: every granularity at 3 and 4 bits, groups at 2 and 8
        for gran in grans if level != "mid" or bits in (3, 4) else ("group",):
            for sym in (False, True):
                out.append(dict(method="rtn", bits=bits, gran=gran, group=g, sym=sym,
                                scale_f16=(bits + sym) % 2 == 0 or level == "full" and gran == "group"))
    if level == "full":
        for bits, gran in ((3, "group"), (4, "channel")):
            out.append(dict(method="rtn", bits=bits, gran=gran, group=g, sym=False, scale_f16=False))
            out.append(dict(method="rtn", bits=bits, gran=gran, group=g, sym=True, scale_f16=True))
    for i, gran in enumerate(grans):
        for f16s in ((False, True) if level == "full" else (i % 2 == 1,)):
            out.append(dict(method="binary", bits=1, gran=gran, group=g, scale_f16=f16s))
            out.append(dict(method="ternary", bits=2, gran=gran, group=g, scale_f16=f16s, rule="threshold"))
            out.append(dict(method="ternary", bits=2, gran=gran, group=g, scale_f16=f16s, rule="absmean"))
    if (rows * cols) % 64 == 0:
        for dq in (False, True):
            out.append(dict(method="nf4", bits=4, gran="group", group=64, double_quant=dq))
    for fmt in ("e4m3", "e5m2"):
        for gran in (("tensor", "channel") if level != "light" else ("channel",)):
            out.append(dict(method="fp8", bits=8, gran=gran, fp8=fmt))
    km = [(4, "tensor", 0, False, 0)] if level == "light" else \
        [(2, "tensor", 0, False, 0), (4, "tensor", 0, True, 7), (8, "tensor", 0, False, 3)]
    if rows % 8 == 0 and level != "light":
        km.append((3, "group", 8 if level == "full" else rows // 4, False, 1))
    for bits, gran, group, cs, seed in km:
        out.append(dict(method="kmeans", bits=bits, gran=gran, group=group or 1, channel_scale=cs,
                        seed=seed, iters=50))
    for s in out:
        s["threads"] = 2
    return out


def synthetic():
    """Edge rows, 16 x 172: 172 makes every bit width but 8 end a row
    inside a byte (4 bits: 86 bytes exactly; 3 bits: 64.5)."""
    rng = np.random.default_rng(20240917)
    w = (rng.standard_normal((16, 172)) * 0.02).astype(F32)
    w[0] = 0.0
    w[1, ::2] = -0.0
    w[1, 1::2] = 0.0
    w[2] = F32(0.375)
    w[3] = -np.abs(w[3])                 # all negative
    w[4] = np.abs(w[4])                  # all positive
    w[5, 17] = F32(30.0)                 # one outlier
    w[6] = rng.standard_normal(172).astype(F32) * F32(1e-41)   # f32 subnormals
    w[7] = np.arange(172, dtype=F32) * F32(0.25) - F32(21.5)    # on an RTN grid: ties after scaling
    w[8] = np.repeat(np.array([-1.0, 0.5, 2.0, 0.5], F32), 43)  # few distinct values
    w[9] = F32(1e-30) * np.sign(w[9])    # tiny: f16 scales round to 0
    w[10] = np.array([(NF4[i % 16] + NF4[(i + 1) % 16]) / 2 for i in range(172)], F32)  # NF4 midpoints
    w[11, :] = rng.standard_normal(172).astype(F32) * F32(1000.0)
    return w


def tensors(shared):
    pick = {
        "llama-docs-27m": [("model.layers.0.self_attn.q_proj.weight", "mid"),
                           ("model.layers.0.mlp.down_proj.weight", "mid"),
                           ("model.embed_tokens.weight", "light")],
        "stories260K": [("model.layers.0.mlp.down_proj.weight", "full"),
                        ("model.layers.0.self_attn.q_proj.weight", "full"),
                        ("model.layers.1.mlp.gate_proj.weight", "full"),
                        ("model.embed_tokens.weight", "full")],
    }
    for model, names in pick.items():
        loaded = load_file(os.path.join(shared, "data", "models", model, "model.safetensors"))
        for name, level in names:
            yield f"{model}: {name}", np.ascontiguousarray(loaded[name].astype(F32)), level
    yield "synthetic: edge rows", synthetic(), "full"


# ----------------------------------------------------------- assertions

class Check:
    def __init__(self):
        self.passed = self.failed = self.bit_exact = 0
        self.kmeans_code_diffs = 0

    def fail(self, what, msg):
        self.failed += 1
        print(f"FAIL {what}: {msg}")

    def same(self, what, name, got, want, rtol=0.0):
        got, want = np.asarray(got), np.asarray(want)
        if got.shape != want.shape:
            self.fail(what, f"{name}: shape {got.shape}, want {want.shape}")
            return False
        if rtol:
            with np.errstate(invalid="ignore"):
                ok = (np.abs(got - want) <= rtol * np.abs(want)) | (got == want) | (np.isnan(got) & np.isnan(want))
        else:
            ok = (got == want) | (np.isnan(got) & np.isnan(want)) if got.dtype.kind == "f" else got == want
        if not ok.all():
            at = np.unravel_index(int(np.flatnonzero(~ok.reshape(-1))[0]), ok.shape)
            self.fail(what, f"{name} at {tuple(int(i) for i in at)}: {got[at]!r}, want {want[at]!r}; "
                            f"{int((~ok).sum())} of {ok.size} differ")
            return False
        return True


def compare(chk, what, spec, w, got, want):
    rows, cols = w.shape
    bits = spec["bits"]
    codes = unpack(got["codes"], rows, cols, bits)
    ok = True
    if got["codes"].size != rows * ((cols * bits + 7) // 8):
        chk.fail(what, f"{got['codes'].size} code bytes")
        ok = False
    big_kmeans = spec["method"] == "kmeans" and rows * cols * 2 ** bits // got["lut"].size > 4096
    if big_kmeans:
        # LUTs may differ by summation order: values to 1e-6, points nearest
        ok &= chk.same(what, "dequant", got["dequant"].reshape(w.shape), want["dequant"], rtol=1e-6)
        ok &= chk.same(what, "lut", got["lut"], want["lut"], rtol=1e-6)
        lut = got["lut"].reshape(-1, 2 ** bits)
        gr = rows // lut.shape[0]
        x = w / got["scales"][:, None] if "scales" in got else w
        rowlut = lut[np.arange(rows) // gr]
        # along an ascending LUT the distance falls, then rises: a point no
        # farther from its centroid than from the two neighbours is nearest
        c = np.take_along_axis(rowlut, codes, axis=1).astype(F64)
        lower = np.take_along_axis(rowlut, np.maximum(codes - 1, 0), axis=1).astype(F64)
        upper = np.take_along_axis(rowlut, np.minimum(codes + 1, lut.shape[1] - 1), axis=1).astype(F64)
        d = np.abs(x - c)
        if not ((d <= np.abs(x - lower)) & (d <= np.abs(x - upper))).all():
            chk.fail(what, "a point is nearer a neighbouring centroid")
            ok = False
        if not (np.diff(lut, axis=1) >= 0).all():
            chk.fail(what, "a LUT is not ascending")
            ok = False
        chk.kmeans_code_diffs += int((codes != want["codes"]).sum())
    else:
        ok &= chk.same(what, "codes", codes, want["codes"])
        # the packed bytes too: padding bits are zero
        ok &= chk.same(what, "packed", got["codes"], pack(want["codes"].astype(np.int64), bits))
        for name in ("scales", "zeros", "lut", "absmax_codes", "absmax_scales", "absmax_offset"):
            if (name in got) != (name in want):
                chk.fail(what, f"{name}: present {name in got}, want {name in want}")
                ok = False
            elif name in want:
                ok &= chk.same(what, name, got[name], np.asarray(want[name]).reshape(-1))
        ok &= chk.same(what, "dequant", got["dequant"].reshape(w.shape), want["dequant"], rtol=1e-6)
    bpw = ref_bpw(spec, got, rows, cols)
    if abs(got["bpw"][0] - bpw) > 1e-12:
        chk.fail(what, f"bits per weight {got['bpw'][0]}, want {bpw}")
        ok = False
    if ok:
        chk.passed += 1
        g, wv = got["dequant"].reshape(w.shape), want["dequant"]
        # equal as values: numpy's round gives ternary's t = -0.0 where C's code gives +0
        if ((g == wv) | (np.isnan(g) & np.isnan(wv))).all():
            chk.bit_exact += 1


def check_tables_and_rng(chk, tool):
    t = read_qm(os.path.join(tool.tmp, "tables.qm")) if tool.run("tables", os.path.join(tool.tmp, "tables.qm")).returncode == 0 else None
    if t is None:
        chk.fail("tables", "qp_qmethod_raw tables failed")
        return
    chk.same("tables", "nf4", t["nf4"], NF4) and chk.same("tables", "dynamic_map", t["dynamic_map"], dynamic_map())
    path = os.path.join(tool.tmp, "rng.qm")
    for seed in (0, 1, 12345, MASK):
        if tool.run("rng", seed, 1000, path).returncode != 0:
            chk.fail("rng", f"seed {seed}: qp_qmethod_raw rng failed")
            continue
        r = read_qm(path)
        a, b = SplitMix64(seed), SplitMix64(seed)
        want_u = np.array([a.next() for _ in range(1000)], dtype=np.uint64)
        want_d = np.array([b.unit() for _ in range(1000)], dtype=F64)
        chk.same("rng", f"seed {seed} u64", r["u64"], want_u) and chk.same("rng", f"seed {seed} unit", r["unit"], want_d)
    chk.passed += 1


def fp8_inputs():
    """Every code's value, every midpoint of neighbours and the floats
    either side, random floats over the whole range, specials."""
    xs = []
    for fmt in FP8:
        v = fp8_decode(np.arange(256, dtype=np.uint8), fmt)
        v = np.sort(v[np.isfinite(v)])
        mids = ((v[:-1].astype(F64) + v[1:].astype(F64)) / 2).astype(F32)
        xs += [v, mids, np.nextafter(mids, F32(np.inf)), np.nextafter(mids, F32(-np.inf))]
    rng = np.random.default_rng(7)
    mags = np.exp2(rng.uniform(-30, 20, 200000)).astype(F32)
    xs.append(mags * rng.choice(np.array([-1, 1], F32), mags.size))
    xs.append(rng.integers(1, 1 << 23, 1000).astype(np.uint32).view(F32))   # f32 subnormals
    f = np.finfo(F32)
    xs.append(np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, f.max, -f.max, 448, 464, 465, 480, 1e6,
                        57344, 61440, 61439.996, 65536, 2.0 ** -9, 2.0 ** -10, 2.0 ** -16, 2.0 ** -17,
                        3 * 2.0 ** -10, f.smallest_subnormal], F32))
    return np.concatenate(xs).astype(F32)


def check_fp8(chk, tool):
    x = fp8_inputs()
    src = os.path.join(tool.tmp, "fp8.f32")
    x.tofile(src)
    for fmt in FP8:
        dst = os.path.join(tool.tmp, f"fp8-{fmt}.bin")
        r = tool.run("fp8-decode", fmt, dst)
        if r.returncode != 0:
            chk.fail(f"fp8 {fmt}", r.stderr.strip())
            continue
        got = np.fromfile(dst, dtype=F32)
        want = fp8_decode(np.arange(256, dtype=np.uint8), fmt)
        ok = chk.same(f"fp8 {fmt} decode", "values", got.view(np.uint32)[~np.isnan(want)],
                      want.view(np.uint32)[~np.isnan(want)])
        ok &= chk.same(f"fp8 {fmt} decode", "nan", np.isnan(got), np.isnan(want))
        r = tool.run("fp8-encode", fmt, src, dst)
        if r.returncode != 0:
            chk.fail(f"fp8 {fmt}", r.stderr.strip())
            continue
        got = np.fromfile(dst, dtype=np.uint8)
        with np.errstate(invalid="ignore", over="ignore"):
            want = fp8_encode(x, fmt)
        ok &= chk.same(f"fp8 {fmt} encode of {x.size} floats", "codes", got, want)
        if ok:
            chk.passed += 1


def check_refusals(chk, tool):
    w = synthetic()
    w[5, 33] = np.nan
    w[9, 2] = -np.inf
    src, dst = os.path.join(tool.tmp, "bad.f32"), os.path.join(tool.tmp, "bad.qm")
    w.tofile(src)
    for method in ("rtn", "binary", "ternary", "nf4", "kmeans"):
        bits = {"binary": 1, "ternary": 2}.get(method, 4)
        r = tool.run("quantize", "--method", method, "--bits", bits, "--gran",
                     "group" if method == "nf4" else "tensor", "--group", 4, src, 16, 172, dst)
        want = f"{method}: weight at row 5, col 33 is nan; {method} needs finite weights"
        if r.returncode != 1 or want not in r.stderr or os.path.exists(dst) or os.path.exists(dst + ".tmp"):
            chk.fail(f"{method} refusal", f"exit {r.returncode}, stderr {r.stderr.strip()!r}, want {want!r}")
        else:
            chk.passed += 1
    # FP8 takes NaN to NaN and saturates infinity
    for fmt in FP8:
        got = tool.quantize(w, ["--method", "fp8", "--bits", 8, "--gran", "channel", "--fp8", fmt])
        compare(chk, f"synthetic with nan/inf: fp8 {fmt}", dict(method="fp8", bits=8), w, got,
                ref_fp8(w, "channel", fmt))
    r = tool.run("quantize", "--method", "rtn", "--bits", 4, "--gran", "group", "--group", 128, src, 16, 172, dst)
    want = "rtn: group 128 does not divide the row length 172"
    if r.returncode != 1 or want not in r.stderr:
        chk.fail("rtn group refusal", f"exit {r.returncode}, stderr {r.stderr.strip()!r}")
    else:
        chk.passed += 1


def main():
    if len(sys.argv) != 3:
        print("usage: test_qmethod_numpy.py QP_QMETHOD_RAW SHARED_DIR", file=sys.stderr)
        return 2
    start = time.monotonic()
    chk = Check()
    with tempfile.TemporaryDirectory(prefix="qp-qmethod-") as tmp:
        tool = Tool(sys.argv[1], tmp)
        check_tables_and_rng(chk, tool)
        check_fp8(chk, tool)
        check_refusals(chk, tool)
        for what, w, level in tensors(sys.argv[2]):
            t0 = time.monotonic()
            n = 0
            for spec in specs(w, level):
                name = f"{what} {list(w.shape)} " + " ".join(
                    f"{k}={v}" for k, v in spec.items() if k not in ("threads",))
                try:
                    got = tool.quantize(w, options(spec))
                except RuntimeError as e:
                    chk.fail(name, str(e))
                    continue
                compare(chk, name, spec, w, got, reference(spec, w))
                n += 1
            print(f"{what} {list(w.shape)}: {n} specs in {time.monotonic() - t0:.1f} s")
    print(f"{chk.bit_exact} of the quantized cases dequantize bit for bit as numpy; "
          f"k-means codes that differ on large tensors: {chk.kmeans_code_diffs}")
    print(f"{chk.passed} passed, {chk.failed} failed in {time.monotonic() - start:.1f} s")
    return 1 if chk.failed else 0


if __name__ == "__main__":
    sys.exit(main())
