"""Render a model's Jinja chat template the way transformers does, inside jinja2's immutable sandbox."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from gptkit.errors import TokenizerError


def _raise_exception(message: str):
    """Template helper: abort rendering with the template's own message."""
    from jinja2.exceptions import TemplateError

    raise TemplateError(message)


def _tojson(
    value: Any, ensure_ascii: bool = False, indent=None, separators=None, sort_keys: bool = False
) -> str:
    """Template filter: JSON without jinja's HTML escaping (as transformers overrides it)."""
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def _strftime_now(format: str) -> str:
    """Template helper: the current local time formatted."""
    return datetime.now().strftime(format)


@functools.lru_cache(maxsize=16)
def compile_template(source: str):
    """A compiled template in an ImmutableSandboxedEnvironment with transformers' helpers."""
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    try:
        return env.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise TokenizerError(f"the chat template is not valid Jinja: {exc}") from exc


def check_messages(messages: Any) -> list[dict[str, Any]]:
    """The conversation as a list of dicts, or TokenizerError."""
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise TokenizerError(
            f"messages must be a list of dicts with 'role' and 'content', got {type(messages).__name__}"
        )
    for message in messages:
        if not isinstance(message, Mapping) or "role" not in message:
            raise TokenizerError(f"every message must be a dict with a 'role' key, got {message!r}")
    return [dict(m) for m in messages]


def render(source: str, messages: Any, add_generation_prompt: bool, **variables: Any) -> str:
    """The conversation rendered by the template; variables are visible to it (bos_token, tools, ...)."""
    from jinja2.exceptions import TemplateError

    template = compile_template(source)
    try:
        return template.render(
            messages=check_messages(messages), add_generation_prompt=add_generation_prompt, **variables
        )
    except TemplateError as exc:
        raise TokenizerError(f"the chat template refused this conversation: {exc}") from exc
