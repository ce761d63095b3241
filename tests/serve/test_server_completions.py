"""/v1/completions through the official openai client, checked against the engine and the model itself."""

from __future__ import annotations

import math

import httpx
import pytest
import torch

from gptkit.engine import SamplingParams

pytestmark = pytest.mark.slow

PROMPT = "The capital of France is"


def same_counts(streamed, whole) -> bool:
    """Equal token counts; cached_tokens may differ (the second request reuses the first's prompt)."""
    return (streamed.prompt_tokens, streamed.completion_tokens) == (
        whole.prompt_tokens,
        whole.completion_tokens,
    )


def greedy(reference_engine, prompt, max_tokens, **options):
    """What the engine alone gives for a greedy request."""
    params = SamplingParams(max_tokens=max_tokens, temperature=0, **options)
    return reference_engine.generate([prompt], params)[0]


def prompt_ids(tokenizer, text):
    return tokenizer.encode(text, allowed_special="all")


def test_greedy_completion_matches_the_engine(openai_client, bundled_server, reference_engine):
    expected = greedy(reference_engine, prompt_ids(bundled_server.tokenizer, PROMPT), 12)
    response = openai_client.completions.create(
        model=bundled_server.model_name, prompt=PROMPT, max_tokens=12, temperature=0
    )
    choice = response.choices[0]
    assert choice.text == expected.text
    assert choice.finish_reason == expected.finish_reason
    assert response.object == "text_completion" and response.model == bundled_server.model_name
    assert response.usage.prompt_tokens == expected.prompt_tokens
    assert response.usage.completion_tokens == expected.completion_tokens
    assert response.usage.total_tokens == expected.prompt_tokens + expected.completion_tokens


def test_default_max_tokens_is_16(openai_client, bundled_server):
    response = openai_client.completions.create(
        model=bundled_server.model_name, prompt=PROMPT, temperature=0, extra_body={"ignore_eos": True}
    )
    assert response.usage.completion_tokens == 16
    assert response.choices[0].finish_reason == "length"


def test_streamed_completion_adds_up_to_the_whole(openai_client, bundled_server):
    whole = openai_client.completions.create(
        model=bundled_server.model_name, prompt=PROMPT, max_tokens=20, temperature=0
    )
    chunks = list(
        openai_client.completions.create(
            model=bundled_server.model_name,
            prompt=PROMPT,
            max_tokens=20,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == whole.choices[0].text
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [whole.choices[0].finish_reason]
    assert chunks[-1].choices == [] and same_counts(chunks[-1].usage, whole.usage)
    assert all(c.usage is None for c in chunks[:-1])


def test_token_id_prompts_equal_text_prompts(openai_client, bundled_server):
    texts = [PROMPT, "Once upon a time"]
    ids = [prompt_ids(bundled_server.tokenizer, t) for t in texts]
    by_text = openai_client.completions.create(
        model=bundled_server.model_name, prompt=texts, max_tokens=8, temperature=0
    )
    by_ids = openai_client.completions.create(
        model=bundled_server.model_name, prompt=ids, max_tokens=8, temperature=0
    )
    one_list = openai_client.completions.create(
        model=bundled_server.model_name, prompt=ids[1], max_tokens=8, temperature=0
    )
    assert [c.index for c in by_ids.choices] == [0, 1]
    assert [c.text for c in by_ids.choices] == [c.text for c in by_text.choices]
    assert one_list.choices[0].text == by_text.choices[1].text
    assert by_ids.usage.prompt_tokens == len(ids[0]) + len(ids[1])


def model_log_softmax(bundled_server, ids):
    """The model's own log-probabilities (T, V) for a sequence, from a plain forward pass."""
    with torch.inference_mode():
        logits = bundled_server.model(torch.tensor([ids])).logits[0].float()
    return logits.log_softmax(-1)


def test_echo_logprobs_are_the_models_own(openai_client, bundled_server):
    tokenizer = bundled_server.tokenizer
    response = openai_client.completions.create(
        model=bundled_server.model_name, prompt=PROMPT, max_tokens=3, temperature=0, echo=True, logprobs=2
    )
    choice = response.choices[0]
    ids = prompt_ids(tokenizer, PROMPT)
    generated = tokenizer.encode(choice.text[len(PROMPT) :], add_special_tokens=False)
    everything = ids + generated
    log_probs = model_log_softmax(bundled_server, everything)
    lp = choice.logprobs
    assert choice.text.startswith(PROMPT)
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset)
    assert len(lp.tokens) == len(everything)
    assert lp.tokens == [tokenizer.decode([i]) for i in everything]
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    for position in range(1, len(everything)):
        expected = log_probs[position - 1, everything[position]].item()
        assert lp.token_logprobs[position] == pytest.approx(expected, abs=2e-3)
        best = log_probs[position - 1].topk(2)
        top = lp.top_logprobs[position]
        for token_id, value in zip(best.indices.tolist(), best.values.tolist(), strict=True):
            assert top[tokenizer.decode([token_id])] == pytest.approx(value, abs=2e-3)
        assert top[lp.tokens[position]] == lp.token_logprobs[position]  # the chosen token is always listed
    offsets = [len(tokenizer.decode(everything[:i])) for i in range(len(everything))]
    assert lp.text_offset == offsets
    assert "".join(lp.tokens) == choice.text


def test_echo_with_max_tokens_0_scores_the_prompt_only(openai_client, bundled_server):
    """lm-evaluation-harness's loglikelihood shape: echo, logprobs=1, temperature 0, max_tokens 0."""
    ids = prompt_ids(bundled_server.tokenizer, PROMPT)
    response = openai_client.completions.create(
        model=bundled_server.model_name, prompt=[ids], max_tokens=0, temperature=0, echo=True, logprobs=1
    )
    lp = response.choices[0].logprobs
    assert response.choices[0].text == PROMPT
    assert len(lp.token_logprobs) == len(ids)
    log_probs = model_log_softmax(bundled_server, ids)
    expected = [log_probs[i - 1, ids[i]].item() for i in range(1, len(ids))]
    assert lp.token_logprobs[1:] == pytest.approx(expected, abs=2e-3)
    assert response.usage.completion_tokens == 0


def test_generated_logprobs_without_echo(openai_client, bundled_server):
    response = openai_client.completions.create(
        model=bundled_server.model_name, prompt=PROMPT, max_tokens=4, temperature=0, logprobs=0
    )
    choice = response.choices[0]
    lp = choice.logprobs
    assert len(lp.tokens) == response.usage.completion_tokens
    assert lp.text_offset[0] == 0
    assert all(v <= 0 and math.isfinite(v) for v in lp.token_logprobs)
    assert all(set(top) == {token} for top, token in zip(lp.top_logprobs, lp.tokens, strict=True))
    for top, value in zip(lp.top_logprobs, lp.token_logprobs, strict=True):  # greedy: the best token
        assert list(top.values()) == [value]


def test_n_with_seed_is_reproducible_and_choice_i_uses_seed_plus_i(openai_client, bundled_server):
    def sample(n, seed):
        response = openai_client.completions.create(
            model=bundled_server.model_name, prompt=PROMPT, max_tokens=10, temperature=1.0, n=n, seed=seed
        )
        return [c.text for c in sorted(response.choices, key=lambda c: c.index)]

    first, second = sample(3, 1234), sample(3, 1234)
    assert first == second
    assert [sample(1, 1234 + i)[0] for i in range(3)] == first


def stop_spanning_two_tokens(tokenizer, generated_ids):
    """A stop string made of the end of one generated token and the start of the next, with its cut."""
    special = set(tokenizer.all_special_ids)
    text = tokenizer.decode(generated_ids)
    for k in range(1, len(generated_ids) - 1):
        if special & set(generated_ids[: k + 2]):
            break
        left, right = (
            tokenizer.decode(generated_ids[k : k + 1]),
            tokenizer.decode(generated_ids[k + 1 : k + 2]),
        )
        start = len(tokenizer.decode(generated_ids[: k + 1])) - 2
        stop = left[-2:] + right[:2]
        if len(left.strip()) >= 2 and len(right.strip()) >= 2 and text.find(stop) == start:
            return stop, text[:start]
    raise AssertionError(f"no two neighbouring tokens of {text!r} make a usable stop string")


def test_stop_string_across_token_boundaries(openai_client, bundled_server, reference_engine):
    tokenizer = bundled_server.tokenizer
    prompt = "Once upon a time, in a small village,"
    plain = greedy(reference_engine, prompt_ids(tokenizer, prompt), 24, ignore_eos=True)
    stop, expected = stop_spanning_two_tokens(tokenizer, plain.token_ids)
    response = openai_client.completions.create(
        model=bundled_server.model_name, prompt=prompt, max_tokens=24, temperature=0, stop=[stop]
    )
    assert response.choices[0].text == expected
    assert response.choices[0].finish_reason == "stop"
    streamed = openai_client.completions.create(
        model=bundled_server.model_name, prompt=prompt, max_tokens=24, temperature=0, stop=stop, stream=True
    )
    assert "".join(c.choices[0].text for c in streamed) == expected


def test_logit_bias_and_penalties_reach_the_engine(openai_client, bundled_server, reference_engine):
    tokenizer = bundled_server.tokenizer
    ids = prompt_ids(tokenizer, PROMPT)
    plain = greedy(reference_engine, ids, 1)
    banned = plain.token_ids[0]
    response = openai_client.completions.create(
        model=bundled_server.model_name,
        prompt=PROMPT,
        max_tokens=6,
        temperature=0,
        logit_bias={str(banned): -100},
        presence_penalty=1.5,
        frequency_penalty=0.5,
    )
    expected = greedy(
        reference_engine, ids, 6, logit_bias={banned: -100.0}, presence_penalty=1.5, frequency_penalty=0.5
    )
    assert response.choices[0].text == expected.text
    assert not response.choices[0].text.startswith(tokenizer.decode([banned]))


def test_unknown_fields_are_ignored(bundled_server):
    body = {"prompt": PROMPT, "max_tokens": 2, "temperature": 0, "some_future_option": {"x": 1}, "user": "u"}
    response = httpx.post(
        bundled_server.base_url + "/completions",
        json=body,
        headers={"Authorization": f"Bearer {bundled_server.api_key}"},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["index"] == 0
