"""GPT4Config: one frozen dataclass whose switches describe every supported decoder-only model.

GPT-2, Llama, Qwen2 and Mistral are configurations of the same decoder, never classes. A config comes
from a preset (:func:`preset`), from its own dict (:meth:`GPT4Config.from_dict`), or from a model's files:
gptkit.weights converts to and from a Hugging Face ``config.json`` (``weights.hf_config``) and GGUF
metadata (``weights.gguf_config``); this module knows no file format.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Any

from gptkit.errors import ConfigError


class Positions(str, enum.Enum):
    """How position information enters the model."""

    LEARNED = "learned"  # absolute embedding table added to token embeddings (GPT-2)
    SINUSOIDAL = "sinusoidal"  # fixed sin/cos table added to token embeddings (original Transformer)
    ROPE = "rope"  # rotary embedding applied to queries and keys (Llama, Qwen2, Mistral)


class Norm(str, enum.Enum):
    LAYERNORM = "layernorm"
    RMSNORM = "rmsnorm"


class MLP(str, enum.Enum):
    GELU = "gelu"  # down(gelu(up(x)))
    SWIGLU = "swiglu"  # down(silu(gate(x)) * up(x))


ROPE_SCALING_TYPES = ("linear", "llama3")
# Sanity limits, checked before anything is allocated: far above every released model, far below what
# would overflow a size computation (a corrupt or hostile config.json / GGUF header fails here, typed).
SIZE_LIMITS = {
    "vocab_size": 2**22, "n_layer": 2**10, "n_head": 2**10, "n_kv_head": 2**10, "n_embd": 2**16,
    "head_dim": 2**12, "intermediate_size": 2**18, "context_length": 2**24, "sliding_window": 2**24,
}  # fmt: skip
MAX_PARAMETERS = 2**40  # about 1.1 trillion
OPTIONAL_SIZES = frozenset({"n_kv_head", "head_dim", "intermediate_size", "sliding_window"})


def check_sizes(sizes: dict[str, Any]) -> None:
    """ConfigError unless every size given is a positive integer within SIZE_LIMITS (optional ones may be
    None); called by loaders on the raw values too, before anything computes with them."""
    for name, value in sizes.items():
        if name not in SIZE_LIMITS or (value is None and name in OPTIONAL_SIZES):
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"config.{name} must be a positive integer, got {value!r}")
        if value > SIZE_LIMITS[name]:
            raise ConfigError(f"config.{name}={value} exceeds gptkit's sanity limit of {SIZE_LIMITS[name]:,}")


@dataclass(frozen=True)
class GPT4Config:
    """Architecture switches of a decoder-only Transformer."""

    vocab_size: int = 50257
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    n_kv_head: int | None = None  # None -> n_head (MHA); fewer -> GQA; 1 -> MQA
    head_dim: int | None = None  # None -> n_embd // n_head
    intermediate_size: int | None = None  # None -> 4 * n_embd
    context_length: int = 1024
    positions: Positions = Positions.LEARNED
    rope_theta: float = 10000.0
    rope_scaling: dict[str, Any] | None = None  # {"type": "linear"|"llama3", "factor": ..., ...}
    norm: Norm = Norm.LAYERNORM
    norm_eps: float = 1e-5
    mlp: MLP = MLP.GELU
    gelu_approximate: str = "tanh"  # "tanh" (GPT-2's gelu_new) or "none" (exact erf gelu)
    bias: bool = True  # biases on every linear layer (GPT-2)
    qkv_bias: bool | None = None  # None -> bias; True with bias=False gives Qwen2's q/k/v-only bias
    norm_bias: bool | None = None  # None -> True for LayerNorm, False for RMSNorm
    tie_word_embeddings: bool = True
    sliding_window: int | None = None  # Mistral: each query sees at most this many previous keys
    dropout: float = 0.0
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    pad_token_id: int | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)  # informational (source, quant)

    def __post_init__(self) -> None:
        for name, kind in (("positions", Positions), ("norm", Norm), ("mlp", MLP)):
            value = getattr(self, name)
            try:
                object.__setattr__(self, name, kind(value))
            except ValueError:
                choices = ", ".join(k.value for k in kind)
                raise ConfigError(f"config.{name}={value!r} is not one of: {choices}") from None
        self._validate()

    def _validate(self) -> None:
        check_sizes({name: getattr(self, name) for name in SIZE_LIMITS})
        if self.head_dim is None and self.n_embd % self.n_head:
            raise ConfigError(f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}")
        if self.n_head % self.kv_heads:
            raise ConfigError(f"n_head={self.n_head} is not divisible by n_kv_head={self.kv_heads}")
        if self.positions is Positions.ROPE and self.dim_per_head % 2:
            raise ConfigError(f"RoPE needs an even head_dim, got {self.dim_per_head}")
        if self.rope_scaling is not None:
            kind = self.rope_scaling.get("rope_type", self.rope_scaling.get("type"))
            if kind not in ROPE_SCALING_TYPES + ("default",):
                raise ConfigError(
                    f"rope_scaling type {kind!r} is not supported ({', '.join(ROPE_SCALING_TYPES)})"
                )
        if self.gelu_approximate not in ("tanh", "none"):
            raise ConfigError(f"gelu_approximate must be 'tanh' or 'none', got {self.gelu_approximate!r}")
        if self.num_parameters() > MAX_PARAMETERS:
            raise ConfigError(
                f"the config describes {self.num_parameters():,} parameters, more than gptkit's sanity limit "
                f"of {MAX_PARAMETERS:,}"
            )

    # ---- derived sizes -------------------------------------------------------------------------
    @property
    def kv_heads(self) -> int:
        return self.n_kv_head or self.n_head

    @property
    def dim_per_head(self) -> int:
        return self.head_dim or self.n_embd // self.n_head

    @property
    def ffn_dim(self) -> int:
        return self.intermediate_size or 4 * self.n_embd

    @property
    def has_qkv_bias(self) -> bool:
        return self.bias if self.qkv_bias is None else self.qkv_bias

    @property
    def has_norm_bias(self) -> bool:
        return (self.norm is Norm.LAYERNORM) if self.norm_bias is None else self.norm_bias

    @property
    def eos_token_ids(self) -> list[int]:
        if self.eos_token_id is None:
            return []
        return (
            list(self.eos_token_id) if isinstance(self.eos_token_id, (list, tuple)) else [self.eos_token_id]
        )

    def replace(self, **changes: Any) -> GPT4Config:
        return dataclasses.replace(self, **changes)

    # ---- serialisation ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for name in ("positions", "norm", "mlp"):
            out[name] = getattr(self, name).value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GPT4Config:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown config keys: {', '.join(unknown)}")
        return cls(**data)

    # ---- counting ------------------------------------------------------------------------------
    def num_parameters(self) -> int:
        """Parameter count (tied embeddings counted once)."""
        d, hd = self.n_embd, self.dim_per_head
        attn = d * hd * (self.n_head + 2 * self.kv_heads) + self.n_head * hd * d
        attn += (self.n_head + 2 * self.kv_heads) * hd if self.has_qkv_bias else 0
        attn += d if self.bias else 0
        mlp_in = 2 if self.mlp is MLP.SWIGLU else 1
        mlp = (mlp_in + 1) * d * self.ffn_dim + ((mlp_in * self.ffn_dim + d) if self.bias else 0)
        norms = (2 if self.has_norm_bias else 1) * d
        per_layer = attn + mlp + 2 * norms
        embed = self.vocab_size * d * (1 if self.tie_word_embeddings else 2)
        pos = self.context_length * d if self.positions is Positions.LEARNED else 0
        return self.n_layer * per_layer + embed + pos + norms


PRESETS: dict[str, dict[str, Any]] = {
    "gpt2": dict(vocab_size=50257, n_layer=12, n_head=12, n_embd=768, context_length=1024),
    "gpt2-medium": dict(vocab_size=50257, n_layer=24, n_head=16, n_embd=1024, context_length=1024),
    "gpt2-large": dict(vocab_size=50257, n_layer=36, n_head=20, n_embd=1280, context_length=1024),
    "gpt2-xl": dict(vocab_size=50257, n_layer=48, n_head=25, n_embd=1600, context_length=1024),
    "smollm2-135m": dict(
        vocab_size=49152, n_layer=30, n_head=9, n_kv_head=3, n_embd=576, intermediate_size=1536,
        context_length=8192, positions="rope", rope_theta=100000.0, norm="rmsnorm", mlp="swiglu",
        bias=False, tie_word_embeddings=True, bos_token_id=1, eos_token_id=2,
    ),
    "llama-tiny": dict(
        vocab_size=32000, n_layer=4, n_head=8, n_kv_head=4, n_embd=256, intermediate_size=688,
        context_length=2048, positions="rope", norm="rmsnorm", mlp="swiglu", bias=False,
        tie_word_embeddings=False,
    ),
    "gpt-nano": dict(vocab_size=65, n_layer=4, n_head=4, n_embd=128, context_length=64, bias=False),
}  # fmt: skip


def preset(name: str, **overrides: Any) -> GPT4Config:
    """A named architecture preset, e.g. ``preset("gpt2")``; keyword overrides replace fields."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; available: {', '.join(PRESETS)}")
    return GPT4Config(**{**PRESETS[name], **overrides})
