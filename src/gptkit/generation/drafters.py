"""Where drafted tokens come from: an n-gram lookup in the sequence so far, or a smaller draft model.

A drafter works on rows of a batch (``DraftRow``: the row's index in the target's KV cache, its tokens, how
its scores are processed, its random generator). Per round it proposes up to ``n`` tokens per row, with the
distribution each was drawn from when it has one, and afterwards learns what the target accepted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch

from gptkit.generation.verify import choose_token

NO_LIMIT = 1 << 30


class DraftRow(Protocol):
    """What a drafter needs to know about one row."""

    index: int  # the row of the KV caches
    sampling: bool
    generator: torch.Generator | None

    def context(self) -> torch.Tensor:
        """The row's committed tokens (L,), prompt included, padding excluded."""
        ...

    def draft_scores(self, drafts: list[int], logits: torch.Tensor) -> torch.Tensor:
        """Processed scores (V,) for the token after the committed tokens and ``drafts``."""
        ...


Proposal = tuple[list[list[int]], list[torch.Tensor | None]]  # drafts per row, their q (n, V) or None


def prompt_lookup(
    tokens: torch.Tensor, num_tokens: int, max_ngram: int, eos_ids: Sequence[int] = ()
) -> list[int]:
    """transformers' PromptLookupCandidateGenerator for one row (L,): the tokens that followed the earliest
    earlier occurrence of the longest matching suffix n-gram (max_ngram down to 1), cut before any EOS.

    (transformers also skips candidates its logits processors forbid; a forbidden draft is simply rejected
    here, with the same output.)
    """
    length = tokens.shape[0]
    for size in range(min(max_ngram, length - 1), 0, -1):
        windows = tokens.unfold(0, size, 1)  # (L - size + 1, size)
        starts = (windows == tokens[-size:]).all(dim=1).nonzero()[:, 0] + size
        starts = starts[starts < length]  # the suffix itself has nothing after it
        if starts.numel():
            start = int(starts[0])
            chosen = tokens[start : min(start + num_tokens, length)].tolist()
            ends = [i for i, token in enumerate(chosen) if token in eos_ids]
            return chosen[: ends[0]] if ends else chosen
    return []


class DraftLength:
    """How many tokens one sequence should draft next: as many as pay off at its recent acceptance.

    A verification of k + 1 tokens costs about 1 + COST_PER_DRAFT k one-token steps (measured on 2 cores,
    docs/performance.md) and yields (1 - a^(k+1)) / (1 - a) tokens when each draft is accepted with
    probability a; the sequence drafts the k <= cap with the most tokens per cost, and none while no k beats
    plain decoding. a is a running estimate (drafts accepted before the first rejection, counts decayed by
    DECAY per round, starting from PRIOR); a sequence that stopped drafting tries one draft every PROBE_EVERY
    steps, so a text that turns to copying is noticed. Only speed depends on it: verification is lossless.
    """

    COST_PER_DRAFT = 0.3
    DECAY = 0.8
    PRIOR = (1.0, 2.0)  # (accepted, checked): a = 0.5 before any round
    PROBE_EVERY = 8

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.accepted, self.checked = self.PRIOR
        self.idle = 0

    @property
    def acceptance(self) -> float:
        return self.accepted / self.checked

    def next(self) -> int:
        """The number of drafts for the next round (0: decode one token plainly)."""
        k = best_draft_length(self.acceptance, self.cap, self.COST_PER_DRAFT)
        if k:
            self.idle = 0
            return k
        self.idle += 1
        if self.idle < self.PROBE_EVERY:
            return 0
        self.idle = 0
        return 1

    def update(self, drafted: int, accepted: int) -> None:
        """A round's outcome: ``accepted`` of ``drafted`` drafts kept (the rest rejected, or cut by a stop)."""
        if drafted:
            rejected = 1 if accepted < drafted else 0
            self.accepted = self.DECAY * self.accepted + accepted
            self.checked = self.DECAY * self.checked + accepted + rejected


def best_draft_length(acceptance: float, cap: int, cost_per_draft: float) -> int:
    """argmax over k in 0..cap of expected tokens (1 + a + ... + a^k) per cost (1 + cost_per_draft k)."""
    best, best_rate, tokens, term = 0, 1.0, 1.0, 1.0
    for k in range(1, cap + 1):
        term *= acceptance
        tokens += term
        rate = tokens / (1 + cost_per_draft * k)
        if rate > best_rate:
            best, best_rate = k, rate
    return best


class NgramDrafter:
    """Prompt lookup decoding: drafts copied from the prompt and the output so far (no model, no cache)."""

    def __init__(self, num_tokens: int, max_ngram: int = 2, eos_ids: Sequence[int] = ()) -> None:
        self.num_tokens, self.max_ngram, self.eos_ids = num_tokens, max_ngram, list(eos_ids)

    def limit(self, rows: Sequence[DraftRow]) -> int:
        return NO_LIMIT

    def propose(self, rows: Sequence[DraftRow], n: int) -> Proposal:
        drafts = [prompt_lookup(row.context(), n, self.max_ngram, self.eos_ids) for row in rows]
        return drafts, [None] * len(rows)

    def commit(self, index: int, drafts: list[int], emitted: list[int]) -> None:
        """Nothing to update: the next lookup reads the row's tokens."""

    def release(self, index: int) -> None:
        """Nothing held per row."""


class ModelDrafter:
    """A smaller model with the target's vocabulary drafts autoregressively over its own KV cache.

    Per row the draft cache holds the committed tokens but ``pending`` (one or two at the end, fed with the
    next round's first draft step). After a round it keeps the accepted drafts and drops the rest.
    """

    def __init__(self, model: torch.nn.Module, num_tokens: int, batch_size: int, max_len: int) -> None:
        self.model, self.num_tokens = model, num_tokens
        self.cache = model.new_cache(batch_size, max_len)
        self.pending: dict[int, list[int]] = {}

    def start(self, first_row: int, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> None:
        """Prefill prompts (R, T) into rows first_row.. of the draft cache (their first token comes later)."""
        rows = self.cache.row_range(first_row, first_row + input_ids.shape[0])
        self.model(input_ids, attention_mask=attention_mask, cache=rows, logits_to_keep=1)
        for i in range(input_ids.shape[0]):
            self.pending[first_row + i] = []

    def limit(self, rows: Sequence[DraftRow]) -> int:
        """Drafts that still fit the draft model's context window for every row."""
        context = self.model.config.context_length
        return min(
            context + 1 - int(self.cache.next_position[row.index]) - len(self.pending[row.index])
            for row in rows
        )

    def propose(self, rows: Sequence[DraftRow], n: int) -> Proposal:
        """``n`` tokens per row, greedy or sampled from the row's processed draft scores (probabilities kept)."""
        drafts: list[list[int]] = [[] for _ in rows]
        probs: list[list[torch.Tensor]] = [[] for _ in rows]
        width = max(row.index for row in rows) + 1
        cache = self.cache.row_range(0, width)
        logits = self._feed([self.pending[row.index] for row in rows], rows, width, cache)
        for step in range(n):
            for row, drafted, q in zip(rows, drafts, probs, strict=True):
                scores = row.draft_scores(drafted, logits[row.index])
                drafted.append(choose_token(scores, row.sampling, row.generator))
                if row.sampling:
                    q.append(scores.softmax(-1))
            if step < n - 1:
                logits = self._feed([[d[-1]] for d in drafts], rows, width, cache)
        others = sorted(set(range(width)) - {row.index for row in rows})
        if others:
            cache.reset_rows(others)  # their pad columns: rows without a sequence here stay empty
        return drafts, [torch.stack(q) if q else None for q in probs]

    def _feed(self, tokens: list[list[int]], rows: Sequence[DraftRow], width: int, cache) -> torch.Tensor:
        """Append each row's tokens (left-padded to the longest) to the draft cache: next logits (width, V)."""
        longest = max(map(len, tokens))
        ids = torch.zeros(width, longest, dtype=torch.long, device=self.cache.valid.device)
        mask = torch.zeros_like(ids)
        for row, row_tokens in zip(rows, tokens, strict=True):
            if row_tokens:
                ids[row.index, longest - len(row_tokens) :] = torch.tensor(row_tokens)
                mask[row.index, longest - len(row_tokens) :] = 1
        out = self.model(ids, attention_mask=mask, cache=cache, logits_to_keep=1)
        for row in rows:
            self.pending[row.index] = []
        return out.logits[:, -1].float()

    def commit(self, index: int, drafts: list[int], emitted: list[int]) -> None:
        """The target emitted ``emitted`` (accepted drafts, then one token) after checking ``drafts``."""
        accepted = len(emitted) - 1
        if not drafts:
            self.pending[index] = self.pending[index] + emitted
        elif accepted < len(drafts):  # the cache holds drafts[:-1]: keep drafts[:accepted]
            self.cache.row_range(index, index + 1).truncate([len(drafts) - 1 - accepted])
            self.pending[index] = emitted[-1:]
        else:  # all accepted: the last draft was never fed
            self.pending[index] = drafts[-1:] + emitted[-1:]

    def release(self, index: int) -> None:
        """Forget a finished row."""
        self.cache.reset_rows([index])
        self.pending.pop(index, None)
