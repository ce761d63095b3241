"""One bundled model + tokenizer for every task test, and a copy of the tokenizer without a chat template."""

from __future__ import annotations

import dataclasses

import pytest

from gptkit import GPT4LMHeadModel, GPT4Tokenizer


@pytest.fixture(scope="session")
def smollm2():
    """(model, tokenizer) of the bundled SmolLM2-135M-Instruct, loaded once."""
    tokenizer = GPT4Tokenizer.from_pretrained("smollm2-135m-instruct")
    return GPT4LMHeadModel.from_pretrained("smollm2-135m-instruct"), tokenizer


@pytest.fixture(scope="session")
def base_tokenizer(smollm2):
    """The same tokenizer as a base model's: no chat template (its own settings, the fixture's untouched)."""
    tokenizer = smollm2[1]
    return GPT4Tokenizer(tokenizer.backend, dataclasses.replace(tokenizer.settings, chat_template=None))
