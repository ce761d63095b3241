"""Logits processors equal transformers' LogitsProcessor/LogitsWarper outputs on random scores."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers.generation import logits_process as hf

from gptkit.generation import GenerationConfig, build_processors, processors

SETTINGS = settings(max_examples=40, deadline=None)


@st.composite
def scores_and_ids(draw, max_batch=4, max_vocab=40):
    """Random scores (B, V) with some ties and -inf, plus token ids (B, T)."""
    seed = draw(st.integers(0, 2**31 - 1))
    batch, vocab, length = (
        draw(st.integers(1, max_batch)),
        draw(st.integers(2, max_vocab)),
        draw(st.integers(1, 12)),
    )
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(batch, vocab, generator=g) * draw(st.sampled_from([0.1, 1.0, 5.0]))
    if draw(st.booleans()):
        scores = scores.round()  # ties
    if draw(st.booleans()):
        scores[:, 0] = -float("inf")
    ids = torch.randint(0, vocab, (batch, length), generator=g)
    return ids, scores


def assert_same(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


@SETTINGS
@given(scores_and_ids(), st.integers(1, 50), st.integers(1, 3))
def test_top_k(data, k, keep):
    ids, scores = data
    assert_same(
        processors.top_k(scores, k, keep), hf.TopKLogitsWarper(k, min_tokens_to_keep=keep)(ids, scores)
    )


@SETTINGS
@given(scores_and_ids(), st.floats(0.01, 1.0), st.integers(1, 3))
def test_top_p(data, p, keep):
    ids, scores = data
    assert_same(
        processors.top_p(scores, p, keep), hf.TopPLogitsWarper(p, min_tokens_to_keep=keep)(ids, scores)
    )


@SETTINGS
@given(scores_and_ids(), st.floats(0.05, 5.0))
def test_temperature(data, t):
    ids, scores = data
    assert_same(processors.temperature(scores, t), hf.TemperatureLogitsWarper(t)(ids, scores))


@SETTINGS
@given(scores_and_ids(), st.floats(0.1, 3.0), st.booleans())
def test_repetition_penalty(data, penalty, with_padding):
    ids, scores = data
    ignore = torch.randint(0, ids.shape[1], (ids.shape[0],)) if with_padding else None
    expected = hf.RepetitionPenaltyLogitsProcessor(penalty, prompt_ignore_length=ignore)(ids, scores)
    assert_same(processors.repetition_penalty(scores, ids, penalty, ignore), expected)


@SETTINGS
@given(
    scores_and_ids(),
    st.integers(0, 6),
    st.integers(0, 8),
    st.lists(st.integers(0, 1), min_size=1, max_size=2),
)
def test_min_new_tokens(data, prompt_len, minimum, eos):
    ids, scores = data
    expected = hf.MinNewTokensLengthLogitsProcessor(prompt_len, minimum, eos)(ids, scores)
    assert_same(processors.min_new_tokens(scores, ids, prompt_len, minimum, eos), expected)


@SETTINGS
@given(scores_and_ids(), st.floats(0.0, 1.0), st.floats(0.05, 0.99), st.integers(1, 4))
def test_min_p_typical_p_no_repeat_ngram(data, p, mass, n):
    ids, scores = data
    assert_same(processors.min_p(scores, p), hf.MinPLogitsWarper(p)(ids, scores))
    assert_same(processors.typical_p(scores, mass), hf.TypicalLogitsWarper(mass)(ids, scores))
    assert_same(processors.no_repeat_ngram(scores, ids, n), hf.NoRepeatNGramLogitsProcessor(n)(ids, scores))


@SETTINGS
@given(scores_and_ids(), st.floats(0.3, 2.0), st.integers(0, 10), st.floats(0.1, 1.0))
def test_composed_chain_matches_transformers_order(data, t, k, p):
    ids, scores = data
    config = GenerationConfig(do_sample=True, temperature=t, top_k=k, top_p=p, repetition_penalty=1.3)
    chain = build_processors(config, prompt_len=ids.shape[1])
    expected = hf.LogitsProcessorList(
        [hf.RepetitionPenaltyLogitsProcessor(1.3), hf.TemperatureLogitsWarper(t)]
        + ([hf.TopKLogitsWarper(k)] if k else [])
        + ([hf.TopPLogitsWarper(p)] if p < 1 else [])
    )(ids, scores)
    assert_same(processors.apply_processors(chain, ids, scores), expected)


def test_warpers_only_apply_when_sampling():
    greedy = GenerationConfig(temperature=0.5, top_k=3, top_p=0.5)
    assert build_processors(greedy, prompt_len=1) == []
    assert build_processors(greedy.replace(do_sample=True, temperature=0.0), prompt_len=1) == []
