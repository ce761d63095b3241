"""The OpenAI-compatible FastAPI app. Routes stay thin: parse, build engine requests, format the answer.

Every generation goes through one :class:`AsyncEngine` (continuous batching: all clients share the model).
``n`` choices of one prompt are ``n`` engine requests; with a ``seed``, choice ``i`` of the response is
sampled with ``seed + i``, so the whole response is reproducible.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import jinja2
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import Response, StreamingResponse
from starlette.background import BackgroundTask

from gptkit.engine import Completion, Engine, SamplingParams
from gptkit.errors import ContextLengthError, GenerationError, TokenizerError
from gptkit.serve import caps
from gptkit.serve import openai_format as fmt
from gptkit.serve.driver import AsyncEngine, EngineFailed, QueueFull, RequestStream
from gptkit.serve.errors import APIError, from_library_error, install_error_handlers, invalid
from gptkit.serve.limits import DEFAULT_MAX_QUEUE, DEFAULT_TIMEOUT_S, Limits
from gptkit.serve.metrics import MetricsMiddleware, ServerMetrics
from gptkit.serve.middleware import AuthMiddleware, BodyMiddleware
from gptkit.serve.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    DetokenizeRequest,
    SamplingOptions,
    TokenizeRequest,
)
from gptkit.serve.web import router as web_router

COMPLETIONS_DEFAULT_MAX_TOKENS = 16  # OpenAI's default for /v1/completions
DISCONNECT_POLL_S = 0.05
RETRY_AFTER_S = 1
INT64 = 2**63


@dataclass
class ServerState:
    """Everything the routes need: the driver, the tokenizer, the served name, limits and metrics."""

    driver: AsyncEngine
    tokenizer: Any
    model_name: str
    api_key: str | None
    limits: Limits
    timeout_s: float
    metrics: ServerMetrics
    token_text: fmt.TokenText = field(init=False)

    def __post_init__(self) -> None:
        self.token_text = fmt.TokenText(self.tokenizer)

    @property
    def max_seq_len(self) -> int:
        return self.driver.engine.max_seq_len


@dataclass
class Choice:
    """One engine request behind a response choice."""

    index: int  # the choice's index in the response
    prompt_index: int
    prompt_ids: list[int]
    request: Any


def create_app(
    model: Any,
    tokenizer: Any,
    *,
    model_name: str,
    api_key: str | None = None,
    max_batch_size: int = 16,
    max_seq_len: int | None = None,
    max_queue: int = DEFAULT_MAX_QUEUE,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    limits: Limits | None = None,
    compile: bool = False,
    speculative: Any = None,
    num_speculative_tokens: int | None = None,
) -> FastAPI:
    """An OpenAI-compatible app serving ``model`` as ``model_name`` with continuous batching
    (``compile``: torch.compile the decode step, compiled here before the app is returned;
    ``speculative``/``num_speculative_tokens``: the Engine's speculative decoding)."""
    engine = Engine(
        model, tokenizer, max_batch_size, max_seq_len, compile=compile,
        speculative=speculative, num_speculative_tokens=num_speculative_tokens,
    )  # fmt: skip
    if compile:
        engine.warm_up()
    driver = AsyncEngine(engine, max_queue)
    metrics = ServerMetrics(
        lambda: driver.num_waiting, lambda: driver.num_running, lambda: engine.speculation
    )
    state = ServerState(
        driver, tokenizer, model_name, api_key or None, limits or Limits(), timeout_s, metrics
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        driver.start()
        yield
        driver.stop()

    app = FastAPI(title="gptkit", description="OpenAI-compatible API over gptkit's engine", lifespan=lifespan)
    app.state.gptkit = state
    install_error_handlers(app)
    app.include_router(router)
    app.include_router(web_router)
    limits = state.limits
    app.add_middleware(BodyMiddleware, max_bytes=limits.max_body_bytes, read_timeout_s=limits.read_timeout_s)
    app.add_middleware(AuthMiddleware, api_key=state.api_key)  # outside: no body is read without the key
    app.add_middleware(
        MetricsMiddleware, metrics=metrics, paths={r.path for r in [*router.routes, *web_router.routes]}
    )
    return app


def _state(request: Request) -> ServerState:
    return request.app.state.gptkit


router = APIRouter()
State = Depends(_state)


# ---- plain routes ---------------------------------------------------------------------------------
@router.get("/health")
async def health() -> dict[str, str]:
    """Liveness: 200 while the server runs."""
    return {"status": "ok"}


@router.get("/metrics")
async def metrics(state: ServerState = State) -> Response:
    """Prometheus metrics in text format."""
    return Response(state.metrics.exposition(), media_type=state.metrics.content_type)


@router.get("/v1/models")
async def list_models(state: ServerState = State) -> dict[str, Any]:
    """The one served model."""
    return {"object": "list", "data": [_model_card(state)]}


@router.get("/v1/models/{model_id:path}")
async def get_model(model_id: str, state: ServerState = State) -> dict[str, Any]:
    _check_model(state, model_id)
    return _model_card(state)


def _model_card(state: ServerState) -> dict[str, Any]:
    return {
        "id": state.model_name,
        "object": "model",
        "created": 0,
        "owned_by": "gptkit",
        "max_model_len": state.max_seq_len,
    }


def _check_model(state: ServerState, name: str | None) -> None:
    """A request naming another model than the served one is a 404 (omitting it is fine)."""
    if name is not None and name != state.model_name:
        raise APIError(
            404,
            f"The model {name!r} does not exist; this server serves {state.model_name!r}",
            param="model",
            code="model_not_found",
        )


# ---- tokenizer routes (vLLM's shapes, as lm-evaluation-harness's RemoteTokenizer uses them) ---------
@router.post("/tokenize")
async def tokenize(body: TokenizeRequest, state: ServerState = State) -> dict[str, Any]:
    """Token ids of a prompt (special-token text is recognised, like vLLM) or of chat messages."""
    _check_model(state, body.model)
    if (body.prompt is None) == (body.messages is None):
        raise invalid("prompt", "give exactly one of prompt or messages")
    if body.messages is not None:
        ids = _render_chat(state, body.messages, body.add_generation_prompt)
    else:
        ids = encode_text(state.tokenizer, body.prompt, body.add_special_tokens)
    strings = [state.token_text.string(i) for i in ids] if body.return_token_strs else None
    return {"count": len(ids), "max_model_len": state.max_seq_len, "tokens": ids, "token_strs": strings}


@router.post("/detokenize")
async def detokenize(body: DetokenizeRequest, state: ServerState = State) -> dict[str, str]:
    """The text of token ids."""
    _check_model(state, body.model)
    try:
        return {"prompt": state.tokenizer.decode(body.tokens)}
    except TokenizerError as error:
        raise invalid("tokens", str(error)) from None


@router.get("/tokenizer_info")
async def tokenizer_info(state: ServerState = State) -> dict[str, Any]:
    """The tokenizer's special tokens, chat template and length limit."""
    tokenizer = state.tokenizer
    return {
        "tokenizer_class": type(tokenizer).__name__,
        **tokenizer.special_tokens_map,
        "chat_template": tokenizer.chat_template,
        "model_max_length": state.max_seq_len,
        "vocab_size": len(tokenizer),
    }


def encode_text(tokenizer: Any, text: str, add_special_tokens: bool = True) -> list[int]:
    """Token ids of prompt text; special-token text becomes the special token (as vLLM does)."""
    return tokenizer.encode(text, add_special_tokens=add_special_tokens, allowed_special="all")


# ---- /v1/completions ------------------------------------------------------------------------------
@router.post("/v1/completions")
async def create_completion(body: CompletionRequest, http_request: Request, state: ServerState = State):
    """OpenAI's (legacy) completions: prompts as text or token ids, echo and logprobs, streaming."""
    _check_model(state, body.model)
    if body.suffix:
        raise invalid("suffix", "suffix is not supported")
    if body.stream and body.echo and body.logprobs is not None:
        raise invalid("echo", "echo with logprobs is not supported when streaming")
    caps.check_token_caps(state.limits, body)
    prompts = _completion_prompts(state, body.prompt)
    max_tokens = body.max_tokens
    if max_tokens is None or "max_tokens" not in body.model_fields_set:
        max_tokens = caps.default_max_tokens(state.limits, COMPLETIONS_DEFAULT_MAX_TOKENS)
    choices = _make_choices(
        state,
        body,
        prompts,
        "prompt",
        lambda index, _: _sampling_params(
            body,
            max_tokens,
            index,
            logprobs=body.logprobs,
            prompt_logprobs=body.logprobs if body.echo else None,
        ),
    )

    def choice(c: Choice, completion: Completion) -> dict:
        echoed = c.prompt_ids if body.echo else None
        return fmt.completion_choice(c.index, completion, state.token_text, echoed, body.logprobs is not None)

    return await _respond(
        state, body, choices, http_request, _completion_chunks, (fmt.COMPLETION, "cmpl"), choice
    )


def _completion_prompts(state: ServerState, prompt: Any) -> list[list[int]]:
    """The token ids of each prompt of a completions request."""
    if isinstance(prompt, str):
        return [encode_text(state.tokenizer, prompt)]
    if all(isinstance(p, str) for p in prompt):
        return [encode_text(state.tokenizer, p) for p in prompt]
    if all(isinstance(t, int) for t in prompt):
        return [list(prompt)]
    return [list(p) for p in prompt]


def _chunk_writer(state: ServerState, kind: str, id_prefix: str, include_usage: bool):
    """``chunk(choices, usage=None) -> "data: ...\\n\\n"`` for one streamed response (one id, one time)."""
    response_id, created = fmt.new_id(id_prefix), fmt.now()

    def chunk(choice_list: list[dict], usage: dict | None = None) -> str:
        return fmt.sse(
            fmt.envelope(kind, response_id, created, state.model_name, choice_list, usage, include_usage)
        )

    return chunk


async def _completion_chunks(
    state: ServerState, body: CompletionRequest, choices: list[Choice], stream: RequestStream
) -> AsyncIterator[str]:
    """SSE chunks of a streamed completion, then the usage chunk when asked, then [DONE]."""
    chunk = _chunk_writer(state, fmt.COMPLETION, "cmpl", body.include_usage)
    by_id = {c.request.id: c for c in choices}
    offsets = {c.index: fmt.OffsetCounter(state.token_text) for c in choices}
    if body.echo:
        for c in choices:
            prompt_text = state.tokenizer.decode(c.prompt_ids)
            offsets[c.index].skip(prompt_text)
            yield chunk([fmt.completion_chunk_choice(c.index, prompt_text)])
    completions: dict[int, Completion] = {}
    async for event in _events_or_error(state, stream):
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
            yield chunk([], _usage(choices, completions))
    yield fmt.SSE_DONE


# ---- /v1/chat/completions -------------------------------------------------------------------------
@router.post("/v1/chat/completions")
async def create_chat_completion(
    body: ChatCompletionRequest, http_request: Request, state: ServerState = State
):
    """OpenAI's chat completions: messages through the model's chat template, streaming, logprobs."""
    _check_model(state, body.model)
    if body.top_logprobs is not None and not body.logprobs:
        raise invalid("top_logprobs", "top_logprobs needs logprobs to be true")
    if body.response_format is not None and body.response_format.type != "text":
        raise invalid("response_format", f"response_format {body.response_format.type!r} is not supported")
    caps.check_token_caps(state.limits, body)
    prompt_ids = _render_chat(state, body.messages, body.add_generation_prompt)
    max_tokens = body.max_completion_tokens or body.max_tokens
    param = "max_completion_tokens" if body.max_completion_tokens else "max_tokens"
    logprobs = (body.top_logprobs or 0) if body.logprobs else None

    def params(index: int, ids: list[int]) -> SamplingParams:
        wanted = max_tokens if max_tokens is not None else _default_chat_max_tokens(state, len(ids))
        return _sampling_params(body, wanted, index, logprobs=logprobs, max_tokens_param=param)

    choices = _make_choices(state, body, [prompt_ids], "messages", params)

    def choice(c: Choice, completion: Completion) -> dict:
        return fmt.chat_choice(c.index, completion, state.token_text, body.logprobs)

    return await _respond(state, body, choices, http_request, _chat_chunks, (fmt.CHAT, "chatcmpl"), choice)


async def _respond(state, body, choices, http_request, chunks, kind_and_prefix, make_choice) -> Any:
    """Submit the choices' requests; stream ``chunks(...)`` as SSE, or wait and build one response whose
    choices are ``make_choice(choice, completion)`` (``kind_and_prefix``: the object name and id prefix)."""
    stream = _submit(state, choices)
    if body.stream:
        return _sse_response(stream, chunks(state, body, choices, stream))
    completions = await _collect(state, stream, http_request)
    kind, prefix = kind_and_prefix
    made = [make_choice(c, completions[c.request.id]) for c in choices]
    return fmt.envelope(
        kind, fmt.new_id(prefix), fmt.now(), state.model_name, made, _usage(choices, completions)
    )


def _default_chat_max_tokens(state: ServerState, prompt_len: int) -> int:
    """Chat's default: the rest of the context (at least 1, so an overlong prompt is reported)."""
    return caps.default_max_tokens(state.limits, max(state.max_seq_len - prompt_len, 1))


def _render_chat(state: ServerState, messages: Sequence[Any], add_generation_prompt: bool) -> list[int]:
    """Prompt ids of chat messages through the tokenizer's chat template."""
    dicts = [_message_dict(m) for m in messages]
    try:
        return state.tokenizer.apply_chat_template(dicts, add_generation_prompt=add_generation_prompt)
    except (TokenizerError, jinja2.TemplateError) as error:
        raise invalid("messages", f"the chat template cannot render these messages: {error}") from None


def _message_dict(message: Any) -> dict[str, str]:
    role = "system" if message.role == "developer" else message.role
    out = {"role": role, "content": message.text()}
    if message.name:
        out["name"] = message.name
    return out


async def _chat_chunks(
    state: ServerState, body: ChatCompletionRequest, choices: list[Choice], stream: RequestStream
) -> AsyncIterator[str]:
    """SSE chunks of a streamed chat completion: the role first, content deltas, the finish, [DONE]."""
    chunk = _chunk_writer(state, fmt.CHAT_CHUNK, "chatcmpl", body.include_usage)
    by_id = {c.request.id: c for c in choices}
    for c in choices:
        yield chunk([fmt.chat_chunk_choice(c.index, {"role": "assistant", "content": ""})])
    completions: dict[int, Completion] = {}
    async for event in _events_or_error(state, stream):
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
        if event.delta or logprobs:
            yield chunk([fmt.chat_chunk_choice(index, {"content": event.delta}, logprobs)])
        if event.completion is not None:
            completions[event.request_id] = event.completion
            yield chunk([fmt.chat_chunk_choice(index, {}, None, event.completion.finish_reason)])
    else:
        if body.include_usage:
            yield chunk([], _usage(choices, completions))
    yield fmt.SSE_DONE


# ---- shared generation plumbing -------------------------------------------------------------------
def _make_choices(
    state: ServerState,
    body: SamplingOptions,
    prompts: list[list[int]],
    prompt_param: str,
    params_for: Callable[[int, list[int]], SamplingParams],
) -> list[Choice]:
    """Check the limits and build ``n`` engine requests per prompt (bad input raises a 400 here)."""
    limits = state.limits
    caps.check_request(limits, state.driver.max_queue, body, len(prompts), prompt_param)
    max_prompt = limits.max_prompt_tokens or state.max_seq_len
    choices = []
    for p, ids in enumerate(prompts):
        if len(ids) > max_prompt:
            raise invalid(
                prompt_param,
                f"the prompt has {len(ids)} tokens, more than the {max_prompt} allowed",
                code="context_length_exceeded",
            )
        for i in range(body.n):
            index = p * body.n + i
            try:
                request = state.driver.make_request(ids, params_for(index, ids))
            except ContextLengthError as error:
                raise from_library_error(error, prompt_param) from None
            except (GenerationError, TokenizerError) as error:
                raise from_library_error(error, _param_in(str(error), body, prompt_param)) from None
            choices.append(Choice(index, p, ids, request))
    return choices


def _sampling_params(
    body: SamplingOptions,
    max_tokens: int,
    index: int,
    *,
    logprobs: int | None,
    prompt_logprobs: int | None = None,
    max_tokens_param: str = "max_tokens",
) -> SamplingParams:
    """The engine's SamplingParams for choice ``index`` of a request (seeded with ``seed + index``)."""
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=_temperature(body.temperature),
        top_p=1.0 if body.top_p is None else body.top_p,
        top_k=max(body.top_k or 0, 0),  # vLLM's -1 means off, as 0 does here
        repetition_penalty=body.repetition_penalty or 1.0,
        seed=None if body.seed is None else _wrap_int64(body.seed + index),
        stop=body.stop,
        stop_token_ids=body.stop_token_ids,
        ignore_eos=body.ignore_eos,
        min_tokens=body.min_tokens,
        presence_penalty=body.presence_penalty or 0.0,
        frequency_penalty=body.frequency_penalty or 0.0,
        logit_bias={int(k): v for k, v in body.logit_bias.items()} if body.logit_bias else None,
        logprobs=logprobs,
        prompt_logprobs=prompt_logprobs,
        speculative=body.speculative,
    )


def _temperature(value: float | None) -> float:
    """OpenAI's default 1.0 (tiny temperatures are greedy: SamplingParams' rule)."""
    return 1.0 if value is None else value


def _wrap_int64(value: int) -> int:
    return (value + INT64) % (2 * INT64) - INT64


def _param_in(message: str, body: SamplingOptions, default: str) -> str:
    """The request field a library error message starts with (they name the parameter first)."""
    match = re.match(r"\s*([A-Za-z_]+)", message)
    name = match.group(1) if match else ""
    return name if name in type(body).model_fields else default


def _submit(state: ServerState, choices: list[Choice]) -> RequestStream:
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


async def _events_or_error(state: ServerState, stream: RequestStream) -> AsyncIterator[Any]:
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


async def _collect(state: ServerState, stream: RequestStream, http_request: Request) -> dict[int, Completion]:
    """Every request's completion by id; a client that disconnects meanwhile aborts them all."""
    done: dict[int, Completion] = {}

    async def consume() -> None:
        async for event in _events_or_error(state, stream):
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


def _sse_response(stream: RequestStream, chunks: AsyncIterator[str]) -> StreamingResponse:
    """An SSE response; the background task aborts what is left if the client goes away mid-stream."""
    return StreamingResponse(
        chunks,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        background=BackgroundTask(stream.close),
    )


def _usage(choices: list[Choice], completions: dict[int, Completion]) -> dict[str, int]:
    """Prompt tokens once per prompt, completion tokens of every choice."""
    prompt_lengths = {c.prompt_index: len(c.prompt_ids) for c in choices}
    completion_tokens = sum(c.completion_tokens for c in completions.values())
    return fmt.usage(sum(prompt_lengths.values()), completion_tokens)
