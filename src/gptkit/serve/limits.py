"""Server limits and their defaults (no web framework imports: the CLI reads them to build --help)."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MAX_QUEUE = 256  # requests waiting for a slot before new ones get 429
DEFAULT_TIMEOUT_S = 600.0  # one API call's generation time at most


@dataclass(frozen=True)
class Limits:
    """What one request may ask for. ``None`` token limits mean the engine slot size."""

    max_n: int = 16  # choices per prompt (and n x prompts per request)
    max_tokens: int | None = None
    max_prompt_tokens: int | None = None
    max_stop: int = 16  # stop strings per request
    max_choices: int = 256  # prompts x n per request
    max_body_bytes: int = 4 * 1024 * 1024
