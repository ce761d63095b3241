"""Stop conditions: EOS, stop token ids, stop strings (cut across token boundaries), min_tokens, streaming."""

from __future__ import annotations

import pytest
import torch

from gptkit.engine import Engine, SamplingParams

PROMPT = [60, 3, 3, 91, 12, 7, 33]


@pytest.fixture
def engine(model, tokenizer):
    return Engine(model, tokenizer, max_batch_size=4, max_seq_len=64)


def greedy(engine, prompt=PROMPT, **options):
    """One greedy completion with ``options``."""
    return engine.generate([prompt], SamplingParams(temperature=0, **options))[0]


def test_stop_token_id_ends_with_reason_stop_and_is_left_out_of_text(engine, tokenizer):
    free = greedy(engine, max_tokens=12)
    stop_id = free.token_ids[4]
    first = free.token_ids.index(stop_id)
    got = greedy(engine, max_tokens=12, stop_token_ids=[stop_id])
    assert got.token_ids == free.token_ids[: first + 1]
    assert got.finish_reason == "stop"
    assert got.text == tokenizer.decode(free.token_ids[:first])


def test_model_eos_stops_unless_ignored_and_min_tokens_holds_it_back(model, tokenizer):
    free = greedy(Engine(model, tokenizer, max_seq_len=64), max_tokens=12)
    eos = free.token_ids[3]
    first = free.token_ids.index(eos)
    with_eos = type(model)(model.config.replace(eos_token_id=eos)).eval()
    with_eos.load_state_dict(model.state_dict())
    engine = Engine(with_eos, tokenizer, max_batch_size=2, max_seq_len=64)
    assert greedy(engine, max_tokens=12).token_ids == free.token_ids[: first + 1]
    assert greedy(engine, max_tokens=12, ignore_eos=True).token_ids == free.token_ids
    late = greedy(engine, max_tokens=12, min_tokens=first + 2)
    expected = with_eos.generate(torch.tensor([PROMPT]), max_new_tokens=12, min_new_tokens=first + 2)
    assert late.token_ids == expected[0, len(PROMPT) :].tolist()
    assert late.completion_tokens > first + 2


def test_stop_string_spanning_tokens_cuts_the_text(engine, tokenizer):
    free = greedy(engine, max_tokens=20)
    pieces = [tokenizer.decode([t]) for t in free.token_ids]
    start = len(pieces[0]) + len(pieces[1]) - 1  # the stop string starts inside token 1 and ends later
    stop = free.text[start : start + 4]
    assert len(stop) == 4
    got = greedy(engine, max_tokens=20, stop=["never-seen", stop])
    assert got.finish_reason == "stop"
    assert got.text == free.text[: free.text.find(stop)]
    assert got.token_ids == free.token_ids[: len(got.token_ids)] and len(got.token_ids) < 20
    deltas = list(engine.stream(PROMPT, SamplingParams(temperature=0, max_tokens=20, stop=stop)))
    assert "".join(deltas) == got.text


def test_stream_deltas_add_up_and_never_split_characters(engine, model, tokenizer):
    params = SamplingParams(max_tokens=40, temperature=1.0, seed=3)
    for prompt in ("héllo wörld 🙂", "naïve café"):
        completion = engine.generate([prompt], params)[0]
        deltas = list(engine.stream(prompt, params))
        assert "".join(deltas) == completion.text
        assert all(not d.endswith("\ufffd") or d == deltas[-1] for d in deltas)
        assert not engine.has_unfinished()


def test_abandoned_stream_frees_its_slot(engine):
    stream = engine.stream(PROMPT, SamplingParams(temperature=0, max_tokens=30))
    next(stream)
    assert engine.running
    stream.close()
    assert not engine.has_unfinished() and sorted(engine.free_slots) == [0, 1, 2, 3]
