"""Supervised fine-tuning data: JSONL conversations or prompt/completion pairs -> masked token batches.

Each line of the JSONL file is one example, either chat data::

    {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}

or a pair::

    {"prompt": "2 + 2 =", "completion": " 4"}

Labels equal the input ids except -100 on every token the model should not learn to produce: only what
the assistant says (for pairs: the completion) is trained, including the end-of-turn token that stops
generation (e.g. ``<|im_end|>``). Template text after that token (ChatML's newline between turns) and the
"<|im_start|>assistant\\n" header stay masked, as with TRL's assistant-only loss.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gptkit.data.jsonl import iter_jsonl
from gptkit.data.shards import DataError

IGNORE_INDEX = -100
ROLES = ("system", "user", "assistant", "tool")


@dataclass
class SFTExample:
    """One tokenized example: ``labels[t]`` is ``input_ids[t]`` where trained, else -100."""

    input_ids: list[int]
    labels: list[int]

    @property
    def num_trainable(self) -> int:
        """Tokens that contribute to the loss (the first is never predicted, so it does not count)."""
        return sum(label != IGNORE_INDEX for label in self.labels[1:])


# ---- loading ---------------------------------------------------------------------------------------------
def load_sft_examples(path: str | Path, tokenizer: Any, max_length: int) -> list[SFTExample]:
    """Read and tokenize a JSONL file of chat or prompt/completion examples, truncated to ``max_length``."""
    if max_length < 2:
        raise DataError(f"max_length must be at least 2 tokens, got {max_length}")
    path = Path(path)
    if not path.is_file():
        raise DataError(f"SFT data file {path} does not exist")
    examples, dropped = [], 0
    for line_no, record in _read_jsonl(path):
        where = f"{path}, line {line_no}"
        example = truncate_example(_tokenize_record(record, tokenizer, where), max_length)
        if example.num_trainable == 0:
            dropped += 1
            continue
        examples.append(example)
    if dropped:
        warnings.warn(
            f"{path}: dropped {dropped} of {dropped + len(examples)} examples with no trainable tokens "
            f"within max_length={max_length}",
            stacklevel=2,
        )
    if not examples:
        raise DataError(f"{path}: no example keeps a trainable token within max_length={max_length}")
    return examples


def _read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, JSON object) for every non-blank line; DataError on a bad line or an empty file."""
    found = False
    for line_no, record in iter_jsonl(path):
        if isinstance(record, str):
            raise DataError(f"{path}, line {line_no}: {record}")
        found = True
        yield line_no, record
    if not found:
        raise DataError(f"{path} holds no examples (empty file)")


def _tokenize_record(record: dict[str, Any], tokenizer: Any, where: str) -> SFTExample:
    """Dispatch one JSON object to the chat or the prompt/completion tokenizer."""
    has_messages = "messages" in record
    has_pair = "prompt" in record or "completion" in record
    if has_messages and has_pair:
        raise DataError(f"{where}: give either 'messages' or 'prompt'/'completion', not both")
    if has_messages:
        return tokenize_chat(_check_messages(record["messages"], where), tokenizer, where)
    if not has_pair:
        raise DataError(f"{where}: needs a 'messages' list or 'prompt' and 'completion' strings")
    prompt, completion = (_required_str(record, key, where) for key in ("prompt", "completion"))
    return tokenize_pair(prompt, completion, tokenizer, where)


def _required_str(record: dict[str, Any], key: str, where: str) -> str:
    if key not in record:
        raise DataError(f"{where}: missing field {key!r}")
    if not isinstance(record[key], str):
        raise DataError(f"{where}: {key!r} must be a string, got {type(record[key]).__name__}")
    return record[key]


def _check_messages(messages: Any, where: str) -> list[dict[str, Any]]:
    """Validate a conversation: a non-empty list of {role, content} with known roles and an assistant turn."""
    if not isinstance(messages, list) or not messages:
        raise DataError(f"{where}: 'messages' must be a non-empty list")
    for k, message in enumerate(messages):
        if not isinstance(message, dict):
            raise DataError(f"{where}: messages[{k}] must be an object, got {type(message).__name__}")
        role = _required_str(message, "role", f"{where}, messages[{k}]")
        if role not in ROLES:
            raise DataError(f"{where}: messages[{k}] has unknown role {role!r} (expected one of {ROLES})")
        _required_str(message, "content", f"{where}, messages[{k}]")
    if not any(m["role"] == "assistant" for m in messages):
        raise DataError(f"{where}: the conversation has no assistant message to train on")
    return messages


# ---- tokenizing ------------------------------------------------------------------------------------------
def tokenize_chat(messages: list[dict[str, Any]], tokenizer: Any, where: str = "conversation") -> SFTExample:
    """Render with the chat template; train on each assistant message's tokens (through its end token)."""
    if tokenizer.chat_template is None:
        raise DataError(f"{where}: chat data needs a tokenizer with a chat template")
    input_ids = _render(tokenizer, messages, add_generation_prompt=False)
    labels = [IGNORE_INDEX] * len(input_ids)
    for start, end in assistant_spans(messages, tokenizer, input_ids, where):
        labels[start:end] = input_ids[start:end]
    return SFTExample(input_ids, labels)


def assistant_spans(
    messages: list[dict[str, Any]], tokenizer: Any, input_ids: list[int], where: str = "conversation"
) -> list[tuple[int, int]]:
    """[start, end) token ranges of the assistant messages within the rendered conversation ``input_ids``.

    A span starts after the rendered prompt (``add_generation_prompt=True``) and ends after the rendered
    prefix that includes the message, cut back to its last end-of-turn (EOS) token when it has one.
    """
    spans = []
    for k, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = _render(tokenizer, messages[:k], add_generation_prompt=True)
        through = _render(tokenizer, messages[: k + 1], add_generation_prompt=False)
        _check_prefix(prompt, through, where, f"the prompt before messages[{k}]")
        _check_prefix(through, input_ids, where, f"the conversation through messages[{k}]")
        spans.append((len(prompt), _end_of_turn(through, len(prompt), tokenizer.eos_token_id)))
    return spans


def _render(tokenizer: Any, messages: list[dict[str, Any]], add_generation_prompt: bool) -> list[int]:
    """Token ids of the chat template applied to ``messages`` (empty for no messages and no prompt)."""
    if not messages and not add_generation_prompt:
        return []
    return list(tokenizer.apply_chat_template(messages, add_generation_prompt=add_generation_prompt))


def _check_prefix(prefix: list[int], ids: list[int], where: str, what: str) -> None:
    """DataError unless ``prefix`` is a token prefix of ``ids`` (the template re-renders earlier turns)."""
    if ids[: len(prefix)] != prefix:
        raise DataError(
            f"{where}: the chat template renders {what} to tokens that are not a prefix of the longer "
            "conversation (the template changes earlier turns or tokens merge across the boundary), so "
            "assistant tokens cannot be located"
        )


def _end_of_turn(through: list[int], start: int, eos_id: int | None) -> int:
    """End of an assistant span: just after its last EOS token, or the whole rendered turn without one."""
    for end in range(len(through), start, -1):
        if through[end - 1] == eos_id:
            return end
    return len(through)


def tokenize_pair(prompt: str, completion: str, tokenizer: Any, where: str = "example") -> SFTExample:
    """Chat tokenizer: a user/assistant exchange. Base tokenizer: prompt + completion + EOS, trained on the rest."""
    if tokenizer.chat_template is not None:
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}]
        return tokenize_chat(messages, tokenizer, where)
    if tokenizer.eos_token_id is None:
        raise DataError(f"{where}: prompt/completion data needs a tokenizer with an EOS token")
    prompt_ids = tokenizer.encode(prompt, add_special_tokens=True)
    completion_ids = [*tokenizer.encode(completion, add_special_tokens=False), tokenizer.eos_token_id]
    return SFTExample(prompt_ids + completion_ids, [IGNORE_INDEX] * len(prompt_ids) + completion_ids)


def truncate_example(example: SFTExample, max_length: int) -> SFTExample:
    """Keep the first ``max_length`` tokens."""
    return SFTExample(example.input_ids[:max_length], example.labels[:max_length])


def pad_id_for(tokenizer: Any) -> int:
    """The id to right-pad batches with: the tokenizer's pad token, else its EOS token."""
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad_id is None:
        raise DataError("the tokenizer has neither a pad nor an EOS token to pad batches with")
    return pad_id


# ---- batching --------------------------------------------------------------------------------------------
def split_examples(
    examples: Sequence[SFTExample], val_fraction: float, seed: int = 0
) -> tuple[list[SFTExample], list[SFTExample]]:
    """(train, val): a seeded random ``val_fraction`` of the examples held out (at least one when > 0)."""
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n_val = math.ceil(len(examples) * val_fraction) if val_fraction > 0 else 0
    if n_val >= len(examples):
        raise DataError(f"val_fraction={val_fraction} leaves no training example out of {len(examples)}")
    order = np.random.default_rng(seed).permutation(len(examples))
    val_idx = set(order[:n_val].tolist())
    train = [e for i, e in enumerate(examples) if i not in val_idx]
    val = [e for i, e in enumerate(examples) if i in val_idx]
    return train, val


def collate(examples: Sequence[SFTExample], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad to the longest example: input_ids (B, T) padded with pad_id, labels (B, T) with -100."""
    longest = max(len(e.input_ids) for e in examples)
    input_ids = torch.full((len(examples), longest), pad_id, dtype=torch.long)  # (B, T)
    labels = torch.full((len(examples), longest), IGNORE_INDEX, dtype=torch.long)  # (B, T)
    for row, example in enumerate(examples):
        input_ids[row, : len(example.input_ids)] = torch.tensor(example.input_ids, dtype=torch.long)
        labels[row, : len(example.labels)] = torch.tensor(example.labels, dtype=torch.long)
    return input_ids, labels


class SFTBatches:
    """Shuffled, right-padded training batches over SFT examples, resumable exactly from ``state_dict``.

    Every epoch visits each example once in an order drawn from (seed, epoch); a batch that reaches the end
    of an epoch is filled from the start of the next, so every training batch holds ``batch_size`` rows.
    With ``world_size`` > 1 each call draws one global batch of ``batch_size * world_size`` examples and
    rank r keeps rows r::world_size (the same stream as one process with the global batch size).
    """

    def __init__(
        self,
        examples: Sequence[SFTExample],
        batch_size: int,
        seed: int = 0,
        pad_id: int = 0,
        val_examples: Sequence[SFTExample] = (),
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if not examples:
            raise DataError("SFTBatches needs at least one training example")
        if batch_size < 1:
            raise DataError(f"batch_size must be positive, got {batch_size}")
        if not 0 <= rank < world_size:
            raise DataError(f"rank {rank} is not in [0, world_size={world_size})")
        self.examples = list(examples)
        self.val_examples = list(val_examples)
        self.batch_size, self.seed, self.pad_id = batch_size, seed, pad_id
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.position = 0  # index into this epoch's order of the next example to serve
        self.last_lengths: list[int] = []  # real tokens per row of the last batch (the loop counts these)
        self._order = self._epoch_order(0)

    def _epoch_order(self, epoch: int) -> list[int]:
        """The example order of one epoch, a pure function of (seed, epoch)."""
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.examples)).tolist()

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's (input_ids, labels) of the next training batch, each (batch_size, T)."""
        chosen = []
        while len(chosen) < self.batch_size * self.world_size:
            if self.position == len(self.examples):
                self.epoch, self.position = self.epoch + 1, 0
                self._order = self._epoch_order(self.epoch)
            chosen.append(self.examples[self._order[self.position]])
            self.position += 1
        rows = chosen[self.rank :: self.world_size]
        self.last_lengths = [len(e.input_ids) for e in rows]
        return collate(rows, self.pad_id)

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable position in the stream (plus sizes, checked on load)."""
        return {
            "kind": "sft",
            "epoch": self.epoch,
            "position": self.position,
            "seed": self.seed,
            "num_examples": len(self.examples),
            "batch_size": self.batch_size,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue exactly where ``state_dict()`` was taken (same examples required)."""
        if state.get("kind", "sft") != "sft":
            raise DataError(f"batch state is for {state['kind']!r} data, not SFT examples")
        if state["num_examples"] != len(self.examples):
            raise DataError(
                f"batch state was saved for {state['num_examples']} examples, this data has {len(self.examples)}"
            )
        if not 0 <= state["position"] <= len(self.examples):
            raise DataError(f"batch state position {state['position']} is out of range")
        self.seed, self.epoch, self.position = state["seed"], state["epoch"], state["position"]
        self._order = self._epoch_order(self.epoch)

    def eval_batches(self, n: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Up to ``n`` (all when None) held-out batches of this rank's share, the same ones every time."""
        share = self.val_examples[self.rank :: self.world_size]
        if not share:
            raise DataError(
                "no held-out examples to evaluate on; pass val_examples (see split_examples)"
                + (f" with at least world_size={self.world_size}" if self.world_size > 1 else "")
            )
        starts = range(0, len(share), self.batch_size)
        for k, start in enumerate(starts):
            if n is not None and k >= n:
                return
            yield collate(share[start : start + self.batch_size], self.pad_id)

    @property
    def num_eval_batches(self) -> int:
        """How many batches ``eval_batches()`` yields in full (this rank's share)."""
        return math.ceil(len(self.val_examples[self.rank :: self.world_size]) / self.batch_size)
