"""llama.cpp's perplexity method through llama-cpp-python: the same steps
as tools/perplexity/perplexity.cpp (tokenize once with BOS, chunks of
n_ctx, first token of each chunk replaced by BOS, each chunk from an
empty KV cache, the second half scored), on llama.cpp's own logits."""
import numpy as np


def llama_cpp_ppl(path, text, n_ctx=512, chunks=0, threads=2, ubatch=0):
    """ubatch: tokens per llama_decode (0: the whole chunk, as
    llama-perplexity runs it; 1: token by token, llama.cpp's decode path)"""
    from llama_cpp import Llama
    llm = Llama(model_path=path, n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=ubatch or n_ctx, logits_all=True,
                n_threads=threads, verbose=False, seed=0)
    toks = llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)
    n_chunks = len(toks) // n_ctx
    if chunks:
        n_chunks = min(n_chunks, chunks)
    bos = llm.token_bos()
    first = n_ctx // 2
    nll = nll2 = 0.0
    count = 0
    for c in range(n_chunks):
        chunk = list(toks[c * n_ctx:(c + 1) * n_ctx])
        chunk[0] = bos
        llm.reset()
        llm._ctx.kv_cache_clear() if hasattr(llm._ctx, "kv_cache_clear") else None
        llm.eval(chunk)
        logits = np.array(llm.scores[:n_ctx], dtype=np.float64)
        for j in range(first, n_ctx - 1):
            row = logits[j]
            m = row.max()
            lp = row[chunk[j + 1]] - m - np.log(np.exp(row - m).sum())
            nll -= lp
            nll2 += lp * lp
            count += 1
    mean = nll / count
    var = nll2 / count - mean * mean
    ppl = float(np.exp(mean))
    err = ppl * np.sqrt(var / (count - 1)) if var > 0 else 0.0
    return {"ppl": ppl, "ppl_err": float(err), "nll": mean, "chunks": n_chunks, "scored": count,
            "tokens": len(toks)}
