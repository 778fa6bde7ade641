#!/usr/bin/env python3
"""qpipe's GPTQ against an independent numpy GPTQ, on real layers.

    test_gptq_numpy.py QP_GPTQ_RAW SHARED_DIR

The numpy GPTQ below is written from the paper (Frantar et al. 2022,
Algorithm 1: Cholesky form, lazy batch updates) and the conventions of its
reference code (IST-DASLab/gptq fasterquant, as AutoGPTQ carries it): the
quantizer's find_params per row, dead inputs, static groups, act_order's
permutation and g_idx, damping by a fraction of mean(diag H), H^-1 through
Cholesky, and group parameters read from W, which a block updates only
when it ends. It keeps the reference's shape: a copy W1 of each block,
updated column by column, and W[:, i2:] -= Err1 @ U[i1:i2, i2:] after it.
qpipe's C does the same arithmetic in another shape (rows on their own,
updated in place, group parameters computed at block start, LAPACK's
dpotri for the inverse where this uses inv(L)). Both run in float64, with
the quantizer's own arithmetic in float32 as kernels/qmethod.h defines it.

Layers are llama-docs-27m's, with H = 2/n sum x x^T from real inputs of
those layers: its tokenizer on held-out text, then layer 0 of
tests/model/llama_ref.py's float64 forward pass, which gives the inputs of
q/k/v (rmsnorm of the embeddings), o_proj (attention output), gate/up and
down_proj (SwiGLU output). Layer 1's q_proj takes layer 0's output.

Pass: codes identical, or dequantized weights within 1e-4 relative
Frobenius norm; scales, zeros and g_idx identical. The summary says how
many codes differed. Each case also checks that GPTQ lowers the layer's
proxy loss tr((W - Q) H (W - Q)^T) below RTN's.
"""
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

try:
    import sentencepiece as spm
    from safetensors.numpy import load_file
except ImportError as e:  # pragma: no cover - environment check
    print(f"skipping: {e}")
    sys.exit(77)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "model"))
from llama_ref import LlamaRef  # noqa: E402


# ---- the quantizer: kernels/qmethod.h's RTN, GPTQ's find_params ----------

def find_params(x, bits, sym, scale_f16):
    """Scale and zero per row of x (rows x n), in float32 like the C."""
    x = x.astype(np.float32)
    maxq = np.float32(2 ** bits - 1)
    if sym:
        a = np.abs(x).max(axis=1)
        a[a == 0] = 1
        s = np.float32(2) * a / maxq
    else:
        lo = np.minimum(x.min(axis=1), np.float32(0))
        hi = np.maximum(x.max(axis=1), np.float32(0))
        both = (lo == 0) & (hi == 0)
        lo[both], hi[both] = -1, 1
        s = (hi - lo) / maxq
    # qmethod.h keeps a scale that rounds to 0 or overflows positive and finite
    if scale_f16:
        s = np.minimum(s, np.float32(65504)).astype(np.float16).astype(np.float32)
        s[s == 0] = np.float32(2.0 ** -24)
    else:
        s[np.isinf(s)] = np.finfo(np.float32).max
        s[s == 0] = np.float32(np.finfo(np.float32).smallest_subnormal)
    if sym:
        z = np.full_like(s, (maxq + 1) / 2)
    else:
        z = np.clip(np.rint(-lo / s), 0, maxq)
    return s.astype(np.float32), z.astype(np.float32)


def quantize(w, s, z, bits):
    """Codes of w (float64, one per row) and their float32 values."""
    q = np.clip(np.rint(w.astype(np.float32) / s) + z, 0, 2 ** bits - 1).astype(np.float32)
    return q, s * (q - z)


# ---- GPTQ, from the paper and the reference code --------------------------

def gptq(W, H, bits=4, group=128, sym=False, act_order=False, static_groups=False,
         damp=0.01, block=128, scale_f16=True):
    W = W.astype(np.float64).copy()
    H = H.astype(np.float64).copy()
    rows, cols = W.shape
    ngroups = cols // group if group > 0 else 1
    scales = np.zeros((rows, ngroups), np.float32)
    zeros = np.zeros((rows, ngroups), np.float32)
    if group < 0:
        # fasterquant calls find_params(W) on the layer as it comes
        scales[:, 0], zeros[:, 0] = find_params(W, bits, sym, scale_f16)

    dead = np.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0

    if group > 0 and static_groups:
        for g in range(ngroups):
            scales[:, g], zeros[:, g] = find_params(W[:, g * group:(g + 1) * group], bits, sym, scale_f16)

    perm = np.arange(cols)
    if act_order:
        # torch.argsort(descending=True) leaves ties unspecified; qpipe keeps column order
        perm = np.argsort(-np.diag(H), kind="stable")
        W = W[:, perm]
        H = H[perm][:, perm]

    H[np.arange(cols), np.arange(cols)] += damp * np.mean(np.diag(H))
    L = np.linalg.cholesky(H)
    Linv = np.linalg.inv(L)
    U = np.linalg.cholesky(Linv.T @ Linv).T  # upper: H^-1 = U^T U

    Q = np.zeros((rows, cols), np.float32)  # codes, permuted order
    for i1 in range(0, cols, block):
        i2 = min(i1 + block, cols)
        W1 = W[:, i1:i2].copy()
        Err1 = np.zeros_like(W1)
        for i in range(i2 - i1):
            col = i1 + i
            if group > 0:
                if static_groups:
                    g = perm[col] // group
                else:
                    g = col // group
                    if col % group == 0:
                        # from W, not W1: the reference's order of operations
                        scales[:, g], zeros[:, g] = find_params(W[:, col:col + group], bits, sym, scale_f16)
            else:
                g = 0
            w = W1[:, i]
            q, qv = quantize(w, scales[:, g], zeros[:, g], bits)
            Q[:, col] = q
            err = (w - qv.astype(np.float64)) / U[col, col]
            W1[:, i:] -= np.outer(err, U[col, i1 + i:i2])
            Err1[:, i] = err
        W[:, i2:] -= Err1 @ U[i1:i2, i2:]

    g_idx = None
    if act_order and group > 0 and not static_groups:
        g_idx = np.empty(cols, np.int32)
        g_idx[perm] = np.arange(cols) // group
    codes = np.empty_like(Q)
    codes[:, perm] = Q
    return codes.astype(np.uint8), scales, zeros.astype(np.uint8), g_idx


def dequantize(codes, scales, zeros, g_idx, group):
    cols = codes.shape[1]
    if g_idx is not None:
        gi = g_idx
    elif group > 0:
        gi = np.arange(cols) // group
    else:
        gi = np.zeros(cols, np.int64)
    s, z = scales[:, gi], zeros[:, gi].astype(np.float32)
    return s * (codes.astype(np.float32) - z)


def rtn(W, bits, group, sym, scale_f16):
    rows, cols = W.shape
    g = group if group > 0 else cols
    out = np.empty((rows, cols), np.float32)
    for k in range(0, cols, g):
        s, z = find_params(W[:, k:k + g], bits, sym, scale_f16)
        out[:, k:k + g] = quantize(W[:, k:k + g], s[:, None], z[:, None], bits)[1]
    return out


# ---- real inputs -----------------------------------------------------------

def layer_inputs(model_dir, text_path, n_seq=3, seq_len=256):
    """Inputs of layer 0's projections and of layer 1's attention, float64."""
    sp = spm.SentencePieceProcessor(model_file=os.path.join(model_dir, "tokenizer.model"))
    with open(text_path, encoding="utf-8") as f:
        ids = sp.encode(f.read(400_000))
    ref = LlamaRef(model_dir)
    w = ref.w
    acts = {k: [] for k in ("qkv", "o", "gate_up", "down", "l1_qkv")}
    for s in range(n_seq):
        tok = [1] + ids[s * (seq_len - 1):(s + 1) * (seq_len - 1)]
        T = len(tok)
        pos = np.arange(T, dtype=np.float64)
        x = w["model.embed_tokens.weight"][tok]
        mask = np.triu(np.full((T, T), -np.inf), 1)
        p = "model.layers.0."
        h = ref.rms(x, w[p + "input_layernorm.weight"])
        acts["qkv"].append(h)
        q = (h @ w[p + "self_attn.q_proj.weight"].T).reshape(T, ref.n_head, ref.hd)
        k = (h @ w[p + "self_attn.k_proj.weight"].T).reshape(T, ref.n_kv, ref.hd)
        v = (h @ w[p + "self_attn.v_proj.weight"].T).reshape(T, ref.n_kv, ref.hd)
        q, k = ref.rope(q, pos), ref.rope(k, pos)
        rep = ref.n_head // ref.n_kv
        k, v = np.repeat(k, rep, axis=1), np.repeat(v, rep, axis=1)
        a = np.einsum("thd,shd->hts", q, k) / np.sqrt(ref.hd) + mask
        a = np.exp(a - a.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        a = np.einsum("hts,shd->thd", a, v).reshape(T, -1)
        acts["o"].append(a)
        x = x + a @ w[p + "self_attn.o_proj.weight"].T
        h = ref.rms(x, w[p + "post_attention_layernorm.weight"])
        acts["gate_up"].append(h)
        gt, up = h @ w[p + "mlp.gate_proj.weight"].T, h @ w[p + "mlp.up_proj.weight"].T
        m = gt / (1 + np.exp(-gt)) * up
        acts["down"].append(m)
        x = x + m @ w[p + "mlp.down_proj.weight"].T
        acts["l1_qkv"].append(ref.rms(x, w["model.layers.1.input_layernorm.weight"]))
    return {k: np.concatenate(v) for k, v in acts.items()}


def hessian(x):
    return (2.0 / len(x) * (x.T @ x)).astype(np.float32)


# name, tensor, inputs, params, inputs zeroed to make dead columns
CASES = [
    ("q_proj 4-bit g128", "model.layers.0.self_attn.q_proj.weight", "qkv", {}, []),
    ("down_proj 4-bit g128 act-order", "model.layers.0.mlp.down_proj.weight", "down",
     {"act_order": True}, []),
    ("o_proj 3-bit per-row sym act-order", "model.layers.0.self_attn.o_proj.weight", "o",
     {"bits": 3, "group": -1, "sym": True, "act_order": True}, []),
    ("gate_proj 2-bit g32 (groups inside blocks)", "model.layers.0.mlp.gate_proj.weight", "gate_up",
     {"bits": 2, "group": 32}, []),
    ("up_proj 8-bit g64 act-order static f32 scales", "model.layers.0.mlp.up_proj.weight", "gate_up",
     {"bits": 8, "group": 64, "act_order": True, "static_groups": True, "scale_f16": False}, []),
    ("layer 1 k_proj 4-bit g128 act-order, dead inputs", "model.layers.1.self_attn.k_proj.weight", "l1_qkv",
     {"act_order": True}, [3, 77, 200, 201, 511]),
]


def run_c(binary, tmp, W, H, params, threads):
    wp, hp, out = os.path.join(tmp, "w.f32"), os.path.join(tmp, "h.f32"), os.path.join(tmp, "out")
    W.astype("<f4").tofile(wp)
    H.astype("<f4").tofile(hp)
    args = [binary, "--bits", str(params.get("bits", 4)), "--group", str(params.get("group", 128)),
            "--damp", "0.01", "--block", "128", "--threads", str(threads)]
    for flag, key in (("--sym", "sym"), ("--act-order", "act_order"), ("--static-groups", "static_groups")):
        if params.get(key):
            args.append(flag)
    if params.get("scale_f16", True) is False:
        args.append("--f32-scales")
    rows, cols = W.shape
    t0 = time.perf_counter()
    subprocess.run(args + [wp, hp, str(rows), str(cols), out], check=True)
    secs = time.perf_counter() - t0
    group = params.get("group", 128)
    ng = cols // group if group > 0 else 1
    codes = np.fromfile(out + ".codes", np.uint8).reshape(rows, cols)
    scales = np.fromfile(out + ".scales", "<f4").reshape(rows, ng)
    zeros = np.fromfile(out + ".zeros", np.uint8).reshape(rows, ng)
    g_idx = np.fromfile(out + ".gidx", "<i4") if os.path.exists(out + ".gidx") else None
    deq = np.fromfile(out + ".deq", "<f4").reshape(rows, cols)
    for ext in ("codes", "scales", "zeros", "gidx", "deq"):
        if os.path.exists(out + "." + ext):
            os.unlink(out + "." + ext)
    return codes, scales, zeros, g_idx, deq, secs


def main():
    binary, shared = sys.argv[1], sys.argv[2]
    model_dir = os.path.join(shared, "data", "models", "llama-docs-27m")
    text = os.path.join(shared, "data", "text", "kernel-docs-heldout", "heldout.txt")
    weights = load_file(os.path.join(model_dir, "model.safetensors"))
    acts = layer_inputs(model_dir, text)
    print("inputs: %d tokens of held-out text through llama-docs-27m layer 0" % len(acts["qkv"]))
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        for n, (name, tensor, inp, params, dead) in enumerate(CASES):
            W = weights[tensor].astype(np.float32)
            x = acts[inp].copy()
            x[:, dead] = 0
            H = hessian(x)
            t0 = time.perf_counter()
            ref = gptq(W, H, **params)
            ref_secs = time.perf_counter() - t0
            group = params.get("group", 128)
            ref_deq = dequantize(ref[0], ref[1], ref[2], ref[3], group)
            # alternate 1 and 2 threads: the result must not depend on them
            codes, scales, zeros, g_idx, deq, c_secs = run_c(binary, tmp, W, H, params, 1 + n % 2)
            n_diff = int((codes != ref[0]).sum())
            rel = float(np.linalg.norm(deq.astype(np.float64) - ref_deq) / np.linalg.norm(ref_deq.astype(np.float64)))
            problems = []
            if not (n_diff == 0 or rel <= 1e-4):
                problems.append("%d codes differ, dequantized weights %.3g relative apart" % (n_diff, rel))
            if n_diff == 0 and not np.array_equal(deq, ref_deq):
                problems.append("codes equal but dequantized weights differ")
            if not np.array_equal(scales, ref[1]) or not np.array_equal(zeros, ref[2]):
                problems.append("scales or zeros differ (%d, %d)" % (int((scales != ref[1]).sum()),
                                                                   int((zeros != ref[2]).sum())))
            if (g_idx is None) != (ref[3] is None) or (g_idx is not None and not np.array_equal(g_idx, ref[3])):
                problems.append("g_idx differs")
            Hd = H.astype(np.float64)
            def loss(V):
                D = W.astype(np.float64) - V
                return float(np.einsum("ij,jk,ik->", D, Hd, D))
            l_gptq = loss(deq.astype(np.float64))
            l_rtn = loss(rtn(W, params.get("bits", 4), group, params.get("sym", False),
                             params.get("scale_f16", True)).astype(np.float64))
            if not l_gptq < l_rtn:
                problems.append("gptq loss %.4g not below rtn %.4g" % (l_gptq, l_rtn))
            if dead and not np.all(deq[:, dead] == 0):
                problems.append("dead inputs' weights not zero")
            print("%-50s %4dx%-4d  codes differing %d of %d, rel %.2g; loss gptq/rtn %.3f; "
                  "numpy %.2f s, qpipe %.2f s%s" % (name, W.shape[0], W.shape[1], n_diff, codes.size, rel,
                                                    l_gptq / l_rtn, ref_secs, c_secs,
                                                    "" if not problems else "  FAIL: " + "; ".join(problems)))
            failures += bool(problems)
    print("%d of %d cases passed" % (len(CASES) - failures, len(CASES)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
