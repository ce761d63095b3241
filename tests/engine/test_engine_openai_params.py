"""OpenAI's sampling options in the engine: logprobs, prompt logprobs (echo), penalties and logit_bias."""

from __future__ import annotations

import pytest
import torch

from gptkit.engine import Engine, SamplingParams
from gptkit.errors import GenerationError
from gptkit.generation.processors import logit_bias, presence_frequency_penalty

PROMPTS = [[5, 17, 42, 8], [60, 3, 3, 91, 12, 7, 33, 250, 4, 9]]


def model_log_probs(model, ids):
    """The model's own next-token log-softmax over a whole sequence, no cache: (T, V)."""
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float().log_softmax(-1)


def test_generated_token_logprobs_equal_the_models_log_softmax(model, tokenizer):
    engine = Engine(model, tokenizer, max_batch_size=2, max_seq_len=64)
    params = SamplingParams(max_tokens=6, temperature=0, logprobs=3)
    for prompt, completion in zip(PROMPTS, engine.generate(PROMPTS, params), strict=True):
        reference = model_log_probs(model, prompt + completion.token_ids)
        assert len(completion.logprobs) == len(completion.token_ids)
        for step, (token, entry) in enumerate(zip(completion.token_ids, completion.logprobs, strict=True)):
            row = reference[len(prompt) - 1 + step]
            assert entry.token_id == token
            assert entry.logprob == pytest.approx(row[token].item(), abs=1e-4)
            assert [t for t, _ in entry.top] == row.topk(3).indices.tolist()
            assert entry.top[0][0] == token  # greedy picks the most likely token


def test_prompt_logprobs_equal_the_models_log_softmax_first_is_none(model, tokenizer):
    engine = Engine(model, tokenizer, max_batch_size=2, max_seq_len=64)
    prompt = PROMPTS[1]
    for max_tokens in (0, 2):
        (completion,) = engine.generate([prompt], SamplingParams(max_tokens=max_tokens, prompt_logprobs=2))
        reference = model_log_probs(model, prompt)
        assert completion.prompt_logprobs[0] is None
        assert len(completion.prompt_logprobs) == len(prompt)
        for position, entry in enumerate(completion.prompt_logprobs[1:], start=1):
            assert entry.token_id == prompt[position]
            assert entry.logprob == pytest.approx(reference[position - 1, prompt[position]].item(), abs=1e-4)
            assert len(entry.top) == 2
        assert len(completion.token_ids) == max_tokens


def test_max_tokens_zero_takes_no_slot_and_returns_nothing(model, tokenizer):
    engine = Engine(model, tokenizer, max_batch_size=1, max_seq_len=16)
    (completion,) = engine.generate([[1] * 16], SamplingParams(max_tokens=0))
    assert (completion.text, completion.token_ids, completion.completion_tokens) == ("", [], 0)
    assert engine.free_slots == [0] and not engine.has_unfinished()


def test_penalties_follow_openais_formula():
    scores = torch.zeros(1, 6)
    generated = torch.tensor([[2, 2, 5]])
    out = presence_frequency_penalty(scores, generated, presence=0.5, frequency=0.25)
    assert out.tolist() == [[0, 0, -(2 * 0.25 + 0.5), 0, 0, -(0.25 + 0.5)]]


def test_frequency_penalty_only_counts_generated_tokens(model, tokenizer):
    """A prompt token is not penalised; with a huge penalty greedy never repeats a generated token."""
    engine = Engine(model, tokenizer, max_batch_size=1, max_seq_len=64)
    (plain,) = engine.generate([PROMPTS[0]], SamplingParams(max_tokens=8, temperature=0))
    (penalised,) = engine.generate(
        [PROMPTS[0]], SamplingParams(max_tokens=8, temperature=0, frequency_penalty=1e4)
    )
    assert len(set(penalised.token_ids)) == len(penalised.token_ids)
    assert penalised.token_ids[0] == plain.token_ids[0]


def test_logit_bias_forces_and_bans_tokens(model, tokenizer):
    engine = Engine(model, tokenizer, max_batch_size=2, max_seq_len=64)
    (forced,) = engine.generate(
        [PROMPTS[0]], SamplingParams(max_tokens=4, temperature=0, logit_bias={7: 100.0})
    )
    assert forced.token_ids == [7, 7, 7, 7]
    (plain,) = engine.generate([PROMPTS[0]], SamplingParams(max_tokens=1, temperature=0))
    banned = SamplingParams(max_tokens=1, temperature=0, logit_bias={plain.token_ids[0]: -100.0})
    assert engine.generate([PROMPTS[0]], banned)[0].token_ids != plain.token_ids
    assert logit_bias(torch.zeros(2, 3), {1: 2.0}).tolist() == [[0, 2, 0], [0, 2, 0]]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_tokens": -1}, "max_tokens"),
        ({"presence_penalty": float("nan")}, "presence_penalty"),
        ({"frequency_penalty": "high"}, "frequency_penalty"),
        ({"logit_bias": {"a": 1.0}}, "logit_bias"),
        ({"logit_bias": {3: float("inf")}}, "logit_bias"),
        ({"logprobs": -1}, "logprobs"),
        ({"prompt_logprobs": 1.5}, "prompt_logprobs"),
    ],
)
def test_bad_openai_options_raise_naming_the_option(options, message):
    with pytest.raises(GenerationError, match=message):
        SamplingParams(**options)


def test_logit_bias_outside_the_vocabulary_is_refused(model, tokenizer):
    engine = Engine(model, tokenizer, max_batch_size=1, max_seq_len=64)
    with pytest.raises(GenerationError, match="logit_bias token ids must lie in"):
        engine.add_request([1, 2], SamplingParams(logit_bias={10**6: 1.0}))


def test_a_request_whose_sampling_fails_ends_alone_with_an_error(model, tokenizer):
    """repetition_penalty=1e-300 turns seen tokens' logits into inf: that request fails, the rest go on."""
    engine = Engine(model, tokenizer, max_batch_size=3, max_seq_len=64)
    broken = SamplingParams(max_tokens=6, temperature=1.0, repetition_penalty=1e-300, seed=0)
    greedy = SamplingParams(max_tokens=6, temperature=0)
    completions = engine.generate([PROMPTS[0], PROMPTS[1] * 2, PROMPTS[1]], [greedy, broken, greedy])
    assert completions[1].finish_reason == "error" and "sampling failed" in completions[1].error
    single = Engine(model, tokenizer, max_batch_size=1, max_seq_len=64)
    for index, prompt in ((0, PROMPTS[0]), (2, PROMPTS[1])):
        (alone,) = single.generate([prompt], greedy)
        assert completions[index].token_ids == alone.token_ids and completions[index].error is None
    assert sorted(engine.free_slots) == [0, 1, 2] and not engine.has_unfinished()


def test_tiny_temperatures_decode_greedily(model, tokenizer):
    engine = Engine(model, tokenizer, max_batch_size=1, max_seq_len=64)
    (greedy,) = engine.generate([PROMPTS[0]], SamplingParams(max_tokens=6, temperature=0))
    (tiny,) = engine.generate([PROMPTS[0]], SamplingParams(max_tokens=6, temperature=5e-324, seed=1))
    assert tiny.token_ids == greedy.token_ids


@pytest.mark.parametrize(
    ("options", "param", "start"),
    [
        ({"max_tokens": -1}, "max_tokens", "max_tokens must be >= 0"),
        ({"max_tokens": 2.5}, "max_tokens", "max_tokens must be an integer"),
        ({"min_tokens": -1}, "min_tokens", "min_tokens must be >= 0"),
        ({"min_tokens": 5, "max_tokens": 4}, "min_tokens", "min_tokens=5 must be <= max_tokens=4"),
        ({"stop": [""]}, "stop", "stop must be a non-empty string"),
        ({"stop_token_ids": [-1]}, "stop_token_ids", "stop_token_ids must be a non-negative integer"),
        ({"temperature": -1.0}, "temperature", "temperature must be >= 0"),
        ({"top_p": 0.0}, "top_p", "top_p must be in (0, 1]"),
        ({"seed": 1.5}, "seed", "seed must be an integer"),
        ({"ignore_eos": "yes"}, "ignore_eos", "ignore_eos must be True or False"),
        ({"logit_bias": {3: float("inf")}}, "logit_bias", "logit_bias[3] must be a finite number"),
        ({"logit_bias": {-3: 1.0}}, "logit_bias", "logit_bias keys must be token ids"),
        ({"prompt_logprobs": -2}, "prompt_logprobs", "prompt_logprobs must be >= 0"),
    ],
)
def test_errors_name_our_option_in_the_message_and_in_param(options, param, start):
    """GenerationConfig's rules checked under SamplingParams' own names: no option name of theirs leaks."""
    with pytest.raises(GenerationError) as raised:
        SamplingParams(**options)
    assert raised.value.param == param
    assert str(raised.value).startswith(start)


@pytest.mark.parametrize(
    ("prompt", "params", "param"),
    [
        ([], SamplingParams(), "prompt"),
        ([1, 10**6], SamplingParams(), "prompt"),
        (list(range(1, 70)), SamplingParams(), "prompt"),
        ([1, 2], SamplingParams(max_tokens=63), "prompt"),
        ([1, 2], SamplingParams(logit_bias={10**6: 1.0}), "logit_bias"),
    ],
)
def test_request_errors_carry_the_param(model, tokenizer, prompt, params, param):
    engine = Engine(model, tokenizer, max_batch_size=1, max_seq_len=64)
    with pytest.raises(GenerationError) as raised:
        engine.make_request(prompt, params)
    assert raised.value.param == param
