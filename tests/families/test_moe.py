"""The mixture-of-experts MLP: grouped dispatch equals a naive per-token loop, in every routing case."""

from __future__ import annotations

import pytest
import torch

from gptkit.config import GPT4Config
from gptkit.model.moe import MoEMLP

CONFIG = dict(vocab_size=32, n_layer=1, n_head=2, n_embd=32, positions="rope", norm="rmsnorm", mlp="swiglu",
              bias=False, n_experts=4, n_experts_per_token=2, expert_intermediate_size=24)  # fmt: skip


def _moe(seed: int = 0, **changes) -> MoEMLP:
    torch.manual_seed(seed)
    moe = MoEMLP(GPT4Config(**{**CONFIG, **changes}))
    with torch.no_grad():
        for p in moe.parameters():
            p.normal_(0, 0.3)
    return moe.eval()


def naive(moe: MoEMLP, x: torch.Tensor) -> torch.Tensor:
    """Token by token, expert by expert: softmax over all experts, top-k, optional renormalisation."""
    out = torch.zeros_like(x)
    for n, token in enumerate(x):
        probs = (moe.router.weight @ token).softmax(-1)
        weights, experts = probs.topk(moe.top_k)
        if moe.norm_topk:
            weights = weights / weights.sum()
        for w, e in zip(weights, experts, strict=True):
            gate_up = moe.gate_up_exps.weight[e] @ token
            gate, up = gate_up[: moe.ffn_dim], gate_up[moe.ffn_dim :]
            out[n] += w * (moe.down_exps.weight[e] @ (torch.nn.functional.silu(gate) * up))
    return out


@pytest.mark.parametrize("norm_topk", [True, False])
@pytest.mark.parametrize("top_k", [1, 2, 4])
def test_grouped_dispatch_equals_per_token_reference(norm_topk, top_k):
    moe = _moe(n_experts_per_token=top_k, moe_norm_topk=norm_topk)
    x = torch.randn(3, 7, 32, generator=torch.Generator().manual_seed(1))  # (B, T, C)
    with torch.no_grad():
        expected = naive(moe, x.reshape(-1, 32)).reshape(x.shape)
        torch.testing.assert_close(moe(x), expected, atol=1e-5, rtol=1e-5)


def test_one_expert_receiving_every_token():
    """A router that always prefers expert 2 sends every token there; the other experts never run."""
    moe = _moe(n_experts_per_token=1)
    with torch.no_grad():
        moe.router.weight.zero_()
        moe.router.weight[2] = 10.0  # x . w largest for expert 2 whenever sum(x) > 0
    x = torch.rand(5, 32) + 0.1
    calls = []
    original = moe.expert
    moe.expert = lambda e, tokens: calls.append((e, tokens.shape[0])) or original(e, tokens)
    with torch.no_grad():
        out = moe(x)
        torch.testing.assert_close(out, original(2, x), atol=1e-6, rtol=1e-6)  # weight 1 after top-1
    assert calls == [(2, 5)]  # one batched call for the one expert, none per token


def test_decode_shape_empty_input_and_bf16():
    moe = _moe()
    with torch.no_grad():
        assert moe(torch.zeros(0, 1, 32)).shape == (0, 1, 32)
        x = torch.randn(2, 1, 32)
        torch.testing.assert_close(moe.to(torch.bfloat16)(x.bfloat16()).float(), naive(_moe(), x[:, 0])[:, None],
                                   atol=0.1, rtol=0.05)  # fmt: skip
