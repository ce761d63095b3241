"""Side-by-side: gptkit vs transformers on the bundled SmolLM2-135M-Instruct GGUF.

Prints load time, prefill tok/s on a ~120-token prompt and greedy decode tok/s for each, with ratios.
Run: `.venv/bin/python bench/generate.py [--new-tokens 64] [--threads 2]` (transformers needs
`pip install -e .[bench]`; a missing peer is skipped with a message).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from gptkit import GPT4LMHeadModel, GPT4Tokenizer
from gptkit.registry import DEFAULT_MODEL, REGISTRY, bundled_path

PROMPT = (
    "The history of natural language processing generally started in the 1950s, although work can be found "
    "from earlier periods. In 1950, Alan Turing published an article titled 'Computing Machinery and "
    "Intelligence' which proposed what is now called the Turing test as a criterion of intelligence. "
    "The Georgetown experiment in 1954 involved fully automatic translation of more than sixty Russian "
    "sentences into English. The authors claimed that within three or five years, machine translation "
    "would be a solved problem. However, real progress was much slower, and after the ALPAC report"
)


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def measure(model, input_ids: torch.Tensor, new_tokens: int) -> dict[str, float]:
    """Prefill tok/s (one forward over the prompt) and greedy decode tok/s (generate minus prefill)."""
    with torch.inference_mode():
        model(input_ids)  # warm-up
        prefill = min(timed(lambda: model(input_ids))[1] for _ in range(3))  # best of 3
        out, total = timed(
            lambda: model.generate(
                input_ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False
            )
        )
    generated = out.shape[1] - input_ids.shape[1]
    return {
        "prefill tok/s": input_ids.shape[1] / prefill,
        "decode tok/s": (generated - 1) / max(total - prefill, 1e-9),
        "tokens": out[0, input_ids.shape[1] :].tolist(),
    }


def bench_gptkit(path: Path, input_ids: torch.Tensor, new_tokens: int, dtype: str) -> dict[str, float]:
    model, load = timed(lambda: GPT4LMHeadModel.from_pretrained(str(path), dtype=dtype))
    return {"load s": load, **measure(model, input_ids, new_tokens)}


def bench_transformers(path: Path, input_ids: torch.Tensor, new_tokens: int) -> dict[str, float] | None:
    try:
        import transformers
    except ImportError:
        print("transformers not installed: skipped (pip install -e .[bench])")
        return None
    transformers.logging.set_verbosity_error()
    model, load = timed(
        lambda: transformers.AutoModelForCausalLM.from_pretrained(
            str(path.parent), gguf_file=path.name, dtype=torch.float32
        ).eval()
    )
    model.generation_config.pad_token_id = model.generation_config.eos_token_id
    return {"load s": load, **measure(model, input_ids, new_tokens)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    path = bundled_path(REGISTRY[DEFAULT_MODEL])
    tokenizer = GPT4Tokenizer.from_pretrained(DEFAULT_MODEL)
    input_ids = tokenizer.encode(PROMPT, return_tensors="pt")
    print(
        f"model {path.name}, prompt {input_ids.shape[1]} tokens, {args.new_tokens} new, {args.threads} threads"
    )
    ours = bench_gptkit(path, input_ids, args.new_tokens, "float32")
    ours_bf16 = bench_gptkit(path, input_ids, args.new_tokens, "bfloat16")
    peer = bench_transformers(path, input_ids, args.new_tokens)
    print(
        f"{'metric':<16}{'gptkit fp32':>13}{'gptkit bf16':>13}{'transformers':>14}{'fp32 ratio':>12}{'bf16 ratio':>12}"
    )
    for key in ("load s", "prefill tok/s", "decode tok/s"):
        theirs = peer[key] if peer else float("nan")
        ratios = [theirs / r[key] if key == "load s" else r[key] / theirs for r in (ours, ours_bf16)]
        print(
            f"{key:<16}{ours[key]:>13.2f}{ours_bf16[key]:>13.2f}{theirs:>14.2f}"
            f"{ratios[0]:>11.2f}x{ratios[1]:>11.2f}x"
        )
    if peer:
        print(f"greedy tokens identical to transformers: fp32 {ours['tokens'] == peer['tokens']}")
    print("ratio > 1 means gptkit is better (faster load, more tokens/s); transformers runs fp32")


if __name__ == "__main__":
    main()
