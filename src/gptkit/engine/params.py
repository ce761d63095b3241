"""SamplingParams: per-request decoding options (vLLM's names), validated by GenerationConfig."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from gptkit.errors import GenerationError
from gptkit.generation.config import GenerationConfig

GREEDY_BELOW = 1e-5  # temperatures this small decode greedily (vLLM's rule): logits / 1e-300 overflow
# GenerationConfig's option names -> ours, so validation errors name what the caller wrote
_OUR_NAMES = {
    "max_new_tokens": "max_tokens",
    "min_new_tokens": "min_tokens",
    "stop_strings": "stop",
    "eos_token_id": "stop_token_ids",
}


@dataclass(frozen=True)
class SamplingParams:
    """How one request is decoded and when it stops; ``temperature=0`` is greedy."""

    max_tokens: int = 16  # new tokens at most; 0 scores the prompt only (with prompt_logprobs)
    temperature: float = 1.0  # 0 (or below GREEDY_BELOW) -> greedy; sampling otherwise
    top_k: int = 0  # 0 disables
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    seed: int | None = None  # a private generator per request: reproducible whatever the batch holds
    stop: str | list[str] | None = None  # stop strings; the returned text ends before the first one
    stop_token_ids: list[int] | None = None  # extra ids that end the request, like EOS
    ignore_eos: bool = False  # keep going past the model's EOS
    min_tokens: int = 0  # EOS and stop_token_ids are suppressed until this many tokens were generated
    presence_penalty: float = 0.0  # OpenAI's: subtracted once from every token already generated
    frequency_penalty: float = 0.0  # OpenAI's: subtracted per occurrence in the generated tokens
    logit_bias: dict[int, float] | None = None  # token id -> added to its logit before sampling
    logprobs: int | None = None  # per generated token: its log-probability and this many top alternatives
    prompt_logprobs: int | None = None  # the same for every prompt token but the first (OpenAI's echo)
    speculative: bool = True  # False: no drafts for this request when the engine speculates

    def __post_init__(self) -> None:
        for name in ("ignore_eos", "speculative"):
            if not isinstance(getattr(self, name), bool):
                raise GenerationError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if _is_int(self.max_tokens) and self.max_tokens < 0:
            raise GenerationError(f"max_tokens must be >= 0, got {self.max_tokens}")
        self.generation_config([])  # GenerationConfig's checks, the one place they live
        if self.min_tokens > self.max_tokens:
            raise GenerationError(f"min_tokens={self.min_tokens} must be <= max_tokens={self.max_tokens}")
        for name in ("presence_penalty", "frequency_penalty"):
            _check_finite(name, getattr(self, name))
        _check_logit_bias(self.logit_bias)
        for name in ("logprobs", "prompt_logprobs"):
            value = getattr(self, name)
            if value is not None and not (_is_int(value) and value >= 0):
                raise GenerationError(f"{name} must be None or an integer >= 0, got {value!r}")

    @property
    def stops(self) -> list[str]:
        """Stop strings as a list (possibly empty)."""
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    def end_ids(self, model_eos_ids: list[int]) -> list[int]:
        """Token ids that end the request: the model's EOS (unless ignored) plus ``stop_token_ids``."""
        eos = [] if self.ignore_eos else list(model_eos_ids)
        return eos + [i for i in (self.stop_token_ids or []) if i not in eos]

    def generation_config(self, model_eos_ids: list[int]) -> GenerationConfig:
        """The equivalent GenerationConfig (validated), ending on ``end_ids(model_eos_ids)``."""
        options: dict[str, Any] = dict(
            max_new_tokens=max(self.max_tokens, 1) if _is_int(self.max_tokens) else self.max_tokens,
            min_new_tokens=self.min_tokens,
            do_sample=_is_number(self.temperature) and self.temperature >= GREEDY_BELOW,
            temperature=self.temperature,
            top_k=self.top_k,
            top_p=self.top_p,
            repetition_penalty=self.repetition_penalty,
            seed=self.seed,
            stop_strings=self.stop,
            eos_token_id=self.stop_token_ids if self.stop_token_ids is not None else None,
            pad_token_id=0,  # never used: the engine does not pad outputs
        )
        try:
            config = GenerationConfig(**options)
        except GenerationError as error:
            raise GenerationError(_our_names(str(error))) from None
        return config.replace(eos_token_id=self.end_ids(model_eos_ids))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_finite(name: str, value: Any) -> None:
    if not _is_number(value) or not math.isfinite(value):
        raise GenerationError(f"{name} must be a finite number, got {value!r}")


def _check_logit_bias(bias: Any) -> None:
    """logit_bias maps integer token ids >= 0 to finite numbers."""
    if bias is None:
        return
    if not isinstance(bias, dict):
        raise GenerationError(f"logit_bias must be a dict of token id -> bias, got {type(bias).__name__}")
    for token, value in bias.items():
        if not _is_int(token) or token < 0:
            raise GenerationError(f"logit_bias keys must be token ids >= 0, got {token!r}")
        _check_finite(f"logit_bias[{token}]", value)


def _our_names(message: str) -> str:
    """A GenerationConfig error message with its option names replaced by SamplingParams' names."""
    for theirs, ours in _OUR_NAMES.items():
        message = re.sub(rf"\b{theirs}\b", ours, message)
    return message
