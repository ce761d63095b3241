"""Fixtures for engine tests: a byte-level BPE tokenizer and a tiny random Llama-style model over it."""

from __future__ import annotations

import pytest
import torch

from gptkit import GPT4Config, GPT4LMHeadModel

INIT_STD = 0.35  # wide logits: greedy choices are far from float ties between batched and single runs


@pytest.fixture(autouse=True)
def _one_thread(single_thread):
    """Every test here runs single-threaded (see tests/conftest.py)."""


@pytest.fixture(scope="session")
def tokenizer(byte_tokenizer):
    """The shared byte-level BPE tokenizer (tests/conftest.py)."""
    return byte_tokenizer


@pytest.fixture(scope="session")
def model(tokenizer):
    """A random GQA/RoPE/RMSNorm/SwiGLU model over the tokenizer's vocabulary, with wide weights."""
    config = GPT4Config(
        vocab_size=tokenizer.get_vocab_size(), n_layer=2, n_head=4, n_kv_head=2, n_embd=64,
        positions="rope", norm="rmsnorm", mlp="swiglu", bias=False, context_length=128,
    )  # fmt: skip
    model = GPT4LMHeadModel(config).eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" not in name:
                p.copy_(torch.randn(p.shape, generator=g) * INIT_STD)
    return model
