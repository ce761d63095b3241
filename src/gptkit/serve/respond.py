"""The last step of both generating routes: submit the choices, then stream SSE or answer once."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import Request

from gptkit.engine import Completion
from gptkit.serve import openai_format as fmt
from gptkit.serve.dispatch import Choice, collect, submit, usage
from gptkit.serve.driver import RequestStream
from gptkit.serve.schemas import SamplingOptions
from gptkit.serve.state import ServerState
from gptkit.serve.streaming import sse_response

Chunks = Callable[[ServerState, Any, list[Choice], RequestStream], AsyncIterator[str]]


async def respond(
    state: ServerState,
    body: SamplingOptions,
    choices: list[Choice],
    http_request: Request,
    chunks: Chunks,
    kind_and_prefix: tuple[str, str],
    make_choice: Callable[[Choice, Completion], dict],
) -> Any:
    """Submit the choices' requests; stream ``chunks(...)`` as SSE, or wait and build one response whose
    choices are ``make_choice(choice, completion)`` (``kind_and_prefix``: the object name and id prefix)."""
    stream = submit(state, choices)
    if body.stream:
        return sse_response(stream, chunks(state, body, choices, stream))
    completions = await collect(state, stream, http_request)
    kind, prefix = kind_and_prefix
    made = [make_choice(c, completions[c.request.id]) for c in choices]
    return fmt.envelope(
        kind, fmt.new_id(prefix), fmt.now(), state.model_name, made, usage(choices, completions)
    )
