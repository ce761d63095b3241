"""What every route reads: the app's :class:`ServerState` (as a FastAPI dependency) and the model check."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import Depends, Request

from gptkit.model.adapters import adapter_selection
from gptkit.serve import openai_format as fmt
from gptkit.serve.config import Limits, ServeConfig
from gptkit.serve.driver import AsyncEngine
from gptkit.serve.errors import APIError
from gptkit.serve.metrics import ServerMetrics


@dataclass
class ServerState:
    """Everything the routes need: the driver, the tokenizer, the configuration and the metrics."""

    driver: AsyncEngine
    tokenizer: Any
    config: ServeConfig
    metrics: ServerMetrics
    token_text: fmt.TokenText = field(init=False)

    def __post_init__(self) -> None:
        self.token_text = fmt.TokenText(self.tokenizer)

    @property
    def model_name(self) -> str:
        return self.config.model_name

    @property
    def api_key(self) -> str | None:
        return self.config.api_key or None

    @property
    def limits(self) -> Limits:
        return self.config.limits

    @property
    def timeout_s(self) -> float:
        return self.config.timeout_s

    @property
    def max_seq_len(self) -> int:
        return self.driver.engine.max_seq_len

    @property
    def model(self) -> Any:
        return self.driver.engine.model

    @property
    def adapters(self) -> list[str]:
        """The LoRA adapters requests may name as their ``model`` (``gptkit serve --lora NAME=PATH``)."""
        selection = adapter_selection(self.model)
        if selection is None:
            return []
        return [name for slot, name in enumerate(selection.names) if slot != selection.default]

    def adapter_for(self, model_name: str | None) -> str | None:
        """The adapter a request's ``model`` names (None: the base model)."""
        return model_name if model_name is not None and model_name in self.adapters else None


def _state(request: Request) -> ServerState:
    return request.app.state.gptkit


State = Depends(_state)  # a route's ``state: ServerState = State`` parameter


def check_model(state: ServerState, name: str | None) -> None:
    """A request naming neither the served model nor one of its adapters is a 404 (omitting it is fine)."""
    if name is not None and name != state.model_name and name not in state.adapters:
        served = ", ".join(repr(n) for n in [state.model_name, *state.adapters])
        raise APIError(
            404,
            f"The model {name!r} does not exist; this server serves {served}",
            param="model",
            code="model_not_found",
        )
