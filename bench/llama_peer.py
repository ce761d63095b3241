"""The llama.cpp side of bench/decode.py, in a process that never imports torch.

Reads one JSON object on stdin, {"gguf": path, "ids": prompt token ids, "threads": n, "new_tokens": n},
and prints one JSON line: load s, prefill tok/s, greedy decode tok/s and this process's peak RSS.
Needs llama-cpp-python (`make bench` builds it with flags that match the CPU: bench/llama_cmake_args.py).
"""

from __future__ import annotations

import json
import sys
import time

from peak_rss import peak_rss_mib

N_CTX = 1024  # the 512-token prompt and 64 new tokens fit; n_batch = n_ctx keeps a logits row per position


def timed(fn):
    """(fn(), seconds)."""
    start = time.perf_counter()
    return fn(), time.perf_counter() - start


def measure(gguf: str, ids: list[int], threads: int, new_tokens: int) -> dict:
    """Load the GGUF, prefill ``ids`` (best of 2), then decode ``new_tokens`` greedy tokens one by one."""
    import numpy as np
    from llama_cpp import Llama

    llm, load_s = timed(lambda: Llama(gguf, n_ctx=N_CTX, n_batch=N_CTX, n_threads=threads, verbose=False))
    llm.eval(ids[:16])  # warm-up
    prefill = min(timed(lambda: (llm.reset(), llm.eval(ids)))[1] for _ in range(2))
    start = time.perf_counter()
    for _ in range(new_tokens):
        llm.eval([int(np.argmax(llm.scores[llm.n_tokens - 1]))])
    decode = time.perf_counter() - start
    return {
        "load s": load_s,
        "prefill tok/s": len(ids) / prefill,
        "decode tok/s": new_tokens / decode,
        "peak RSS MiB": peak_rss_mib(),
        "torch imported": "torch" in sys.modules,  # must stay False: torch alone peaks at ~218 MiB
    }


def main() -> None:
    request = json.load(sys.stdin)
    result = measure(request["gguf"], request["ids"], request["threads"], request["new_tokens"])
    print(json.dumps(result))


if __name__ == "__main__":
    main()
