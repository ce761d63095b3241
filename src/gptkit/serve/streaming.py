"""Server-sent events: the chunks of a streamed completion or chat completion, and the SSE response."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

from gptkit.engine import Completion
from gptkit.serve import openai_format as fmt
from gptkit.serve.dispatch import Choice, events_or_error, usage
from gptkit.serve.driver import RequestStream
from gptkit.serve.errors import APIError
from gptkit.serve.schemas import ChatCompletionRequest, CompletionRequest
from gptkit.serve.state import ServerState
from gptkit.serve.tools import ToolCallParser, ToolContext

ChunkWriter = Callable[..., str]


def sse_response(stream: RequestStream, chunks: AsyncIterator[str]) -> StreamingResponse:
    """An SSE response; the background task aborts what is left if the client goes away mid-stream."""
    return StreamingResponse(
        chunks,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        background=BackgroundTask(stream.close),
    )


def chunk_writer(state: ServerState, kind: str, id_prefix: str, include_usage: bool) -> ChunkWriter:
    """``chunk(choices, usage=None) -> "data: ...\\n\\n"`` for one streamed response (one id, one time)."""
    response_id, created = fmt.new_id(id_prefix), fmt.now()

    def chunk(choice_list: list[dict], usage: dict | None = None) -> str:
        return fmt.sse(
            fmt.envelope(kind, response_id, created, state.model_name, choice_list, usage, include_usage)
        )

    return chunk


async def completion_chunks(
    state: ServerState, body: CompletionRequest, choices: list[Choice], stream: RequestStream
) -> AsyncIterator[str]:
    """SSE chunks of a streamed completion, then the usage chunk when asked, then [DONE]."""
    chunk = chunk_writer(state, fmt.COMPLETION, "cmpl", body.include_usage)
    by_id = {c.request.id: c for c in choices}
    offsets = {c.index: fmt.OffsetCounter(state.token_text) for c in choices}
    if body.echo:
        for c in choices:
            prompt_text = state.tokenizer.decode(c.prompt_ids)
            offsets[c.index].skip(prompt_text)
            yield chunk([fmt.completion_chunk_choice(c.index, prompt_text)])
    completions: dict[int, Completion] = {}
    async for event in events_or_error(state, stream):
        if isinstance(event, APIError):
            yield fmt.sse(event.body())
            break
        choice = by_id[event.request_id]
        logprobs = None
        if body.logprobs is not None and event.logprob is not None:
            logprobs = fmt.completion_logprobs(
                state.token_text,
                [event.token_id],
                [event.logprob],
                offsets[choice.index].offset(event.token_id),
            )
        reason = event.completion.finish_reason if event.completion else None
        if event.completion is not None:
            completions[event.request_id] = event.completion
        if event.delta or logprobs or reason:
            yield chunk([fmt.completion_chunk_choice(choice.index, event.delta, logprobs, reason)])
    else:
        if body.include_usage:
            yield chunk([], usage(choices, completions))
    yield fmt.SSE_DONE


async def chat_chunks(
    state: ServerState,
    body: ChatCompletionRequest,
    choices: list[Choice],
    stream: RequestStream,
    tool_ctx: ToolContext | None = None,
) -> AsyncIterator[str]:
    """SSE chunks of a streamed chat completion: the role first, content (or tool-call) deltas, the
    finish, [DONE]. With tools offered, each choice's text goes through a :class:`ToolCallParser`."""
    chunk = chunk_writer(state, fmt.CHAT_CHUNK, "chatcmpl", body.include_usage)
    by_id = {c.request.id: c for c in choices}
    parsers = {c.index: ToolCallParser(tool_ctx) for c in choices} if tool_ctx is not None else {}
    for c in choices:
        yield chunk([fmt.chat_chunk_choice(c.index, {"role": "assistant", "content": ""})])
    completions: dict[int, Completion] = {}
    async for event in events_or_error(state, stream):
        if isinstance(event, APIError):
            yield fmt.sse(event.body())
            break
        index = by_id[event.request_id].index
        logprobs = None
        if body.logprobs and event.logprob is not None:
            logprobs = {
                "content": fmt.chat_logprob_content(state.token_text, [event.logprob]),
                "refusal": None,
            }
        parser = parsers.get(index)
        deltas = _chat_deltas(parser, event.delta, event.completion is not None)
        if logprobs and not deltas:
            deltas = [{}]
        for i, delta in enumerate(deltas):
            yield chunk([fmt.chat_chunk_choice(index, delta, logprobs if i == 0 else None)])
        if event.completion is not None:
            completions[event.request_id] = event.completion
            reason = event.completion.finish_reason
            if parser is not None and parser.calls and reason == "stop":
                reason = "tool_calls"
            yield chunk([fmt.chat_chunk_choice(index, {}, None, reason)])
    else:
        if body.include_usage:
            yield chunk([], usage(choices, completions))
    yield fmt.SSE_DONE


def _chat_deltas(parser: ToolCallParser | None, text: str, last: bool) -> list[dict]:
    """The delta objects for an event's new text: content as it is, or what the tool-call parser makes."""
    if parser is None:
        return [{"content": text}] if text else []
    return parser.feed(text) + (parser.finish() if last else [])
