"""Slots are reused without leaks; bad requests fail at submission and never disturb the batch."""

from __future__ import annotations

import tracemalloc

import pytest
import torch

from gptkit.engine import Engine, SamplingParams
from gptkit.errors import ContextLengthError, GenerationError

GREEDY = SamplingParams(max_tokens=6, temperature=0)


def test_fifty_requests_through_four_slots_reuse_the_cache_without_leaking(model, tokenizer):
    engine = Engine(model, tokenizer, max_batch_size=4, max_seq_len=32)
    keys, values = engine.cache.k, engine.cache.v
    prompts = [[(7 * i + j) % 250 + 1 for j in range(1 + i % 5)] for i in range(50)]
    params = [
        SamplingParams(max_tokens=2 + i % 5, temperature=0 if i % 2 else 0.9, seed=i) for i in range(50)
    ]
    tracemalloc.start()
    try:
        for _ in range(2):  # warm-up: first-call allocations, torch's small-object caches
            engine.generate(prompts, params)
        before = tracemalloc.take_snapshot()
        completions = engine.generate(prompts, params)
        lengths = [c.completion_tokens for c in completions]
        del completions
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    growth = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert growth < 32 * 1024, f"Python memory grew by {growth} bytes"  # leaked requests: ~70 KB
    assert lengths == [p.max_tokens for p in params]
    assert engine.cache.batch_size == 4 and engine.cache.k is keys and engine.cache.v is values
    assert sorted(engine.free_slots) == [0, 1, 2, 3] and not engine.has_unfinished()
    assert not bool(engine.cache.valid.any()) and int(engine.cache.next_column.max()) == 0


def test_slot_is_reused_right_after_a_request_leaves(model, tokenizer):
    engine = Engine(model, tokenizer, max_batch_size=2, max_seq_len=32)
    short = engine.add_request([5, 6], SamplingParams(max_tokens=2, temperature=0))
    long = engine.add_request([7, 8, 9], SamplingParams(max_tokens=8, temperature=0))
    waiting = engine.add_request([10], SamplingParams(max_tokens=3, temperature=0))
    engine.step()  # both prefilled: one token each
    assert (engine.running[0].id, engine.running[1].id, engine.waiting[0].id) == (short, long, waiting)
    second = engine.step()
    assert [e.request_id for e in second if e.finished] == [short]
    assert engine.running[0].id == waiting  # joined the freed slot right after the decode step
    assert [e.request_id for e in second] == [short, long, waiting]


@pytest.mark.parametrize(
    ("prompt", "params", "error", "match"),
    [
        ("", GREEDY, GenerationError, "empty"),
        ([], GREEDY, GenerationError, "empty"),
        (list(range(1, 40)), GREEDY, ContextLengthError, "the prompt"),
        ([1, 2, 3], SamplingParams(max_tokens=30), ContextLengthError, "max_tokens=30"),
        ([1, 2, 3, 10_000], GREEDY, GenerationError, "prompt token ids must lie"),
        ([1, 2.5], GREEDY, GenerationError, "integer token ids"),
        ([1, 2], "fast", GenerationError, "SamplingParams"),
    ],
)
def test_bad_requests_fail_at_submission(model, tokenizer, prompt, params, error, match):
    engine = Engine(model, tokenizer, max_batch_size=2, max_seq_len=32)
    with pytest.raises(error, match=match):
        engine.add_request(prompt, params)
    assert not engine.has_unfinished()


@pytest.mark.parametrize(
    ("options", "match"),
    [
        (dict(max_tokens=-1), "max_tokens must be >= 0"),
        (dict(temperature=-1.0), "temperature"),
        (dict(top_p=0.0), "top_p"),
        (dict(top_k=-2), "top_k"),
        (dict(repetition_penalty=0), "repetition_penalty"),
        (dict(stop=[""]), "stop must be"),
        (dict(stop_token_ids=[-1]), "stop_token_ids"),
        (dict(min_tokens=5, max_tokens=4), "min_tokens=5"),
        (dict(ignore_eos="yes"), "ignore_eos"),
        (dict(seed=1.5), "seed"),
    ],
)
def test_bad_sampling_params_are_refused(options, match):
    with pytest.raises(GenerationError, match=match):
        SamplingParams(**options)


def test_engine_arguments_are_checked(model, tokenizer):
    with pytest.raises(GenerationError, match="max_batch_size"):
        Engine(model, tokenizer, max_batch_size=0)
    with pytest.raises(ContextLengthError, match="max_seq_len=129"):
        Engine(model, tokenizer, max_seq_len=129)
    with pytest.raises(GenerationError, match="compile must be True or False, got 'yes'"):
        Engine(model, tokenizer, compile="yes")
    assert Engine(model, tokenizer, max_batch_size=1).max_seq_len == model.config.context_length


def test_a_bad_request_mid_batch_leaves_the_others_untouched(model, tokenizer):
    engine = Engine(model, tokenizer, max_batch_size=3, max_seq_len=32)
    prompts = [[5, 17, 42], [60, 3, 91, 12]]
    ids = [engine.add_request(p, SamplingParams(max_tokens=10, temperature=0)) for p in prompts]
    engine.step()
    with pytest.raises(ContextLengthError):
        engine.add_request(list(range(1, 33)), GREEDY)
    with pytest.raises(GenerationError):
        engine.generate([[1, 2], []], GREEDY)  # checked before anything is queued
    assert len(engine.waiting) == 0 and len(engine.running) == 2
    done = {}
    while engine.has_unfinished():
        done.update({e.request_id: e.completion for e in engine.step() if e.finished})
    for request_id, prompt in zip(ids, prompts, strict=True):
        expected = model.generate(torch.tensor([prompt]), max_new_tokens=10)[0, len(prompt) :].tolist()
        assert done[request_id].token_ids == expected
