"""Decode benchmark: gptkit with no flags and on each explicit path vs transformers and llama.cpp, on the
bundled SmolLM2-135M GGUF, in one run.

Each configuration runs in its own process, so its peak RSS is its own; llama.cpp runs in one that never
imports torch (bench/llama_peer.py). Prints load time, prefill tok/s (512-token prompt), greedy decode
tok/s at one stream (64 tokens), the Engine's aggregate tok/s with 4 and 16 streams and peak RSS; then the
issue's goals as ratios of gptkit's no-flag default to llama.cpp, and a roofline: the weight bytes each
decode token reads times tok/s, against this machine's memory bandwidth measured in the same run.
Run: `.venv/bin/python bench/decode.py [--threads 2] [--kernels]` (`make bench` installs the peers first;
`--kernels` adds the per-layer matmul table: dense fp32/bf16 vs the int8/int4 weight-only paths).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path

import torch
import torch.nn.functional as F
from decode_report import DEFAULT, LLAMA, print_goals, print_roofline, print_table
from peak_rss import peak_rss_mib

import gptkit  # noqa: F401  (before torch, as `from gptkit import ...` is: it sets GOMP_SPINCOUNT)
from gptkit.registry import DEFAULT_MODEL, REGISTRY, bundled_path

PROMPT_TOKENS, NEW_TOKENS = 512, 64
KERNEL_ROWS = (1, 8, 9, 16, 32, 121, 512)  # --kernels: decode, the engine's batched decode, prefill
BANDWIDTH_MIB = 512  # the streamed buffer: far larger than any L3
PEER = Path(__file__).with_name("llama_peer.py")
TEXT = (
    "The history of natural language processing generally started in the 1950s, although work can be "
    "found from earlier periods. In 1950, Alan Turing published an article titled 'Computing Machinery "
    "and Intelligence' which proposed what is now called the Turing test as a criterion of intelligence. "
)


@dataclass(frozen=True)
class Config:
    """How one row loads and runs: from_pretrained keywords ({}: what a user gets with no flags) and Engine
    keywords besides its sizes."""

    loader: str  # "gptkit", "transformers" or "llama_cpp"
    load: dict = field(default_factory=dict)
    engine: dict = field(default_factory=dict)


def _explicit(dtype: str, quantize: str | None, **engine) -> Config:
    return Config("gptkit", {"dtype": dtype, "quantize": quantize}, engine)


CONFIGS = {
    DEFAULT: Config("gptkit"),  # GPT4LMHeadModel.from_pretrained("smollm2-135m-instruct"), Engine's defaults
    "gptkit fp32 reference": _explicit("float32", None),  # --dtype float32 --quantize none
    "gptkit bf16": _explicit("bfloat16", None),
    "gptkit int8": _explicit("float32", "int8"),
    "gptkit int8+bf16": _explicit("bfloat16", "int8"),
    "gptkit int4": _explicit("float32", "int4"),
    "gptkit int4+bf16": _explicit("bfloat16", "int4"),
    "gptkit int4+bf16 compiled": _explicit("bfloat16", "int4", compile=True),
    "transformers fp32": Config("transformers", {"dtype": "float32"}),
    LLAMA: Config("llama_cpp"),  # the GGUF as it is, llama-cpp-python (bench extra), no torch in its process
}


def timed(fn):
    """(fn(), seconds)."""
    start = time.perf_counter()
    return fn(), time.perf_counter() - start


def prompt_ids() -> list[int]:
    """A PROMPT_TOKENS-long prompt, tokenized by gptkit (llama.cpp gets the same ids)."""
    from gptkit import GPT4Tokenizer

    return GPT4Tokenizer.from_pretrained(DEFAULT_MODEL).encode(TEXT * 40)[:PROMPT_TOKENS]


def load(config: Config):
    """The bundled model, loaded as the row says."""
    if config.loader == "gptkit":
        from gptkit import GPT4LMHeadModel

        return GPT4LMHeadModel.from_pretrained(DEFAULT_MODEL, **config.load)
    import transformers

    path = bundled_path(REGISTRY[DEFAULT_MODEL])
    transformers.logging.set_verbosity_error()
    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=getattr(torch, config.load["dtype"])
    ).eval()
    model.generation_config.pad_token_id = model.generation_config.eos_token_id
    return model


@torch.inference_mode()
def measure_one(name: str) -> dict:
    """Load, prefill and decode one torch configuration (then the Engine's streams, for gptkit rows)."""
    config = CONFIGS[name]
    ids = torch.tensor([prompt_ids()])  # (1, PROMPT_TOKENS)
    model, load_s = timed(lambda: load(config))
    model(ids[:, :16])  # warm-up
    # the prompt's forward with the last position's logits only: what generate and llama.cpp's eval compute
    prefill = min(timed(lambda: model(ids, logits_to_keep=1))[1] for _ in range(2))
    gen = dict(max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False)
    out, total = timed(lambda: model.generate(ids, **gen))
    result = {
        "load s": load_s,
        "prefill tok/s": PROMPT_TOKENS / prefill,
        "decode tok/s": (out.shape[1] - PROMPT_TOKENS - 1) / max(total - prefill, 1e-9),
        "weights MiB": sum(t.nbytes for t in [*model.parameters(), *model.buffers()]) / 2**20,
        "peak RSS MiB": peak_rss_mib(),  # load + prefill + one sequence's decode: llama.cpp's workload
    }
    if config.loader == "gptkit":
        result["read/token MiB"] = streamed_weight_bytes(model) / 2**20
        aggregate = engine_throughput(model, ids, config.engine)
        if config.engine.get("compile"):  # its decode is the compiled step's
            result["decode tok/s"] = aggregate.pop("b1 tok/s")
        result |= aggregate
        result["engine peak MiB"] = peak_rss_mib()  # + a 16-slot Engine's KV cache (and compiling)
    return result


GATHERED = ("embed", "pos_embed")  # tables a token only indexes: one row each per token
NOT_WEIGHTS = ("rotary", "sinusoidal")  # position tables, not weights


def streamed_weight_bytes(model: torch.nn.Module) -> int:
    """Weight bytes one decode token reads: every parameter and buffer of the blocks, the final norm and the
    lm_head (a tied lm_head reads the whole embedding table), but not the gathered embedding tables."""
    tensors = chain(
        model.named_parameters(remove_duplicate=False), model.named_buffers(remove_duplicate=False)
    )
    storages = {}
    for name, tensor in tensors:
        if name.split(".")[0] not in GATHERED + NOT_WEIGHTS:
            storages[(tensor.data_ptr(), tensor.nbytes)] = tensor.nbytes  # a tied tensor counts once
    return sum(storages.values())


def gguf_streamed_bytes(path: Path) -> int:
    """The same for llama.cpp on the GGUF: every tensor, less the token embedding unless it is the output."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    from gptkit.weights.gguf_file import read_header

    sizes = {}
    for tensor in read_header(path).tensors:
        block, block_bytes = GGML_QUANT_SIZES[GGMLQuantizationType(tensor.type_id)]
        sizes[tensor.name] = math.prod(tensor.dims) // block * block_bytes
    tied = "output.weight" not in sizes
    return sum(sizes.values()) - (0 if tied else sizes["token_embd.weight"])


def engine_throughput(model, ids: torch.Tensor, engine_options: dict) -> dict[str, float]:
    """The Engine's single-stream decode tok/s (after the 512-token prompt) and aggregate decode tok/s with
    4 and 16 concurrent greedy requests (16-token prompts); with compile, the compile time first."""
    from gptkit import GPT4Tokenizer
    from gptkit.engine import Engine, SamplingParams

    tokenizer = GPT4Tokenizer.from_pretrained(DEFAULT_MODEL)
    sizes = dict(max_batch_size=16, max_seq_len=PROMPT_TOKENS + NEW_TOKENS + 1)
    engine = Engine(model, tokenizer, **sizes, **engine_options)
    out = {"compile s": timed(engine.warm_up)[1]} if engine_options.get("compile") else {}
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


def run_isolated(name: str, threads: int, ids: list[int]) -> dict | None:
    """One configuration in a fresh interpreter; None (with a message) if the peer is missing or fails."""
    if CONFIGS[name].loader == "llama_cpp":
        gguf = str(bundled_path(REGISTRY[DEFAULT_MODEL]))
        request = json.dumps({"gguf": gguf, "ids": ids, "threads": threads, "new_tokens": NEW_TOKENS})
        proc = subprocess.run([sys.executable, str(PEER)], input=request, capture_output=True, text=True)
    else:
        cmd = [sys.executable, __file__, "--one", name, "--threads", str(threads)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"{name}: skipped ({proc.stderr.strip().splitlines()[-1] if proc.stderr else 'failed'})")
        return None
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if result.pop("torch imported", False):
        print(f"{name}: its process imported torch, so its peak RSS is not its own")
    if CONFIGS[name].loader == "llama_cpp":
        result["read/token MiB"] = gguf_streamed_bytes(Path(gguf)) / 2**20
    return result


def memory_read_gbs(threads: int, repeats: int = 5) -> float:
    """This machine's memory read bandwidth in GB/s: best of ``repeats`` torch sums over BANDWIDTH_MIB."""
    torch.set_num_threads(threads)
    buffer = torch.ones(BANDWIDTH_MIB * 2**20 // 4)  # float32, every page touched
    buffer.sum()  # warm-up
    best = min(timed(buffer.sum)[1] for _ in range(repeats))
    return buffer.nbytes / best / 1e9


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


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--one", choices=CONFIGS, help=argparse.SUPPRESS)
    parser.add_argument("--only", nargs="+", choices=CONFIGS, metavar="CONFIG", help="run only these rows")
    parser.add_argument("--kernels", action="store_true", help="also print the per-layer matmul table")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    if args.one:
        print(json.dumps(measure_one(args.one)))
        return
    print(
        f"{DEFAULT_MODEL}: {PROMPT_TOKENS}-token prompt, {NEW_TOKENS} greedy tokens, {args.threads} threads"
    )
    ids = prompt_ids()
    names = args.only or list(CONFIGS)
    results = {}
    for name in names:
        result, seconds = timed(lambda name=name: run_isolated(name, args.threads, ids))
        if result:
            results[name] = result
            print(f"  measured {name} in {seconds:.0f} s", flush=True)
    print_table(results)
    print_goals(results)
    print_roofline(results, memory_read_gbs(args.threads), BANDWIDTH_MIB, args.threads)
    if args.kernels:
        bench_kernels(args.threads)


if __name__ == "__main__":
    main()
