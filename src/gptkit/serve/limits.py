"""Server limits and their defaults (no web framework imports: the CLI reads them to build --help)."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MAX_QUEUE = 256  # requests waiting for a slot before new ones get 429
DEFAULT_TIMEOUT_S = 600.0  # one API call's generation time at most
DEFAULT_READ_TIMEOUT_S = 30.0  # a request body that takes longer is refused with 408


@dataclass(frozen=True)
class Limits:
    """What one request may ask for. ``None`` token limits mean the engine slot size."""

    max_n: int = 16  # choices per prompt
    max_tokens: int | None = None  # max_tokens / max_completion_tokens above this are refused
    max_prompt_tokens: int | None = None
    max_stop: int = 16  # stop strings per request
    max_choices: int = 64  # sequences (prompts x n) per request
    max_body_bytes: int = 4 * 1024 * 1024
    read_timeout_s: float = DEFAULT_READ_TIMEOUT_S  # to receive a whole request body
