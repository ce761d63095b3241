"""Building blocks: normalisation, feed-forward networks and position information."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from gptkit.config import MLP, GPT4Config, Norm


class RMSNorm(nn.Module):
    """Root-mean-square norm: x / rms(x) * weight, computed in fp32."""

    def __init__(self, dim: int, eps: float, bias: bool = False) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed = F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps)  # x / sqrt(mean(x^2) + eps), fused
        out = normed.to(x.dtype) * self.weight
        return out + self.bias if self.bias is not None else out


def make_norm(config: GPT4Config) -> nn.Module:
    """LayerNorm or RMSNorm over the model width, as the config says."""
    if config.norm is Norm.RMSNORM:
        return RMSNorm(config.n_embd, config.norm_eps, bias=config.has_norm_bias)
    return nn.LayerNorm(config.n_embd, eps=config.norm_eps, bias=config.has_norm_bias)


class GeluMLP(nn.Module):
    """Two-layer feed-forward network: down(gelu(up(x))) (GPT-2)."""

    def __init__(self, config: GPT4Config) -> None:
        super().__init__()
        self.up = nn.Linear(config.n_embd, config.ffn_dim, bias=config.bias)
        self.down = nn.Linear(config.ffn_dim, config.n_embd, bias=config.bias)
        self.approximate = config.gelu_approximate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.gelu(self.up(x), approximate=self.approximate))


class SwiGLUMLP(nn.Module):
    """Gated feed-forward network: down(silu(gate(x)) * up(x)), gate and up fused in one matmul."""

    def __init__(self, config: GPT4Config) -> None:
        super().__init__()
        self.ffn_dim = config.ffn_dim
        self.gate_up = nn.Linear(config.n_embd, 2 * config.ffn_dim, bias=config.bias)  # [gate; up]
        self.down = nn.Linear(config.ffn_dim, config.n_embd, bias=config.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).split(self.ffn_dim, dim=-1)  # 2 x (B, T, ffn_dim)
        return self.down(F.silu(gate) * up)


def make_mlp(config: GPT4Config) -> nn.Module:
    return SwiGLUMLP(config) if config.mlp is MLP.SWIGLU else GeluMLP(config)


def sinusoidal_table(n_positions: int, dim: int) -> torch.Tensor:
    """The fixed sin/cos position table of 'Attention Is All You Need': (n_positions, dim)."""
    position = torch.arange(n_positions, dtype=torch.float64)[:, None]
    inv_freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float64) * (-math.log(10000.0) / dim))
    table = torch.zeros(n_positions, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(position * inv_freq)
    table[:, 1::2] = torch.cos(position * inv_freq)[:, : dim // 2]
    return table.float()


def rope_inverse_frequencies(config: GPT4Config) -> torch.Tensor:
    """Per-pair rotation frequencies theta^(-2i/d), with linear or Llama-3 scaling applied: (head_dim/2,)."""
    dim = config.dim_per_head  # float32 throughout, exactly as transformers computes it
    # on the CPU even inside a meta-device build: a meta arange imports sympy (~70 MB RSS, 0.3 s)
    steps = torch.arange(0, dim, 2, dtype=torch.int64, device="cpu")
    inv_freq = 1.0 / (config.rope_theta ** (steps.float() / dim))
    scaling = config.rope_scaling or {}
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind == "linear":
        inv_freq = inv_freq / scaling["factor"]
    elif kind == "llama3":
        inv_freq = _llama3_scaled(inv_freq, scaling)
    return inv_freq


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


class RotaryEmbedding(nn.Module):
    """Rotary position embedding: rotates (q, k) channel pairs by position * frequency (half-split layout)."""

    def __init__(self, config: GPT4Config) -> None:
        super().__init__()
        self.register_buffer("inv_freq", rope_inverse_frequencies(config), persistent=False)

    def cos_sin(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin for integer positions (B, T): each (B, T, 1, head_dim), broadcast over heads."""
        angles = positions[..., None].float() * self.inv_freq  # (B, T, head_dim/2)
        angles = torch.cat((angles, angles), dim=-1)  # (B, T, head_dim)
        return angles.cos()[:, :, None], angles.sin()[:, :, None]


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x * cos + rotate_half(x) * sin for x (B, T, H, D); computed in fp32, returned in x's dtype."""
    x32 = x.float()
    first, second = x32.chunk(2, dim=-1)
    rotated = torch.cat((-second, first), dim=-1)
    return (x32 * cos + rotated * sin).to(x.dtype)
