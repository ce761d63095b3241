"""POST /v1/chat/completions: messages through the model's chat template, streaming, logprobs, tools."""

from __future__ import annotations

import functools

from fastapi import APIRouter, Request

from gptkit.engine import Completion
from gptkit.serve import caps, tools
from gptkit.serve import openai_format as fmt
from gptkit.serve.dispatch import Choice, make_choices
from gptkit.serve.errors import invalid
from gptkit.serve.params import chat_params
from gptkit.serve.prompts import render_chat
from gptkit.serve.respond import respond
from gptkit.serve.schemas import ChatCompletionRequest
from gptkit.serve.state import ServerState, State, check_model
from gptkit.serve.streaming import chat_chunks

router = APIRouter()


@router.post("/v1/chat/completions")
async def create_chat_completion(
    body: ChatCompletionRequest, http_request: Request, state: ServerState = State
):
    """OpenAI's chat completions: messages through the model's chat template, streaming, logprobs."""
    check_model(state, body.model)
    if body.top_logprobs is not None and not body.logprobs:
        raise invalid("top_logprobs", "top_logprobs needs logprobs to be true")
    caps.check_token_caps(state.limits, body)
    tool_ctx = tools.tool_context(body)
    prompt_ids = render_chat(state.tokenizer, body.messages, body.add_generation_prompt, tool_ctx)
    max_tokens = body.max_completion_tokens or body.max_tokens
    if max_tokens is None:
        max_tokens = _default_max_tokens(state, len(prompt_ids))
    params = chat_params(body, max_tokens, tools.tool_constraint(tool_ctx, body))
    choices = make_choices(state, body, [prompt_ids], params)

    def choice(c: Choice, completion: Completion) -> dict:
        made = fmt.chat_choice(c.index, completion, state.token_text, body.logprobs)
        return tools.with_tool_calls(made, tool_ctx)

    chunks = functools.partial(chat_chunks, tool_ctx=tool_ctx)
    return await respond(state, body, choices, http_request, chunks, (fmt.CHAT, "chatcmpl"), choice)


def _default_max_tokens(state: ServerState, prompt_len: int) -> int:
    """Chat's default: the rest of the context (at least 1, so an overlong prompt is reported)."""
    return caps.default_max_tokens(state.limits, max(state.max_seq_len - prompt_len, 1))
