"""Prompt token ids from request text or chat messages (the chat template), with 400s for what fails."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jinja2

from gptkit.errors import TokenizerError
from gptkit.serve.errors import invalid
from gptkit.serve.tools import ToolContext, chat_inputs


def encode_text(tokenizer: Any, text: str, add_special_tokens: bool = True) -> list[int]:
    """Token ids of prompt text; special-token text becomes the special token (as vLLM does)."""
    return tokenizer.encode(text, add_special_tokens=add_special_tokens, allowed_special="all")


def completion_prompts(tokenizer: Any, prompt: Any) -> list[list[int]]:
    """The token ids of each prompt of a completions request (text, texts, ids or lists of ids)."""
    if isinstance(prompt, str):
        return [encode_text(tokenizer, prompt)]
    if all(isinstance(p, str) for p in prompt):
        return [encode_text(tokenizer, p) for p in prompt]
    if all(isinstance(t, int) for t in prompt):
        return [list(prompt)]
    return [list(p) for p in prompt]


def render_chat(
    tokenizer: Any, messages: Sequence[Any], add_generation_prompt: bool, tools: ToolContext | None = None
) -> list[int]:
    """Prompt ids of chat messages (and the tools offered) through the tokenizer's chat template."""
    dicts, tools_variable = chat_inputs(tokenizer, list(messages), tools)
    try:
        return tokenizer.apply_chat_template(
            dicts, add_generation_prompt=add_generation_prompt, tools=tools_variable
        )
    except (TokenizerError, jinja2.TemplateError) as error:
        raise invalid("messages", f"the chat template cannot render these messages: {error}") from None
