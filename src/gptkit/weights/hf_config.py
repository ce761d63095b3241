"""Hugging Face ``config.json`` <-> GPT4Config, for GPT-2, Llama, Qwen2/3, Mistral, Gemma 2/3, Phi-3,
OLMo 2, SmolLM3, Mixtral, Qwen3-MoE and OLMoE.

Everything is derived from the fields; ``model_type`` only chooses the field-name dialect, the family's
fixed traits (e.g. Qwen2's q/k/v-only bias, Gemma's (1 + w) norms: :mod:`gptkit.weights.hf_families`)
and, in :mod:`gptkit.weights.family_keymaps`, the tensor names. Saving goes to gpt2/llama/qwen2/mistral.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from gptkit.config import MLP, ROPE_SCALING_TYPES, GPT4Config, Norm, Positions, check_sizes
from gptkit.errors import ConfigError
from gptkit.weights.hf_families import (
    FAMILY_TRAITS,
    family_fields,
    gate_activation_fields,
    layer_window_fields,
    split_rope_parameters,
)

GELU_TANH_NAMES = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")  # all the tanh approximation
GELU_EXACT_NAMES = ("gelu",)
GPT2_REQUIRED_SWITCHES = {  # switch -> the only value gptkit computes
    "scale_attn_weights": True,
    "scale_attn_by_inverse_layer_idx": False,
    "reorder_and_upcast_attn": False,
    "add_cross_attention": False,
}


@dataclass(frozen=True)
class Dialect:
    """How one model_type spells GPT4Config's fields in config.json, with its defaults and fixed traits."""

    model_type: str
    architecture: str
    names: dict[str, str]  # our field -> the config.json key
    defaults: dict[str, Any]  # our field -> value when the key is absent
    shape: dict[str, Any]  # positions, norm and mlp, which the architecture hard-codes
    implicit_qkv_bias: bool = False  # q/k/v projections always carry a bias (Qwen2)

    @property
    def learned_positions(self) -> bool:
        return self.shape["positions"] is Positions.LEARNED


GPT2_NAMES = {
    "vocab_size": "vocab_size", "n_embd": "n_embd", "n_layer": "n_layer", "n_head": "n_head",
    "context_length": "n_positions", "norm_eps": "layer_norm_epsilon", "intermediate_size": "n_inner",
}  # fmt: skip
ROPE_NAMES = {
    "vocab_size": "vocab_size", "n_embd": "hidden_size", "n_layer": "num_hidden_layers",
    "n_head": "num_attention_heads", "n_kv_head": "num_key_value_heads", "head_dim": "head_dim",
    "context_length": "max_position_embeddings", "norm_eps": "rms_norm_eps",
    "intermediate_size": "intermediate_size",
}  # fmt: skip
GPT2_DEFAULTS = {"vocab_size": 50257, "context_length": 1024, "norm_eps": 1e-5, "tie_word_embeddings": True}
ROPE_DEFAULTS = {"context_length": 2048, "norm_eps": 1e-6, "tie_word_embeddings": False}
GPT2_SHAPE = {"positions": Positions.LEARNED, "norm": Norm.LAYERNORM, "mlp": MLP.GELU}
ROPE_SHAPE = {"positions": Positions.ROPE, "norm": Norm.RMSNORM, "mlp": MLP.SWIGLU}

DIALECTS: dict[str, Dialect] = {
    "gpt2": Dialect("gpt2", "GPT2LMHeadModel", GPT2_NAMES, GPT2_DEFAULTS, GPT2_SHAPE),
    "llama": Dialect("llama", "LlamaForCausalLM", ROPE_NAMES, ROPE_DEFAULTS, ROPE_SHAPE),
    "qwen2": Dialect(
        "qwen2", "Qwen2ForCausalLM", ROPE_NAMES, ROPE_DEFAULTS, ROPE_SHAPE, implicit_qkv_bias=True
    ),
    "mistral": Dialect("mistral", "MistralForCausalLM", ROPE_NAMES, ROPE_DEFAULTS, ROPE_SHAPE),
}
FAMILY_ARCHITECTURES = {
    "qwen3": "Qwen3ForCausalLM", "qwen3_moe": "Qwen3MoeForCausalLM", "gemma2": "Gemma2ForCausalLM",
    "gemma3_text": "Gemma3ForCausalLM", "olmo2": "Olmo2ForCausalLM", "olmoe": "OlmoeForCausalLM",
    "phi3": "Phi3ForCausalLM", "smollm3": "SmolLM3ForCausalLM", "mixtral": "MixtralForCausalLM",
}  # fmt: skip
GEMMA_DEFAULTS = {**ROPE_DEFAULTS, "tie_word_embeddings": True}  # Gemma ties its embeddings by default
for _model_type, _architecture in FAMILY_ARCHITECTURES.items():
    _defaults = GEMMA_DEFAULTS if _model_type.startswith("gemma") else ROPE_DEFAULTS
    DIALECTS[_model_type] = Dialect(_model_type, _architecture, ROPE_NAMES, _defaults, ROPE_SHAPE)
assert set(FAMILY_TRAITS) == set(FAMILY_ARCHITECTURES)


# ---- config.json -> GPT4Config --------------------------------------------------------------------------
def config_from_hf(hf: dict[str, Any]) -> GPT4Config:
    """The GPT4Config that a Hugging Face ``config.json`` (as a dict) describes; ConfigError if unsupported."""
    dialect = dialect_for(hf)
    fields = _named_fields(hf, dialect)
    check_sizes(fields)  # before any arithmetic on them
    fields.update(dialect.shape)
    if dialect.learned_positions:
        fields.update(_gpt2_switches(hf))
    else:
        fields.update(_rope_fields(hf, fields))
        fields.update(_rope_family_biases(hf, dialect))
        fields.update(layer_window_fields(hf, fields["n_layer"]))
        fields.update(gate_activation_fields(hf))
        fields.update(family_fields(hf, dialect.model_type, fields["n_layer"], fields["n_embd"]))
    fields.update(
        tie_word_embeddings=bool(hf.get("tie_word_embeddings", dialect.defaults["tie_word_embeddings"])),
        bos_token_id=hf.get("bos_token_id"),
        eos_token_id=hf.get("eos_token_id"),
        pad_token_id=hf.get("pad_token_id"),
        extra={"hf_model_type": dialect.model_type, "hf_dtype": hf.get("dtype", hf.get("torch_dtype"))},
    )
    return GPT4Config(**_canonical_sizes(fields))


def dialect_for(hf: dict[str, Any]) -> Dialect:
    """The dialect named by ``model_type``; ConfigError for families gptkit cannot run."""
    model_type = hf.get("model_type")
    if model_type not in DIALECTS:
        raise ConfigError(
            f"config.json model_type {model_type!r} is not supported; supported: {', '.join(DIALECTS)}"
        )
    return DIALECTS[model_type]


def _named_fields(hf: dict[str, Any], dialect: Dialect) -> dict[str, Any]:
    """Our size fields read through the dialect's key names (GPT-2's n_ctx stands in for n_positions)."""
    fields = {}
    for ours, key in dialect.names.items():
        value = hf.get(key)
        if value is None and key == "n_positions":
            value = hf.get("n_ctx")
        if value is None:
            value = dialect.defaults.get(ours)
        if value is None and ours in ("vocab_size", "n_embd", "n_layer", "n_head"):
            raise ConfigError(f"config.json lacks {key!r}, which a {dialect.model_type} model needs")
        fields[ours] = value
    return fields


def _gpt2_switches(hf: dict[str, Any]) -> dict[str, Any]:
    """GPT-2's activation and the attention switches gptkit refuses to ignore."""
    for switch, computed in GPT2_REQUIRED_SWITCHES.items():
        if switch in hf and bool(hf[switch]) != computed:
            raise ConfigError(
                f"GPT-2 config sets {switch}={hf[switch]!r}; gptkit only computes {switch}={computed}"
            )
    activation = hf.get("activation_function", "gelu_new")
    if activation in GELU_TANH_NAMES:
        return {"gelu_approximate": "tanh", "bias": True}
    if activation in GELU_EXACT_NAMES:
        return {"gelu_approximate": "none", "bias": True}
    supported = ", ".join(GELU_TANH_NAMES + GELU_EXACT_NAMES)
    raise ConfigError(f"GPT-2 activation_function {activation!r} is not supported ({supported})")


def _rope_fields(hf: dict[str, Any], sizes: dict[str, Any]) -> dict[str, Any]:
    """rope_theta, rope_scaling, partial rotary and a local base from transformers-5 ``rope_parameters``
    (nested per layer type for Gemma 3) or the older top-level keys."""
    params, local_theta = split_rope_parameters(hf)
    theta = params.pop("rope_theta", hf.get("rope_theta", 10000.0))
    kind = params.pop("rope_type", params.pop("type", "default"))
    partial = params.pop("partial_rotary_factor", hf.get("partial_rotary_factor", 1.0))
    head_dim = sizes.get("head_dim") or sizes["n_embd"] // sizes["n_head"]
    fields: dict[str, Any] = {
        "rope_theta": float(theta),
        "rope_scaling": None,
        "rotary_dim": int(head_dim * partial) if partial != 1.0 else None,
        "rope_local_theta": float(local_theta) if local_theta is not None else None,
    }
    if kind == "default":
        return fields
    if kind not in ROPE_SCALING_TYPES:
        raise ConfigError(f"rope scaling type {kind!r} is not supported ({', '.join(ROPE_SCALING_TYPES)})")
    if kind in ("longrope", "yarn") and hf.get("original_max_position_embeddings"):  # Phi-3 keeps it outside
        params["original_max_position_embeddings"] = hf["original_max_position_embeddings"]
    return {**fields, "rope_scaling": {"rope_type": kind, **params}}


def _rope_family_biases(hf: dict[str, Any], dialect: Dialect) -> dict[str, Any]:
    """bias/qkv_bias from attention_bias, mlp_bias and the family's hard-coded q/k/v bias."""
    attention, mlp = bool(hf.get("attention_bias", False)), bool(hf.get("mlp_bias", False))
    if attention != mlp:
        raise ConfigError(
            f"attention_bias={attention} with mlp_bias={mlp} cannot be expressed: gptkit has one bias "
            "switch for the attention output projection and the MLP"
        )
    qkv = attention or dialect.implicit_qkv_bias
    return {"bias": attention, "qkv_bias": None if qkv == attention else qkv}


def _canonical_sizes(fields: dict[str, Any]) -> dict[str, Any]:
    """None for sizes equal to their defaults, so equal architectures give equal configs."""
    n_head, n_embd = fields["n_head"], fields["n_embd"]
    if fields.get("n_kv_head") == n_head:
        fields["n_kv_head"] = None
    if fields.get("head_dim") is not None and fields["head_dim"] * n_head == n_embd:
        fields["head_dim"] = None
    if fields.get("intermediate_size") == 4 * n_embd:
        fields["intermediate_size"] = None
    return fields


# ---- GPT4Config -> config.json --------------------------------------------------------------------------
def config_to_hf(config: GPT4Config, dtype: torch.dtype | str = torch.float32) -> dict[str, Any]:
    """The Hugging Face ``config.json`` (as a dict) for ``config``; ConfigError if no family can express it."""
    dialect = DIALECTS[family_for(config)]
    hf: dict[str, Any] = {"architectures": [dialect.architecture], "model_type": dialect.model_type}
    hf.update(_dialect_sizes(config, dialect))
    hf.update(_gpt2_fields(config) if dialect.learned_positions else _rope_family_fields(config, dialect))
    dtype_name = str(dtype).removeprefix("torch.")
    hf.update(
        tie_word_embeddings=config.tie_word_embeddings,
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
        dtype=dtype_name,
        torch_dtype=dtype_name,
        use_cache=True,
    )
    return hf


def family_for(config: GPT4Config) -> str:
    """The Hugging Face model_type that can express ``config`` (gpt2, llama, qwen2 or mistral)."""
    if not config.is_plain:
        raise ConfigError(
            "saving a model that uses the newer family switches (QK-norm, post-norms, soft-caps, experts, ...) "
            "as a Hugging Face checkpoint is not supported; gptkit saves gpt2, llama, qwen2 and mistral"
        )
    shape = (config.positions, config.norm, config.mlp)
    if shape == (Positions.LEARNED, Norm.LAYERNORM, MLP.GELU):
        return _check_gpt2(config)
    if shape != (Positions.ROPE, Norm.RMSNORM, MLP.SWIGLU):
        raise ConfigError(
            f"positions={config.positions.value}, norm={config.norm.value}, mlp={config.mlp.value} matches "
            "no Hugging Face family: gpt2 needs learned+layernorm+gelu, llama/qwen2/mistral need "
            "rope+rmsnorm+swiglu"
        )
    if config.has_norm_bias:
        raise ConfigError("RMSNorm with a bias cannot be expressed in llama/qwen2/mistral")
    if config.has_qkv_bias and not config.bias:
        return "qwen2"
    if config.has_qkv_bias != config.bias:
        raise ConfigError("a bias on the output projection and MLP but not on q/k/v cannot be expressed")
    if config.sliding_window is not None:
        if config.bias:
            raise ConfigError("sliding_window with linear biases cannot be expressed (mistral has no biases)")
        return "mistral"
    return "llama"


def _check_gpt2(config: GPT4Config) -> str:
    """GPT-2 has biases everywhere, full multi-head attention and no sliding window."""
    problems = [
        (not config.bias or not config.has_qkv_bias, "linear layers without bias"),
        (not config.has_norm_bias, "LayerNorm without bias"),
        (config.kv_heads != config.n_head, "grouped-query attention"),
        (config.dim_per_head * config.n_head != config.n_embd, "head_dim * n_head != n_embd"),
        (config.sliding_window is not None, "a sliding window"),
    ]
    found = [why for bad, why in problems if bad]
    if found:
        raise ConfigError(f"a GPT-2 shaped config cannot be saved as gpt2 with {', '.join(found)}")
    return "gpt2"


def _dialect_sizes(config: GPT4Config, dialect: Dialect) -> dict[str, Any]:
    """Our size fields under the dialect's key names (defaults resolved to numbers)."""
    resolved = {
        "n_kv_head": config.kv_heads,
        "head_dim": config.dim_per_head,
        "intermediate_size": config.intermediate_size if dialect.learned_positions else config.ffn_dim,
    }
    return {key: resolved.get(ours, getattr(config, ours)) for ours, key in dialect.names.items()}


def _gpt2_fields(config: GPT4Config) -> dict[str, Any]:
    """GPT-2's activation, context and dropout keys."""
    activation = "gelu_new" if config.gelu_approximate == "tanh" else "gelu"
    dropouts = {key: config.dropout for key in ("resid_pdrop", "embd_pdrop", "attn_pdrop")}
    return {"activation_function": activation, "n_ctx": config.context_length, **dropouts}


def _rope_family_fields(config: GPT4Config, dialect: Dialect) -> dict[str, Any]:
    """RoPE (new and legacy keys), activation, biases and sliding window of llama/qwen2/mistral."""
    scaling = dict(config.rope_scaling) if config.rope_scaling else None
    if scaling is not None:
        scaling["rope_type"] = scaling.pop("type", scaling.get("rope_type"))
    fields: dict[str, Any] = {
        "hidden_act": "silu",
        "rope_theta": config.rope_theta,
        "rope_scaling": scaling,
        "rope_parameters": {"rope_type": "default", **(scaling or {}), "rope_theta": config.rope_theta},
        "attention_dropout": config.dropout,
    }
    if dialect.model_type == "llama":
        fields.update(attention_bias=config.bias, mlp_bias=config.bias)
    elif dialect.model_type == "qwen2":
        window = config.sliding_window
        fields.update(use_sliding_window=window is not None, sliding_window=window, max_window_layers=0)
    else:
        fields["sliding_window"] = config.sliding_window
    return fields
