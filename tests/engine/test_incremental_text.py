"""IncrementalText: decoding a few tokens at a time gives the same text as decoding everything."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gptkit.engine.request import IncrementalText
from gptkit.generation.streamers import INCOMPLETE
from gptkit.tokenizer import GPT4Tokenizer


def check_matches_full_decode(tokenizer, ids):
    text = IncrementalText(tokenizer)
    for n, token in enumerate(ids, start=1):
        text.add(token)
        full = tokenizer.decode(ids[:n])
        assert full.startswith(text.text)
        if not full.endswith(INCOMPLETE):
            assert text.text == full


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 299), min_size=1, max_size=30))
def test_byte_level_bpe_ids(byte_tokenizer, ids):
    check_matches_full_decode(byte_tokenizer, ids)


@pytest.mark.parametrize("text", ["naïve café 🙂 日本語のテキスト", "a  1 \n\n  hello\tworld 🙂🙂"])
def test_multibyte_characters_split_across_tokens(text):
    tokenizer = GPT4Tokenizer.from_pretrained("gpt-4")
    check_matches_full_decode(tokenizer, tokenizer.encode(text))
    byte_ids = tokenizer.encode("🙂日本")  # cl100k splits these characters' bytes over several tokens
    check_matches_full_decode(tokenizer, byte_ids)
