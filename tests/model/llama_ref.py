"""An independent numpy forward pass of a Hugging Face Llama checkpoint,
written from the transformers conventions (not from qpipe's code): weights
straight from model.safetensors as [out, in], rotate-half RoPE, grouped-
query attention, SwiGLU, tied lm_head when the file has none. float64
throughout, so it is the reference, not a peer."""
import json
import os

import numpy as np
from safetensors.numpy import load_file


class LlamaRef:
    def __init__(self, model_dir):
        with open(os.path.join(model_dir, "config.json")) as f:
            self.cfg = json.load(f)
        self.w = {k: v.astype(np.float64) for k, v in
                  load_file(os.path.join(model_dir, "model.safetensors")).items()}
        c = self.cfg
        self.n_head = c["num_attention_heads"]
        self.n_kv = c.get("num_key_value_heads", self.n_head)
        self.hd = c.get("head_dim") or c["hidden_size"] // self.n_head
        self.eps = c.get("rms_norm_eps", 1e-6)
        theta = c.get("rope_theta") or (c.get("rope_parameters") or {}).get("rope_theta", 10000.0)
        self.inv_freq = 1.0 / theta ** (np.arange(0, self.hd, 2, dtype=np.float64) / self.hd)

    def rms(self, x, w):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + self.eps) * w

    def rope(self, x, pos):
        # x [T, heads, hd]; HF rotate_half: pairs (i, i + hd/2)
        ang = pos[:, None] * self.inv_freq[None, :]
        cos = np.concatenate([np.cos(ang)] * 2, -1)[:, None, :]
        sin = np.concatenate([np.sin(ang)] * 2, -1)[:, None, :]
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
        return mm(x, "lm_head.weight" if "lm_head.weight" in w else "model.embed_tokens.weight")
