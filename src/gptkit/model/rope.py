"""Rotary position embedding: frequencies (default, linear, Llama 3, LongRoPE, YaRN), cos/sin, rotation."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from gptkit.config import GPT4Config


def rope_kind(scaling: dict[str, Any] | None) -> str:
    scaling = scaling or {}
    return scaling.get("rope_type", scaling.get("type", "default"))


def rope_inverse_frequencies(
    config: GPT4Config, theta: float | None = None, scaling: dict[str, Any] | None = None, long: bool = False
) -> torch.Tensor:
    """Per-pair rotation frequencies theta^(-2i/d) with the scaling applied: (rotary_width/2,).

    ``long`` picks LongRoPE's long factors (positions past the original context) instead of the short ones.
    """
    dim = config.rotary_width  # float32 throughout, exactly as transformers computes it
    # on the CPU even inside a meta-device build: a meta arange imports sympy (~70 MB RSS, 0.3 s)
    steps = torch.arange(0, dim, 2, dtype=torch.int64, device="cpu").float() / dim
    base = config.rope_theta if theta is None else theta
    inv_freq = 1.0 / (base**steps)
    kind = rope_kind(scaling)
    if kind == "linear":
        inv_freq = inv_freq / scaling["factor"]
    elif kind == "llama3":
        inv_freq = _llama3_scaled(inv_freq, scaling)
    elif kind == "longrope":
        factors = torch.tensor(
            scaling["long_factor" if long else "short_factor"], dtype=torch.float32, device="cpu"
        )
        inv_freq = 1.0 / (factors * base**steps)
    elif kind == "yarn":
        inv_freq = _yarn_scaled(inv_freq, scaling, dim, base, config.context_length)
    return inv_freq


def attention_factor(config: GPT4Config, scaling: dict[str, Any] | None) -> float:
    """The factor LongRoPE and YaRN multiply cos and sin by (1.0 for the other kinds)."""
    kind = rope_kind(scaling)
    if kind not in ("longrope", "yarn"):
        return 1.0
    if scaling.get("attention_factor") is not None:
        return float(scaling["attention_factor"])
    original = scaling.get("original_max_position_embeddings", config.context_length)
    factor = scaling.get("factor") or config.context_length / original
    if kind == "longrope":
        return 1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(original))
    mscale, mscale_all_dim = scaling.get("mscale"), scaling.get("mscale_all_dim")
    if mscale and mscale_all_dim:
        return _yarn_mscale(factor, mscale) / _yarn_mscale(factor, mscale_all_dim)
    return _yarn_mscale(factor)


def _yarn_mscale(factor: float, mscale: float = 1.0) -> float:
    return 1.0 if factor <= 1 else 0.1 * mscale * math.log(factor) + 1.0


def _llama3_scaled(inv_freq: torch.Tensor, s: dict) -> torch.Tensor:
    """Llama 3.1 frequency scaling: slow long wavelengths, keep short ones, blend in between."""
    factor, low, high = s["factor"], s.get("low_freq_factor", 1.0), s.get("high_freq_factor", 4.0)
    old_len = s.get("original_max_position_embeddings", 8192)
    wavelen = 2 * math.pi / inv_freq
    smooth = (old_len / wavelen - low) / (high - low)
    blended = (1 - smooth) * inv_freq / factor + smooth * inv_freq
    scaled = torch.where(wavelen > old_len / low, inv_freq / factor, inv_freq)
    is_medium = (wavelen <= old_len / low) & (wavelen >= old_len / high)
    return torch.where(is_medium, blended, scaled)


def _yarn_scaled(inv_freq: torch.Tensor, s: dict, dim: int, base: float, context: int) -> torch.Tensor:
    """YaRN: interpolate low frequencies by ``factor``, keep high ones, ramp linearly in between."""
    original = s.get("original_max_position_embeddings", context)
    factor = s.get("factor") or context / original
    beta_fast, beta_slow = s.get("beta_fast") or 32, s.get("beta_slow") or 1

    def correction_dim(rotations: float) -> float:
        return (dim * math.log(original / (rotations * 2 * math.pi))) / (2 * math.log(base))

    low, high = correction_dim(beta_fast), correction_dim(beta_slow)
    if s.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    high = high + 0.001 if low == high else high  # no division by zero
    ramp = ((torch.arange(dim // 2, dtype=torch.float32, device="cpu") - low) / (high - low)).clamp(0, 1)
    extrapolation = 1 - ramp
    return inv_freq / factor * (1 - extrapolation) + inv_freq * extrapolation


class RotaryEmbedding(nn.Module):
    """Rotary position embedding: rotates (q, k) channel pairs by position * frequency (half-split layout).

    ``theta`` and ``scaling`` override the config's (Gemma 3's sliding layers: another base, no scaling).
    LongRoPE switches to its long factors when a forward reaches past the original context, as
    transformers does.
    """

    def __init__(self, config: GPT4Config, theta: float | None = None, scaling: dict | None = None) -> None:
        super().__init__()
        scaling = config.rope_scaling if theta is None and scaling is None else scaling
        self.register_buffer("inv_freq", rope_inverse_frequencies(config, theta, scaling), persistent=False)
        self.long_after = None  # positions >= this use inv_freq_long (LongRoPE)
        if rope_kind(scaling) == "longrope":
            long = rope_inverse_frequencies(config, theta, scaling, long=True)
            self.register_buffer("inv_freq_long", long, persistent=False)
            self.long_after = scaling.get("original_max_position_embeddings", config.context_length)
        self.factor = attention_factor(config, scaling)

    def cos_sin(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin for integer positions (B, T): each (B, T, 1, rotary_width), broadcast over heads."""
        inv_freq = self.inv_freq
        if self.long_after is not None and positions.numel() and int(positions.max()) + 1 > self.long_after:
            inv_freq = self.inv_freq_long
        angles = positions[..., None].float() * inv_freq  # (B, T, rotary_width/2)
        angles = torch.cat((angles, angles), dim=-1)  # (B, T, rotary_width)
        cos, sin = angles.cos(), angles.sin()
        if self.factor != 1.0:
            cos, sin = cos * self.factor, sin * self.factor
        return cos[:, :, None], sin[:, :, None]


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x * cos + rotate_half(x) * sin for x (B, T, H, D); computed in fp32, returned in x's dtype.

    When cos/sin are narrower than D (partial rotary), only the first channels rotate; the rest pass.
    """
    width = cos.shape[-1]
    if width < x.shape[-1]:
        rotated = apply_rotary(x[..., :width], cos, sin)
        return torch.cat((rotated, x[..., width:]), dim=-1)
    x32 = x.float()
    first, second = x32.chunk(2, dim=-1)
    rotated = torch.cat((-second, first), dim=-1)
    return (x32 * cos + rotated * sin).to(x.dtype)
