"""Logits processors: pure functions on next-token scores (B, V), composed in transformers' order.

Each function reproduces the transformers ``LogitsProcessor``/``LogitsWarper`` of the same purpose exactly
(same filter value -inf, same tie handling, same ``min_tokens_to_keep``). :func:`build_processors` turns a
GenerationConfig into a list of ``(input_ids, scores) -> scores`` callables, and :func:`apply_processors`
runs them in order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial

import torch

from gptkit.generation.config import GenerationConfig

LogitsProcessor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (input_ids (B, T), scores (B, V))
FILTERED = -math.inf


def repetition_penalty(
    scores: torch.Tensor, input_ids: torch.Tensor, penalty: float, ignore_before: torch.Tensor | None = None
) -> torch.Tensor:
    """Divide positive / multiply negative scores of tokens present in ``input_ids`` (B, T) by ``penalty``.

    ``ignore_before`` (B,) skips each row's first columns (its left padding), as transformers does.
    """
    vocab_size = scores.shape[-1]
    if ignore_before is not None:
        columns = torch.arange(input_ids.shape[1], device=input_ids.device)
        input_ids = input_ids.masked_fill(columns[None, :] < ignore_before[:, None], vocab_size)
    input_ids = input_ids.clamp(max=vocab_size)  # ids outside the head land in a spare column, dropped below
    padded = torch.nn.functional.pad(scores, (0, 1))  # (B, V + 1)
    seen = padded.gather(1, input_ids)
    seen = torch.where(seen < 0, seen * penalty, seen / penalty)
    return padded.scatter(1, input_ids, seen)[:, :vocab_size]


def no_repeat_ngram(scores: torch.Tensor, input_ids: torch.Tensor, ngram_size: int) -> torch.Tensor:
    """Forbid any token that would repeat an n-gram already present in ``input_ids`` (B, T)."""
    length = input_ids.shape[-1]
    if length < ngram_size:
        return scores
    prefix = input_ids[:, length + 1 - ngram_size :]  # (B, n - 1): the n-gram the next token would complete
    windows = input_ids.unfold(dimension=1, size=ngram_size, step=1)  # (B, W, n)
    matches = (windows[..., :-1] == prefix.unsqueeze(1)).all(dim=-1)  # (B, W)
    vocab_size = scores.shape[-1]
    banned = scores.new_zeros((scores.shape[0], vocab_size + 1), dtype=torch.bool)
    banned.scatter_(1, torch.where(matches, windows[..., -1].clamp(max=vocab_size), vocab_size), True)
    return scores.masked_fill(banned[:, :vocab_size], FILTERED)


def suppress_tokens(scores: torch.Tensor, token_ids: Sequence[int]) -> torch.Tensor:
    """Set the scores of ``token_ids`` to -inf (used to hold EOS back until min_new_tokens)."""
    ids = torch.as_tensor(list(token_ids), dtype=torch.long, device=scores.device)
    ids = ids[ids < scores.shape[-1]]  # ids beyond the head have no score to hide
    return scores.index_fill(-1, ids, FILTERED)


def min_new_tokens(
    scores: torch.Tensor, input_ids: torch.Tensor, prompt_len: int, minimum: int, eos_ids: Sequence[int]
) -> torch.Tensor:
    """Suppress EOS while fewer than ``minimum`` tokens follow the prompt."""
    if input_ids.shape[-1] - prompt_len < minimum:
        return suppress_tokens(scores, eos_ids)
    return scores


def presence_frequency_penalty(
    scores: torch.Tensor, generated_ids: torch.Tensor, presence: float, frequency: float
) -> torch.Tensor:
    """OpenAI's penalties: score -= count * frequency + (count > 0) * presence, counts over (B, G) ids."""
    counts = torch.zeros_like(scores).scatter_add_(  # (B, V)
        1, generated_ids, torch.ones_like(generated_ids, dtype=scores.dtype)
    )
    return scores - counts * frequency - (counts > 0).to(scores.dtype) * presence


def logit_bias(scores: torch.Tensor, bias: dict[int, float]) -> torch.Tensor:
    """Add ``bias[token]`` to each listed token's score (OpenAI's logit_bias; -100 bans, +100 forces)."""
    ids = torch.tensor(list(bias), dtype=torch.long, device=scores.device)
    values = torch.tensor(list(bias.values()), dtype=scores.dtype, device=scores.device)
    return scores.index_add(1, ids, values.expand(scores.shape[0], -1))


def temperature(scores: torch.Tensor, value: float) -> torch.Tensor:
    """Scores / temperature: below 1 sharpens, above 1 flattens the distribution."""
    return scores / value


def top_k(scores: torch.Tensor, k: int, min_tokens_to_keep: int = 1) -> torch.Tensor:
    """Keep the k highest scores (ties with the k-th included); the rest become -inf."""
    k = min(max(k, min_tokens_to_keep), scores.shape[-1])
    kth = torch.topk(scores, k)[0][..., -1, None]  # (B, 1)
    return scores.masked_fill(scores < kth, FILTERED)


def top_p(scores: torch.Tensor, p: float, min_tokens_to_keep: int = 1) -> torch.Tensor:
    """Nucleus filter: keep the smallest set of top tokens whose probability mass reaches ``p``."""
    sorted_scores, order = torch.sort(scores, descending=False)
    cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)  # ascending: mass of the tokens below
    drop_sorted = cumulative <= (1 - p)
    drop_sorted[..., -min_tokens_to_keep:] = False
    drop = drop_sorted.scatter(1, order, drop_sorted)
    return scores.masked_fill(drop, FILTERED)


def min_p(scores: torch.Tensor, p: float, min_tokens_to_keep: int = 1) -> torch.Tensor:
    """Drop tokens whose probability is below ``p`` times the top token's probability."""
    probs = scores.softmax(dim=-1)
    drop = probs < p * probs.amax(dim=-1, keepdim=True)
    keep = torch.topk(probs, min(min_tokens_to_keep, probs.shape[-1]), dim=-1).indices
    drop.scatter_(-1, keep, False)
    return scores.masked_fill(drop, FILTERED)


def typical_p(scores: torch.Tensor, mass: float, min_tokens_to_keep: int = 1) -> torch.Tensor:
    """Locally typical sampling: keep tokens whose surprisal is closest to the entropy, up to ``mass``."""
    log_probs = scores.log_softmax(dim=-1)
    entropy = -(log_probs * log_probs.exp()).nansum(-1, keepdim=True)  # (B, 1)
    distance = (-log_probs - entropy).abs()
    sorted_distance, order = torch.sort(distance, descending=False)
    cumulative = scores.gather(-1, order).softmax(dim=-1).cumsum(dim=-1)
    last = (cumulative < mass).sum(dim=1).clamp_(max=sorted_distance.shape[-1] - 1)
    drop_sorted = sorted_distance > sorted_distance.gather(1, last.view(-1, 1))
    drop_sorted[..., :min_tokens_to_keep] = False
    drop = drop_sorted.scatter(1, order, drop_sorted)
    return scores.masked_fill(drop, FILTERED)


# ---- composition ---------------------------------------------------------------------------------------
def _scores_only(fn: Callable[..., torch.Tensor], **params) -> LogitsProcessor:
    """Adapt a scores-only function to the (input_ids, scores) signature."""
    bound = partial(fn, **params)
    return lambda input_ids, scores: bound(scores)


def build_processors(
    config: GenerationConfig,
    prompt_len: int,
    pad_lengths: torch.Tensor | None = None,
    min_tokens_to_keep: int = 1,
) -> list[LogitsProcessor]:
    """The processors ``config`` asks for, in transformers' order (warpers only when sampling).

    ``pad_lengths`` (B,) counts each row's left padding, which the repetition penalty ignores.
    """
    chain: list[LogitsProcessor] = []
    if config.repetition_penalty != 1.0:
        penalty = config.repetition_penalty
        chain.append(lambda ids, s: repetition_penalty(s, ids, penalty, pad_lengths))
    if config.no_repeat_ngram_size > 0:
        chain.append(lambda ids, s: no_repeat_ngram(s, ids, config.no_repeat_ngram_size))
    if config.min_new_tokens > 0 and config.eos_ids:
        chain.append(lambda ids, s: min_new_tokens(s, ids, prompt_len, config.min_new_tokens, config.eos_ids))
    if config.sampling:
        chain += _warpers(config, min_tokens_to_keep)
    return chain


def _warpers(config: GenerationConfig, keep: int) -> list[LogitsProcessor]:
    """Distribution warpers applied only when sampling: temperature, top-k, top-p, min-p, typical-p."""
    warpers = []
    if config.temperature != 1.0:
        warpers.append(_scores_only(temperature, value=config.temperature))
    if config.top_k != 0:
        warpers.append(_scores_only(top_k, k=config.top_k, min_tokens_to_keep=keep))
    if config.top_p < 1.0:
        warpers.append(_scores_only(top_p, p=config.top_p, min_tokens_to_keep=keep))
    if config.min_p is not None:
        warpers.append(_scores_only(min_p, p=config.min_p, min_tokens_to_keep=keep))
    if config.typical_p < 1.0:
        warpers.append(_scores_only(typical_p, mass=config.typical_p, min_tokens_to_keep=keep))
    return warpers


def apply_processors(
    processors: Sequence[LogitsProcessor], input_ids: torch.Tensor, scores: torch.Tensor
) -> torch.Tensor:
    """Run ``processors`` in order on scores (B, V) given the tokens so far (B, T)."""
    for process in processors:
        scores = process(input_ids, scores)
    return scores
