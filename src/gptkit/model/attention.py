"""Masked multi-head self-attention: softmax(Q K^T * scale) V, with MHA, GQA or MQA heads.

Per-layer switches from the config: QK-norm, sliding window or global, RoPE or none (NoPE), partial
rotary, the query scale and a tanh soft-cap on the scores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from gptkit import kernels
from gptkit.config import GPT4Config, QKNorm
from gptkit.model.cache import KVCache
from gptkit.model.layers import make_norm
from gptkit.model.rope import apply_rotary


@dataclass
class AttentionInputs:
    """What every layer's attention shares in one forward pass (computed once by the decoder)."""

    mask: torch.Tensor | None  # (B, 1, T, S) booleans (S: the cache columns in use), or None: plain causal
    rotary: tuple[torch.Tensor, torch.Tensor] | None  # cos, sin: (B, T, 1, rotary width) each
    cache: KVCache | None = None  # with a cache there is always a mask
    cache_index: torch.Tensor | None = None  # where the new tokens' keys/values go (KVCache.flat_index)
    columns: torch.Tensor | None = None  # (B, T): the cache columns of the new tokens
    # models mixing sliding and global layers (Gemma 2/3): the sliding layers' mask and rotary (None: the above)
    sliding_mask: torch.Tensor | None = None
    sliding_rotary: tuple[torch.Tensor, torch.Tensor] | None = None

    def for_layer(self, sliding: bool, rope: bool):
        """(mask, rotary) of a sliding or global layer that uses RoPE or not."""
        mask = self.sliding_mask if sliding and self.sliding_mask is not None else self.mask
        rotary = self.sliding_rotary if sliding and self.sliding_rotary is not None else self.rotary
        return mask, rotary if rope else None


class CausalSelfAttention(nn.Module):
    """Fused QKV projection -> (QK-norm) -> (rotary) -> scaled dot-product attention over past keys ->
    output projection."""

    def __init__(self, config: GPT4Config, layer: int) -> None:
        super().__init__()
        self.layer = layer
        self.n_head, self.n_kv_head, self.head_dim = config.n_head, config.kv_heads, config.dim_per_head
        q_dim, kv_dim = self.n_head * self.head_dim, self.n_kv_head * self.head_dim
        self.qkv = nn.Linear(config.n_embd, q_dim + 2 * kv_dim, bias=config.has_qkv_bias)  # [q; k; v]
        self.proj = nn.Linear(q_dim, config.n_embd, bias=config.bias)
        self.dropout = config.dropout
        self.qk_norm = config.qk_norm
        if config.qk_norm is not QKNorm.NONE:
            full = config.qk_norm is QKNorm.FULL
            self.q_norm = make_norm(config, q_dim if full else self.head_dim)
            self.k_norm = make_norm(config, kv_dim if full else self.head_dim)
        self.sliding = config.layer_window(layer) is not None
        self.rope = config.layer_uses_rope(layer)
        self.scale = config.attn_scale or 1 / math.sqrt(self.head_dim)
        self.softcap = config.attn_softcap

    def forward(self, x: torch.Tensor, inputs: AttentionInputs) -> torch.Tensor:
        B, T, _ = x.shape
        mask, rotary = inputs.for_layer(self.sliding, self.rope)
        heads = self._normed_heads(self.qkv(x))  # (B, T, n_head + 2 * n_kv_head, head_dim)
        qk, v = heads.split((self.n_head + self.n_kv_head, self.n_kv_head), dim=2)
        if rotary is not None:
            qk = apply_rotary(qk, *rotary)  # queries and keys rotated in one go
        q, k = qk.split((self.n_head, self.n_kv_head), dim=2)
        q = q.transpose(1, 2)  # (B, n_head, T, head_dim)
        k, v = k.transpose(1, 2), v.transpose(1, 2)  # (B, n_kv_head, T, head_dim)
        if inputs.cache is not None:  # keys/values of all cached tokens: (B, n_kv_head, S, head_dim)
            used = mask.shape[-1]  # the cache columns in use, mask: (B, 1, T, used)
            k, v = inputs.cache.write(self.layer, k, v, inputs.cache_index, used)
        native = _native_decode_ops(q, inputs) if self.softcap is None else None
        if native is not None:  # one query per row against the whole fp32 cache: the C++ kernel
            cache_k, cache_v = inputs.cache.k[self.layer], inputs.cache.v[self.layer]
            visible = mask[:, 0, 0]  # (B, used)
            y = native.decode_attention(q[:, :, 0], cache_k, cache_v, visible, self.scale)
            y = y[:, :, None]  # (B, n_head, 1, head_dim)
        elif T == 1 and mask is not None and torch.compiler.is_compiling():
            y = single_query_attention(q, k, v, mask, self.scale, self.softcap)  # fused by inductor
        elif self.softcap is not None:
            y = softcapped_attention(q, k, v, mask, self.scale, self.softcap)
        else:
            y = self._sdpa(q, k, v, mask)  # (B, n_head, T, head_dim)
        return self.proj(y.transpose(1, 2).reshape(B, T, self.n_head * self.head_dim))

    def _normed_heads(self, qkv: torch.Tensor) -> torch.Tensor:
        """The projection (B, T, q_dim + 2 kv_dim) as heads (B, T, n_head + 2 n_kv_head, head_dim), with
        queries and keys RMS-normed when the config says so."""
        B, T, _ = qkv.shape
        if self.qk_norm is QKNorm.NONE:
            return qkv.view(B, T, -1, self.head_dim)
        q_dim, kv_dim = self.n_head * self.head_dim, self.n_kv_head * self.head_dim
        q, k, v = qkv.split((q_dim, kv_dim, kv_dim), dim=-1)
        if self.qk_norm is QKNorm.FULL:  # over all heads' channels, before the split into heads
            q, k = self.q_norm(q), self.k_norm(k)
        heads = [t.reshape(B, T, -1, self.head_dim) for t in (q, k, v)]
        if self.qk_norm is QKNorm.HEAD:  # over each head's channels
            heads[0], heads[1] = self.q_norm(heads[0]), self.k_norm(heads[1])
        return torch.cat(heads, dim=2)

    def _sdpa(self, q, k, v, mask):
        return F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            is_causal=mask is None,
            dropout_p=self.dropout if self.training else 0.0,
            scale=self.scale,
            enable_gqa=self.n_kv_head != self.n_head,
        )


def _native_decode_ops(q: torch.Tensor, inputs: AttentionInputs):
    """The native kernels when this attention is one fp32 query per row over a cache, else None."""
    if q.shape[2] != 1 or inputs.cache is None or q.dtype != torch.float32 or q.requires_grad:
        return None
    if inputs.cache.k[0].dtype != torch.float32 or q.device.type != "cpu" or torch.compiler.is_compiling():
        return None
    return kernels.ops()


def softcapped_attention(q, k, v, mask, scale: float, softcap: float) -> torch.Tensor:
    """Attention whose scores pass through cap * tanh(scores / cap) before the mask (Gemma 2).

    q (B, n_head, T, D); k, v (B, n_kv_head, S, D); mask (B, 1, T, S) booleans or None (causal, S == T).
    """
    group = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)  # (B, n_head, S, D)
    scores = torch.matmul(q, k.transpose(2, 3)).float() * scale  # (B, n_head, T, S)
    scores = torch.tanh(scores / softcap) * softcap
    if mask is None:
        T, S = scores.shape[-2:]
        mask = torch.ones(T, S, dtype=torch.bool, device=q.device).tril(S - T)
    probs = scores.masked_fill(~mask, float("-inf")).softmax(-1).to(q.dtype)
    return torch.matmul(probs, v)


def single_query_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor,
    scale: float | None = None,
    softcap: float | None = None,
) -> torch.Tensor:
    """Attention of one new token per row (decode) written as broadcast products and sums, for inductor
    to fuse into two reduction loops over the cache (SDPA and bmm are separate kernels with copies).

    q (B, n_head, 1, D); k, v (B, n_kv_head, S, D); mask (B, 1, 1, S) booleans -> (B, n_head, 1, D). The
    n_head / n_kv_head query heads sharing a key head read its keys once, without expanding them.
    """
    B, n_head, _, D = q.shape
    n_kv_head = k.shape[1]
    grouped = q.view(B, n_kv_head, n_head // n_kv_head, 1, D).float()  # (B, n_kv_head, group, 1, D)
    scores = (grouped * k[:, :, None].float()).sum(-1) * (scale or 1 / math.sqrt(D))  # (B, n_kv, group, S)
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap
    probs = scores.masked_fill(~mask, float("-inf")).softmax(-1)
    y = (probs[..., None] * v[:, :, None].float()).sum(-2)  # (B, n_kv_head, group, D)
    return y.to(q.dtype).view(B, n_head, 1, D)
