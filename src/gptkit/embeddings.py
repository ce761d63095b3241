"""Text embeddings from a decoder LM: its final normed hidden states, pooled and L2-normalised.

``pooling="mean"`` (the default) averages the hidden states of every token of an input; ``"last"`` takes
the last token's (which, under causal attention, has seen the whole input). ``dimensions=d`` keeps the
first d of the model's ``n_embd`` values and normalises again, as OpenAI's text-embedding-3 models do
(the model was not trained for it, so short vectors lose more than theirs). Several inputs run in one
padded forward (right padding, an attention mask); each row computes what it would alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from gptkit.errors import ContextLengthError, EmbeddingError
from gptkit.model.adapters import BASE, adapter_selection, use_adapters
from gptkit.registry import DEFAULT_MODEL

POOLINGS = ("mean", "last")
DEFAULT_POOLING = "mean"
BATCH_TOKENS = 16384  # padded tokens per forward at most (bounds activation memory)

Inputs = str | Sequence[str] | Sequence[int] | Sequence[Sequence[int]]


def embed(
    inputs: Inputs,
    model: Any = DEFAULT_MODEL,
    tokenizer: Any = None,
    *,
    pooling: str = DEFAULT_POOLING,
    dimensions: int | None = None,
    adapter: str | None = None,
) -> torch.Tensor:
    """L2-normalised embeddings (N, dimensions or n_embd), float32, one row per input.

    ``inputs``: a string, a list of strings, a list of token ids or a list of such lists. ``model``: a
    loaded model (then ``tokenizer`` too, for text) or a name / path for ``gptkit.load``. ``adapter``: a
    LoRA adapter the model was given with a name. EmbeddingError / ContextLengthError name the bad argument.
    """
    if isinstance(model, str | Path):
        from gptkit.loader import load

        model, tokenizer = load(model)
    ids = token_inputs(tokenizer, inputs, model.config.vocab_size)
    return embed_token_ids(model, ids, pooling=pooling, dimensions=dimensions, adapter=adapter)


def token_inputs(tokenizer: Any, inputs: Inputs, vocab_size: int) -> list[list[int]]:
    """The token ids of every input (texts are encoded); EmbeddingError(param="input") for bad input."""
    if isinstance(inputs, str):
        inputs = [inputs]
    inputs = list(inputs) if isinstance(inputs, Sequence) else inputs
    if not isinstance(inputs, list) or not inputs:
        raise EmbeddingError(
            "input must be a string, a list of strings or token ids, and not empty", param="input"
        )
    if all(_is_int(i) for i in inputs):
        inputs = [inputs]  # one input given as token ids
    ids = [_one_input(tokenizer, item, vocab_size, n) for n, item in enumerate(inputs)]
    return ids


def _one_input(tokenizer: Any, item: Any, vocab_size: int, n: int) -> list[int]:
    if isinstance(item, str):
        if tokenizer is None:
            raise EmbeddingError("text input needs a tokenizer", param="input")
        encoded = tokenizer.encode(item)
        ids = list(getattr(encoded, "ids", encoded))
    elif isinstance(item, Sequence) and all(_is_int(i) for i in item):
        ids = list(item)
        if ids and not 0 <= min(ids) <= max(ids) < vocab_size:
            raise EmbeddingError(f"input[{n}]: token ids must lie in [0, {vocab_size})", param="input")
    else:
        raise EmbeddingError(f"input[{n}] must be a string or a list of token ids", param="input")
    if not ids:
        raise EmbeddingError(f"input[{n}] is empty: give at least one token", param="input")
    return ids


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_options(model: Any, pooling: str, dimensions: int | None) -> None:
    """EmbeddingError naming ``pooling`` or ``dimensions`` when the model cannot give them."""
    if pooling not in POOLINGS:
        raise EmbeddingError(f"pooling must be one of {POOLINGS}, got {pooling!r}", param="pooling")
    width = model.config.n_embd
    if dimensions is not None and (not _is_int(dimensions) or not 1 <= dimensions <= width):
        raise EmbeddingError(
            f"dimensions must be an integer from 1 to {width} (this model's hidden size), got {dimensions!r}",
            param="dimensions",
        )


def check_lengths(ids: list[list[int]], max_length: int) -> None:
    """ContextLengthError(param="input") for an input longer than ``max_length`` tokens."""
    for n, row in enumerate(ids):
        if len(row) > max_length:
            raise ContextLengthError(
                f"input[{n}] has {len(row)} tokens, more than the maximum of {max_length}", param="input"
            )


@torch.inference_mode()
def embed_token_ids(
    model: Any,
    ids: list[list[int]],
    *,
    pooling: str = DEFAULT_POOLING,
    dimensions: int | None = None,
    adapter: str | None = None,
    max_length: int | None = None,
) -> torch.Tensor:
    """Embeddings (N, d) of token-id inputs, batched in padded forwards of similar lengths."""
    check_options(model, pooling, dimensions)
    check_lengths(ids, max_length or model.config.context_length)
    slot = _adapter_slot(model, adapter)
    out = torch.empty(len(ids), dimensions or model.config.n_embd)
    for group in length_batches(ids):
        out[group] = _embed_batch(model, [ids[i] for i in group], pooling, dimensions, slot)
    return out


def _adapter_slot(model: Any, adapter: str | None) -> int:
    """The LoRA adapter's slot (BASE for None); EmbeddingError naming ``model`` when it is unknown."""
    selection = adapter_selection(model)
    if adapter is None:
        return BASE
    if selection is None or adapter not in selection.names:
        raise EmbeddingError(f"unknown adapter {adapter!r}", param="model")
    return selection.index(adapter)


def length_batches(ids: list[list[int]]) -> list[list[int]]:
    """Input indices sorted by length and grouped so that each padded batch holds at most BATCH_TOKENS
    tokens (inputs of similar lengths share a forward)."""
    batches, current = [], []
    for i in sorted(range(len(ids)), key=lambda i: len(ids[i])):
        if current and (len(current) + 1) * len(ids[i]) > BATCH_TOKENS:
            batches.append(current)
            current = []
        current.append(i)
    return [*batches, current] if current else batches


def _embed_batch(model: Any, batch: list[list[int]], pooling: str, dimensions: int | None, slot: int):
    """One right-padded forward: pooled, truncated, normalised vectors (B, d)."""
    device = model.device
    longest = max(len(row) for row in batch)
    input_ids = torch.zeros(len(batch), longest, dtype=torch.long, device=device)  # (B, T)
    mask = torch.zeros(len(batch), longest, dtype=torch.long, device=device)  # (B, T), 1 = real token
    for b, row in enumerate(batch):
        input_ids[b, : len(row)] = torch.tensor(row, device=device)
        mask[b, : len(row)] = 1
    with use_adapters(model, [slot] * len(batch)):
        hidden = model.hidden_states(input_ids, mask if longest > min(map(len, batch)) else None).float()
    if pooling == "mean":
        weights = mask[:, :, None].float()  # (B, T, 1)
        pooled = (hidden * weights).sum(1) / weights.sum(1)  # (B, n_embd)
    else:
        lengths = mask.sum(1)  # (B,)
        pooled = hidden[torch.arange(len(batch), device=device), lengths - 1]  # (B, n_embd)
    if dimensions is not None:
        pooled = pooled[:, :dimensions]
    return F.normalize(pooled, dim=-1).cpu()
