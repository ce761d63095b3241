"""GGUF metadata -> GPT4Config: one table of per-architecture switches, sizes read from ``{arch}.*`` keys.

Everything is derived from the metadata (and, where GGUF only says it through the tensor table, from the
tensor names: tied embeddings, attention biases), never from a model's name.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from gptkit.config import GPT4Config, check_sizes
from gptkit.errors import ConfigError
from gptkit.weights.gguf_families import FAMILY_ARCHITECTURES, expert_fields, family_fields, longrope_scaling

# Switches that the metadata does not spell out: what each GGUF architecture *is*.
ARCHITECTURES: dict[str, dict[str, Any]] = {
    "llama": dict(positions="rope", norm="rmsnorm", mlp="swiglu", bias=False, qkv_bias=False),
    "mistral": dict(positions="rope", norm="rmsnorm", mlp="swiglu", bias=False, qkv_bias=False),
    "qwen2": dict(positions="rope", norm="rmsnorm", mlp="swiglu", bias=False, qkv_bias=True),
    "gpt2": dict(positions="learned", norm="layernorm", mlp="gelu", gelu_approximate="tanh", bias=True),
    **FAMILY_ARCHITECTURES,
}
# llama.cpp's converter permutes Q/K rows of these architectures into its interleaved RoPE layout.
PERMUTED_QK_ARCHITECTURES = frozenset({"llama", "mistral", "smollm3"})
ROPE_SCALING = {"none": None, "linear": "linear", "yarn": "yarn"}
NUMBER = (int, float)
TOKEN_IDS = {
    "bos_token_id": "bos_token_id",
    "eos_token_id": "eos_token_id",
    "pad_token_id": "padding_token_id",
}


def gguf_architecture(metadata: dict[str, Any]) -> str:
    """The ``general.architecture`` value, checked to be one gptkit supports."""
    arch = metadata.get("general.architecture")
    if arch is None:
        raise ConfigError("GGUF metadata has no 'general.architecture' key")
    if not isinstance(arch, str) or arch not in ARCHITECTURES:
        raise ConfigError(
            f"GGUF architecture {arch!r} is not supported (supported: {', '.join(sorted(ARCHITECTURES))})"
        )
    return arch


def config_from_gguf(
    metadata: dict[str, Any],
    tensor_names: Collection[str] | None = None,
    rope_factors: dict[str, list[float]] | None = None,
) -> GPT4Config:
    """Build a GPT4Config from GGUF key/values; ``tensor_names`` decides tying, biases and dense layers when
    given, ``rope_factors`` ({"short": [...], "long": [...]}, Phi-3's LongRoPE tensors) the RoPE scaling."""
    arch = gguf_architecture(metadata)
    key = _reader(metadata, arch)
    n_embd, n_head = key("embedding_length"), key("attention.head_count")
    check_sizes({"n_embd": n_embd, "n_head": n_head, "head_dim": key("attention.key_length", None)})
    head_dim = key("attention.key_length", None) or _divide(n_embd, n_head)
    fields = dict(
        vocab_size=key("vocab_size", None) or _vocab_from_tokens(metadata, arch),
        n_layer=key("block_count"),
        n_head=n_head,
        n_kv_head=key("attention.head_count_kv", None),
        n_embd=n_embd,
        head_dim=head_dim if head_dim * n_head != n_embd else None,
        intermediate_size=key("feed_forward_length", None),
        context_length=key("context_length"),
        norm_eps=_norm_eps(key),
        **_token_ids(metadata),
        extra=_extra(metadata, arch),
        **ARCHITECTURES[arch],
    )
    fields.update(family_fields(arch, key, fields["n_layer"], n_embd))
    fields.update(expert_fields(key, tensor_names, fields["n_layer"]))
    if fields["positions"] == "rope":
        fields.update(_rope_fields(key, head_dim, arch not in PERMUTED_QK_ARCHITECTURES))
        fields["rope_scaling"] = longrope_scaling(key, rope_factors) or fields["rope_scaling"]
    if key("attention.value_length", head_dim) != head_dim:
        raise ConfigError(f"{arch}.attention.value_length differs from key_length: unsupported")
    if tensor_names is not None:
        fields.update(_tensor_name_fields(tensor_names))
    return GPT4Config(**fields)


def _reader(metadata: dict[str, Any], arch: str):
    """``key(name, default, kind)`` reads ``{arch}.{name}`` checked to be ``kind``; no default = required."""
    missing = object()

    def key(name: str, default: Any = missing, kind: type | tuple[type, ...] = int) -> Any:
        full = f"{arch}.{name}"
        if full not in metadata:
            if default is missing:
                raise ConfigError(f"GGUF metadata lacks the required key {full!r}")
            return default
        value = metadata[full]
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise ConfigError(f"GGUF metadata {full!r} has the wrong type: {value!r}")
        return value

    return key


def _divide(n_embd: int, n_head: int) -> int:
    if not isinstance(n_embd, int) or not isinstance(n_head, int) or n_head < 1 or n_embd % n_head:
        raise ConfigError(f"embedding_length={n_embd!r} is not divisible by head_count={n_head!r}")
    return n_embd // n_head


def _vocab_from_tokens(metadata: dict[str, Any], arch: str) -> int:
    """Without ``{arch}.vocab_size``: the length of the tokenizer's token list."""
    tokens = metadata.get("tokenizer.ggml.tokens")
    if not isinstance(tokens, list):
        raise ConfigError(f"GGUF metadata has neither {arch}.vocab_size nor a tokenizer.ggml.tokens list")
    return len(tokens)


def _token_ids(metadata: dict[str, Any]) -> dict[str, int | None]:
    """bos/eos/pad ids from ``tokenizer.ggml.*`` (None when absent)."""
    out = {}
    for field, gguf_name in TOKEN_IDS.items():
        value = metadata.get(f"tokenizer.ggml.{gguf_name}")
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise ConfigError(f"GGUF metadata 'tokenizer.ggml.{gguf_name}' is not an integer: {value!r}")
        out[field] = value
    return out


def _norm_eps(key) -> float:
    """RMSNorm or LayerNorm epsilon, whichever the file gives."""
    eps = key("attention.layer_norm_rms_epsilon", None, NUMBER)
    if eps is None:
        eps = key("attention.layer_norm_epsilon", None, NUMBER)
    if eps is None:
        raise ConfigError("GGUF metadata gives no layer_norm_rms_epsilon / layer_norm_epsilon")
    return float(eps)


def _rope_fields(key, head_dim: int, partial_allowed: bool) -> dict[str, Any]:
    """rope_theta, rope_scaling (linear, YaRN) and the rotary width; partial rotary is refused where
    llama.cpp permutes Q/K (the permutation spans the whole head)."""
    rotary_dims = key("rope.dimension_count", head_dim)
    if rotary_dims != head_dim and not (partial_allowed and 0 < rotary_dims < head_dim):
        raise ConfigError(
            f"partial rotary embeddings (rope.dimension_count={rotary_dims}, head_dim={head_dim}) are unsupported"
        )
    kind = key("rope.scaling.type", "none", str)
    if kind not in ROPE_SCALING:
        raise ConfigError(
            f"rope scaling type {kind!r} is not supported (supported: {', '.join(ROPE_SCALING)})"
        )
    scaling = None
    if ROPE_SCALING[kind] is not None:
        scaling = {"type": ROPE_SCALING[kind], "factor": float(key("rope.scaling.factor", kind=NUMBER))}
    if kind == "yarn":
        scaling["original_max_position_embeddings"] = key("rope.scaling.original_context_length")
    return dict(
        rope_theta=float(key("rope.freq_base", 10000.0, NUMBER)),
        rope_scaling=scaling,
        rotary_dim=rotary_dims if rotary_dims != head_dim else None,
    )


def _tensor_name_fields(names: Collection[str]) -> dict[str, Any]:
    """What only the tensor table tells: tied embeddings (no output.weight) and which linears have bias."""
    if "rope_freqs.weight" in names:
        raise ConfigError(
            "per-frequency RoPE factors (tensor 'rope_freqs.weight', Llama 3.1 style) are unsupported"
        )
    has = {
        suffix: f"blk.0.{suffix}" in names for suffix in ("attn_q.bias", "attn_qkv.bias", "attn_output.bias")
    }
    return dict(
        tie_word_embeddings="output.weight" not in names,
        bias=has["attn_output.bias"],
        qkv_bias=has["attn_q.bias"] or has["attn_qkv.bias"],
    )


def _extra(metadata: dict[str, Any], arch: str) -> dict[str, Any]:
    """Informational: where the config came from and how the file is quantized."""
    file_type = metadata.get("general.file_type")
    return {
        "source": "gguf",
        "gguf_architecture": arch,
        "name": metadata.get("general.name"),
        "file_type": file_type,
        "quantization": _file_type_name(file_type),
    }


def _file_type_name(file_type: int | None) -> str | None:
    """``3`` -> ``"Q4_1"`` (llama.cpp's LlamaFileType without the MOSTLY_ prefix)."""
    from gguf import LlamaFileType

    try:
        return LlamaFileType(file_type).name.removeprefix("MOSTLY_").removeprefix("ALL_")
    except ValueError:
        return None
