"""Request -> SamplingParams. Fields a request leaves unset keep SamplingParams' defaults (defined there
only); SamplingParams and GenerationConfig validate every value, and their errors' ``param`` becomes the
400's ``param`` through one table of the request fields whose names differ from ours."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gptkit.engine import SamplingParams
from gptkit.errors import GPTKitError
from gptkit.serve.errors import APIError, from_library_error
from gptkit.serve.schemas import ChatCompletionRequest, CompletionRequest, SamplingOptions
from gptkit.serve.structured import OutputConstraint, output_constraint

INT64 = 2**63
PROMPT = "prompt"  # the param of library errors about the prompt (or None)
# SamplingParams field (or PROMPT) -> the request field it comes from, where the names differ
COMPLETION_FIELDS: Mapping[str, str] = {"prompt_logprobs": "logprobs"}
CHAT_FIELDS: Mapping[str, str] = {PROMPT: "messages", "logprobs": "top_logprobs"}
# request fields that SamplingParams takes as they are, when set
PASSED_AS_IS = (
    "temperature",
    "top_p",
    "repetition_penalty",
    "stop",
    "stop_token_ids",
    "ignore_eos",
    "min_tokens",
    "presence_penalty",
    "frequency_penalty",
    "speculative",
)


@dataclass(frozen=True)
class RequestParams:
    """The SamplingParams of a request's choices (choice ``i`` is seeded with ``seed + i``)."""

    base: SamplingParams  # choice 0's
    seed: int | None  # the request's
    fields: Mapping[str, str]  # SamplingParams field -> request field, where they differ

    @property
    def prompt_field(self) -> str:
        return self.request_field(PROMPT)

    def request_field(self, name: str) -> str:
        return self.fields.get(name, name)

    def for_choice(self, index: int) -> SamplingParams:
        if self.seed is None or index == 0:
            return self.base
        return dataclasses.replace(self.base, seed=_wrap_int64(self.seed + index))

    def error(self, error: GPTKitError) -> APIError:
        return library_error(error, self.fields)


def library_error(error: GPTKitError, fields: Mapping[str, str]) -> APIError:
    """The 400 of a library error, naming the request field to blame (the prompt when none is)."""
    param = error.param or PROMPT
    return from_library_error(error, fields.get(param, param))


def completion_params(body: CompletionRequest, max_tokens: int) -> RequestParams:
    """A completions request's params (``echo`` with ``logprobs`` scores the prompt too)."""
    prompt_logprobs = body.logprobs if body.echo else None
    extra = {"logprobs": body.logprobs, "prompt_logprobs": prompt_logprobs}
    return _request_params(body, COMPLETION_FIELDS, max_tokens, extra, output_constraint(body))


def chat_params(
    body: ChatCompletionRequest, max_tokens: int, tool_constraint: OutputConstraint | None = None
) -> RequestParams:
    """A chat request's params (``max_tokens``: max_completion_tokens, max_tokens or the default); the
    output follows ``tool_constraint`` when the tools set one, else the request's own constraint."""
    token_field = "max_completion_tokens" if body.max_completion_tokens else "max_tokens"
    fields = {**CHAT_FIELDS, "max_tokens": token_field}
    logprobs = (body.top_logprobs or 0) if body.logprobs else None
    constraint = tool_constraint or output_constraint(body)
    return _request_params(body, fields, max_tokens, {"logprobs": logprobs}, constraint)


def _request_params(
    body: SamplingOptions,
    fields: Mapping[str, str],
    max_tokens: int,
    extra: dict[str, Any],
    constraint: OutputConstraint | None,
) -> RequestParams:
    if constraint is not None:
        extra = {**extra, **constraint.sampling}
        fields = {**fields, constraint.option: constraint.field}
    options = {name: getattr(body, name) for name in PASSED_AS_IS if getattr(body, name) is not None}
    if body.top_k is not None:
        options["top_k"] = max(body.top_k, 0)  # vLLM's -1 means off, as 0 does here
    if body.logit_bias:
        options["logit_bias"] = {int(k): v for k, v in body.logit_bias.items()}
    if body.seed is not None:
        options["seed"] = _wrap_int64(body.seed)
    try:
        base = SamplingParams(max_tokens=max_tokens, **options, **extra)
    except GPTKitError as error:
        raise library_error(error, fields) from None
    return RequestParams(base, body.seed, fields)


def _wrap_int64(value: int) -> int:
    return (value + INT64) % (2 * INT64) - INT64
