"""Log-likelihood scoring: log p(continuation | context) for many (context, continuation) pairs at once.

The one scoring mechanism shared by classification pipelines, multiple-choice evaluation and the bias probe.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from gptkit.errors import ContextLengthError


@dataclass(frozen=True)
class Loglik:
    """Sum of log-probabilities of the continuation tokens, their count, and whether greedy decoding
    would have produced exactly them (lm-evaluation-harness's ``is_greedy``)."""

    logprob: float
    n_tokens: int
    is_greedy: bool
    token_logprobs: tuple[float, ...] = field(default=(), repr=False, compare=False)  # one per scored token


def fit_to_context(context: list[int], continuation: list[int], window: int) -> tuple[list[int], list[int]]:
    """Drop the oldest context tokens so context + continuation fits ``window`` (the continuation stays)."""
    if not continuation:
        raise ValueError("continuation is empty: there is nothing to score")
    if len(continuation) > window:
        raise ContextLengthError(
            f"continuation of {len(continuation)} tokens does not fit the context window of {window} tokens"
        )
    keep = window - len(continuation)
    return (context[-keep:] if keep else []), continuation


@torch.inference_mode()
def score_continuations(
    model: torch.nn.Module,
    pairs: Sequence[tuple[list[int], list[int]]],
    *,
    batch_size: int = 8,
) -> list[Loglik]:
    """log p(continuation | context) for every (context ids, continuation ids) pair, batched.

    With an empty context the first continuation token has no prediction and is not scored
    (``n_tokens`` says how many were); pass a BOS/EOS token as context to score every token.
    """
    window = model.config.context_length
    fitted = [fit_to_context(list(c), list(x), window) for c, x in pairs]
    order = sorted(range(len(fitted)), key=lambda i: -sum(map(len, fitted[i])))  # similar lengths together
    results: list[Loglik | None] = [None] * len(fitted)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        for i, result in zip(chunk, _score_batch(model, [fitted[i] for i in chunk]), strict=True):
            results[i] = result
    return results  # type: ignore[return-value]


def _score_batch(model: torch.nn.Module, pairs: list[tuple[list[int], list[int]]]) -> list[Loglik]:
    """One right-padded forward pass; the causal mask makes right padding harmless."""
    sequences = [c + x for c, x in pairs]
    longest = max(len(s) for s in sequences)
    ids = torch.zeros(len(sequences), longest, dtype=torch.long, device=model.device)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(seq)
    logprobs = torch.log_softmax(model(ids).logits.float(), dim=-1)  # (B, T, V)
    out = []
    for row, (context, continuation) in enumerate(pairs):
        first = max(len(context), 1)  # position whose next-token prediction is scored first
        targets = ids[row, first : len(context) + len(continuation)]  # (n,)
        predicted = logprobs[row, first - 1 : len(context) + len(continuation) - 1]  # (n, V)
        token_lp = predicted.gather(-1, targets[:, None]).squeeze(-1)
        greedy = bool((predicted.argmax(-1) == targets).all())
        per_token = tuple(token_lp.tolist())
        out.append(Loglik(float(token_lp.sum()), int(targets.numel()), greedy, per_token))
    return out
