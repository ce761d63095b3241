"""generate() equals transformers' generate for the same weights: greedy, beam search, penalties."""

from __future__ import annotations

import pytest
import torch

from gptkit.generation import generate

PROMPTS = [[5, 17, 42, 8], [60, 3, 3, 91, 12, 7, 33], [1]]


def hf_generate(hf, input_ids, attention_mask=None, **kwargs):
    """transformers' generate with our special tokens (pad defaults to EOS as in gptkit)."""
    eos = kwargs.get("eos_token_id")
    kwargs.setdefault("pad_token_id", eos[0] if isinstance(eos, list) else eos)
    with torch.no_grad():
        return hf.generate(input_ids, attention_mask=attention_mask, **kwargs)


def left_pad(prompts, pad=0):
    """(ids, mask) of left-padded prompts."""
    width = max(map(len, prompts))
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    return ids, mask


def greedy_token_at(model, prompt, step):
    """The token greedy decoding emits at ``step`` (used as an EOS id that really gets generated)."""
    out = generate(model, torch.tensor([prompt]), max_new_tokens=step + 1)
    return int(out[0, len(prompt) + step])


@pytest.mark.parametrize("prompt", PROMPTS)
def test_greedy_equals_transformers(model_pair, prompt):
    hf, ours = model_pair
    ids = torch.tensor([prompt])
    expected = hf_generate(hf, ids, max_new_tokens=12, do_sample=False)
    assert torch.equal(generate(ours, ids, max_new_tokens=12), expected)


@pytest.mark.parametrize("prompt", PROMPTS[:2])
def test_greedy_with_eos_stops_and_matches(model_pair, prompt):
    hf, ours = model_pair
    eos = greedy_token_at(ours, prompt, 3)
    ids = torch.tensor([prompt])
    expected = hf_generate(hf, ids, max_new_tokens=12, eos_token_id=eos)
    got = generate(ours, ids, max_new_tokens=12, eos_token_id=eos)
    assert torch.equal(got, expected)
    assert got.shape[1] < len(prompt) + 12 and int(got[0, -1]) == eos


def test_left_padded_batch_equals_transformers_and_rows_alone(model_pair):
    hf, ours = model_pair
    eos = greedy_token_at(ours, PROMPTS[1], 2)
    ids, mask = left_pad(PROMPTS)
    expected = hf_generate(hf, ids, mask, max_new_tokens=10, eos_token_id=eos)
    got = generate(ours, ids, mask, max_new_tokens=10, eos_token_id=eos)
    assert torch.equal(got, expected)
    for row, prompt in enumerate(PROMPTS):
        alone = generate(ours, torch.tensor([prompt]), max_new_tokens=10, eos_token_id=eos)[0, len(prompt) :]
        new = got[row, ids.shape[1] :]
        assert torch.equal(new[: len(alone)], alone)
        assert bool((new[len(alone) :] == eos).all())  # finished rows are padded (pad defaults to EOS)


def test_max_length_and_min_new_tokens_match_transformers(llama_pair):
    hf, ours = llama_pair
    ids = torch.tensor([PROMPTS[0]])
    eos = greedy_token_at(ours, PROMPTS[0], 1)
    assert torch.equal(generate(ours, ids, max_length=9), hf_generate(hf, ids, max_length=9))
    for minimum in (0, 4):
        kw = dict(max_new_tokens=10, eos_token_id=eos, min_new_tokens=minimum)
        got = generate(ours, ids, **kw)
        assert torch.equal(got, hf_generate(hf, ids, **kw))
        assert got.shape[1] - ids.shape[1] > minimum


def test_repetition_penalty_greedy_matches_transformers(model_pair):
    hf, ours = model_pair
    ids, mask = left_pad(PROMPTS[:2])
    kw = dict(max_new_tokens=12, repetition_penalty=1.7)
    assert torch.equal(generate(ours, ids, mask, **kw), hf_generate(hf, ids, mask, **kw))


BEAM_CASES = [
    dict(num_beams=2),
    dict(num_beams=4, num_return_sequences=2),
    dict(num_beams=4, num_return_sequences=4, length_penalty=0.5, early_stopping=True),
    dict(num_beams=3, num_return_sequences=2, length_penalty=2.0, early_stopping="never"),
    dict(num_beams=2, length_penalty=-1.0, early_stopping=False),
]


@pytest.mark.parametrize("case", BEAM_CASES)
def test_beam_search_equals_transformers(model_pair, case):
    hf, ours = model_pair
    ids, mask = left_pad(PROMPTS)
    for eos_step in (1, 3):
        eos = greedy_token_at(ours, PROMPTS[0], eos_step)
        kw = dict(max_new_tokens=10, eos_token_id=eos, **case)
        expected = hf_generate(hf, ids, mask, **kw)
        got = generate(ours, ids, mask, **kw)
        assert torch.equal(got, expected), (case, eos)


def test_beam_search_returns_scores_like_transformers(llama_pair):
    hf, ours = llama_pair
    ids = torch.tensor([PROMPTS[1]])
    eos = greedy_token_at(ours, PROMPTS[1], 2)
    kw = dict(max_new_tokens=8, num_beams=3, num_return_sequences=3, eos_token_id=eos)
    expected = hf_generate(hf, ids, return_dict_in_generate=True, output_scores=True, **kw)
    got = generate(ours, ids, return_dict_in_generate=True, output_scores=True, **kw)
    assert torch.equal(got.sequences, expected.sequences)
    torch.testing.assert_close(got.sequences_scores, expected.sequences_scores, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("eos_step", [0, 2])
def test_beam_search_finishing_early_crops_like_transformers(model_pair, eos_step):
    hf, ours = model_pair
    prompt = torch.tensor([PROMPTS[0]])
    eos = greedy_token_at(ours, PROMPTS[0], eos_step)
    kw = dict(max_new_tokens=10, num_beams=2, eos_token_id=eos, early_stopping=True)
    got = generate(ours, prompt, **kw)
    assert torch.equal(got, hf_generate(hf, prompt, **kw))
    assert got.shape[1] < prompt.shape[1] + 10


def test_beam_sampling_equals_transformers_under_same_global_seed(model_pair):
    hf, ours = model_pair
    ids, mask = left_pad(PROMPTS)
    eos = greedy_token_at(ours, PROMPTS[0], 1)
    kw = dict(max_new_tokens=8, num_beams=3, do_sample=True, top_k=20, temperature=0.9, eos_token_id=eos)
    for seed in range(2):
        torch.manual_seed(seed)
        expected = hf_generate(hf, ids, mask, num_return_sequences=2, **kw)
        torch.manual_seed(seed)
        assert torch.equal(generate(ours, ids, mask, num_return_sequences=2, **kw), expected)


def test_greedy_scores_match_transformers(llama_pair):
    hf, ours = llama_pair
    ids, mask = left_pad(PROMPTS[:2])
    kw = dict(max_new_tokens=5, return_dict_in_generate=True, output_scores=True, repetition_penalty=1.2)
    expected, got = hf_generate(hf, ids, mask, **kw), generate(ours, ids, mask, **kw)
    assert torch.equal(got.sequences, expected.sequences)
    torch.testing.assert_close(torch.stack(got.scores), torch.stack(expected.scores), rtol=1e-4, atol=1e-4)
