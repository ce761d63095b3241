"""Fixtures for engine tests: a byte-level BPE tokenizer and a tiny random Llama-style model over it."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_thread(single_thread):
    """Every test here runs single-threaded (see tests/conftest.py)."""


@pytest.fixture(scope="session")
def tokenizer(byte_tokenizer):
    """The shared byte-level BPE tokenizer (tests/conftest.py)."""
    return byte_tokenizer


@pytest.fixture(scope="session")
def model(wide_tiny_llama):
    """A random GQA/RoPE/RMSNorm/SwiGLU model over the tokenizer's vocabulary (tests/conftest.py)."""
    return wide_tiny_llama
