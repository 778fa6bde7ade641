"""llama.cpp's KL-divergence method (tools/perplexity/perplexity.cpp,
--kl-divergence-base then --kl-divergence) in numpy, on logits taken
from llama.cpp through llama-cpp-python.

The base run stores per token the log-probabilities as uint16: with max
and min the row's logits, min raised to max - 16, scale = (max - min) /
65535, min_log_prob = min - max - log(sum exp(x - max)), u_i =
round((x_i - min) / scale) for x_i > min else 0. The quantized run then
takes, per token, p_log_base_i = scale * u_i + min_log_prob and
  kld_t = sum over i with p_log_base_i > -16 of exp(p_log_base_i) *
          (p_log_base_i - log q_i)
  dp_t = q[next] - exp(p_log_base[next]),  top: argmax of p_log_base
          (first maximum) against the argmax of the logits
and reports the mean KLD, its percentiles (linear between sorted values
at f * (n - 1); the median the mean of the middle two), RMS dp
(100 * sqrt(mean dp^2)) and same-top % (100 * count / n). float32 where
llama.cpp uses float."""
import numpy as np


def llama_cpp_logits(path, chunks_tokens, n_ctx, threads=2, f32_kv=True):
    """[chunks, n_ctx, n_vocab] float32 logits of each chunk (a list of
    token lists, BOS first), each from an empty KV cache as llama-perplexity
    runs them. f32_kv: an f32 KV cache (llama-perplexity's default is f16,
    which moves llama-docs-27m's log-probabilities by up to 1.3e-2)."""
    from llama_cpp import Llama
    kw = dict(type_k=0, type_v=0) if f32_kv else {}
    llm = Llama(model_path=path, n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx, logits_all=True,
                n_threads=threads, verbose=False, seed=0, **kw)
    out = []
    for chunk in chunks_tokens:
        llm.reset()
        llm.eval(list(chunk))
        out.append(np.array(llm.scores[:n_ctx], dtype=np.float32))
    return np.stack(out), llm


def _uint16_base(b):
    """llama.cpp's stored base row: p_log_base_i for every i (float32)."""
    mx = b.max()
    mn = max(b.min(), mx - np.float32(16))
    lse = np.float32(np.log(np.exp(b - mx).astype(np.float32).sum(dtype=np.float64)))
    scale = np.float32((mx - mn) / np.float32(65535))
    min_lp = np.float32(mn - mx - lse)
    if scale == 0:
        return np.full_like(b, min_lp)
    u = np.where(b > mn, np.floor((b - mn) * (np.float32(1) / scale) + np.float32(0.5)), 0)
    return (scale * u.astype(np.float32) + min_lp).astype(np.float32)


def _percentile(s, f):
    p = f * (len(s) - 1)
    i = int(p)
    p -= i
    return (1 - p) * s[i] + p * s[min(i + 1, len(s) - 1)]


def llama_cpp_kld(base, quant, chunks_tokens, n_ctx):
    """The statistics above for base and quant logits [chunks, n_ctx,
    n_vocab] on the scored positions n_ctx/2 .. n_ctx - 2 of each chunk."""
    kld, dp, same = [], [], 0
    first = n_ctx // 2
    for c, toks in enumerate(chunks_tokens):
        for j in range(first, n_ctx - 1):
            plb = _uint16_base(base[c, j].astype(np.float32))
            q = quant[c, j].astype(np.float32)
            qmx = q.max()
            qlse = np.float32(np.log(np.exp(q - qmx).astype(np.float32).sum(dtype=np.float64)))
            keep = plb > -16
            kld.append(float((np.exp(plb[keep]).astype(np.float64) * (plb[keep] - q[keep] + (qmx + qlse))).sum()))
            t = toks[j + 1]
            dp.append(float(np.exp(-(qmx + qlse - q[t])) - np.exp(plb[t])))
            same += int(np.argmax(q) == np.argmax(plb))
    kld, dp = np.array(kld), np.array(dp)
    s = np.sort(kld)
    return {"kld": kld.mean(), "kld_median": _percentile(s, 0.5), "kld_p99": _percentile(s, 0.99),
            "kld_max": s[-1], "rms_dp": 100 * np.sqrt((dp * dp).mean()), "top1_pct": 100.0 * same / len(kld),
            "n": len(kld)}


def exact_kld(base, quant, chunks_tokens, n_ctx):
    """The same statistics from the float logits in float64, nothing
    rounded or dropped: what llama.cpp's uint16 base approximates."""
    first = n_ctx // 2
    b = base[:, first:n_ctx - 1].astype(np.float64)
    q = quant[:, first:n_ctx - 1].astype(np.float64)
    lp = b - b.max(-1, keepdims=True)
    lp -= np.log(np.exp(lp).sum(-1, keepdims=True))
    lq = q - q.max(-1, keepdims=True)
    lq -= np.log(np.exp(lq).sum(-1, keepdims=True))
    kld = (np.exp(lp) * (lp - lq)).sum(-1).reshape(-1)
    nxt = np.array([c[first + 1:n_ctx] for c in chunks_tokens])
    ix = np.indices(nxt.shape)
    dp = (np.exp(lq[ix[0], ix[1], nxt]) - np.exp(lp[ix[0], ix[1], nxt])).reshape(-1)
    same = (lp.argmax(-1) == lq.argmax(-1)).sum()
    s = np.sort(kld)
    return {"kld": kld.mean(), "kld_median": _percentile(s, 0.5), "kld_p99": _percentile(s, 0.99),
            "kld_max": s[-1], "rms_dp": 100 * np.sqrt((dp * dp).mean()), "top1_pct": 100.0 * same / len(kld),
            "n": len(kld)}
