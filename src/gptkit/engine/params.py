"""SamplingParams: per-request decoding options (vLLM's names), checked by GenerationConfig's rules."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from gptkit.checks import is_int
from gptkit.errors import GenerationError
from gptkit.generation.config import (
    GenerationConfig,
    boolean,
    check_option,
    check_single_constraint,
    integer,
    optional,
)
from gptkit.generation.constraints import CONSTRAINT_OPTIONS

GREEDY_BELOW = 1e-5  # temperatures this small decode greedily (vLLM's rule): logits / 1e-300 overflow
DEFAULT_MAX_TOKENS = 16  # OpenAI's and vLLM's default for completions
# our options that are GenerationConfig options under another name (or the same): checked by its rules
CONFIG_OPTIONS = {
    "min_tokens": "min_new_tokens",
    "temperature": "temperature",
    "top_k": "top_k",
    "top_p": "top_p",
    "repetition_penalty": "repetition_penalty",
    "seed": "seed",
    "stop": "stop_strings",
    "stop_token_ids": "eos_token_id",
    "json_schema": "json_schema",
    "regex": "regex",
    "grammar": "grammar",
}


@dataclass(frozen=True)
class SamplingParams:
    """How one request is decoded and when it stops; ``temperature=0`` is greedy."""

    max_tokens: int = (
        DEFAULT_MAX_TOKENS  # new tokens at most; 0 scores the prompt only (with prompt_logprobs)
    )
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
    json_schema: Any = None  # the output follows this JSON Schema (dict or JSON text) ...
    regex: str | None = None  # ... or matches this regular expression ...
    grammar: str | None = None  # ... or this Lark / GBNF grammar (at most one of the three)
    fast_forward: bool = True  # constrained: append tokens the grammar forces without a forward pass each

    def __post_init__(self) -> None:
        """GenerationError naming the first invalid option, in the message and in ``param``."""
        boolean("ignore_eos", self.ignore_eos)
        boolean("speculative", self.speculative)
        boolean("fast_forward", self.fast_forward)
        integer(0)("max_tokens", self.max_tokens)
        for ours, option in CONFIG_OPTIONS.items():
            check_option(option, getattr(self, ours), ours)
        if self.min_tokens > self.max_tokens:
            raise GenerationError(
                f"min_tokens={self.min_tokens} must be <= max_tokens={self.max_tokens}", param="min_tokens"
            )
        for name in ("presence_penalty", "frequency_penalty"):
            _check_finite(name, getattr(self, name))
        _check_logit_bias(self.logit_bias)
        check_single_constraint({name: getattr(self, name) for name in CONSTRAINT_OPTIONS})
        for name in ("logprobs", "prompt_logprobs"):
            optional(integer(0))(name, getattr(self, name))

    @property
    def constrained(self) -> bool:
        """Whether the output follows a json_schema, regex or grammar."""
        return any(getattr(self, name) is not None for name in CONSTRAINT_OPTIONS)

    @property
    def stops(self) -> list[str]:
        """Stop strings as a list (possibly empty)."""
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    def end_ids(self, model_eos_ids: list[int]) -> list[int]:
        """Token ids that end the request: the model's EOS (unless ignored) plus ``stop_token_ids``."""
        eos = [] if self.ignore_eos else list(model_eos_ids)
        extra = [self.stop_token_ids] if is_int(self.stop_token_ids) else self.stop_token_ids or []
        return eos + [i for i in extra if i not in eos]

    def generation_config(self, model_eos_ids: list[int]) -> GenerationConfig:
        """The equivalent GenerationConfig, ending on ``end_ids(model_eos_ids)``."""
        options: dict[str, Any] = {option: getattr(self, ours) for ours, option in CONFIG_OPTIONS.items()}
        options["eos_token_id"] = self.end_ids(model_eos_ids)
        return GenerationConfig(
            **options,
            max_new_tokens=max(self.max_tokens, 1),
            do_sample=self.temperature >= GREEDY_BELOW,
            pad_token_id=0,  # never used: the engine does not pad outputs
        )


def _check_finite(name: str, value: Any, param: str | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise GenerationError(f"{name} must be a finite number, got {value!r}", param=param or name)


def _check_logit_bias(bias: Any) -> None:
    """logit_bias maps integer token ids >= 0 to finite numbers."""
    if bias is None:
        return
    if not isinstance(bias, dict):
        raise GenerationError(
            f"logit_bias must be a dict of token id -> bias, got {type(bias).__name__}", param="logit_bias"
        )
    for token, value in bias.items():
        if not is_int(token) or token < 0:
            raise GenerationError(
                f"logit_bias keys must be token ids >= 0, got {token!r}", param="logit_bias"
            )
        _check_finite(f"logit_bias[{token}]", value, param="logit_bias")
