"""An independent numpy forward pass of a Hugging Face Llama checkpoint,
written from the transformers conventions (not from qpipe's code): weights
straight from model.safetensors as [out, in], rotate-half RoPE with the
scaling types of transformers' modeling_rope_utils.py (linear, dynamic,
yarn, llama3; rope_parameters or rope_scaling), grouped-query attention,
SwiGLU, tied lm_head when the file has none or tie_word_embeddings says
so. float64 throughout, so it is the reference, not a peer."""
import json
import math
import os

import numpy as np
from safetensors.numpy import load_file


def rope_params(c):
    """transformers 5's standardized rope parameters of config dict c:
    rope_parameters, else the legacy rope_scaling, with rope_theta and the
    type ("rope_type", legacy "type") filled in."""
    rp = dict(c.get("rope_parameters") or c.get("rope_scaling") or {})
    rp.setdefault("rope_type", rp.get("type", "default"))
    rp.setdefault("rope_theta", c.get("rope_theta", 10000.0))
    if rp["rope_type"] in ("llama3", "yarn"):
        rp["original_max_position_embeddings"] = c.get(
            "original_max_position_embeddings",
            rp.get("original_max_position_embeddings", c["max_position_embeddings"]))
    return rp


def inv_freq_and_scale(c, dim, seq_len):
    """(inv_freq [dim/2], attention factor) as transformers'
    _compute_<type>_parameters compute them; seq_len is the batch's
    max position + 1 (dynamic_rope_update)."""
    rp = rope_params(c)
    t, base = rp["rope_type"], rp["rope_theta"]
    idx = np.arange(0, dim, 2, dtype=np.float64)
    maxpos = c["max_position_embeddings"]
    if t == "dynamic":
        L = max(seq_len, maxpos)
        f = rp["factor"]
        base = base * ((f * L / maxpos) - (f - 1)) ** (dim / (dim - 2))
    inv = 1.0 / base ** (idx / dim)
    if t in ("default", "dynamic"):
        return inv, 1.0
    if t == "linear":
        return inv / rp["factor"], 1.0
    if t == "llama3":
        f, lo, hi = rp["factor"], rp["low_freq_factor"], rp["high_freq_factor"]
        old = rp["original_max_position_embeddings"]
        low_wl, high_wl = old / lo, old / hi
        wl = 2 * math.pi / inv
        out = np.where(wl > low_wl, inv / f, inv)
        smooth = (old / wl - lo) / (hi - lo)
        smoothed = (1 - smooth) * out / f + smooth * out
        medium = ~(wl < high_wl) & ~(wl > low_wl)
        return np.where(medium, smoothed, out), 1.0
    if t == "yarn":
        f = rp.get("factor")
        old = rp["original_max_position_embeddings"]
        if f is None:
            f = maxpos / old

        def get_mscale(scale, m=1):
            return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0
        att = rp.get("attention_factor")
        if att is None:
            if rp.get("mscale") and rp.get("mscale_all_dim"):
                att = get_mscale(f, rp["mscale"]) / get_mscale(f, rp["mscale_all_dim"])
            else:
                att = get_mscale(f)
        bf, bs = rp.get("beta_fast") or 32, rp.get("beta_slow") or 1

        def corr(rot):
            return dim * math.log(old / (rot * 2 * math.pi)) / (2 * math.log(base))
        lo, hi = corr(bf), corr(bs)
        if rp.get("truncate", True):
            lo, hi = math.floor(lo), math.ceil(hi)
        lo, hi = max(lo, 0), min(hi, dim - 1)
        if lo == hi:
            hi += 0.001
        ramp = np.clip((np.arange(dim // 2, dtype=np.float64) - lo) / (hi - lo), 0, 1)
        extrap = 1 - ramp
        pos_freqs = base ** (idx / dim)
        return (1 / (f * pos_freqs)) * (1 - extrap) + (1 / pos_freqs) * extrap, att
    raise ValueError("rope type %r" % t)


class LlamaRef:
    def __init__(self, model_dir, weights=None):
        """weights: {name: array} to use instead of model_dir's
        model.safetensors (e.g. already loaded)."""
        with open(os.path.join(model_dir, "config.json")) as f:
            self.cfg = json.load(f)
        if weights is None:
            weights = load_file(os.path.join(model_dir, "model.safetensors"))
        self.w = {k: v.astype(np.float64) for k, v in weights.items()}
        c = self.cfg
        self.n_head = c["num_attention_heads"]
        self.n_kv = c.get("num_key_value_heads", self.n_head)
        self.hd = c.get("head_dim") or c["hidden_size"] // self.n_head
        self.eps = c.get("rms_norm_eps", 1e-6)

    def rms(self, x, w):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + self.eps) * w

    def rope(self, x, pos):
        # x [T, heads, hd]; HF rotate_half: pairs (i, i + hd/2)
        inv_freq, scale = inv_freq_and_scale(self.cfg, self.hd, int(pos.max()) + 1)
        ang = pos[:, None] * inv_freq[None, :]
        cos = np.concatenate([np.cos(ang)] * 2, -1)[:, None, :] * scale
        sin = np.concatenate([np.sin(ang)] * 2, -1)[:, None, :] * scale
        h = self.hd // 2
        rot = np.concatenate([-x[..., h:], x[..., :h]], -1)
        return x * cos + rot * sin

    def logits(self, ids, tap=None):
        """Logits [T, vocab]; tap(weight_name, x), if given, sees the input
        x [T, in] of every product with a 2-D weight (calibration)."""
        w = self.w
        tap = tap or (lambda name, x: None)

        def mm(x, name):
            tap(name, x)
            return x @ w[name].T
        T = len(ids)
        pos = np.arange(T, dtype=np.float64)
        x = w["model.embed_tokens.weight"][ids]
        mask = np.triu(np.full((T, T), -np.inf), 1)
        for i in range(self.cfg["num_hidden_layers"]):
            p = "model.layers.%d." % i
            h = self.rms(x, w[p + "input_layernorm.weight"])
            q = mm(h, p + "self_attn.q_proj.weight").reshape(T, self.n_head, self.hd)
            k = mm(h, p + "self_attn.k_proj.weight").reshape(T, self.n_kv, self.hd)
            v = mm(h, p + "self_attn.v_proj.weight").reshape(T, self.n_kv, self.hd)
            q, k = self.rope(q, pos), self.rope(k, pos)
            g = self.n_head // self.n_kv
            k = np.repeat(k, g, axis=1)
            v = np.repeat(v, g, axis=1)
            s = np.einsum("thd,shd->hts", q, k) / np.sqrt(self.hd) + mask
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            a = np.einsum("hts,shd->thd", s, v).reshape(T, -1)
            x = x + mm(a, p + "self_attn.o_proj.weight")
            h = self.rms(x, w[p + "post_attention_layernorm.weight"])
            gt = mm(h, p + "mlp.gate_proj.weight")
            up = mm(h, p + "mlp.up_proj.weight")
            x = x + mm(gt / (1 + np.exp(-gt)) * up, p + "mlp.down_proj.weight")
        x = self.rms(x, w["model.norm.weight"])
        tied = self.cfg.get("tie_word_embeddings") or "lm_head.weight" not in w
        return mm(x, "model.embed_tokens.weight" if tied else "lm_head.weight")
