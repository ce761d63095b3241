"""The engine's greedy and seeded outputs equal model.generate's, however requests share the batch."""

from __future__ import annotations

import torch

from gptkit.engine import Engine, SamplingParams

PROMPTS = [[5, 17, 42, 8], [60, 3, 3, 91, 12, 7, 33, 250, 4, 9], [1], [200, 100, 50]]
GREEDY = SamplingParams(max_tokens=12, temperature=0)


def reference(model, prompt, **options):
    """model.generate's new tokens for one prompt alone."""
    out = model.generate(torch.tensor([prompt]), **options)
    return out[0, len(prompt) :].tolist()


def run_to_end(engine, completions=None):
    """Step until idle; completions by request id."""
    completions = {} if completions is None else completions
    while engine.has_unfinished():
        completions.update({e.request_id: e.completion for e in engine.step() if e.finished})
    return completions


def test_mixed_length_prompts_together_equal_generate(model, tokenizer):
    engine = Engine(model, tokenizer, max_batch_size=4, max_seq_len=64)
    completions = engine.generate(PROMPTS, GREEDY)
    for prompt, completion in zip(PROMPTS, completions, strict=True):
        assert completion.token_ids == reference(model, prompt, max_new_tokens=12)
        assert completion.finish_reason == "length"
        assert (completion.prompt_tokens, completion.completion_tokens) == (len(prompt), 12)
        assert completion.text == tokenizer.decode(completion.token_ids)


def test_requests_joining_and_leaving_mid_stream_equal_generate(model, tokenizer):
    engine = Engine(model, tokenizer, max_batch_size=3, max_seq_len=64)
    lengths = [5, 9, 3, 12, 7, 4]
    first = [
        engine.add_request(p, SamplingParams(max_tokens=n, temperature=0))
        for p, n in zip(PROMPTS[:2], lengths[:2], strict=True)
    ]
    completions = {}
    for _ in range(3):
        completions.update({e.request_id: e.completion for e in engine.step() if e.finished})
    later = [
        engine.add_request(p, SamplingParams(max_tokens=n, temperature=0))
        for p, n in zip(PROMPTS, lengths[2:], strict=True)
    ]
    run_to_end(engine, completions)
    for request_id, prompt, n in zip(first + later, PROMPTS[:2] + PROMPTS, lengths, strict=True):
        assert completions[request_id].token_ids == reference(model, prompt, max_new_tokens=n)
    assert sorted(engine.free_slots) == [0, 1, 2] and not engine.running


def test_greedy_request_unaffected_by_sampled_neighbours(model, tokenizer):
    engine = Engine(model, tokenizer, max_batch_size=4, max_seq_len=64)
    hot = SamplingParams(max_tokens=12, temperature=1.5, top_k=20, top_p=0.9, repetition_penalty=1.3)
    completions = engine.generate(PROMPTS, [hot, GREEDY, hot, hot])
    assert completions[1].token_ids == reference(model, PROMPTS[1], max_new_tokens=12)


def test_seeded_sampling_is_reproducible_and_equals_generate(model, tokenizer):
    seeded = SamplingParams(max_tokens=10, temperature=0.8, top_k=30, top_p=0.95, seed=7)
    alone = Engine(model, tokenizer, max_batch_size=1, max_seq_len=64).generate([PROMPTS[0]], seeded)[0]
    crowd = Engine(model, tokenizer, max_batch_size=4, max_seq_len=64)
    neighbours = SamplingParams(max_tokens=10, temperature=1.0)
    together = crowd.generate(PROMPTS[1:3] + [PROMPTS[0]], [neighbours, neighbours, seeded])[2]
    assert together.token_ids == alone.token_ids
    expected = reference(
        model, PROMPTS[0], max_new_tokens=10, do_sample=True, temperature=0.8, top_k=30, top_p=0.95, seed=7
    )
    assert alone.token_ids == expected


def test_repetition_penalty_matches_generate(model, tokenizer):
    engine = Engine(model, tokenizer, max_batch_size=2, max_seq_len=64)
    params = SamplingParams(max_tokens=12, temperature=0, repetition_penalty=1.5)
    completions = engine.generate(PROMPTS[:2], params)
    for prompt, completion in zip(PROMPTS[:2], completions, strict=True):
        assert completion.token_ids == reference(model, prompt, max_new_tokens=12, repetition_penalty=1.5)


def test_text_prompts_are_encoded_with_the_tokenizer(model, tokenizer):
    engine = Engine(model, tokenizer, max_batch_size=2, max_seq_len=64)
    completion = engine.generate(["hello world"], GREEDY)[0]
    ids = tokenizer.encode("hello world").ids
    assert completion.prompt_tokens == len(ids)
    assert completion.token_ids == reference(model, ids, max_new_tokens=12)
