"""Mixture-of-experts decode speed on the CPU against a dense model of the same active parameter count.

    .venv/bin/python bench/moe.py [--threads 2] [--tokens 64] [--batch 1]

Both models are random, built in-process (no files): a Qwen3-MoE-shaped model with E experts of width F,
top-k routing, and a dense Qwen3 with the same attention and an MLP of width k * F, so each token multiplies
the same number of weights. Prints decode tokens/s (float32 weights, the module path, one token per row per
step through the KV cache) and the MoE/dense ratio: the cost of routing and grouped dispatch.
"""

from __future__ import annotations

import argparse
import time

import torch

import gptkit  # noqa: F401  (before torch work: GOMP_SPINCOUNT)
from gptkit.config import GPT4Config
from gptkit.model.decoder import DecoderLM

BASE = dict(vocab_size=32000, n_layer=8, n_head=8, n_kv_head=4, n_embd=512, head_dim=64, positions="rope",
            norm="rmsnorm", mlp="swiglu", bias=False, tie_word_embeddings=True, qk_norm="head",
            context_length=4096)  # fmt: skip


def models(experts: int, top_k: int, width: int) -> dict[str, DecoderLM]:
    moe = GPT4Config(**BASE, n_experts=experts, n_experts_per_token=top_k, expert_intermediate_size=width)
    dense = GPT4Config(**BASE, intermediate_size=top_k * width)
    torch.manual_seed(0)
    return {
        f"moe {experts}x{width} top-{top_k}": DecoderLM(moe).eval(),
        f"dense {top_k * width}": DecoderLM(dense).eval(),
    }


@torch.inference_mode()
def decode_tokens_per_second(model: DecoderLM, batch: int, tokens: int, prompt: int = 32) -> float:
    cache = model.new_cache(batch, prompt + tokens + 1)
    ids = torch.randint(0, model.config.vocab_size, (batch, prompt))
    logits = model(ids, cache=cache, logits_to_keep=1).logits
    start = time.perf_counter()
    for _ in range(tokens):
        next_ids = logits[:, -1].argmax(-1, keepdim=True)
        logits = model(next_ids, cache=cache).logits
    return batch * tokens / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--experts", type=int, default=16)
    parser.add_argument("--top-k", type=int, default=4)
    parser.add_argument("--expert-width", type=int, default=256)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = {}
    for name, model in models(args.experts, args.top_k, args.expert_width).items():
        active = sum(p.numel() for n, p in model.named_parameters() if "exps" not in n)
        if model.config.n_experts:
            per_expert = 3 * model.config.n_embd * model.config.expert_ffn_dim
            active += model.config.n_layer * model.config.n_experts_per_token * per_expert
        results[name] = decode_tokens_per_second(model, args.batch, args.tokens)
        print(f"{name:>24}: {results[name]:7.1f} tok/s  ({active / 1e6:.0f}M active parameters, "
              f"{model.num_parameters() / 1e6:.0f}M total)")  # fmt: skip
    moe, dense = results.values()
    print(f"moe / dense: {moe / dense:.2f}  (threads={args.threads}, batch={args.batch}, float32)")


if __name__ == "__main__":
    main()
