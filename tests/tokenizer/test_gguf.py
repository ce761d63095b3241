"""The GGUF-embedded tokenizer (bundled SmolLM2) against transformers' tokenizer for the same file."""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import pre_tokenizers

from gptkit.tokenizer import GPT4Tokenizer
from gptkit.tokenizer.backend import bytes_to_unicode

# transformers' GGUF converter gives `tokenizer.ggml.pre = "smollm"` plain GPT-2 splitting; llama.cpp (and
# SmolLM2's own tokenizer.json) isolate every digit first. They differ only where a digit follows a run of
# whitespace ("a  1") or for multi-byte numerals ("²³"); gptkit follows llama.cpp and the original model.
DIVERGENT = {"x² + y³ = z½, Ⅻ, ١٢٣, ０１２", "1. first\n  2. second\n    3. third", "a  1 b   22 c\t3"}

CONVERSATIONS = [
    [{"role": "user", "content": "Hi! What is the capital of France?"}],
    [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Name three colors."},
        {"role": "assistant", "content": "Red, green, blue."},
        {"role": "user", "content": "And 2 more? 😀"},
    ],
    [
        {"role": "user", "content": "Code:\n```python\nprint('hi')\n```"},
        {"role": "assistant", "content": "Sure."},
    ],
]


@pytest.fixture(scope="module")
def hf_reference(hf_gguf):
    """transformers' GGUF tokenizer with SmolLM2's original pre-tokenizer (digits isolated, then GPT-2)."""
    reference = copy.deepcopy(hf_gguf)
    reference.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    return reference


@pytest.fixture(scope="module")
def smol_gpt2(gguf_path) -> GPT4Tokenizer:
    return GPT4Tokenizer.from_pretrained(gguf_path, pre_tokenizer="gpt2")


def test_ids_match_transformers_on_corpus(smol, hf_gguf, corpus):
    for text in corpus:
        if text in DIVERGENT:
            continue
        expected = hf_gguf(text, split_special_tokens=True)["input_ids"]
        assert smol.encode(text) == expected, text
        assert smol.encode(text, allowed_special="all") == hf_gguf(text)["input_ids"], text


def test_ids_match_smollm2_reference_pre_tokenizer(smol, hf_reference, corpus):
    for text in corpus:
        assert smol.encode(text, allowed_special="all") == hf_reference(text)["input_ids"], text


def test_gpt2_pre_tokenizer_override_matches_transformers_everywhere(smol_gpt2, hf_gguf, corpus):
    for text in corpus:
        assert smol_gpt2.encode(text, allowed_special="all") == hf_gguf(text)["input_ids"], text


def test_known_divergence_from_transformers_gguf(smol, hf_gguf):
    assert hf_gguf("a  1")["input_ids"] == [81, 216, 216, 33]
    assert smol.encode("a  1") == [81, 256, 33]  # "a", "  ", "1" as llama.cpp and SmolLM2's tokenizer.json


def missing_bytes(tokenizer: GPT4Tokenizer) -> set[int]:
    """Bytes the vocabulary has no token for (SmolLM2 lacks a few, e.g. 0x04 and 0xF1); BPE drops them."""
    return {b for b, char in bytes_to_unicode().items() if tokenizer.backend.token_to_id(char) is None}


def test_vocabulary_gaps_are_dropped_like_transformers(smol, hf_gguf):
    assert {0x04, 0xF1} <= missing_bytes(smol)
    assert smol.encode("a\x04b") == hf_gguf.encode("a\x04b")
    assert smol.decode(smol.encode("a\x04b")) == "ab"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=60))
def test_hypothesis_parity_and_round_trip(smol, smol_gpt2, hf_reference, hf_gguf, text):
    ids = smol.encode(text)
    if not set(text.encode()) & missing_bytes(smol):
        assert smol.decode(ids) == text
    assert ids == hf_reference(text, split_special_tokens=True)["input_ids"]
    assert smol_gpt2.encode(text) == hf_gguf(text, split_special_tokens=True)["input_ids"]


def test_decode_matches_transformers(smol, hf_gguf, corpus):
    for text in corpus:
        ids = hf_gguf(text)["input_ids"]
        assert smol.decode(ids) == hf_gguf.decode(ids)
        assert smol.decode(ids, skip_special_tokens=True) == hf_gguf.decode(ids, skip_special_tokens=True)
    assert smol.decode([10813]) == hf_gguf.decode([10813]) == "\ufffd"  # a lone emoji lead byte


def test_special_tokens_and_sizes_match_transformers(smol, hf_gguf):
    assert (smol.vocab_size, len(smol)) == (hf_gguf.vocab_size, len(hf_gguf))
    for role in ("bos_token", "eos_token", "unk_token", "pad_token"):
        assert getattr(smol, role) == getattr(hf_gguf, role)
        assert getattr(smol, role + "_id") == getattr(hf_gguf, role + "_id")
    assert smol.chat_template == hf_gguf.chat_template
    assert set(hf_gguf.all_special_ids) <= set(smol.all_special_ids)
    assert smol.all_special_ids == list(range(17))  # every control token of the file
    ids = list(range(0, 49152, 97))
    assert smol.convert_ids_to_tokens(ids) == hf_gguf.convert_ids_to_tokens(ids)
    tokens = hf_gguf.convert_ids_to_tokens(ids)
    assert smol.convert_tokens_to_ids(tokens) == ids
    assert smol.convert_tokens_to_ids("no-such-token") == hf_gguf.convert_tokens_to_ids("no-such-token")


def test_no_bos_added_for_smollm2(smol, hf_gguf):
    assert smol.encode("hi", add_special_tokens=True) == smol.encode("hi", add_special_tokens=False)
    assert smol.encode("hi") == hf_gguf.encode("hi")


@pytest.mark.parametrize("conversation", CONVERSATIONS)
@pytest.mark.parametrize("add_generation_prompt", [False, True])
def test_chat_template_matches_transformers(smol, hf_gguf, conversation, add_generation_prompt):
    kwargs = {"add_generation_prompt": add_generation_prompt}
    text = smol.apply_chat_template(conversation, tokenize=False, **kwargs)
    assert text == hf_gguf.apply_chat_template(conversation, tokenize=False, **kwargs)
    ids = smol.apply_chat_template(conversation, **kwargs)
    assert ids == hf_gguf.apply_chat_template(conversation, return_dict=False, **kwargs)
    assert ids.count(smol.convert_tokens_to_ids("<|im_start|>")) == text.count("<|im_start|>")
    tensor = smol.apply_chat_template(conversation, return_tensors="pt", **kwargs)
    assert tensor.shape == (1, len(ids)) and tensor.dtype == torch.long


def test_chat_template_return_dict(smol):
    out = smol.apply_chat_template(CONVERSATIONS[0], add_generation_prompt=True, return_dict=True)
    assert out.input_ids == smol.apply_chat_template(CONVERSATIONS[0], add_generation_prompt=True)
    assert out.attention_mask == [1] * len(out.input_ids)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"padding": True},
        {"padding": "longest", "padding_side": "right"},
        {"padding": "max_length", "max_length": 12},
        {"padding": "max_length", "max_length": 12, "padding_side": "right"},
        {"padding": True, "truncation": True, "max_length": 4},
        {"truncation": True, "max_length": 3},
        {"padding": True, "pad_to_multiple_of": 8},
    ],
)
def test_call_padding_truncation_match_transformers(smol, hf_gguf, kwargs):
    texts = ["Hello world, this is a longer sentence.", "short", "mid length text here"]
    kwargs = {"padding_side": "left", **kwargs}
    ours = smol(texts, **kwargs)
    theirs = hf_gguf(texts, **kwargs)
    assert ours["input_ids"] == theirs["input_ids"]
    assert ours["attention_mask"] == theirs["attention_mask"]
    if kwargs.get("padding"):
        ours_pt, theirs_pt = (
            smol(texts, return_tensors="pt", **kwargs),
            hf_gguf(texts, return_tensors="pt", **kwargs),
        )
        assert torch.equal(ours_pt.input_ids, theirs_pt["input_ids"])
        assert torch.equal(ours_pt.attention_mask, theirs_pt["attention_mask"])


def test_call_single_text_matches_transformers(smol, hf_gguf):
    assert dict(smol("Hello there")) == dict(hf_gguf("Hello there"))
    ours, theirs = smol("Hello there", return_tensors="pt"), hf_gguf("Hello there", return_tensors="pt")
    assert torch.equal(ours.input_ids, theirs["input_ids"]) and ours.input_ids.shape == (1, 2)


def test_encode_truncation_matches_transformers(smol, hf_gguf):
    text = "one two three four five six"
    assert smol.encode(text, truncation=True, max_length=3) == hf_gguf.encode(
        text, truncation=True, max_length=3
    )
    smol.truncation_side = "left"
    try:
        assert smol.encode(text, truncation=True, max_length=3) == smol.encode(text)[-3:]
    finally:
        smol.truncation_side = "right"


@pytest.mark.parametrize("text", ["a" * 1_000_000, "😀" * 250_000, " " * 1_000_000, "\n" * 1_000_000])
def test_one_megabyte_inputs_are_fast_and_exact(smol, hf_reference, text):
    ids = smol.encode(text)
    assert ids == hf_reference.backend_tokenizer.encode(text, add_special_tokens=False).ids
    assert smol.decode(ids) == text
