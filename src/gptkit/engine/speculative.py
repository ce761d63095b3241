"""Speculative decoding in the Engine: each step drafts tokens for the running requests that allow it and
checks them all in one forward over the slots, (width, m + 1) tokens.

Per slot the forward takes the request's last token and its drafts; requests without drafts (opted out
with ``SamplingParams(speculative=False)``, or no n-gram match) take their last token alone, the rest of
their row padding (invalid cache columns, no position). Each request then keeps its accepted drafts and one
more token (gptkit.generation.verify, with its own processors and random generator) and its slot's cache
row drops the rest (``KVCache.truncate``), so every slot advances by its own number of tokens.
"""

from __future__ import annotations

from typing import Any

import torch

from gptkit.engine.request import TokenLogprob, token_logprobs
from gptkit.errors import GenerationError
from gptkit.generation.drafters import DraftLength, ModelDrafter, NgramDrafter
from gptkit.generation.processors import apply_processors
from gptkit.generation.speculative import SpeculationStats, check_num_tokens
from gptkit.generation.verify import verified_tokens

# The most drafts per step. With n-gram drafts each request drafts fewer, as many as pay off at its own
# acceptance (gptkit.generation.drafters.DraftLength): a verification of k + 1 tokens costs ~1 + 0.3 k
# one-token steps on a 2-core CPU (bench/speculative.py, docs/performance.md).
DEFAULT_NUM_SPECULATIVE_TOKENS = 5
NGRAM_SIZE = 2  # transformers' max_matching_ngram_size default


class _SlotRow:
    """A running request seen as a drafter's row (gptkit.generation.drafters.DraftRow)."""

    def __init__(self, request: Any) -> None:
        self.request, self.index = request, request.slot
        self.sampling, self.generator = request.plan.config.sampling, request.plan.generator

    @property
    def room(self) -> int:
        """Tokens the request may still generate."""
        return self.request.plan.max_length - self.request.length

    def context(self) -> torch.Tensor:
        return self.request.sequence[0]

    def draft_scores(self, drafts: list[int], logits: torch.Tensor) -> torch.Tensor:
        request = self.request
        end = request.length + len(drafts)
        if end >= request.buffer.shape[1]:
            return logits  # past what this request may still emit: the draft is cut before checking
        if drafts:  # drafts follow the request's tokens in its buffer
            request.buffer[0, end - 1] = drafts[-1]
        ids = request.buffer[:, :end]
        return apply_processors(request.processors, ids, logits[None])[0]

    def process(self, logits: torch.Tensor) -> torch.Tensor:
        """Scores (V,) for the request's next token, after the tokens it has committed."""
        return apply_processors(self.request.processors, self.request.sequence, logits[None])[0]


class Speculator:
    """The Engine's drafts and verification: an n-gram lookup (``"ngram"``) or a draft model."""

    def __init__(
        self, model: Any, speculative: Any, num_tokens: int, max_batch_size: int, max_seq_len: int
    ) -> None:
        check_num_tokens("num_speculative_tokens", num_tokens, max_seq_len)
        self.num_tokens = num_tokens
        self.stats = SpeculationStats()
        self.lengths: dict[int, DraftLength] = {}  # n-gram drafts: each slot's request's draft length
        if speculative == "ngram":
            self.drafter = NgramDrafter(num_tokens, NGRAM_SIZE)
        elif hasattr(speculative, "config") and hasattr(speculative, "new_cache"):
            check_draft_model(model, speculative, max_seq_len)
            max_len = 2 * max_seq_len + num_tokens  # a pad column per step at most
            self.drafter = ModelDrafter(speculative, num_tokens, max_batch_size, max_len)
        else:
            raise GenerationError(f"speculative must be 'ngram' or a draft model, got {speculative!r}")

    @property
    def uses_model(self) -> bool:
        return isinstance(self.drafter, ModelDrafter)

    # ---- request lifetime ----------------------------------------------------------------------------
    def admitted(self, request: Any) -> None:
        """A request took a slot and has its first token: the draft model reads its prompt now."""
        if not self.uses_model or not request.params.speculative or request.slot is None:
            return
        slot = request.slot
        self.drafter.start(slot, request.sequence[:, : request.prompt_len], None)
        self.drafter.commit(slot, [], request.generated)

    def releasing(self, request: Any, cache: Any) -> None:
        """A request ends, maybe inside a verified run: its row drops the columns after its committed
        tokens (all but the last), leaving it as a plain decode would (the prefix cache keeps it then)."""
        row = cache.row_range(request.slot, request.slot + 1)
        extra = int(row.next_column[0]) - (request.length - 1)
        if extra > 0:
            row.truncate([extra])

    def released(self, slot: int) -> None:
        self.lengths.pop(slot, None)
        if self.uses_model:
            self.drafter.release(slot)

    # ---- one step ------------------------------------------------------------------------------------
    def step(self, engine: Any) -> list:
        """Draft, verify all running requests in one forward, commit and roll back: the step's events."""
        rows = {slot: _SlotRow(request) for slot, request in engine.running.items()}
        drafts, proposed, probs = self._draft(rows)
        width = max(rows) + 1
        m = max((len(d) for d in drafts.values()), default=0)
        device = engine.cache.valid.device
        ids = torch.zeros(width, m + 1, dtype=torch.long, device=device)  # (width, m + 1)
        mask = torch.zeros_like(ids)  # 0: idle slot, or padding after a request's shorter draft
        for slot, row in rows.items():
            tokens = [row.request.last_token, *drafts.get(slot, [])]
            ids[slot, : len(tokens)] = torch.tensor(tokens)
            mask[slot, : len(tokens)] = 1
        cache = engine.cache.row_range(0, width)
        before = cache.next_column.tolist()  # each running row's cache holds all but its last token
        logits = engine.model(ids, attention_mask=mask, cache=cache).logits.float()  # (width, m + 1, V)
        self.stats.forwards += 1
        events, keep = [], [0] * width  # idle and finished slots keep nothing of this forward
        for slot, row in rows.items():
            emitted, row_events = self._verify(
                engine, row, logits[slot], drafts.get(slot, []), probs.get(slot)
            )
            events += row_events
            if row.request.slot is None:  # finished: its slot was reset
                continue
            keep[slot] = before[slot] + len(emitted)  # its last token and the accepted drafts
            if self.uses_model and slot in proposed:
                self.drafter.commit(slot, proposed[slot], emitted)
        cache.truncate(cache.next_column - torch.tensor(keep, device=device))
        return events

    def _draft(self, rows: dict[int, _SlotRow]) -> tuple[dict, dict, dict]:
        """(drafts to check, drafts proposed, their distributions) per slot of the requests that speculate."""
        speculating = {slot: row for slot, row in rows.items() if row.request.params.speculative}
        budget = {slot: min(self._length(slot), row.room - 1) for slot, row in speculating.items()}
        wanted = {slot: row for slot, row in speculating.items() if budget[slot] >= 1}
        if not wanted:
            return {}, {}, {}
        budget = {slot: budget[slot] for slot in wanted}
        n = max(budget.values())
        if self.uses_model:
            n = min(n, self.drafter.limit(list(wanted.values())))
            if n < 1:
                return {}, {}, {}
        proposed, probs = self.drafter.propose(list(wanted.values()), n)
        out, kept_probs, full = {}, {}, {}
        for (slot, _), drafted, q in zip(wanted.items(), proposed, probs, strict=True):
            full[slot] = drafted
            out[slot] = drafted[: budget[slot]]
            kept_probs[slot] = None if q is None else q[: budget[slot]]
        return out, full, kept_probs

    def _verify(self, engine: Any, row: _SlotRow, logits: torch.Tensor, drafts: list[int], q) -> tuple:
        """(tokens emitted, events) for one request: its accepted drafts and one more token."""
        request, emitted, events = row.request, [], []
        try:
            walk = verified_tokens(logits, drafts, q, row.process, row.sampling, row.generator)
            for position, token in enumerate(walk):
                emitted.append(token)
                events.append(engine.emit(request, token, _logprob(request, token, logits[position])))
                if events[-1].finished:
                    break
        except RuntimeError as error:  # NaN / inf probabilities from this request's own options
            engine._release(request)
            events.append(request.fail(f"sampling failed for this request's options: {error}"))
        accepted = self.stats.record(drafts, emitted)
        if row.index in self.lengths:
            self.lengths[row.index].update(len(drafts), accepted)
        return emitted, events

    def _length(self, slot: int) -> int:
        """Drafts the slot's request may take this step: all k with a draft model, else what pays off."""
        if self.uses_model:
            return self.num_tokens
        return self.lengths.setdefault(slot, DraftLength(self.num_tokens)).next()


def _logprob(request: Any, token: int, logits: torch.Tensor) -> TokenLogprob | None:
    """The token's log-probability under the raw logits (V,), when the request asks for logprobs."""
    if request.logprobs is None:
        return None
    return token_logprobs(logits[None], torch.tensor([token]), request.params.logprobs)[0]


def make_speculator(
    model: Any, speculative: Any, num_tokens: int | None, max_batch_size: int, max_seq_len: int
) -> Speculator | None:
    """The engine's Speculator, or None without ``speculative``; checked (typed errors naming the option)."""
    if speculative is None:
        if num_tokens is not None:
            raise GenerationError("num_speculative_tokens needs speculative='ngram' or a draft model")
        return None
    k = DEFAULT_NUM_SPECULATIVE_TOKENS if num_tokens is None else num_tokens
    return Speculator(model, speculative, k, max_batch_size, max_seq_len)


def check_draft_model(target: Any, draft: Any, max_seq_len: int) -> None:
    """A draft model needs the target's vocabulary and a context window as long as the engine's slots."""
    if draft.config.vocab_size != target.config.vocab_size:
        raise GenerationError(
            f"the draft model's vocabulary ({draft.config.vocab_size} tokens) differs from the model's "
            f"({target.config.vocab_size}): speculative decoding needs the same tokenizer"
        )
    if draft.config.context_length < max_seq_len:
        raise GenerationError(
            f"the draft model's context window ({draft.config.context_length}) is shorter than the "
            f"engine's slots (max_seq_len={max_seq_len})"
        )


def check_draft_tokenizer(tokenizer: Any, draft_tokenizer: Any) -> None:
    """Refuse a draft whose tokenizer spells any token id differently (its drafts would mean other text)."""
    size = len(tokenizer)
    if len(draft_tokenizer) != size or any(
        tokenizer.convert_ids_to_tokens(i) != draft_tokenizer.convert_ids_to_tokens(i) for i in range(size)
    ):
        raise GenerationError(
            "the draft model's tokenizer differs from the model's: speculative decoding needs the same vocabulary"
        )
