"""Building blocks: normalisation, feed-forward networks and the sinusoidal position table."""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

from gptkit.config import MLP, GPT4Config, Norm


class RMSNorm(nn.Module):
    """Root-mean-square norm: x / rms(x) * (offset + weight), computed in fp32.

    ``offset`` 1.0 is Gemma's (1 + w), whose product is taken in fp32 before the cast back, as Gemma does.
    """

    def __init__(self, dim: int, eps: float, bias: bool = False, offset: float = 0.0) -> None:
        super().__init__()
        self.eps, self.offset = eps, offset
        self.weight = nn.Parameter(torch.full((dim,), 1.0 - offset))
        self.bias = nn.Parameter(torch.zeros(dim)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed = F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps)  # x / sqrt(mean(x^2) + eps), fused
        if self.offset:
            out = (normed * (self.offset + self.weight.float())).to(x.dtype)
        else:
            out = normed.to(x.dtype) * self.weight
        return out + self.bias if self.bias is not None else out


def make_norm(config: GPT4Config, dim: int | None = None) -> nn.Module:
    """LayerNorm or RMSNorm over ``dim`` channels (default: the model width), as the config says."""
    dim = dim or config.n_embd
    if config.norm is Norm.RMSNORM:
        return RMSNorm(dim, config.norm_eps, bias=config.has_norm_bias, offset=config.norm_offset)
    return nn.LayerNorm(dim, eps=config.norm_eps, bias=config.has_norm_bias)


class GeluMLP(nn.Module):
    """Two-layer feed-forward network: down(gelu(up(x))) (GPT-2)."""

    def __init__(self, config: GPT4Config) -> None:
        super().__init__()
        self.up = nn.Linear(config.n_embd, config.ffn_dim, bias=config.bias)
        self.down = nn.Linear(config.ffn_dim, config.n_embd, bias=config.bias)
        self.approximate = config.gelu_approximate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.gelu(self.up(x), approximate=self.approximate))


def gate_activation(config: GPT4Config):
    """The gate's activation of a gated MLP: silu (SwiGLU) or gelu (GeGLU, tanh or exact)."""
    if config.mlp is MLP.GEGLU:
        return functools.partial(F.gelu, approximate=config.gelu_approximate)
    return F.silu


class SwiGLUMLP(nn.Module):
    """Gated feed-forward network: down(act(gate(x)) * up(x)), gate and up fused in one matmul; act is
    silu (SwiGLU) or gelu (GeGLU)."""

    def __init__(self, config: GPT4Config) -> None:
        super().__init__()
        self.ffn_dim = config.ffn_dim
        self.gate_up = nn.Linear(config.n_embd, 2 * config.ffn_dim, bias=config.bias)  # [gate; up]
        self.down = nn.Linear(config.ffn_dim, config.n_embd, bias=config.bias)
        self.act = gate_activation(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).split(self.ffn_dim, dim=-1)  # 2 x (B, T, ffn_dim)
        return self.down(self.act(gate) * up)


def sinusoidal_table(n_positions: int, dim: int) -> torch.Tensor:
    """The fixed sin/cos position table of 'Attention Is All You Need': (n_positions, dim)."""
    position = torch.arange(n_positions, dtype=torch.float64)[:, None]
    inv_freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float64) * (-math.log(10000.0) / dim))
    table = torch.zeros(n_positions, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(position * inv_freq)
    table[:, 1::2] = torch.cos(position * inv_freq)[:, : dim // 2]
    return table.float()
