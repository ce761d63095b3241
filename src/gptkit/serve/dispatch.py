"""From a request's choices to engine events: building the engine requests, submitting them (429 when the
queue is full), and reading their events within the request timeout (408) or until the client leaves."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi import Request

from gptkit.engine import Completion
from gptkit.errors import GenerationError, TokenizerError
from gptkit.serve import caps
from gptkit.serve import openai_format as fmt
from gptkit.serve.driver import EngineFailed, QueueFull, RequestStream
from gptkit.serve.errors import APIError
from gptkit.serve.params import RequestParams
from gptkit.serve.schemas import SamplingOptions
from gptkit.serve.state import ServerState

DISCONNECT_POLL_S = 0.05
RETRY_AFTER_S = 1


@dataclass
class Choice:
    """One engine request behind a response choice."""

    index: int  # the choice's index in the response
    prompt_index: int
    prompt_ids: list[int]
    request: Any


def make_choices(
    state: ServerState, body: SamplingOptions, prompts: list[list[int]], params: RequestParams
) -> list[Choice]:
    """Check the limits and build ``n`` engine requests per prompt (bad input raises a 400 here)."""
    caps.check_request(state.limits, state.driver.max_queue, body, len(prompts), params.prompt_field)
    choices = []
    for p, ids in enumerate(prompts):
        for i in range(body.n):
            index = p * body.n + i
            try:
                request = state.driver.make_request(ids, params.for_choice(index))
            except (GenerationError, TokenizerError) as error:
                raise params.error(error) from None
            choices.append(Choice(index, p, ids, request))
    return choices


def usage(choices: list[Choice], completions: dict[int, Completion]) -> dict[str, Any]:
    """Prompt tokens once per prompt, completion tokens of every choice; a prompt's cached tokens are the
    fewest any of its choices took from the prefix cache (the ``n`` choices of one prompt share its
    prefill: the first computes it, the others reuse it)."""
    prompt_lengths = {c.prompt_index: len(c.prompt_ids) for c in choices}
    cached: dict[int, int] = {}
    for choice in choices:
        completion = completions.get(choice.request.id)
        if completion is not None:
            previous = cached.get(choice.prompt_index, completion.cached_tokens)
            cached[choice.prompt_index] = min(previous, completion.cached_tokens)
    completion_tokens = sum(c.completion_tokens for c in completions.values())
    return fmt.usage(sum(prompt_lengths.values()), completion_tokens, sum(cached.values()))


def submit(state: ServerState, choices: list[Choice]) -> RequestStream:
    """Queue the engine requests; a full queue is a 429 with Retry-After."""
    try:
        return state.driver.submit([c.request for c in choices])
    except QueueFull as error:
        raise APIError(
            429,
            f"the server is busy: {error}; retry later",
            type="requests",
            code="rate_limit_exceeded",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        ) from None


async def events_or_error(state: ServerState, stream: RequestStream) -> AsyncIterator[Any]:
    """The stream's events within the request timeout; a timeout or engine failure ends it with an APIError."""
    tracker = state.metrics.tracker()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + state.timeout_s
    iterator = stream.__aiter__()
    try:
        while True:
            try:
                event = await asyncio.wait_for(iterator.__anext__(), max(deadline - loop.time(), 0))
            except StopAsyncIteration:
                tracker.done()
                return
            except asyncio.TimeoutError:
                yield _timeout_error(state)
                return
            except EngineFailed as error:
                yield APIError(500, str(error), type="server_error")
                return
            tracker.event(event)
            if event.completion is not None and event.completion.error is not None:
                yield APIError(400, event.completion.error, type="invalid_request_error")
                return
            yield event
    finally:
        stream.close()


def _timeout_error(state: ServerState) -> APIError:
    return APIError(
        408,
        f"the request did not finish within the server's timeout of {state.timeout_s:g} s",
        type="timeout_error",
        code="request_timeout",
    )


async def collect(state: ServerState, stream: RequestStream, http_request: Request) -> dict[int, Completion]:
    """Every request's completion by id; a client that disconnects meanwhile aborts them all."""
    done: dict[int, Completion] = {}

    async def consume() -> None:
        async for event in events_or_error(state, stream):
            if isinstance(event, APIError):
                raise event
            if event.completion is not None:
                done[event.request_id] = event.completion

    consumer = asyncio.ensure_future(consume())
    watcher = asyncio.ensure_future(_wait_for_disconnect(http_request))
    try:
        await asyncio.wait({consumer, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not consumer.done():
            consumer.cancel()
        stream.close()
    if consumer.done() and not consumer.cancelled():
        consumer.result()  # raises the APIError of a timeout or engine failure
        return done
    raise APIError(499, "the client closed the request", code="client_closed_request")


async def _wait_for_disconnect(request: Request) -> None:
    while not await request.is_disconnected():
        await asyncio.sleep(DISCONNECT_POLL_S)
