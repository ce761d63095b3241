"""How the server runs: :class:`ServeConfig` (built once, from ``gptkit serve``'s options or from Python)
and the per-request :class:`Limits`. Every server default is defined here and nowhere else; no web
framework imports, so the CLI reads them to build ``--help``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from gptkit.errors import ConfigError


@dataclass(frozen=True)
class Limits:
    """What one request may ask for (past a limit: a 400, or 413/408 for the body)."""

    max_n: int = 16  # choices per prompt (--max-n)
    max_tokens: int | None = None  # max_tokens / max_completion_tokens above this are refused; None: no cap
    max_stop: int = 16  # stop strings per request
    max_choices: int = 64  # sequences (prompts x n) per request (--max-choices)
    max_body_bytes: int = 4 * 1024 * 1024  # a larger request body is refused with 413
    read_timeout_s: float = 30.0  # to receive a whole request body, else 408 (--read-timeout)


@dataclass(frozen=True)
class ServeConfig:
    """Everything about serving one model but which model it is and how it is loaded."""

    model_name: str | None = None  # the name clients use; None: the name or path it was loaded by
    api_key: str | None = None  # require "Authorization: Bearer KEY" on the API routes; None or "": open
    max_batch_size: int = 16  # requests decoded together (engine slots)
    max_seq_len: int | None = None  # tokens per slot; None: the model's context, at most the engine's cap
    max_queue: int = 256  # sequences waiting for a slot before new requests get 429
    timeout_s: float = 600.0  # one API call's generation time at most, else 408 (--timeout)
    limits: Limits = field(default_factory=Limits)
    compile: bool = False  # torch.compile the decode step, compiled at startup
    prefix_cache_mb: float | None = None  # KV blocks kept for reuse (--prefix-cache-mb); None: 512, 0: off
    speculative: Any = None  # "ngram", a draft model, or "draft:MODEL" (load_app loads it); None: off
    num_speculative_tokens: int | None = None  # drafts per step (None: the Engine's default, 5)
    host: str = "127.0.0.1"  # where run() listens
    port: int = 8000
    log_level: str = "info"  # uvicorn's

    def replace(self, **changes: Any) -> ServeConfig:
        """A copy with ``changes`` applied (field names only: a typo raises TypeError)."""
        return dataclasses.replace(self, **changes)


ROUTINGS = ("session", "pow2")


@dataclass(frozen=True)
class RayOptions:
    """How ``gptkit serve --ray`` (gptkit[ray]) spreads the app over Ray Serve replicas."""

    replicas: int = 1  # fixed replica count (ignored when autoscaling is set)
    autoscaling: dict[str, Any] | None = None  # Ray Serve's AutoscalingConfig fields, passed through as given
    cpus_per_replica: float = 1.0  # Ray CPUs each replica reserves (its engine thread's share of the node)
    routing: str = (
        "session"  # "session": the x-session-id header sticks to one replica; "pow2": Ray's default
    )
    address: str | None = None  # Ray cluster to join; None: $RAY_ADDRESS, else a local cluster
    app_name: str = "gptkit"

    def __post_init__(self) -> None:
        if self.routing not in ROUTINGS:
            raise ConfigError(f"routing={self.routing!r} is not one of: {', '.join(ROUTINGS)}")
        if self.replicas < 1 or self.cpus_per_replica <= 0:
            raise ConfigError("replicas must be at least 1 and cpus_per_replica positive")
