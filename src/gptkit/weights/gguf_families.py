"""What each newer GGUF architecture is, and the family switches read from its ``{arch}.*`` metadata.

The fixed traits follow llama.cpp (src/llama-model.cpp): Gemma's embedding scale, its sliding-window
patterns (every 2nd layer global for gemma2, every 6th for gemma3), Gemma 3's 10000 local RoPE base,
SmolLM3's NoPE on every 4th layer. llama.cpp's converter stores Gemma's norm weights as (1 + w), so a
Gemma GGUF needs no norm offset. Values the metadata gives (soft-caps, windows, expert counts) win.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from typing import Any

from gptkit.errors import ConfigError

LLAMA_SHAPE = dict(positions="rope", norm="rmsnorm", mlp="swiglu", bias=False, qkv_bias=False)
GEMMA_SHAPE = dict(LLAMA_SHAPE, mlp="geglu", gelu_approximate="tanh", post_norms=True)
FAMILY_ARCHITECTURES: dict[str, dict[str, Any]] = {
    "qwen3": dict(LLAMA_SHAPE, qk_norm="head"),
    "qwen3moe": dict(LLAMA_SHAPE, qk_norm="head"),
    "gemma2": GEMMA_SHAPE,
    "gemma3": dict(GEMMA_SHAPE, qk_norm="head"),
    "phi3": LLAMA_SHAPE,
    "olmo2": dict(LLAMA_SHAPE, qk_norm="full", pre_norms=False, post_norms=True),
    "smollm3": LLAMA_SHAPE,
}
# llama.cpp's fixed per-architecture values, used where the metadata is silent
SLIDING_PATTERN = {"gemma2": 2, "gemma3": 6}  # layer i is global when (i + 1) % pattern == 0
DEFAULT_WINDOW = {"gemma2": 4096, "gemma3": 4096}
DEFAULT_SOFTCAPS = {"gemma2": (50.0, 30.0)}  # attention, final
LOCAL_ROPE_THETA = {"gemma3": 10000.0}
NO_ROPE_EVERY = {"smollm3": 4}  # layer i has no RoPE when (i + 1) % step == 0
EMBED_SCALED = frozenset({"gemma2", "gemma3"})
NUMBER = (int, float)

Reader = Callable[..., Any]  # gguf_config's key(name, default, kind)


def family_fields(arch: str, key: Reader, n_layer: int, n_embd: int) -> dict[str, Any]:
    """The family switches of ``arch`` from its metadata and llama.cpp's fixed values."""
    fields: dict[str, Any] = {}
    if arch in EMBED_SCALED:
        fields["embed_scale"] = math.sqrt(n_embd)
    caps = DEFAULT_SOFTCAPS.get(arch, (None, None))
    attn_cap = key("attn_logit_softcapping", caps[0], NUMBER)
    final_cap = key("final_logit_softcapping", caps[1], NUMBER)
    fields.update(
        attn_softcap=float(attn_cap) if attn_cap else None,
        final_softcap=float(final_cap) if final_cap else None,
    )
    scale = key("attention.scale", None, NUMBER)
    if scale:
        fields["attn_scale"] = float(scale)
    fields.update(_layer_windows(arch, key, n_layer))
    if arch in LOCAL_ROPE_THETA:
        fields["rope_local_theta"] = float(key("rope.freq_base_swa", LOCAL_ROPE_THETA[arch], NUMBER))
    if arch in NO_ROPE_EVERY:
        step = NO_ROPE_EVERY[arch]
        fields["no_rope_layers"] = tuple(i for i in range(n_layer) if (i + 1) % step == 0)
    return fields


def _layer_windows(arch: str, key: Reader, n_layer: int) -> dict[str, Any]:
    """sliding_window and layer_types: every layer within the window, or Gemma's alternating pattern."""
    window = key("attention.sliding_window", DEFAULT_WINDOW.get(arch))
    pattern = key("attention.sliding_window_pattern", SLIDING_PATTERN.get(arch))
    if window is None or pattern is None:
        return {"sliding_window": window}
    if pattern < 1:
        raise ConfigError(f"{arch}.attention.sliding_window_pattern must be positive, got {pattern}")
    kinds = tuple("full" if (i + 1) % pattern == 0 else "sliding" for i in range(n_layer))
    return {"sliding_window": window, "layer_types": kinds if "full" in kinds else None}


def expert_fields(key: Reader, tensor_names: Collection[str] | None, n_layer: int) -> dict[str, Any]:
    """n_experts, top-k, expert width and dense layers (those without a router tensor) of a MoE file."""
    n_experts = key("expert_count", None)
    if not n_experts:
        return {}
    fields = dict(
        n_experts=n_experts,
        n_experts_per_token=key("expert_used_count"),
        expert_intermediate_size=key("expert_feed_forward_length", None),
        moe_norm_topk=bool(key("expert_weights_norm", True, bool)),
    )
    if tensor_names is not None:
        dense = tuple(i for i in range(n_layer) if f"blk.{i}.ffn_gate_inp.weight" not in tensor_names)
        if len(dense) == n_layer:
            raise ConfigError(f"expert_count={n_experts} but no block has a router tensor (ffn_gate_inp)")
        fields["dense_layers"] = dense
    return fields


def longrope_scaling(key: Reader, factors: dict[str, list[float]] | None) -> dict[str, Any] | None:
    """Phi-3's LongRoPE parameters: the factors (tensors rope_factors_short/long) and context keys."""
    if not factors:
        return None
    return {
        "rope_type": "longrope",
        "short_factor": factors["short"],
        "long_factor": factors["long"],
        "original_max_position_embeddings": key("rope.scaling.original_context_length"),
        "attention_factor": key("rope.scaling.attn_factor", None, NUMBER),
    }
