"""Speculative decoding in the Engine: the same completions as without it, per-slot rollback, opt-out."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from gptkit import GPT4LMHeadModel
from gptkit.engine import Engine, SamplingParams
from gptkit.errors import GenerationError

PROMPTS = [
    "hello world, hello world, hello",
    "the stop word ends",
    "héllo wörld 🙂",
    "naïve café naïve café naïve",
    "world",
    "the the the the",
]


def perturbed(model, scale, seed=5):
    draft = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in draft.named_parameters():
            if "norm" not in name:
                p.add_(torch.randn(p.shape, generator=g) * scale)
    return draft


def completions(engine, params):
    return [(c.token_ids, c.text, c.finish_reason) for c in engine.generate(PROMPTS, params)]


@pytest.fixture(scope="module")
def plain(model, tokenizer):
    return completions(
        Engine(model, tokenizer, max_batch_size=3, max_seq_len=64),
        SamplingParams(max_tokens=20, temperature=0),
    )


@pytest.mark.parametrize("kind", ["ngram", "self", "near"])
def test_greedy_completions_equal_the_plain_engine(model, tokenizer, plain, kind):
    speculative = {"ngram": "ngram", "self": model, "near": perturbed(model, 0.03)}[kind]
    engine = Engine(
        model, tokenizer, max_batch_size=3, max_seq_len=64, speculative=speculative, num_speculative_tokens=4
    )
    assert completions(engine, SamplingParams(max_tokens=20, temperature=0)) == plain
    stats = engine.speculation
    assert stats.drafted > 0
    if kind == "self":
        assert stats.acceptance_rate == 1.0
    if kind == "near":
        assert 0 < stats.acceptance_rate < 1


def test_stops_and_max_tokens_inside_accepted_runs(model, tokenizer):
    base = Engine(model, tokenizer, max_batch_size=4, max_seq_len=64)
    spec = Engine(
        model, tokenizer, max_batch_size=4, max_seq_len=64, speculative=model, num_speculative_tokens=6
    )
    free = base.generate(PROMPTS[:1], SamplingParams(max_tokens=20, temperature=0))[0]
    stop_id = free.token_ids[4]
    stop_text = tokenizer.decode(free.token_ids[6:8])
    cases = [
        SamplingParams(max_tokens=20, temperature=0, stop_token_ids=[stop_id]),
        SamplingParams(max_tokens=20, temperature=0, stop=stop_text),
        SamplingParams(max_tokens=3, temperature=0),
        SamplingParams(max_tokens=1, temperature=0),
        SamplingParams(max_tokens=9, temperature=0, logprobs=2),
    ]
    for params in cases:
        expected, got = base.generate(PROMPTS, params), spec.generate(PROMPTS, params)
        for e, g in zip(expected, got, strict=True):
            assert (g.token_ids, g.text, g.finish_reason) == (e.token_ids, e.text, e.finish_reason)
            if params.logprobs:
                assert [lp.token_id for lp in g.logprobs] == [lp.token_id for lp in e.logprobs]
                torch.testing.assert_close(
                    [lp.logprob for lp in g.logprobs], [lp.logprob for lp in e.logprobs], rtol=1e-4, atol=1e-4
                )
    assert spec.speculation.acceptance_rate == 1.0 and spec.cache.next_column.sum() == 0


def test_a_request_can_opt_out(model, tokenizer, plain):
    engine = Engine(
        model, tokenizer, max_batch_size=3, max_seq_len=64, speculative=model, num_speculative_tokens=4
    )
    out = engine.generate(PROMPTS[:2], SamplingParams(max_tokens=20, temperature=0, speculative=False))
    assert engine.speculation.drafted == 0 and [c.token_ids for c in out] == [p[0] for p in plain[:2]]
    mixed = [
        SamplingParams(max_tokens=20, temperature=0, speculative=i % 2 == 0) for i in range(len(PROMPTS))
    ]
    assert [(c.token_ids, c.text, c.finish_reason) for c in engine.generate(PROMPTS, mixed)] == plain
    assert engine.speculation.drafted > 0


def test_seeded_sampling_is_reproducible_and_valid(model, tokenizer):
    engine = Engine(model, tokenizer, max_batch_size=3, max_seq_len=64, speculative=perturbed(model, 0.03))
    params = SamplingParams(max_tokens=12, temperature=0.8, top_k=20, seed=3)
    first, again = engine.generate(PROMPTS, params), engine.generate(PROMPTS, params)
    assert [c.token_ids for c in first] == [c.token_ids for c in again]
    assert all(len(c.token_ids) <= 12 for c in first) and engine.speculation.accepted > 0


def test_bad_speculative_options(model, tokenizer):
    cases = [
        (dict(speculative="ngram", num_speculative_tokens=0), "num_speculative_tokens"),
        (dict(speculative="ngram", num_speculative_tokens=64), "num_speculative_tokens=64 is too large"),
        (dict(speculative="ngram", num_speculative_tokens="3"), "num_speculative_tokens"),
        (dict(num_speculative_tokens=3), "needs speculative"),
        (dict(speculative="medusa"), "speculative must be"),
        (dict(speculative=GPT4LMHeadModel(dataclasses.replace(model.config, vocab_size=100))), "vocabulary"),
    ]
    for options, message in cases:
        with pytest.raises(GenerationError, match=message):
            Engine(model, tokenizer, max_batch_size=2, max_seq_len=64, **options)
    with pytest.raises(GenerationError, match="speculative must be True or False"):
        SamplingParams(speculative="no")


def test_prefix_cache_keeps_a_speculating_requests_answer(model, tokenizer):
    params = SamplingParams(max_tokens=40, temperature=0, ignore_eos=True)
    cached = []
    for options in ({}, dict(speculative=model, num_speculative_tokens=5)):
        engine = Engine(model, tokenizer, max_batch_size=2, max_seq_len=128, **options)
        first = engine.generate([PROMPTS[0]], params)[0]
        follow_up = tokenizer.encode(PROMPTS[0]).ids + first.token_ids + [5, 6]
        again = engine.generate([follow_up], SamplingParams(max_tokens=4, temperature=0))[0]
        cached.append((first.token_ids, again.token_ids, again.cached_tokens))
    assert cached[0] == cached[1] and cached[1][2] >= 48  # the answer's full blocks were reused


@pytest.mark.parametrize("length", [0, 3])
def test_ngram_requests_draft_what_their_draft_length_says(model, tokenizer, plain, monkeypatch, length):
    """The Engine asks each n-gram request's DraftLength how many to draft (0: a plain step for it)."""
    from gptkit.generation.drafters import DraftLength

    monkeypatch.setattr(DraftLength, "next", lambda self: length)
    engine = Engine(
        model, tokenizer, max_batch_size=3, max_seq_len=64, speculative="ngram", num_speculative_tokens=5
    )
    assert completions(engine, SamplingParams(max_tokens=20, temperature=0)) == plain
    stats = engine.speculation
    assert (stats.drafted == 0) if length == 0 else (0 < stats.drafted <= length * stats.forwards * 3)
    assert not engine.speculator.lengths  # finished requests leave nothing behind
