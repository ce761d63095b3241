"""Constrained decoding: JSON Schema, regex and Lark/GBNF grammars as a per-row token mask (llguidance).

A constraint is compiled once per distinct text (cached) and checked when options are validated, so a bad
schema fails at the call, naming the unsupported keyword. Each generated row gets its own matcher: after
every token it computes which tokens may come next (a bitmask; in the engine on a worker thread, while the
next forward pass runs), and :class:`GrammarMask` sets every other token's score to -inf. Tokens that the
grammar allows alone (``forced``) can be appended without asking the model (the engine's fast-forward).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import torch

from gptkit.errors import GenerationError

CONSTRAINT_OPTIONS = ("json_schema", "regex", "grammar")
# JSON as json.dumps writes it: one space after ',' and ':', no other whitespace (fewer choices per token,
# more tokens forced); a schema's own "x-guidance" options override this
JSON_STYLE = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
_BYTE_BITS = ((torch.arange(256)[:, None] >> torch.arange(8)) & 1).bool()  # (256, 8): bits low to high
_POOL: ThreadPoolExecutor | None = None


# ---- compiling and checking ------------------------------------------------------------------------------
def check_constraint(name: str, value: Any) -> None:
    """GenerationError (param=name) unless ``value`` is a valid constraint of kind ``name`` (or None)."""
    if value is not None:
        compile_constraint(name, value)


def compile_constraint(kind: str, value: Any) -> str:
    """The llguidance grammar of a ``json_schema`` / ``regex`` / ``grammar`` option; GenerationError
    naming the option (and the unsupported keyword or the syntax error) when it is not valid."""
    return _compile(kind, _canonical(kind, value))


def choice_grammar(choices: Sequence[str]) -> str:
    """A Lark grammar whose only sentences are ``choices`` (e.g. a classifier's labels)."""
    if not choices or not all(isinstance(c, str) and c for c in choices):
        raise GenerationError("choices must be a non-empty list of non-empty strings", param="choices")
    return "start: " + " | ".join(json.dumps(c) for c in dict.fromkeys(choices))


def _canonical(kind: str, value: Any) -> str:
    """The constraint as text: a JSON Schema as sorted JSON, a regex or grammar as given."""
    if kind == "json_schema":
        if isinstance(value, type) and hasattr(value, "model_json_schema"):  # a pydantic model class
            value = value.model_json_schema()
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as error:
                raise GenerationError(f"json_schema is not valid JSON: {error}", param=kind) from None
        if not isinstance(value, (dict, bool)):
            raise GenerationError(
                f"json_schema must be a JSON Schema object (a dict), got {type(value).__name__}", param=kind
            )
        return json.dumps(value)  # key order kept: properties are generated in their order
    if kind not in ("regex", "grammar"):
        raise GenerationError(f"unknown constraint {kind!r}: use one of {', '.join(CONSTRAINT_OPTIONS)}")
    if not isinstance(value, str) or not value.strip():
        raise GenerationError(f"{kind} must be a non-empty string, got {value!r}", param=kind)
    return value


@functools.lru_cache(maxsize=512)
def _compile(kind: str, text: str) -> str:
    from llguidance import LLMatcher
    from llguidance.gbnf_to_lark import any_to_lark

    try:
        if kind == "json_schema":
            grammar = LLMatcher.grammar_from_json_schema(text, defaults=JSON_STYLE)
        elif kind == "regex":
            grammar = LLMatcher.grammar_from_regex(text)
        else:
            grammar = LLMatcher.grammar_from_lark(any_to_lark(text))  # Lark as it is; GBNF converted
    except Exception as error:  # llguidance raises ValueError / its own errors on malformed input
        raise GenerationError(f"{kind} is not valid: {_first_lines(error)}", param=kind) from None
    failed, messages = LLMatcher.validate_grammar_with_warnings(grammar)
    if failed:
        message = messages[0]
        unsupported = any(word in message for word in ("Unimplemented", "Unknown", "not supported"))
        problem = "uses what gptkit cannot enforce" if unsupported else "is not valid"
        raise GenerationError(f"{kind} {problem}: {_first_lines(message)}", param=kind)
    return grammar


def _first_lines(message: Any, limit: int = 8, chars: int = 500) -> str:
    """llguidance's message on one line (its lines joined with " | "), at most ``chars`` long."""
    text = " | ".join(line.strip() for line in str(message).strip().splitlines()[:limit] if line.strip())
    return text if len(text) <= chars else text[: chars - 3] + "..."


# ---- one row's matcher --------------------------------------------------------------------------------
class RowConstraint:
    """One sequence's grammar state: consumes tokens, tells which tokens may come next.

    Not thread-safe beyond its own worker: every call waits for a mask being computed in the background.
    """

    def __init__(self, ll_tokenizer: Any, grammar: str, vocab_size: int) -> None:
        from llguidance import LLMatcher

        self.matcher = LLMatcher(ll_tokenizer, grammar)
        if self.matcher.is_error():
            raise GenerationError(f"the grammar cannot be used: {self.matcher.get_error()}")
        self.vocab_size = vocab_size
        self.words = math.ceil(ll_tokenizer.vocab_size / 32)
        self._mask: Future | torch.Tensor | None = None

    @property
    def stopped(self) -> bool:
        """The grammar is complete and admits no further token (only the end of the sequence)."""
        self._settle()
        return self.matcher.is_stopped()

    @property
    def failed(self) -> bool:
        self._settle()
        return self.matcher.is_error()

    def consume(self, token: int) -> bool:
        """Advance over ``token``; False (and a failed matcher) when the grammar does not allow it."""
        self._settle()
        self._mask = None
        return self.matcher.consume_token(token)

    def forced(self) -> list[int]:
        """The tokens the grammar allows alone from here, in order (possibly none)."""
        self._settle()
        if self.matcher.is_stopped() or self.matcher.is_error():
            return []
        return self.matcher.compute_ff_tokens()

    def prefetch(self) -> None:
        """Start computing the next mask on the worker thread (overlapping the model's forward pass)."""
        if self._mask is None:
            self._mask = _pool().submit(self._compute)

    def allowed(self) -> torch.Tensor:
        """(vocab_size,) booleans: the tokens that may come next."""
        if self._mask is None:
            self._mask = self._compute()
        elif isinstance(self._mask, Future):
            self._mask = self._mask.result()
        return self._mask

    def _settle(self) -> None:
        if isinstance(self._mask, Future):
            self._mask = self._mask.result()

    def _compute(self) -> torch.Tensor:
        bits = torch.empty(self.words, dtype=torch.int32)
        self.matcher.unsafe_compute_mask_ptr(bits.data_ptr(), self.words * 4)
        allowed = _BYTE_BITS[bits.view(torch.uint8).long()].reshape(-1)  # (words * 32,)
        allowed = allowed[: self.vocab_size]
        if allowed.shape[0] < self.vocab_size:  # the model's head is wider than the tokenizer
            allowed = torch.nn.functional.pad(allowed, (0, self.vocab_size - allowed.shape[0]))
        return allowed


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gptkit-grammar")
    return _POOL


# ---- the logits processor ------------------------------------------------------------------------------
class GrammarMask:
    """Logits processor: each row's scores outside its grammar's next tokens become -inf.

    It follows the rows' tokens itself (those after ``prompt_len`` in ``input_ids``), so it works in any
    loop that calls processors with the sequences so far. A row whose matcher is complete allows only the
    end-of-sequence ids; a row that ran past its grammar (a finished row padded by ``generate``) is left alone.
    """

    def __init__(self, rows: list[RowConstraint], prompt_len: int, eos_ids: Sequence[int]) -> None:
        self.rows = rows
        self.prompt_len = prompt_len
        self.eos_ids = list(eos_ids)
        self.consumed = [0] * len(rows)
        self.done = [False] * len(rows)  # ran past its grammar: no more masking

    def sync(self, input_ids: torch.Tensor) -> None:
        """Feed each row's matcher the tokens of ``input_ids`` (B, T) it has not seen yet."""
        generated = input_ids.shape[1] - self.prompt_len
        for b, row in enumerate(self.rows):
            if self.consumed[b] >= generated:
                continue
            new = input_ids[b, self.prompt_len + self.consumed[b] :].tolist()
            self.consumed[b] = generated
            for token in new:
                if self.done[b] or row.stopped or not row.consume(token):
                    self.done[b] = True
                    break

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        self.sync(input_ids)
        allowed = torch.stack([self._allowed(b, row) for b, row in enumerate(self.rows)])  # (B, V)
        return scores.masked_fill(~allowed.to(scores.device), -math.inf)

    def _allowed(self, b: int, row: RowConstraint) -> torch.Tensor:
        if self.done[b]:
            return torch.ones(row.vocab_size, dtype=torch.bool)
        if row.stopped:
            only_end = torch.zeros(row.vocab_size, dtype=torch.bool)
            only_end[[i for i in self.eos_ids if i < row.vocab_size]] = True
            return only_end
        return row.allowed()


def build_grammar_mask(
    config: Any, tokenizer: Any, vocab_size: int, model_eos: list[int], batch: int, prompt_len: int
) -> GrammarMask | None:
    """The GrammarMask of a GenerationConfig's json_schema / regex / grammar (None when it has none).

    The grammar ends on the model's EOS ids (one vocabulary per tokenizer, built once); once complete, a
    row may only take the run's own end ids (``config.eos_ids``)."""
    from gptkit.generation.grammar_vocab import ll_tokenizer

    kind = next((k for k in CONSTRAINT_OPTIONS if getattr(config, k) is not None), None)
    if kind is None:
        return None
    if tokenizer is None:
        raise GenerationError(f"{kind} needs tokenizer= (the model's tokenizer)", param=kind)
    grammar = compile_constraint(kind, getattr(config, kind))
    vocab = ll_tokenizer(tokenizer, vocab_size, model_eos or config.eos_ids)
    rows = [RowConstraint(vocab, grammar, vocab_size) for _ in range(batch)]
    return GrammarMask(rows, prompt_len, config.eos_ids or model_eos)
