"""Log-likelihood scoring: log p(continuation | context) for many (context, continuation) pairs at once.

The one scoring mechanism shared by classification pipelines, multiple-choice evaluation and the bias probe.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from gptkit.checks import is_int
from gptkit.errors import ConfigError, ContextLengthError
from gptkit.model.cache import KVCache
from gptkit.scoring import SCORING_BATCH_SIZE
from gptkit.scoring.cached_forward import last_logprobs, target_logprobs


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
    batch_size: int = SCORING_BATCH_SIZE,
    progress: Callable[[int], object] | None = None,
) -> list[Loglik]:
    """log p(continuation | context) for every (context ids, continuation ids) pair, batched.

    The context tokens all pairs share (a template, few-shot examples) run once into a KV cache; each
    distinct context then runs once per batch of ``batch_size`` contexts, and the continuations after it,
    ``batch_size`` rows per forward pass. ``progress(n)`` is called as n more pairs are scored.
    With an empty context the first continuation token has no prediction and is not scored
    (``n_tokens`` says how many were); pass a BOS/EOS token as context to score every token.
    """
    if not is_int(batch_size) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    window = model.config.context_length
    fitted = [fit_to_context(list(c), list(x), window) for c, x in pairs]
    jobs = [_Job(index, *_with_context(c, x)) for index, (c, x) in enumerate(fitted)]
    results: list[Loglik | None] = [None] * len(jobs)
    by_context: dict[tuple[int, ...], list[_Job]] = defaultdict(list)
    for job in jobs:
        by_context[job.context].append(job)
    contexts = sorted(by_context, key=len)  # similar lengths together: little padding
    prefix = _shared_prefix(model, contexts)
    for start in range(0, len(contexts), batch_size):
        group = [by_context[c] for c in contexts[start : start + batch_size]]
        for job, result in _score_group(model, prefix, group, batch_size, progress or (lambda n: None)):
            results[job.index] = result
    return results  # type: ignore[return-value]


@dataclass(frozen=True)
class _Job:
    """One pair to score: its place in the input, a non-empty context, the tokens to score after it."""

    index: int
    context: tuple[int, ...]
    continuation: tuple[int, ...]


def _with_context(context: list[int], continuation: list[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """An empty context becomes the first continuation token (which then is not scored)."""
    if not context:
        context, continuation = continuation[:1], continuation[1:]
    return tuple(context), tuple(continuation)


@dataclass
class _Prefix:
    """The tokens every context starts with, and a one-row KV cache holding them (None when empty)."""

    length: int
    cache: KVCache | None


def _shared_prefix(model: torch.nn.Module, contexts: list[tuple[int, ...]]) -> _Prefix:
    """Run the longest prefix shared by all contexts once; each context keeps at least its last token."""
    common = os.path.commonprefix(contexts)[: min(map(len, contexts)) - 1]
    if not common:
        return _Prefix(0, None)
    cache = model.new_cache(1, len(common))
    last_logprobs(model, cache, [list(common)])
    return _Prefix(len(common), cache)


def _score_group(
    model: torch.nn.Module,
    prefix: _Prefix,
    jobs_by_context: list[list[_Job]],
    batch_size: int,
    progress: Callable[[int], object],
) -> list[tuple[_Job, Loglik]]:
    """Run a batch of contexts after the prefix, then score their continuations ``batch_size`` at a time."""
    tails = [list(jobs[0].context[prefix.length :]) for jobs in jobs_by_context]
    longest = max(len(job.continuation) for jobs in jobs_by_context for job in jobs)
    max_len = prefix.length + max(map(len, tails)) + max(longest - 1, 0)
    rows = [0] * len(tails)
    cache = prefix.cache.copy_rows(rows, max_len) if prefix.cache else model.new_cache(len(rows), max_len)
    first = last_logprobs(model, cache, tails)  # (B, V): predictions of each first continuation token
    rows_of = [(row, job) for row, jobs in enumerate(jobs_by_context) for job in jobs]
    if len(rows_of) == len(tails):  # one continuation per context: extend the context cache in place
        scored = _score_continuations_after(model, cache, first, rows_of, in_place=True)
        progress(len(scored))
        return scored
    rows_of.sort(key=lambda item: len(item[1].continuation))  # similar lengths together
    scored = []
    for start in range(0, len(rows_of), batch_size):
        chunk = rows_of[start : start + batch_size]
        scored += _score_continuations_after(model, cache, first, chunk, in_place=False)
        progress(len(chunk))
    return scored


def _score_continuations_after(
    model: torch.nn.Module, cache: KVCache, first: torch.Tensor, chunk: list[tuple[int, _Job]], in_place: bool
) -> list[tuple[_Job, Loglik]]:
    """Loglik of each job's continuation after its context, held in cache row ``row`` (chunk: (row, job));
    ``in_place``: the chunk is every cache row in order, so the continuations extend the cache itself."""
    rows = [row for row, _ in chunk]
    later = [list(job.continuation[1:]) for _, job in chunk]  # tokens predicted inside the continuation
    if any(later):
        if not in_place:  # one row per job; the context cache stays as it is for the next chunk
            cache = cache.copy_rows(rows, cache.max_len)
        inputs = [list(job.continuation[:-1]) for _, job in chunk]
        logprobs, greedy = target_logprobs(model, cache, inputs, later)  # (B, T) each, right-aligned
    out = []
    for i, (row, job) in enumerate(chunk):
        if not job.continuation:
            out.append((job, Loglik(0.0, 0, True, ())))
            continue
        head = job.continuation[0]
        n_later = len(later[i])
        token_lp = [float(first[row, head])] + (logprobs[i, -n_later:].tolist() if n_later else [])
        is_greedy = int(first[row].argmax()) == head and (not n_later or bool(greedy[i, -n_later:].all()))
        out.append((job, Loglik(sum(token_lp), len(token_lp), is_greedy, tuple(token_lp))))
    return out
