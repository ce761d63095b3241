"""/v1/chat/completions through the official openai client, checked against the engine and the model."""

from __future__ import annotations

import pytest
import torch

from gptkit.engine import SamplingParams

pytestmark = pytest.mark.slow

MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Name a colour."},
]


def same_counts(streamed, whole) -> bool:
    """Equal token counts; cached_tokens may differ (the second request reuses the first's prompt)."""
    return (streamed.prompt_tokens, streamed.completion_tokens) == (
        whole.prompt_tokens,
        whole.completion_tokens,
    )


def chat_ids(tokenizer, messages):
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True)


def test_greedy_chat_matches_the_engine_on_the_chat_template(openai_client, bundled_server, reference_engine):
    ids = chat_ids(bundled_server.tokenizer, MESSAGES)
    expected = reference_engine.generate([ids], SamplingParams(max_tokens=16, temperature=0))[0]
    response = openai_client.chat.completions.create(
        model=bundled_server.model_name, messages=MESSAGES, max_tokens=16, temperature=0
    )
    choice = response.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == expected.text
    assert choice.finish_reason == expected.finish_reason
    assert response.object == "chat.completion"
    assert response.usage.prompt_tokens == len(ids)
    assert response.usage.completion_tokens == expected.completion_tokens


def test_max_completion_tokens_and_content_parts(openai_client, bundled_server):
    parts = [{"role": "user", "content": [{"type": "text", "text": "Name a "}, {"type": "text", "text": "colour."}]}]  # fmt: skip
    plain = [{"role": "user", "content": "Name a colour."}]
    a = openai_client.chat.completions.create(
        model=bundled_server.model_name, messages=parts, max_completion_tokens=5, temperature=0
    )
    b = openai_client.chat.completions.create(
        model=bundled_server.model_name, messages=plain, max_tokens=5, temperature=0
    )
    assert a.choices[0].message.content == b.choices[0].message.content
    assert a.usage.completion_tokens <= 5


def test_default_max_tokens_is_the_rest_of_the_context(openai_client, bundled_server):
    response = openai_client.chat.completions.create(
        model=bundled_server.model_name, messages=MESSAGES, temperature=0
    )
    assert response.choices[0].finish_reason == "stop"  # not cut at a small default length


def test_streamed_chat_chunks_and_usage(openai_client, bundled_server):
    whole = openai_client.chat.completions.create(
        model=bundled_server.model_name, messages=MESSAGES, max_tokens=20, temperature=0
    )
    chunks = list(
        openai_client.chat.completions.create(
            model=bundled_server.model_name,
            messages=MESSAGES,
            max_tokens=20,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == whole.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [whole.choices[0].finish_reason]
    assert chunks[-1].choices == [] and same_counts(chunks[-1].usage, whole.usage)


def test_stream_without_usage_has_no_usage_chunk(openai_client, bundled_server):
    chunks = list(
        openai_client.chat.completions.create(
            model=bundled_server.model_name, messages=MESSAGES, max_tokens=3, temperature=0, stream=True
        )
    )
    assert all(c.choices for c in chunks) and all(c.usage is None for c in chunks)


def test_chat_logprobs_are_the_models_own(openai_client, bundled_server):
    tokenizer = bundled_server.tokenizer
    response = openai_client.chat.completions.create(
        model=bundled_server.model_name,
        messages=MESSAGES,
        max_tokens=6,
        temperature=0,
        logprobs=True,
        top_logprobs=3,
        extra_body={"ignore_eos": True},
    )
    content = response.choices[0].logprobs.content
    ids = chat_ids(tokenizer, MESSAGES)
    generated = [tokenizer.encode(e.token, add_special_tokens=False, allowed_special="all") for e in content]
    assert all(len(g) == 1 for g in generated)
    everything = ids + [g[0] for g in generated]
    with torch.inference_mode():
        log_probs = bundled_server.model(torch.tensor([everything])).logits[0].float().log_softmax(-1)
    assert len(content) == 6
    for k, entry in enumerate(content):
        row = log_probs[len(ids) + k - 1]
        assert entry.logprob == pytest.approx(row[everything[len(ids) + k]].item(), abs=2e-3)
        assert entry.bytes == list(entry.token.encode())
        best = row.topk(3)
        assert [t.token for t in entry.top_logprobs] == [tokenizer.decode([i]) for i in best.indices.tolist()]
        assert [t.logprob for t in entry.top_logprobs] == pytest.approx(best.values.tolist(), abs=2e-3)
        assert entry.top_logprobs[0].logprob == pytest.approx(entry.logprob)  # greedy picks the best


def test_streamed_logprobs_match_the_whole_response(openai_client, bundled_server):
    options = dict(
        model=bundled_server.model_name, messages=MESSAGES, max_tokens=5, temperature=0, logprobs=True
    )
    whole = openai_client.chat.completions.create(**options, extra_body={"ignore_eos": True})
    chunks = openai_client.chat.completions.create(**options, stream=True, extra_body={"ignore_eos": True})
    streamed = [
        e for c in chunks if c.choices and c.choices[0].logprobs for e in c.choices[0].logprobs.content
    ]
    assert [e.token for e in streamed] == [e.token for e in whole.choices[0].logprobs.content]
    assert all(e.top_logprobs == [] for e in streamed)


def test_n_choices_with_seed_reproduce(openai_client, bundled_server):
    def sample():
        response = openai_client.chat.completions.create(
            model=bundled_server.model_name, messages=MESSAGES, max_tokens=8, n=2, seed=7, temperature=1.0
        )
        return [c.message.content for c in sorted(response.choices, key=lambda c: c.index)]

    first = sample()
    assert len(first) == 2 and sample() == first
