"""Request -> SamplingParams without a model: unset fields keep SamplingParams' defaults, and a library
error's structured ``param`` becomes the request field it came from (no message parsing)."""

from __future__ import annotations

import pytest

from gptkit.engine import SamplingParams
from gptkit.engine.params import DEFAULT_MAX_TOKENS
from gptkit.errors import ContextLengthError, GenerationError, TokenizerError
from gptkit.serve.errors import APIError
from gptkit.serve.params import chat_params, completion_params, library_error
from gptkit.serve.schemas import ChatCompletionRequest, CompletionRequest

MESSAGES = [{"role": "user", "content": "Hi"}]


def completion(**fields):
    return CompletionRequest(prompt="Hi", **fields)


def chat(**fields):
    return ChatCompletionRequest(messages=MESSAGES, **fields)


def test_unset_fields_keep_sampling_params_defaults():
    assert completion_params(completion(), DEFAULT_MAX_TOKENS).base == SamplingParams()
    assert chat_params(chat(), 7).base == SamplingParams(max_tokens=7)


def test_set_fields_reach_sampling_params():
    body = completion(
        temperature=0.5, top_p=0.9, top_k=-1, seed=3, stop=["."], min_tokens=1, ignore_eos=True,
        logit_bias={"5": -100}, logprobs=2, echo=True, presence_penalty=0.5,
    )  # fmt: skip
    params = completion_params(body, 4).base
    assert params == SamplingParams(
        max_tokens=4, temperature=0.5, top_p=0.9, top_k=0, seed=3, stop=["."], min_tokens=1,
        ignore_eos=True, logit_bias={5: -100.0}, logprobs=2, prompt_logprobs=2, presence_penalty=0.5,
    )  # fmt: skip


def test_choice_seeds_count_up_from_the_request_seed_and_wrap_at_int64():
    params = completion_params(completion(seed=2**63 - 1, n=3), 4)
    assert [params.for_choice(i).seed for i in range(3)] == [2**63 - 1, -(2**63), -(2**63) + 1]
    unseeded = completion_params(completion(n=2), 4)
    assert unseeded.for_choice(1) is unseeded.base


@pytest.mark.parametrize(
    ("make", "fields", "param", "start"),
    [
        (completion_params, dict(max_tokens=-1), "max_tokens", "max_tokens must be >= 0"),
        (completion_params, dict(temperature=-0.5), "temperature", "temperature must be >= 0"),
        (completion_params, dict(top_p=0.0), "top_p", "top_p must be in (0, 1]"),
        (completion_params, dict(min_tokens=-1), "min_tokens", "min_tokens must be >= 0"),
        (completion_params, dict(min_tokens=9), "min_tokens", "min_tokens=9 must be <= max_tokens"),
        (completion_params, dict(stop=""), "stop", "stop must be a non-empty string"),
        (completion_params, dict(stop=["a", ""]), "stop", "stop must be a non-empty string"),
        (completion_params, dict(stop_token_ids=[-1]), "stop_token_ids", "stop_token_ids must be"),
        (completion_params, dict(logit_bias={"-5": 1}), "logit_bias", "logit_bias keys"),
        (completion_params, dict(logprobs=-1), "logprobs", "logprobs must be >= 0"),
        (completion_params, dict(logprobs=-1, echo=True), "logprobs", "logprobs must be >= 0"),
        (chat_params, dict(logprobs=True, top_logprobs=-1), "top_logprobs", "logprobs must be >= 0"),
        (chat_params, dict(min_tokens=9), "min_tokens", "min_tokens=9 must be <= max_tokens"),
    ],
)
def test_library_errors_name_the_request_field(make, fields, param, start):
    body = (completion if make is completion_params else chat)(**fields)
    max_tokens = body.max_tokens if getattr(body, "max_tokens", None) is not None else 4
    with pytest.raises(APIError) as raised:
        make(body, max_tokens)
    error = raised.value
    assert (error.status, error.param, error.type) == (400, param, "invalid_request_error")
    assert error.message.startswith(start)


def test_engine_errors_name_the_prompt_field_of_each_endpoint():
    too_long = ContextLengthError("the prompt does not fit", param="prompt")
    assert completion_params(completion(), 4).error(too_long).param == "prompt"
    assert chat_params(chat(), 4).error(too_long).code == "context_length_exceeded"
    assert chat_params(chat(), 4).error(too_long).param == "messages"
    unnamed = TokenizerError("token id 9 is out of range")
    assert chat_params(chat(), 4).error(unnamed).param == "messages"
    over = GenerationError("min_tokens=5 must be <= max_tokens=4", param="max_tokens")
    assert chat_params(chat(max_completion_tokens=4), 4).error(over).param == "max_completion_tokens"
    assert chat_params(chat(max_tokens=4), 4).error(over).param == "max_tokens"
    assert library_error(GenerationError("x", param="logit_bias"), {}).param == "logit_bias"
