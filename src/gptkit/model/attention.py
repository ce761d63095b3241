"""Masked multi-head self-attention: softmax(Q K^T / sqrt(d_k)) V, with MHA, GQA or MQA heads."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from gptkit import kernels
from gptkit.config import GPT4Config
from gptkit.model.cache import KVCache
from gptkit.model.layers import apply_rotary


@dataclass
class AttentionInputs:
    """What every layer's attention shares in one forward pass (computed once by the decoder)."""

    mask: torch.Tensor | None  # (B, 1, T, S) booleans (S: the cache columns in use), or None: plain causal
    rotary: tuple[torch.Tensor, torch.Tensor] | None  # cos, sin: (B, T, 1, head_dim) each
    cache: KVCache | None = None  # with a cache there is always a mask
    cache_index: torch.Tensor | None = None  # where the new tokens' keys/values go (KVCache.flat_index)
    columns: torch.Tensor | None = None  # (B, T): the cache columns of the new tokens


class CausalSelfAttention(nn.Module):
    """Fused QKV projection -> (rotary) -> scaled dot-product attention over past keys -> output projection."""

    def __init__(self, config: GPT4Config, layer: int) -> None:
        super().__init__()
        self.layer = layer
        self.n_head, self.n_kv_head, self.head_dim = config.n_head, config.kv_heads, config.dim_per_head
        q_dim, kv_dim = self.n_head * self.head_dim, self.n_kv_head * self.head_dim
        self.qkv = nn.Linear(config.n_embd, q_dim + 2 * kv_dim, bias=config.has_qkv_bias)  # [q; k; v]
        self.proj = nn.Linear(q_dim, config.n_embd, bias=config.bias)
        self.dropout = config.dropout

    def forward(self, x: torch.Tensor, inputs: AttentionInputs) -> torch.Tensor:
        B, T, _ = x.shape
        heads = self.qkv(x).view(B, T, -1, self.head_dim)  # (B, T, n_head + 2 * n_kv_head, head_dim)
        qk, v = heads.split((self.n_head + self.n_kv_head, self.n_kv_head), dim=2)
        if inputs.rotary is not None:
            qk = apply_rotary(qk, *inputs.rotary)  # queries and keys rotated in one go
        q, k = qk.split((self.n_head, self.n_kv_head), dim=2)
        q = q.transpose(1, 2)  # (B, n_head, T, head_dim)
        k, v = k.transpose(1, 2), v.transpose(1, 2)  # (B, n_kv_head, T, head_dim)
        if inputs.cache is not None:  # keys/values of all cached tokens: (B, n_kv_head, S, head_dim)
            used = inputs.mask.shape[-1]  # the cache columns in use, mask: (B, 1, T, used)
            k, v = inputs.cache.write(self.layer, k, v, inputs.cache_index, used)
        native = _native_decode_ops(q, inputs)
        if native is not None:  # one query per row against the whole fp32 cache: the C++ kernel
            cache_k, cache_v = inputs.cache.k[self.layer], inputs.cache.v[self.layer]
            visible = inputs.mask[:, 0, 0]  # (B, used)
            y = native.decode_attention(q[:, :, 0], cache_k, cache_v, visible, 1 / math.sqrt(self.head_dim))
            y = y[:, :, None]  # (B, n_head, 1, head_dim)
        elif T == 1 and inputs.mask is not None and torch.compiler.is_compiling():
            y = single_query_attention(q, k, v, inputs.mask)  # fused by inductor
        else:
            y = self._sdpa(q, k, v, inputs.mask)  # (B, n_head, T, head_dim)
        return self.proj(y.transpose(1, 2).reshape(B, T, self.n_head * self.head_dim))

    def _sdpa(self, q, k, v, mask):
        return F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            is_causal=mask is None,
            dropout_p=self.dropout if self.training else 0.0,
            enable_gqa=self.n_kv_head != self.n_head,
        )


def _native_decode_ops(q: torch.Tensor, inputs: AttentionInputs):
    """The native kernels when this attention is one fp32 query per row over a cache, else None."""
    if q.shape[2] != 1 or inputs.cache is None or q.dtype != torch.float32 or q.requires_grad:
        return None
    if inputs.cache.k[0].dtype != torch.float32 or q.device.type != "cpu" or torch.compiler.is_compiling():
        return None
    return kernels.ops()


def single_query_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Attention of one new token per row (decode) written as broadcast products and sums, for inductor
    to fuse into two reduction loops over the cache (SDPA and bmm are separate kernels with copies).

    q (B, n_head, 1, D); k, v (B, n_kv_head, S, D); mask (B, 1, 1, S) booleans -> (B, n_head, 1, D). The
    n_head / n_kv_head query heads sharing a key head read its keys once, without expanding them.
    """
    B, n_head, _, D = q.shape
    n_kv_head = k.shape[1]
    grouped = q.view(B, n_kv_head, n_head // n_kv_head, 1, D).float()  # (B, n_kv_head, group, 1, D)
    scores = (grouped * k[:, :, None].float()).sum(-1) / math.sqrt(D)  # (B, n_kv_head, group, S)
    probs = scores.masked_fill(~mask, float("-inf")).softmax(-1)
    y = (probs[..., None] * v[:, :, None].float()).sum(-2)  # (B, n_kv_head, group, D)
    return y.to(q.dtype).view(B, n_head, 1, D)
