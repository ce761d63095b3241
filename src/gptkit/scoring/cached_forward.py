"""Left-padded forward passes that extend KV-cache rows: the building blocks of batched scoring.

Rows are padded on the left, so every row ends in the same column: the logits of each row's last token are
the last column (``logits_to_keep=1``), and continuations line up with their targets. Long inputs go in
column chunks of at most ``TOKEN_BUDGET`` tokens, so the (rows, columns, vocab) logits stay small.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from gptkit.model.cache import KVCache

TOKEN_BUDGET = 2048  # tokens per forward pass: bounds the activations and the logits of a chunk


def left_padded(rows: list[list[int]], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) ids (pad id 0) and a (B, T) mask of the real tokens, right-aligned."""
    longest = max(map(len, rows))
    ids = torch.zeros(len(rows), longest, dtype=torch.long)
    mask = torch.zeros(len(rows), longest, dtype=torch.bool)
    for row, tokens in enumerate(rows):
        if tokens:
            ids[row, longest - len(tokens) :] = torch.tensor(tokens)
            mask[row, longest - len(tokens) :] = True
    return ids.to(device), mask.to(device)


def extend(model: torch.nn.Module, cache: KVCache, rows: list[list[int]], *, last_only: bool) -> Iterator:
    """Append ``rows`` (one token list per cache row) to ``cache``, chunk by chunk; yield each chunk's
    (logits, column offset): logits (B, t, V) fp32, or (B, 1, V) for the chunk's last column with ``last_only``.
    """
    ids, mask = left_padded(rows, model.device)  # (B, T)
    step = max(1, TOKEN_BUDGET // len(rows))
    for start in range(0, ids.shape[1], step):
        chunk = slice(start, start + step)
        out = model(ids[:, chunk], attention_mask=mask[:, chunk], cache=cache, logits_to_keep=int(last_only))
        yield out.logits.float(), start


def last_logprobs(model: torch.nn.Module, cache: KVCache, rows: list[list[int]]) -> torch.Tensor:
    """Append non-empty ``rows`` to the cache; log-probabilities of the token after each: (B, V)."""
    for logits, _ in extend(model, cache, rows, last_only=True):
        last = logits[:, -1]  # the final chunk's is the one that counts
    return torch.log_softmax(last, dim=-1)


def target_logprobs(
    model: torch.nn.Module, cache: KVCache, inputs: list[list[int]], targets: list[list[int]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Append ``inputs`` to the cache; for every input token, the log-probability of the target at the same
    index and whether it is the argmax: two (B, T) tensors, right-aligned like the inputs (T: the longest)."""
    target_ids, _ = left_padded(targets, model.device)  # (B, T), aligned with the inputs
    logprobs = torch.zeros(target_ids.shape, dtype=torch.float32, device=target_ids.device)
    greedy = torch.zeros(target_ids.shape, dtype=torch.bool, device=target_ids.device)
    for logits, start in extend(model, cache, inputs, last_only=False):  # logits (B, t, V)
        wanted = target_ids[:, start : start + logits.shape[1], None]  # (B, t, 1)
        chosen = logits.gather(-1, wanted).squeeze(-1)  # (B, t)
        logprobs[:, start : start + logits.shape[1]] = chosen - logits.logsumexp(-1)
        greedy[:, start : start + logits.shape[1]] = logits.argmax(-1) == wanted.squeeze(-1)
    return logprobs, greedy
