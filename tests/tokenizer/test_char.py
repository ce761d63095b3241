"""Character-level tokenizer: nanoGPT's shakespeare_char vocabulary, loaded like any tokenizer directory."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tokenizers import Tokenizer

from gptkit.data.tokenizer_training import train_char
from gptkit.errors import TokenizerError
from gptkit.tokenizer import GPT4Tokenizer
from gptkit.tokenizer.char import CharBackend

ALPHABET = "\n !&',-.:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz3$"


@pytest.fixture(scope="module")
def char_dir(tmp_path_factory, shakespeare):
    directory = tmp_path_factory.mktemp("char")
    source = directory / "input.txt"
    source.write_text(shakespeare)
    train_char([source], directory / "tok")
    return directory / "tok"


@pytest.fixture(scope="module")
def char_tok(char_dir) -> GPT4Tokenizer:
    return GPT4Tokenizer.from_pretrained(char_dir)


def test_vocabulary_is_the_sorted_characters(char_tok, shakespeare):
    chars = sorted(set(shakespeare))
    assert len(char_tok) == char_tok.vocab_size == 65
    assert isinstance(char_tok.backend, CharBackend)
    assert char_tok.encode("hi!", add_special_tokens=False) == [chars.index(c) for c in "hi!"]
    assert char_tok.convert_ids_to_tokens([0, 1]) == ["\n", " "]
    assert char_tok.eos_token is None and char_tok.encode("a") == [chars.index("a")]


def test_round_trip_of_the_whole_corpus(char_tok, shakespeare):
    ids = char_tok.encode(shakespeare)
    assert len(ids) == len(shakespeare) and char_tok.decode(ids) == shakespeare


@given(st.text(alphabet=ALPHABET))
def test_decode_is_exact(char_tok, text):
    assert char_tok.decode(char_tok.encode(text)) == text


def test_unknown_character_is_named(char_tok):
    with pytest.raises(TokenizerError, match=r"'é' \(U\+00E9\) at position 3"):
        char_tok.encode("caf\u00e9")


def test_special_tokens_follow_the_characters(tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("ba\nab\n")
    tok = train_char([source], tmp_path / "tok", special_tokens=["<|eos|>", "<|pad|>"])
    assert len(tok) == 5 and tok.eos_token_id == 3 and tok.convert_tokens_to_ids("<|pad|>") == 4
    assert tok.encode("a<|eos|>", allowed_special="all") == [1, 3]
    with pytest.raises(TokenizerError, match="'<'"):
        tok.encode("a<|eos|>")  # special-token text is plain text, and '<' is not in the vocabulary
    assert tok.decode([1, 3, 2], skip_special_tokens=True) == "ab"


def test_tokenizer_json_is_standard_and_save_pretrained_round_trips(char_dir, char_tok, tmp_path):
    hf = Tokenizer.from_file(str(char_dir / "tokenizer.json"))
    text = "First Citizen:\nSpeak, speak.\n"
    assert hf.encode(text).ids == char_tok.encode(text) and hf.decode(hf.encode(text).ids) == text
    char_tok.save_pretrained(tmp_path / "again")
    again = GPT4Tokenizer.from_pretrained(tmp_path / "again")
    assert isinstance(again.backend, CharBackend) and again.encode(text) == char_tok.encode(text)
    assert json.loads((tmp_path / "again" / "tokenizer.json").read_text())["model"]["type"] == "WordLevel"


def test_invalid_vocabularies_are_refused():
    with pytest.raises(TokenizerError):
        CharBackend(["a", "a"])
    with pytest.raises(TokenizerError):
        CharBackend(["ab"])
    with pytest.raises(TokenizerError):
        CharBackend(["a"], ["a"])
