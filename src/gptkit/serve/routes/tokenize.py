"""POST /tokenize, POST /detokenize and GET /tokenizer_info, in vLLM's shapes (as lm-evaluation-harness's
RemoteTokenizer uses them)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from gptkit.errors import TokenizerError
from gptkit.serve.errors import invalid
from gptkit.serve.prompts import encode_text, render_chat
from gptkit.serve.schemas import DetokenizeRequest, TokenizeRequest
from gptkit.serve.state import ServerState, State, check_model

router = APIRouter()


@router.post("/tokenize")
async def tokenize(body: TokenizeRequest, state: ServerState = State) -> dict[str, Any]:
    """Token ids of a prompt (special-token text is recognised, like vLLM) or of chat messages."""
    check_model(state, body.model)
    if (body.prompt is None) == (body.messages is None):
        raise invalid("prompt", "give exactly one of prompt or messages")
    if body.messages is not None:
        ids = render_chat(state.tokenizer, body.messages, body.add_generation_prompt)
    else:
        ids = encode_text(state.tokenizer, body.prompt, body.add_special_tokens)
    strings = [state.token_text.string(i) for i in ids] if body.return_token_strs else None
    return {"count": len(ids), "max_model_len": state.max_seq_len, "tokens": ids, "token_strs": strings}


@router.post("/detokenize")
async def detokenize(body: DetokenizeRequest, state: ServerState = State) -> dict[str, str]:
    """The text of token ids."""
    check_model(state, body.model)
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
