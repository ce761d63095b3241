"""Masked multi-head self-attention: softmax(Q K^T / sqrt(d_k)) V, with MHA, GQA or MQA heads."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from gptkit.config import GPT4Config
from gptkit.model.cache import KVCache
from gptkit.model.layers import apply_rotary


@dataclass
class AttentionInputs:
    """What every layer's attention shares in one forward pass (computed once by the decoder)."""

    mask: torch.Tensor | None  # (B, 1, T, S) booleans, or None for plain causal attention
    rotary: tuple[torch.Tensor, torch.Tensor] | None  # cos, sin: (B, 1, T, head_dim) each
    cache: KVCache | None = None
    cache_index: torch.Tensor | None = None  # where the new tokens' keys/values go (KVCache.flat_index)
    used: int = 0  # cache columns in use after this step


class CausalSelfAttention(nn.Module):
    """Fused QKV projection -> (rotary) -> scaled dot-product attention over past keys -> output projection."""

    def __init__(self, config: GPT4Config, layer: int) -> None:
        super().__init__()
        self.layer = layer
        self.n_head, self.n_kv_head, self.head_dim = config.n_head, config.kv_heads, config.dim_per_head
        q_dim, kv_dim = self.n_head * self.head_dim, self.n_kv_head * self.head_dim
        self.split_sizes = (q_dim, kv_dim, kv_dim)
        self.qkv = nn.Linear(config.n_embd, q_dim + 2 * kv_dim, bias=config.has_qkv_bias)  # [q; k; v]
        self.proj = nn.Linear(q_dim, config.n_embd, bias=config.bias)
        self.dropout = config.dropout

    def forward(self, x: torch.Tensor, inputs: AttentionInputs) -> torch.Tensor:
        B, T, _ = x.shape
        q, k, v = self.qkv(x).split(self.split_sizes, dim=-1)
        q = q.view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # (B, n_head, T, head_dim)
        k = k.view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)  # (B, n_kv_head, T, head_dim)
        v = v.view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)  # (B, n_kv_head, T, head_dim)
        if inputs.rotary is not None:
            q, k = apply_rotary(q, *inputs.rotary), apply_rotary(k, *inputs.rotary)
        if inputs.cache is not None:  # keys/values of all cached tokens: (B, n_kv_head, S, head_dim)
            k, v = inputs.cache.write(self.layer, k, v, inputs.cache_index, inputs.used)
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=inputs.mask,
            is_causal=inputs.mask is None,
            dropout_p=self.dropout if self.training else 0.0,
            enable_gqa=self.n_kv_head != self.n_head,
        )  # (B, n_head, T, head_dim)
        return self.proj(y.transpose(1, 2).reshape(B, T, self.n_head * self.head_dim))
