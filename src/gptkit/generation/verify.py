"""Checking drafted tokens against the target model's scores: greedy matching or rejection sampling.

Speculative sampling (Leviathan et al. 2023; Chen et al. 2023): a draft token x drawn from the draft's
distribution q is accepted with probability min(1, p(x) / q(x)) under the target's distribution p; on
rejection the token is drawn from the normalised residual max(0, p - q). Every emitted token is then
distributed exactly as p. A draft without a distribution (an n-gram lookup) is a point mass: q(x) = 1.
Greedy decoding accepts a draft token when it is the target's argmax, so the output equals plain greedy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch


def sample_from(probs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One draw per row of probabilities (N, V) (torch.multinomial, as transformers samples): (N,)."""
    if generator is not None and generator.device != probs.device:
        return torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(1).to(probs.device)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


def choose_token(scores: torch.Tensor, sampling: bool, generator: torch.Generator | None) -> int:
    """The argmax of processed scores (V,), or one draw from their softmax."""
    if not sampling:
        return int(scores.argmax())
    return int(sample_from(scores.softmax(-1)[None], generator)[0])


def check_draft(
    scores: torch.Tensor,
    draft: int,
    draft_probs: torch.Tensor | None,
    sampling: bool,
    generator: torch.Generator | None,
) -> tuple[int, bool]:
    """(token to emit, accepted?) for one drafted token, given the target's processed scores (V,) there.

    ``draft_probs`` (V,) is the draft's distribution the token was drawn from; None means a point mass.
    """
    if not sampling:
        best = int(scores.argmax())
        return best, best == draft
    p = scores.softmax(-1)  # (V,)
    q_draft = 1.0 if draft_probs is None else float(draft_probs[draft])
    u = float(torch.rand((), generator=generator, device=_rng_device(generator)))
    if u * q_draft < float(p[draft]):  # accept with probability min(1, p / q)
        return draft, True
    if draft_probs is None:
        residual = p.index_fill(0, torch.tensor([draft], device=p.device), 0.0)  # max(0, p - onehot)
    else:
        residual = (p - draft_probs.to(p.dtype)).clamp_(min=0)
    if float(residual.sum()) <= 0:  # p == q up to rounding: rejection was a rounding artefact
        residual = p
    return int(sample_from((residual / residual.sum())[None], generator)[0]), False


def verified_tokens(
    logits: torch.Tensor,
    drafts: list[int],
    draft_probs: torch.Tensor | None,
    process: Callable[[torch.Tensor], torch.Tensor],
    sampling: bool,
    generator: torch.Generator | None,
) -> Iterator[int]:
    """The tokens one row emits after a verification forward: accepted drafts, then one more token.

    ``logits`` (len(drafts) + 1, V): the target's next-token logits after the row's last token and after
    each draft. ``process`` turns logits (V,) into scores with the row's processors over its sequence so far;
    the caller appends every yielded token before asking for the next (and may stop early, at a stop rule).
    """
    for j, draft in enumerate(drafts):
        probs = None if draft_probs is None else draft_probs[j]
        token, accepted = check_draft(process(logits[j]), draft, probs, sampling, generator)
        yield token
        if not accepted:
            return
    yield choose_token(process(logits[len(drafts)]), sampling, generator)  # every draft accepted: a bonus


def _rng_device(generator: torch.Generator | None) -> torch.device:
    return torch.device("cpu") if generator is None else generator.device
