"""GenerationConfig: every decoding option, validated up front, with transformers' defaults and meanings.

Differences from transformers, on purpose:
- ``temperature=0`` means greedy decoding (transformers raises when sampling at temperature 0).
- When ``pad_token_id`` is unset it falls back to the model's pad id, then to the first EOS id, silently.
- Neither ``max_length`` nor ``max_new_tokens`` given: 20 new tokens, capped by the context window.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gptkit.checks import is_int
from gptkit.errors import ContextLengthError, GenerationError
from gptkit.generation.constraints import CONSTRAINT_OPTIONS, check_constraint

DEFAULT_NEW_TOKENS = 20  # transformers' default max_length=20 counts new tokens for decoder-only models


@dataclass(frozen=True)
class GenerationConfig:
    """Options of :func:`gptkit.generation.generate`; names and defaults follow transformers."""

    max_length: int | None = None  # prompt + new tokens (padded prompt length, as in transformers)
    max_new_tokens: int | None = None  # takes precedence over max_length
    min_new_tokens: int = 0  # EOS is suppressed until this many tokens were generated
    do_sample: bool = False
    temperature: float = 1.0  # 0 -> greedy
    top_k: int = 50  # 0 disables; like top_p/min_p/typical_p only applied when sampling
    top_p: float = 1.0
    min_p: float | None = None
    typical_p: float = 1.0
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    num_beams: int = 1
    length_penalty: float = 1.0  # beam score = sum log p / generated_len ** length_penalty
    early_stopping: bool | str = False  # True, False or "never" (beam search)
    num_return_sequences: int = 1
    eos_token_id: int | list[int] | None = None  # None -> model config's EOS ids
    pad_token_id: int | None = None  # None -> model config's pad id -> first EOS id
    stop_strings: str | list[str] | None = None  # needs ``tokenizer=`` in generate
    seed: int | None = None  # seeds a private torch.Generator for sampling
    return_dict_in_generate: bool = False
    output_scores: bool = False
    # speculative decoding (gptkit.generation.speculative), under transformers' names:
    prompt_lookup_num_tokens: int | None = None  # draft this many tokens per step by n-gram lookup
    max_matching_ngram_size: int | None = None  # the longest n-gram the lookup matches (None -> 2)
    num_assistant_tokens: int | None = None  # tokens per step from generate(assistant_model=...) (None -> 20)
    json_schema: Any = None  # constrain the output: a JSON Schema (dict, JSON text or pydantic model class)
    regex: str | None = None  # ... or a regular expression the whole output matches
    grammar: str | None = None  # ... or a Lark (or GBNF) grammar; at most one of the three

    def __post_init__(self) -> None:
        _validate(self)

    def replace(self, **changes: Any) -> GenerationConfig:
        """A copy with ``changes`` applied (validated again)."""
        unknown = sorted(set(changes) - set(field_names()))
        if unknown:
            raise GenerationError(f"unknown generation argument(s): {', '.join(unknown)}")
        return dataclasses.replace(self, **changes)

    @property
    def sampling(self) -> bool:
        """Whether tokens are drawn at random (``do_sample`` with a positive temperature)."""
        return self.do_sample and self.temperature > 0

    @property
    def eos_ids(self) -> list[int]:
        """EOS ids as a list (possibly empty)."""
        if self.eos_token_id is None:
            return []
        return [self.eos_token_id] if isinstance(self.eos_token_id, int) else list(self.eos_token_id)

    @property
    def stops(self) -> list[str]:
        """Stop strings as a list (possibly empty)."""
        if self.stop_strings is None:
            return []
        return [self.stop_strings] if isinstance(self.stop_strings, str) else list(self.stop_strings)


def field_names() -> list[str]:
    """Names of every GenerationConfig option."""
    return [f.name for f in dataclasses.fields(GenerationConfig)]


def with_model_defaults(config: GenerationConfig, model_config: Any) -> GenerationConfig:
    """Fill EOS and pad ids from the model's config (pad falls back to the first EOS id, as in transformers)."""
    eos = config.eos_token_id
    if eos is None:
        eos = list(model_config.eos_token_ids) or None
    pad = config.pad_token_id
    if pad is None:
        pad = model_config.pad_token_id
    if pad is None and eos is not None:
        pad = eos if isinstance(eos, int) else eos[0]
    return config.replace(eos_token_id=eos, pad_token_id=pad)


def resolve_max_length(config: GenerationConfig, prompt_len: int, context_length: int) -> int:
    """Total sequence length (prompt + new tokens) to generate up to; checked against the context window."""
    if prompt_len > context_length:
        raise ContextLengthError(
            f"the prompt has {prompt_len} tokens, more than the model's context window of {context_length}"
        )
    if config.max_new_tokens is not None:
        max_length, asked = prompt_len + config.max_new_tokens, f"max_new_tokens={config.max_new_tokens}"
    elif config.max_length is not None:
        max_length, asked = config.max_length, f"max_length={config.max_length}"
    else:
        max_length, asked = min(prompt_len + DEFAULT_NEW_TOKENS, context_length), "default"
    if max_length <= prompt_len:
        raise GenerationError(
            f"max_length={max_length} must exceed the prompt length {prompt_len} ({asked}); "
            "use max_new_tokens to count new tokens only",
            param="max_length",
        )
    if max_length > context_length:
        raise ContextLengthError(
            f"prompt of {prompt_len} tokens + {max_length - prompt_len} new tokens ({asked}) = {max_length} "
            f"exceeds the model's context window of {context_length} tokens"
        )
    return max_length


# ---- validation: one rule per option, also applied by SamplingParams under its own names -------------
Rule = Callable[[str, Any], None]  # rule(name, value) raises GenerationError(param=name) when invalid


def integer(minimum: int | None) -> Rule:
    """An integer (>= ``minimum`` unless None)."""

    def check(name: str, value: Any) -> None:
        if not is_int(value):
            raise GenerationError(f"{name} must be an integer, got {value!r}", param=name)
        if minimum is not None and value < minimum:
            raise GenerationError(f"{name} must be >= {minimum}, got {value}", param=name)

    return check


def number(ok: Callable[[float], bool], expected: str) -> Rule:
    """A real number (not NaN) for which ``ok`` holds (``expected`` says what ok means)."""

    def check(name: str, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise GenerationError(f"{name} must be a number, got {value!r}", param=name)
        if math.isnan(value) or not ok(value):
            raise GenerationError(f"{name} must be {expected}, got {value!r}", param=name)

    return check


def optional(rule: Rule) -> Rule:
    """None, or what ``rule`` accepts."""

    def check(name: str, value: Any) -> None:
        if value is not None:
            rule(name, value)

    return check


def boolean(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise GenerationError(f"{name} must be True or False, got {value!r}", param=name)


def _early_stopping(name: str, value: Any) -> None:
    if not (isinstance(value, bool) or value == "never"):
        raise GenerationError(f"{name} must be True, False or 'never', got {value!r}", param=name)


def _token_ids(name: str, value: Any) -> None:
    ids = [value] if is_int(value) else value
    if ids is None:
        return
    if not isinstance(ids, (list, tuple)) or not all(is_int(i) and i >= 0 for i in ids):
        raise GenerationError(
            f"{name} must be a non-negative integer or a list of them, got {value!r}", param=name
        )


def _stop_strings(name: str, value: Any) -> None:
    items = [value] if isinstance(value, str) else value
    if items is None:
        return
    if not isinstance(items, (list, tuple)) or not all(isinstance(s, str) and s for s in items):
        raise GenerationError(
            f"{name} must be a non-empty string or a list of them, got {value!r}", param=name
        )


IN_UNIT = "in (0, 1]"
RULES: dict[str, Rule] = {  # GenerationConfig option -> its rule
    "max_length": optional(integer(1)),
    "max_new_tokens": optional(integer(1)),
    "min_new_tokens": integer(0),
    "top_k": integer(0),
    "no_repeat_ngram_size": integer(0),
    "num_beams": integer(1),
    "num_return_sequences": integer(1),
    "seed": optional(integer(None)),
    "pad_token_id": optional(integer(0)),
    "do_sample": boolean,
    "return_dict_in_generate": boolean,
    "output_scores": boolean,
    "temperature": number(lambda v: v >= 0, ">= 0 (0 means greedy)"),
    "top_p": number(lambda v: 0 < v <= 1, IN_UNIT),
    "typical_p": number(lambda v: 0 < v <= 1, IN_UNIT),
    "repetition_penalty": number(lambda v: v > 0, "> 0"),
    "length_penalty": number(math.isfinite, "finite"),
    "min_p": optional(number(lambda v: 0 <= v <= 1, "in [0, 1]")),
    "early_stopping": _early_stopping,
    "eos_token_id": _token_ids,
    "stop_strings": _stop_strings,
    "prompt_lookup_num_tokens": optional(integer(1)),
    "max_matching_ngram_size": optional(integer(1)),
    "num_assistant_tokens": optional(integer(1)),
    **dict.fromkeys(CONSTRAINT_OPTIONS, check_constraint),
}


def check_option(option: str, value: Any, name: str | None = None) -> None:
    """GenerationError unless ``value`` is valid for the GenerationConfig ``option``; the error's message
    and ``param`` use ``name`` (the caller's name for the option; default: ``option``)."""
    RULES[option](name or option, value)


def _validate(c: GenerationConfig) -> None:
    """Raise GenerationError naming the first invalid option."""
    for option in RULES:
        check_option(option, getattr(c, option))
    _check_beam_counts(c)
    constraint = check_single_constraint({name: getattr(c, name) for name in CONSTRAINT_OPTIONS})
    if constraint and c.num_beams > 1:
        raise GenerationError(
            f"{constraint} does not work with beam search (num_beams > 1)", param=constraint
        )


def check_single_constraint(values: dict[str, Any]) -> str | None:
    """The one constraint option set among ``values`` (None when none is); GenerationError for several."""
    given = [name for name, value in values.items() if value is not None]
    if len(given) > 1:
        raise GenerationError(
            f"give at most one of json_schema, regex and grammar, got {' and '.join(given)}", param=given[1]
        )
    return given[0] if given else None


def _check_beam_counts(c: GenerationConfig) -> None:
    if c.num_beams == 1 and not c.do_sample and c.num_return_sequences > 1:
        raise GenerationError(
            f"num_return_sequences={c.num_return_sequences} needs sampling (do_sample=True) or beam search "
            "(num_beams > 1): greedy decoding returns one sequence per prompt",
            param="num_return_sequences",
        )
    if c.num_beams > 1 and c.prompt_lookup_num_tokens is not None:
        raise GenerationError(
            "prompt_lookup_num_tokens (speculative decoding) needs num_beams=1",
            param="prompt_lookup_num_tokens",
        )
    if c.num_beams > 1 and c.num_return_sequences > c.num_beams:
        raise GenerationError(
            f"num_return_sequences={c.num_return_sequences} must be <= num_beams={c.num_beams} for beam search",
            param="num_return_sequences",
        )
