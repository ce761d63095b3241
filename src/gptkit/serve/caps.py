"""The per-request caps the server checks before any work: tokens asked for, sequences, stop strings."""

from __future__ import annotations

from typing import Any

from gptkit.serve.admission import bulk_limit
from gptkit.serve.config import Limits
from gptkit.serve.errors import invalid

TOKEN_FIELDS = ("max_tokens", "max_completion_tokens")


def check_token_caps(limits: Limits, body: Any) -> None:
    """A 400 naming the field when ``max_tokens`` / ``max_completion_tokens`` exceed ``--max-tokens``."""
    cap = limits.max_tokens
    if cap is None:
        return
    for name in TOKEN_FIELDS:
        value = getattr(body, name, None) if name in body.model_fields_set else None
        if value is not None and value > cap:
            raise invalid(
                name,
                f"{name}={value} is more than this server's cap of {cap} tokens per choice (--max-tokens)",
                code="max_tokens_exceeded",
            )


def default_max_tokens(limits: Limits, wanted: int) -> int:
    """A default length, within ``--max-tokens`` when one is set."""
    return wanted if limits.max_tokens is None else min(wanted, limits.max_tokens)


def sequence_cap(limits: Limits, max_queue: int) -> int:
    """Sequences (prompts x n) one request may ask for: ``max_choices``, and what the queue can take."""
    return min(limits.max_choices, bulk_limit(max_queue))


def check_request(limits: Limits, max_queue: int, body: Any, prompts: int, prompt_param: str) -> None:
    """400s for ``n``, prompts x n and the number of stop strings past the server's limits."""
    if body.n > limits.max_n:
        raise invalid("n", f"n must be at most {limits.max_n}, got {body.n}")
    cap = sequence_cap(limits, max_queue)
    if body.n * prompts > cap:
        raise invalid(
            "n" if prompts == 1 else prompt_param,
            f"prompts x n must be at most {cap} sequences per request, got {prompts} x {body.n}",
            code="too_many_sequences",
        )
    stop = body.stop
    if stop is not None and not isinstance(stop, str) and len(stop) > limits.max_stop:
        raise invalid("stop", f"at most {limits.max_stop} stop strings are allowed, got {len(stop)}")
