"""Mixture-of-experts feed-forward network: a softmax router picks the top-k experts of each token.

Dispatch groups the (token, expert) pairs by expert and runs one batched matmul per expert that received
tokens; there is no Python loop over tokens. Experts are gated MLPs (SwiGLU or GeGLU) stored as stacked
weights: ``gate_up_exps.weight`` (E, 2F, C) with rows [gate; up] per expert, ``down_exps.weight`` (E, C, F).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gptkit.config import MLP, GPT4Config
from gptkit.model.layers import GeluMLP, SwiGLUMLP, gate_activation


class Weight(nn.Module):
    """A module holding one parameter named ``weight`` (router and stacked expert tables: not nn.Linear,
    so weight-only quantization leaves them in floating point)."""

    def __init__(self, *shape: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(*shape))


class MoEMLP(nn.Module):
    """Top-k routed experts: sum_k w_k * expert_k(x), with w the router's softmax (renormalised over the
    top k when ``moe_norm_topk``)."""

    def __init__(self, config: GPT4Config) -> None:
        super().__init__()
        experts, width, hidden = config.n_experts, config.n_embd, config.expert_ffn_dim
        self.top_k, self.norm_topk, self.ffn_dim = config.n_experts_per_token, config.moe_norm_topk, hidden
        self.router = Weight(experts, width)  # (E, C)
        self.gate_up_exps = Weight(experts, 2 * hidden, width)  # (E, 2F, C)
        self.down_exps = Weight(experts, width, hidden)  # (E, C, F)
        self.act = gate_activation(config)

    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (N, C) -> (weights (N, k) in x's dtype, expert ids (N, k))."""
        probs = F.linear(x, self.router.weight).softmax(dim=-1, dtype=torch.float32)  # (N, E)
        weights, experts = probs.topk(self.top_k, dim=-1)
        if self.norm_topk:
            weights = weights / weights.sum(dim=-1, keepdim=True)
        return weights.to(x.dtype), experts

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(-1, shape[-1])  # (N, C)
        weights, experts = self.route(flat)
        return dispatch(flat, weights, experts, self.expert).view(shape)

    def expert(self, e: int, x: torch.Tensor) -> torch.Tensor:
        """Expert ``e`` on its tokens x (n, C) -> (n, C)."""
        gate, up = F.linear(x, self.gate_up_exps.weight[e]).split(self.ffn_dim, dim=-1)  # 2 x (n, F)
        return F.linear(self.act(gate) * up, self.down_exps.weight[e])


def dispatch(x: torch.Tensor, weights: torch.Tensor, experts: torch.Tensor, expert) -> torch.Tensor:
    """sum_k weights[n, k] * expert(experts[n, k], x[n]) for every token n, one call per expert used.

    x (N, C); weights, experts (N, k). The N*k (token, expert) pairs are sorted by expert, so each expert
    sees its tokens as one contiguous batch; results are scattered back with one index_add_.
    """
    if x.shape[0] == 0:
        return torch.zeros_like(x)
    flat_experts = experts.reshape(-1)  # (N*k,)
    order = flat_experts.argsort(stable=True)  # pairs grouped by expert
    tokens = order // experts.shape[1]  # (N*k,) the token of each sorted pair
    counts = torch.bincount(flat_experts, minlength=int(flat_experts.max()) + 1).tolist()  # one sync
    gathered = x.index_select(0, tokens)  # (N*k, C)
    pair_weights = weights.reshape(-1)[order, None]  # (N*k, 1)
    outputs, start = [], 0
    for e, count in enumerate(counts):
        if count:
            outputs.append(expert(e, gathered[start : start + count]))
        start += count
    mixed = torch.cat(outputs) * pair_weights  # (N*k, C)
    return torch.zeros_like(x).index_add_(0, tokens, mixed.to(x.dtype))


def make_mlp(config: GPT4Config, layer: int = 0) -> nn.Module:
    """The layer's feed-forward network: a mixture of experts, a gated MLP or GPT-2's GELU MLP."""
    if config.layer_is_moe(layer):
        return MoEMLP(config)
    return GeluMLP(config) if config.mlp is MLP.GELU else SwiGLUMLP(config)
