"""Decode benchmark: gptkit fp32 / bf16 / int8 / int4 vs transformers on the bundled SmolLM2-135M GGUF.

One table: load time, prefill tok/s (512-token prompt), greedy decode tok/s at batch 1 (64 tokens) and
peak RSS; each configuration runs in its own subprocess so its peak RSS is its own.
Run: `.venv/bin/python bench/decode.py [--threads 2] [--kernels]` (`--kernels` adds the per-layer
matmul table: dense fp32/bf16 vs the int8/int4 weight-only paths, M = 1 to 512 rows).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

from gptkit.registry import DEFAULT_MODEL, REGISTRY, bundled_path

PROMPT_TOKENS, NEW_TOKENS = 512, 64
KERNEL_ROWS = (1, 8, 9, 16, 32, 121, 512)  # --kernels: decode, the engine's batched decode, prefill
CONFIGS = {  # name -> (loader, dtype, quantize, compile the engine's decode step)
    "gptkit fp32": ("gptkit", "float32", None, False),
    "gptkit bf16": ("gptkit", "bfloat16", None, False),
    "gptkit int8": ("gptkit", "float32", "int8", False),
    "gptkit int8+bf16": ("gptkit", "bfloat16", "int8", False),
    "gptkit int4": ("gptkit", "float32", "int4", False),
    "gptkit int4+bf16": ("gptkit", "bfloat16", "int4", False),
    "gptkit int4+bf16 compiled": ("gptkit", "bfloat16", "int4", True),
    "transformers fp32": ("transformers", "float32", None, False),
    "llama.cpp Q4_1": ("llama_cpp", None, None, False),  # the GGUF as it is, llama-cpp-python (bench extra)
}
TEXT = (
    "The history of natural language processing generally started in the 1950s, although work can be "
    "found from earlier periods. In 1950, Alan Turing published an article titled 'Computing Machinery "
    "and Intelligence' which proposed what is now called the Turing test as a criterion of intelligence. "
)


def timed(fn):
    """(fn(), seconds)."""
    start = time.perf_counter()
    return fn(), time.perf_counter() - start


def prompt_ids() -> torch.Tensor:
    """A PROMPT_TOKENS-long prompt: (1, PROMPT_TOKENS)."""
    from gptkit import GPT4Tokenizer

    ids = GPT4Tokenizer.from_pretrained(DEFAULT_MODEL).encode(TEXT * 40)
    return torch.tensor([ids[:PROMPT_TOKENS]])


def load(loader: str, dtype: str, quantize: str | None):
    """Load the bundled model with gptkit or transformers."""
    path = bundled_path(REGISTRY[DEFAULT_MODEL])
    if loader == "gptkit":
        from gptkit import GPT4LMHeadModel

        return GPT4LMHeadModel.from_pretrained(str(path), dtype=dtype, quantize=quantize)
    import transformers

    transformers.logging.set_verbosity_error()
    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=getattr(torch, dtype)
    ).eval()
    model.generation_config.pad_token_id = model.generation_config.eos_token_id
    return model


@torch.inference_mode()
def measure_one(name: str, threads: int) -> dict:
    """Load, prefill and decode one configuration; peak RSS of this process at the end."""
    ids = prompt_ids()
    if CONFIGS[name][0] == "llama_cpp":
        return measure_llama_cpp(ids[0].tolist(), threads)
    loader, *_, compile = CONFIGS[name]
    model, load_s = timed(lambda: load(*CONFIGS[name][:3]))
    model(ids[:, :16])  # warm-up
    prefill = min(timed(lambda: model(ids))[1] for _ in range(2))
    gen = dict(max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False)
    out, total = timed(lambda: model.generate(ids, **gen))
    decode = (out.shape[1] - PROMPT_TOKENS - 1) / max(total - prefill, 1e-9)
    peak = _status_mib("VmHWM")  # load + prefill + one sequence's decode: llama.cpp's workload
    aggregate = engine_throughput(model, ids, compile) if loader == "gptkit" else {}
    return {
        "load s": load_s,
        "prefill tok/s": PROMPT_TOKENS / prefill,
        "decode tok/s": aggregate.pop("b1 tok/s") if compile else decode,
        "weights MiB": sum(t.nbytes for t in [*model.parameters(), *model.buffers()]) / 2**20,
        "peak RSS MiB": peak,
        "engine peak MiB": _status_mib("VmHWM"),  # + a 16-slot Engine's KV cache (and compiling)
        **aggregate,
    }


def measure_llama_cpp(ids: list[int], threads: int) -> dict:
    """The same measurements with llama-cpp-python on the bundled GGUF: prefill by eval, greedy decode."""
    import numpy as np
    from llama_cpp import Llama

    path = str(bundled_path(REGISTRY[DEFAULT_MODEL]))
    # n_batch = n_ctx: llm.scores keeps a row per position up to n_batch, read back for greedy decode
    llm, load_s = timed(lambda: Llama(path, n_ctx=1024, n_batch=1024, n_threads=threads, verbose=False))
    llm.eval(ids[:16])  # warm-up
    prefill = min(timed(lambda: (llm.reset(), llm.eval(ids)))[1] for _ in range(2))
    start = time.perf_counter()
    for _ in range(NEW_TOKENS):
        llm.eval([int(np.argmax(llm.scores[llm.n_tokens - 1]))])
    decode = time.perf_counter() - start
    return {
        "load s": load_s,
        "prefill tok/s": len(ids) / prefill,
        "decode tok/s": NEW_TOKENS / decode,
        "peak RSS MiB": _status_mib("VmHWM"),
    }


def engine_throughput(model, ids: torch.Tensor, compile: bool) -> dict[str, float]:
    """The Engine's single-stream decode tok/s (after the 512-token prompt) and aggregate decode tok/s with
    4 and 16 concurrent greedy requests (16-token prompts); with ``compile``, the compile time first."""
    from gptkit import GPT4Tokenizer
    from gptkit.engine import Engine, SamplingParams

    tokenizer = GPT4Tokenizer.from_pretrained(DEFAULT_MODEL)
    engine = Engine(
        model, tokenizer, max_batch_size=16, max_seq_len=PROMPT_TOKENS + NEW_TOKENS + 1, compile=compile
    )
    out = {"compile s": timed(engine.warm_up)[1]} if compile else {}
    out["b1 tok/s"] = engine_single_stream(engine, ids[0].tolist())
    prompts = [ids[0, i * 16 : (i + 1) * 16].tolist() for i in range(16)]
    params = SamplingParams(max_tokens=NEW_TOKENS, min_tokens=NEW_TOKENS, temperature=0)
    for batch in (4, 16):
        done, seconds = timed(lambda batch=batch: engine.generate(prompts[:batch], params))
        out[f"b{batch} agg tok/s"] = sum(c.completion_tokens for c in done) / seconds
    return out


def engine_single_stream(engine, prompt: list[int]) -> float:
    """Greedy decode tok/s of one request through the engine, from its first token (after the prefill)."""
    from gptkit.engine import SamplingParams

    engine.add_request(
        prompt, SamplingParams(max_tokens=NEW_TOKENS + 1, min_tokens=NEW_TOKENS + 1, temperature=0)
    )
    engine.step()  # admission: prefill and the first token
    start = time.perf_counter()
    while engine.has_unfinished():
        engine.step()
    return NEW_TOKENS / (time.perf_counter() - start)


def _status_mib(field: str) -> float:
    """A /proc/self/status memory field in MiB: VmRSS (now) or VmHWM (this process image's peak; unlike
    ru_maxrss it does not carry over the parent's peak across exec)."""
    with open("/proc/self/status") as status:
        kib = next(line.split()[1] for line in status if line.startswith(f"{field}:"))
    return int(kib) / 1024


def run_isolated(name: str, threads: int) -> dict | None:
    """measure_one in a fresh interpreter; None (with a message) if the peer is missing or fails."""
    cmd = [sys.executable, __file__, "--one", name, "--threads", str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"{name}: skipped ({proc.stderr.strip().splitlines()[-1] if proc.stderr else 'failed'})")
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def print_table(results: dict[str, dict]) -> None:
    """Rows = configurations; ratio columns vs transformers fp32 and llama.cpp (> 1 = better than the peer)."""
    keys = ["load s", "prefill tok/s", "decode tok/s", "weights MiB", "peak RSS MiB", "engine peak MiB"]
    aggregate = ["b1 tok/s", "b4 agg tok/s", "b16 agg tok/s", "compile s"]
    ratios = {  # column -> (row key, peer name, peer key)
        "decode/HF": ("decode tok/s", "transformers fp32", "decode tok/s"),
        "decode/llama": ("decode tok/s", "llama.cpp Q4_1", "decode tok/s"),
        "prefill/llama": ("prefill tok/s", "llama.cpp Q4_1", "prefill tok/s"),
        "b16/llama b1": ("b16 agg tok/s", "llama.cpp Q4_1", "decode tok/s"),
        "RSS/llama": ("peak RSS MiB", "llama.cpp Q4_1", "peak RSS MiB"),
    }
    print(f"{'config':<26}" + "".join(f"{k:>15}" for k in keys + aggregate + list(ratios)))
    for name, r in results.items():
        cells = "".join(f"{r.get(k, float('nan')):>15.2f}" for k in keys + aggregate)
        for key, peer, peer_key in ratios.values():
            value = r.get(key, float("nan")) / results[peer][peer_key] if peer in results else float("nan")
            cells += f"{value:>14.2f}x"
        print(f"{name:<26}{cells}")
    print("decode: model.generate after the prompt; 'compiled': the Engine's compiled step (b1, one request)")
    print("b1: gptkit.engine.Engine, one request after the prompt; b4/b16 agg: 4 or 16 concurrent greedy")
    print("requests, 16-token prompts, including prefill; compile s: Engine.warm_up with compile=True")
    print(
        "peak RSS: after load, prefill and the single-stream decode; engine peak: after the Engine runs too"
    )


def bench_kernels(threads: int) -> None:
    """Microseconds per matmul for the SmolLM2-135M layer shapes, dense vs weight-only quantized paths."""
    from gptkit.quant import quantize_int4, quantize_int8
    from gptkit.quant.int8 import dense_int8_matmul

    torch.set_num_threads(threads)
    int8mm, int4mm = torch.ops.aten._weight_int8pack_mm, torch.ops.aten._weight_int4pack_mm_for_cpu
    shapes = {"qkv": (576, 960), "proj": (576, 576), "gate_up": (576, 3072), "down": (1536, 576),
              "lm_head": (576, 49152)}  # fmt: skip
    cols = ["fp32", "bf16", "int8k x bf16", "int8 dense fp32", "int8 dense bf16", "int4k x bf16", "int4k x fp32"]  # fmt: skip
    print(f"{'layer':<8}{'M':>4}" + "".join(f"{c:>16}" for c in cols) + "   (us per call)")
    for layer, (K, N) in shapes.items():
        w = torch.randn(N, K) * 0.02
        q8, s8 = quantize_int8(w)
        q4, sz = quantize_int4(w, 32)
        q4 = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q4, 1)
        for M in KERNEL_ROWS:
            x = torch.randn(M, K)
            xb, wb, sb = x.bfloat16(), w.bfloat16(), s8.bfloat16()
            calls = [(F.linear, x, w), (F.linear, xb, wb), (int8mm, xb, q8, sb), (dense_int8_matmul, x, q8, s8),
                     (dense_int8_matmul, xb, q8, s8), (int4mm, xb, q4, 32, sz)]  # fmt: skip
            if M <= 8:  # 25-75x slower than bf16: only for the record
                calls.append((int4mm, x, q4, 32, sz.float()))
            print(f"{layer:<8}{M:>4}" + "".join(f"{_time_us(c, M * N):>16.0f}" for c in calls), flush=True)


def _time_us(call: tuple, work: int) -> float:
    """Best of 3 mean microseconds of fn(*args) for call = (fn, *args); more repetitions for small work."""
    fn, *args = call
    fn(*args)
    reps = max(2, min(200, int(2e7 // work)))
    return min(timed(lambda: [fn(*args) for _ in range(reps)])[1] for _ in range(3)) / reps * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--one", choices=CONFIGS, help=argparse.SUPPRESS)
    parser.add_argument("--kernels", action="store_true", help="also print the per-layer matmul table")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.one:
        print(json.dumps(measure_one(args.one, args.threads)))
        return
    print(
        f"{DEFAULT_MODEL}: {PROMPT_TOKENS}-token prompt, {NEW_TOKENS} greedy tokens, {args.threads} threads"
    )
    results = {name: r for name in CONFIGS if (r := run_isolated(name, args.threads))}
    print_table(results)
    if args.kernels:
        bench_kernels(args.threads)


if __name__ == "__main__":
    main()
