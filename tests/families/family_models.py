"""Tiny random transformers models of each family (built offline from a config), and their GGUF copies
written with the ``gguf`` package the way llama.cpp's converter writes them. Imported by the tests here."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

VOCAB = 96
COMMON = dict(
    vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, max_position_embeddings=128, rms_norm_eps=1e-6, tie_word_embeddings=False,
    bos_token_id=1, eos_token_id=2, pad_token_id=0,
)  # fmt: skip
ROPE = {"rope_type": "default", "rope_theta": 5000.0}
FAMILIES: dict[str, tuple[str, dict]] = {
    "qwen3": ("Qwen3Config", dict(head_dim=32, rope_parameters=ROPE)),
    "gemma2": (
        "Gemma2Config",
        dict(head_dim=32, query_pre_attn_scalar=24, sliding_window=6, attn_logit_softcapping=3.0,
             final_logit_softcapping=4.0, tie_word_embeddings=True, rope_parameters=ROPE),
    ),
    "gemma3": (
        "Gemma3TextConfig",
        dict(head_dim=32, query_pre_attn_scalar=32, sliding_window=6, tie_word_embeddings=True,
             layer_types=["sliding_attention", "full_attention"],
             rope_parameters={"sliding_attention": {"rope_type": "default", "rope_theta": 1000.0},
                              "full_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 20000.0}}),
    ),
    "phi3": (
        "Phi3Config",
        dict(original_max_position_embeddings=32, rope_parameters={
            "rope_type": "longrope", "rope_theta": 5000.0, "partial_rotary_factor": 0.75,
            "short_factor": [1.0 + 0.1 * i for i in range(6)], "long_factor": [2.0 + 0.5 * i for i in range(6)]}),
    ),
    "olmo2": ("Olmo2Config", dict(rope_parameters=ROPE)),
    "smollm3": ("SmolLM3Config", dict(no_rope_layers=[1, 0], rope_parameters=ROPE)),
    "qwen3moe": (
        "Qwen3MoeConfig",
        dict(head_dim=16, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=48, norm_topk_prob=True,
             rope_parameters=ROPE),
    ),
    "mixtral": ("MixtralConfig", dict(num_local_experts=4, num_experts_per_tok=2, rope_parameters=ROPE)),
    "olmoe": (
        "OlmoeConfig", dict(num_experts=4, num_experts_per_tok=2, norm_topk_prob=False, rope_parameters=ROPE)
    ),
}  # fmt: skip


def tiny_hf(family: str, seed: int = 0, **overrides):
    """A tiny random transformers model of ``family`` (fp32, eval, eager attention), with weights wide
    enough that every mapping, norm and switch changes the logits."""
    class_name, extra = FAMILIES[family]
    config = getattr(transformers, class_name)(**{**COMMON, **extra, **overrides})
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(-0.5, 0.5) if family.startswith("gemma") else p.uniform_(0.5, 1.5)
            else:
                p.normal_(0, 0.15 if "embed" not in name else 1.0)
    return model


def save_hf(model, directory: Path) -> Path:
    model.save_pretrained(directory)
    return directory


def greedy_hf(model, prompt: torch.Tensor, steps: int) -> list[int]:
    """Greedy continuation with transformers' own cache (plain forwards)."""
    result, out = model(prompt, use_cache=True), []
    for _ in range(steps):
        out.append(int(result.logits[0, -1].argmax()))
        cache = {"cache": result.cache} if "cache" in result else {"past_key_values": result.past_key_values}
        result = model(torch.tensor([[out[-1]]]), use_cache=True, **cache)
    return out


def greedy_ours(model, prompt: torch.Tensor, steps: int) -> list[int]:
    """Greedy continuation with gptkit's KV cache."""
    cache = model.new_cache(1, prompt.shape[1] + steps)
    logits, out = model(prompt, cache=cache).logits, []
    for _ in range(steps):
        out.append(int(logits[0, -1].argmax()))
        logits = model(torch.tensor([[out[-1]]]), cache=cache).logits
    return out


def sqrt_scale(model) -> float:
    return math.sqrt(model.config.hidden_size)


__all__ = ["FAMILIES", "VOCAB", "greedy_hf", "greedy_ours", "np", "save_hf", "tiny_hf"]
