"""Tokenizers the data tests share: GPT-4's cl100k and a character vocabulary of tinyshakespeare."""

from __future__ import annotations

import pytest

from gptkit.tokenizer import GPT4Tokenizer
from gptkit.tokenizer.char import CharBackend


@pytest.fixture(scope="session")
def cl100k() -> GPT4Tokenizer:
    return GPT4Tokenizer.from_pretrained("gpt-4")


@pytest.fixture(scope="session")
def shakespeare_chars(shakespeare) -> GPT4Tokenizer:
    """nanoGPT's shakespeare_char vocabulary: the 65 sorted characters of the corpus."""
    return GPT4Tokenizer(CharBackend(sorted(set(shakespeare))), name_or_path="shakespeare-char")
