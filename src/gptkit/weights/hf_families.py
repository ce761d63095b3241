"""The switches of the newer Hugging Face families, derived from their ``config.json`` keys.

What a family *is* and config.json does not say (Gemma's (1 + w) norms and sqrt(d) embedding scale,
which norms a block has, the kind of QK-norm) is one row of FAMILY_TRAITS per model_type; everything else
comes from the keys present: soft-caps, query scale, per-layer sliding/global, NoPE layers, Gemma 3's
local RoPE base, experts.
"""

from __future__ import annotations

import math
from typing import Any

from gptkit.config import MLP
from gptkit.errors import ConfigError

FAMILY_TRAITS: dict[str, dict[str, Any]] = {
    "qwen3": dict(qk_norm="head"),
    "qwen3_moe": dict(qk_norm="head"),
    "gemma2": dict(norm_offset=1.0, post_norms=True, embed_scale="sqrt"),
    "gemma3_text": dict(norm_offset=1.0, post_norms=True, embed_scale="sqrt", qk_norm="head"),
    "olmo2": dict(qk_norm="full", pre_norms=False, post_norms=True),
    "olmoe": dict(qk_norm="full"),
    "phi3": {},
    "smollm3": {},
    "mixtral": {},
}
GATE_ACTIVATIONS = {  # config.json activation -> (mlp, gelu_approximate)
    "silu": (MLP.SWIGLU, "tanh"),
    "swish": (MLP.SWIGLU, "tanh"),
    "gelu_pytorch_tanh": (MLP.GEGLU, "tanh"),
    "gelu_new": (MLP.GEGLU, "tanh"),
    "gelu": (MLP.GEGLU, "none"),
}
LAYER_TYPE_NAMES = {"sliding_attention": "sliding", "full_attention": "full"}


def gate_activation_fields(hf: dict[str, Any]) -> dict[str, Any]:
    """mlp and gelu_approximate from hidden_act (or Gemma's hidden_activation)."""
    act = hf.get("hidden_activation") or hf.get("hidden_act") or "silu"
    if act not in GATE_ACTIVATIONS:
        raise ConfigError(
            f"hidden_act {act!r} is not supported for a gated MLP ({', '.join(GATE_ACTIVATIONS)})"
        )
    mlp, approximate = GATE_ACTIVATIONS[act]
    return {"mlp": mlp, "gelu_approximate": approximate}


def family_fields(hf: dict[str, Any], model_type: str, n_layer: int, n_embd: int) -> dict[str, Any]:
    """The family switches of one config.json (empty for the plain llama/qwen2/mistral)."""
    fields = dict(FAMILY_TRAITS.get(model_type, {}))
    if fields.get("embed_scale") == "sqrt":
        fields["embed_scale"] = math.sqrt(n_embd)
    if hf.get("query_pre_attn_scalar") is not None:
        fields["attn_scale"] = float(hf["query_pre_attn_scalar"]) ** -0.5
    for ours, key in (
        ("attn_softcap", "attn_logit_softcapping"),
        ("final_softcap", "final_logit_softcapping"),
    ):
        if hf.get(key) is not None:
            fields[ours] = float(hf[key])
    if hf.get("no_rope_layers") is not None:  # SmolLM3: 1 = RoPE, 0 = NoPE
        fields["no_rope_layers"] = tuple(i for i, use in enumerate(hf["no_rope_layers"]) if not use)
    fields.update(expert_fields(hf, n_layer))
    return fields


def layer_window_fields(hf: dict[str, Any], n_layer: int) -> dict[str, Any]:
    """sliding_window and layer_types from layer_types, Qwen's use_sliding_window or a plain sliding_window."""
    window = hf.get("sliding_window")
    if hf.get("layer_types") is not None:
        unknown = sorted(set(hf["layer_types"]) - set(LAYER_TYPE_NAMES))
        if unknown or len(hf["layer_types"]) != n_layer:
            raise ConfigError(
                f"layer_types must name sliding_attention/full_attention per layer, got {unknown}"
            )
        kinds = [LAYER_TYPE_NAMES[kind] for kind in hf["layer_types"]]
    elif "use_sliding_window" in hf:
        first_sliding = hf.get("max_window_layers") or 0
        kinds = [
            "sliding" if hf["use_sliding_window"] and i >= first_sliding else "full" for i in range(n_layer)
        ]
    else:
        kinds = ["sliding" if window is not None else "full"] * n_layer
    if "sliding" not in kinds or window is None:
        return {"sliding_window": None, "layer_types": None}
    if "full" not in kinds:
        return {"sliding_window": int(window), "layer_types": None}
    return {"sliding_window": int(window), "layer_types": tuple(kinds)}


def expert_fields(hf: dict[str, Any], n_layer: int) -> dict[str, Any]:
    """n_experts, top-k, expert width, renormalisation and dense layers of a mixture-of-experts config."""
    n_experts = hf.get("num_local_experts") or hf.get("num_experts")
    if not n_experts:
        return {}
    dense = set(hf.get("mlp_only_layers") or [])
    step = hf.get("decoder_sparse_step") or 1
    dense |= {i for i in range(n_layer) if (i + 1) % step}  # Qwen-MoE: every step-th layer has experts
    return dict(
        n_experts=n_experts,
        n_experts_per_token=hf.get("num_experts_per_tok", 2),
        expert_intermediate_size=hf.get("moe_intermediate_size"),
        moe_norm_topk=bool(hf.get("norm_topk_prob", True)),
        dense_layers=tuple(sorted(dense)),
    )


def split_rope_parameters(hf: dict[str, Any]) -> tuple[dict[str, Any], float | None]:
    """(the global layers' RoPE parameters, the sliding layers' theta or None) from rope_parameters, which
    Gemma 3 nests by layer type, or from the legacy rope_local_base_freq key."""
    params = hf.get("rope_parameters") or {}
    if "full_attention" in params or "sliding_attention" in params:
        local = (params.get("sliding_attention") or {}).get("rope_theta")
        return dict(params.get("full_attention") or {}), local
    return {**(hf.get("rope_scaling") or {}), **params}, hf.get("rope_local_base_freq")
