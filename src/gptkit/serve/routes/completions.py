"""POST /v1/completions: OpenAI's (legacy) completions, prompts as text or token ids, echo and logprobs."""

from __future__ import annotations

from fastapi import APIRouter, Request

from gptkit.engine import Completion
from gptkit.engine.params import DEFAULT_MAX_TOKENS
from gptkit.serve import caps
from gptkit.serve import openai_format as fmt
from gptkit.serve.dispatch import Choice, make_choices
from gptkit.serve.errors import invalid
from gptkit.serve.params import completion_params
from gptkit.serve.prompts import completion_prompts
from gptkit.serve.respond import respond
from gptkit.serve.schemas import CompletionRequest
from gptkit.serve.state import ServerState, State, check_model
from gptkit.serve.streaming import completion_chunks

router = APIRouter()


@router.post("/v1/completions")
async def create_completion(body: CompletionRequest, http_request: Request, state: ServerState = State):
    """OpenAI's (legacy) completions: prompts as text or token ids, echo and logprobs, streaming."""
    check_model(state, body.model)
    if body.suffix:
        raise invalid("suffix", "suffix is not supported")
    if body.stream and body.echo and body.logprobs is not None:
        raise invalid("echo", "echo with logprobs is not supported when streaming")
    caps.check_token_caps(state.limits, body)
    prompts = completion_prompts(state.tokenizer, body.prompt)
    max_tokens = body.max_tokens
    if max_tokens is None:
        max_tokens = caps.default_max_tokens(state.limits, DEFAULT_MAX_TOKENS)
    choices = make_choices(state, body, prompts, completion_params(body, max_tokens))

    def choice(c: Choice, completion: Completion) -> dict:
        echoed = c.prompt_ids if body.echo else None
        return fmt.completion_choice(c.index, completion, state.token_text, echoed, body.logprobs is not None)

    return await respond(
        state, body, choices, http_request, completion_chunks, (fmt.COMPLETION, "cmpl"), choice
    )
