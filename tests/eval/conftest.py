"""Fixtures for evaluation tests: a tiny random model with a byte tokenizer, and the bundled model."""

from __future__ import annotations

import pytest
import torch

from gptkit import GPT4Config, GPT4LMHeadModel
from gptkit.eval.common import LoadedModel, load_model


class ByteTokenizer:
    """UTF-8 bytes as token ids (ids 0-255); enough tokenizer for a tiny random model."""

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        return bytes(int(i) for i in ids).decode("utf-8", errors="replace")


@pytest.fixture(scope="session")
def tiny() -> LoadedModel:
    """A 2-layer random model over bytes, BOS = 0, with a 64-token window."""
    torch.manual_seed(0)
    config = GPT4Config(vocab_size=256, n_layer=2, n_head=2, n_embd=32, context_length=64, bos_token_id=0)
    return LoadedModel(GPT4LMHeadModel(config).eval(), ByteTokenizer(), "tiny-random")


@pytest.fixture(scope="session")
def bundled() -> LoadedModel:
    """The bundled SmolLM2-135M-Instruct with its tokenizer."""
    return load_model("smollm2-135m-instruct")
