"""The two model calls of generation, over a static KV cache: prefill the prompt, then decode one token."""

from __future__ import annotations

import torch

from gptkit.model.cache import KVCache


def prefill(
    model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, max_length: int
) -> tuple[KVCache, torch.Tensor]:
    """Run the prompt (B, T) through a fresh cache of ``max_length`` columns: (cache, next logits (B, V) fp32)."""
    cache = model.new_cache(input_ids.shape[0], max_length)
    out = model(input_ids, attention_mask=attention_mask, cache=cache, logits_to_keep=1)
    return cache, out.logits[:, -1].float()


def decode_step(model: torch.nn.Module, cache: KVCache, tokens: torch.Tensor) -> torch.Tensor:
    """Append one token per row (B,) to the cache: logits for the token after it (B, V) fp32."""
    out = model(tokens[:, None], cache=cache, logits_to_keep=1)
    return out.logits[:, -1].float()
