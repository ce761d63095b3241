"""Speculative decoding in generate(): draft k tokens cheaply, check them all in one target forward.

Each round feeds every unfinished row its last token plus its drafts, (B, m + 1) tokens, through the
target's KV cache in one forward pass; each row keeps its accepted drafts and one more token
(gptkit.generation.verify), and its cache row drops the rest (``KVCache.truncate``). Rows accept different
numbers of tokens: each row keeps its own cache columns and length, and steps are handed out once every
unfinished row has produced them, so callers still see one token per row per step. Greedy output equals
plain greedy decoding token for token (bit for bit on the fused native block, whose tokens do not depend on
the forward's width; up to float rounding between a (B, m + 1) and a (B, 1) forward on the module paths);
sampled output has the same distribution as plain sampling, not the same draws for a seed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from gptkit.errors import GenerationError
from gptkit.generation.drafters import ModelDrafter, NgramDrafter
from gptkit.generation.plan import Plan
from gptkit.generation.processors import apply_processors, build_processors
from gptkit.generation.steps import prefill
from gptkit.generation.verify import choose_token, verified_tokens

DEFAULT_NGRAM = 2  # transformers' max_matching_ngram_size default
DEFAULT_ASSISTANT_TOKENS = 20  # transformers' num_assistant_tokens default


@dataclass
class SpeculationStats:
    """How speculation went: draft tokens checked and accepted, and target forward passes."""

    drafted: int = 0  # draft tokens the target checked
    accepted: int = 0  # of which it accepted
    forwards: int = 0  # target forward passes after the prompt's (one per round)
    tokens: int = 0  # tokens those passes produced, over all rows

    @property
    def acceptance_rate(self) -> float:
        """accepted / drafted (0.0 before any draft)."""
        return self.accepted / self.drafted if self.drafted else 0.0

    def record(self, drafts: list[int], emitted: list[int]) -> int:
        """One row's round: drafts checked until the first rejection (or a stop), tokens emitted; returns
        the drafts accepted."""
        checked = min(len(drafts), len(emitted))
        accepted = 0
        while accepted < checked and emitted[accepted] == drafts[accepted]:
            accepted += 1
        self.drafted += checked
        self.accepted += accepted
        self.tokens += len(emitted)
        return accepted


def make_drafter(plan: Plan, assistant_model: torch.nn.Module | None) -> NgramDrafter | ModelDrafter | None:
    """The drafter the options ask for (prompt_lookup_num_tokens or assistant_model), checked; else None."""
    config = plan.config
    lookup = config.prompt_lookup_num_tokens
    if assistant_model is None and lookup is None:
        return None
    if assistant_model is not None and lookup is not None:
        raise GenerationError("give assistant_model or prompt_lookup_num_tokens, not both")
    if config.num_beams > 1:
        raise GenerationError("speculative decoding (assistant_model) needs num_beams=1")
    context = plan.model.config.context_length
    if assistant_model is None:
        check_num_tokens("prompt_lookup_num_tokens", lookup, context)
        return NgramDrafter(lookup, config.max_matching_ngram_size or DEFAULT_NGRAM, config.eos_ids)
    k = config.num_assistant_tokens or DEFAULT_ASSISTANT_TOKENS
    check_num_tokens("num_assistant_tokens", k, context)
    check_draft_model(plan.model, assistant_model, plan.max_length)
    max_len = 2 * plan.max_length + k  # a pad column per round at most, for rows with less pending
    return ModelDrafter(assistant_model, k, plan.input_ids.shape[0], max_len)


def check_num_tokens(name: str, k: Any, context: int) -> None:
    """k draft tokens plus the last token must fit one forward in the context window."""
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise GenerationError(f"{name} must be an integer >= 1, got {k!r}")
    if k + 1 > context:
        raise GenerationError(
            f"{name}={k} is too large: {k} drafts + 1 token exceed the context window of {context} tokens"
        )


def check_draft_model(target: torch.nn.Module, draft: torch.nn.Module, max_length: int) -> None:
    """A draft model must share the target's vocabulary and reach as far as the generation does."""
    if not hasattr(draft, "config") or not hasattr(draft, "new_cache"):
        raise GenerationError(f"assistant_model must be a gptkit model, got {type(draft).__name__}")
    if draft.config.vocab_size != target.config.vocab_size:
        raise GenerationError(
            f"assistant_model's vocabulary ({draft.config.vocab_size} tokens) differs from the model's "
            f"({target.config.vocab_size}): draft and target must share a tokenizer"
        )
    if draft.config.context_length < max_length:
        raise GenerationError(
            f"assistant_model's context window ({draft.config.context_length}) is shorter than the "
            f"generation's max_length ({max_length})"
        )


class _Row:
    """One sequence of the batch: its tokens (a row of the shared buffer), processors and progress."""

    def __init__(self, plan: Plan, buffer: torch.Tensor, index: int, pad_len: int, keep_scores: bool):
        self.index, self.pad_len = index, pad_len
        self.tokens = buffer[index : index + 1]  # (1, max_length + k + 1)
        self.length = plan.prompt_len
        pad_lengths = None if plan.attention_mask is None else torch.tensor([pad_len])
        self.processors = build_processors(plan.config, plan.prompt_len, pad_lengths)
        self.sampling, self.generator, self.stop = plan.config.sampling, plan.generator, plan.stop
        self.done = False
        self.scores: list[torch.Tensor] | None = [] if keep_scores else None

    @property
    def last_token(self) -> int:
        return int(self.tokens[0, self.length - 1])

    def context(self) -> torch.Tensor:
        return self.tokens[0, self.pad_len : self.length]

    def draft_scores(self, drafts: list[int], logits: torch.Tensor) -> torch.Tensor:
        if drafts:
            self.tokens[0, self.length + len(drafts) - 1] = drafts[-1]  # drafts follow the committed tokens
        return self._process(self.length + len(drafts), logits)

    def process(self, logits: torch.Tensor) -> torch.Tensor:
        """Scores (V,) for the next committed token (kept when output_scores asks for them)."""
        scores = self._process(self.length, logits)
        if self.scores is not None:
            self.scores.append(scores)
        return scores

    def _process(self, length: int, logits: torch.Tensor) -> torch.Tensor:
        if not self.processors:
            return logits
        return apply_processors(self.processors, self.tokens[:, :length], logits[None])[0]

    def append(self, token: int) -> bool:
        """Commit ``token``; whether the row is now finished (EOS, stop string, max_length)."""
        self.tokens[0, self.length] = token
        self.length += 1
        self.done = bool(self.stop(self.tokens[:, : self.length])[0])
        return self.done


# ---- the decoding loop ---------------------------------------------------------------------------------
@torch.inference_mode()
def speculative_steps(
    plan: Plan,
    drafter: NgramDrafter | ModelDrafter,
    step_scores: list[torch.Tensor] | None = None,
    stats: SpeculationStats | None = None,
) -> Iterator[torch.Tensor]:
    """Like generate.token_steps: the next token of every row (B,) per step, pad for finished rows."""
    stats = SpeculationStats() if stats is None else stats
    B, T = plan.input_ids.shape
    k = drafter.num_tokens
    buffer = plan.input_ids.new_zeros((B, plan.max_length + k + 1))  # room for drafts after the tokens
    buffer[:, :T] = plan.input_ids
    pads = [0] * B if plan.attention_mask is None else (plan.attention_mask == 0).sum(1).tolist()
    rows = [_Row(plan, buffer, b, pads[b], step_scores is not None) for b in range(B)]
    cache, logits = prefill(plan.model, plan.input_ids, plan.attention_mask, plan.max_length + k)
    if isinstance(drafter, ModelDrafter):
        drafter.start(0, plan.input_ids, plan.attention_mask)
    for row in rows:
        first = choose_token(row.process(logits[row.index]), row.sampling, row.generator)
        row.append(first)
        _settle(drafter, row, [], [first])
    yielded = 0
    while True:
        for tokens in _ready_steps(plan, rows, yielded, step_scores):
            yielded += 1
            yield tokens
        active = [row for row in rows if not row.done]
        if not active:
            return
        _round(plan, cache, active, drafter, stats)


def _round(plan: Plan, cache, active: list[_Row], drafter, stats: SpeculationStats) -> None:
    """Draft, verify in one forward (B, m + 1), commit each row's accepted tokens, roll back the rest."""
    n = _draft_budget(plan, cache, active, drafter)
    drafts, probs = drafter.propose(active, n) if n else ([[] for _ in active], [None] * len(active))
    m = max(map(len, drafts))
    B = cache.batch_size
    ids = plan.input_ids.new_zeros((B, m + 1))  # (B, m + 1): last token, drafts (short rows: filler)
    mask = torch.zeros_like(ids)
    for row, drafted in zip(active, drafts, strict=True):
        ids[row.index] = torch.tensor([row.last_token, *drafted] + [row.last_token] * (m - len(drafted)))
        mask[row.index] = 1
    all_active = len(active) == B
    logits = plan.model(ids, attention_mask=None if all_active else mask, cache=cache).logits.float()
    stats.forwards += 1
    keep = [0] * B
    for row, drafted, q in zip(active, drafts, probs, strict=True):
        emitted = []
        for token in verified_tokens(logits[row.index], drafted, q, row.process, row.sampling, row.generator):
            emitted.append(token)
            if row.append(token):
                break
        stats.record(drafted, emitted)
        keep[row.index] = 0 if row.done else len(emitted)  # the last token and the accepted drafts
        _settle(drafter, row, drafted, emitted)
    cache.truncate([m + 1 - kept for kept in keep])


def _settle(drafter, row: _Row, drafts: list[int], emitted: list[int]) -> None:
    """Tell the drafter what the row committed (or that it finished)."""
    if row.done:
        drafter.release(row.index)
    else:
        drafter.commit(row.index, drafts, emitted)


def _draft_budget(plan: Plan, cache, active: list[_Row], drafter) -> int:
    """Drafts this round: k, but no more than the roomiest row can still emit minus the one extra token,
    and no position past the context window (of the target or the draft model)."""
    room = max(plan.max_length - row.length for row in active)
    furthest = max(int(cache.next_position[row.index]) for row in active)
    context = plan.model.config.context_length
    return max(0, min(drafter.num_tokens, room - 1, context - 1 - furthest, drafter.limit(active)))


def _ready_steps(
    plan: Plan, rows: list[_Row], yielded: int, step_scores: list[torch.Tensor] | None
) -> Iterator[torch.Tensor]:
    """Steps every unfinished row has produced, from ``yielded`` on: (B,) tokens, pad where a row ended."""
    T = plan.prompt_len
    produced = torch.tensor([row.length - T for row in rows])  # (B,)
    waiting = [row.length - T for row in rows if not row.done]
    ready = min(waiting) if waiting else int(produced.max())
    pad = plan.config.pad_token_id or 0
    for step in range(yielded, ready):
        tokens = torch.stack([row.tokens[0, T + step] for row in rows])  # (B,)
        if step_scores is not None:
            step_scores.append(torch.stack([_step_score(row, step) for row in rows]))
        yield torch.where(produced > step, tokens, pad)


def _step_score(row: _Row, step: int) -> torch.Tensor:
    """The processed scores the row's token at ``step`` was chosen from (zeros after the row ended)."""
    return row.scores[step] if step < len(row.scores) else torch.zeros_like(row.scores[0])
