"""Beam search exactly as transformers 5.x runs it (``GenerationMixin._beam_search``), over gptkit's KV cache.

Per prompt: ``num_beams`` running beams scored by cumulative log-probability. Each step takes the top
``keep = max(2, 1 + n_eos) * num_beams`` continuations over all beams; those that stop (EOS, max_length,
stop string) and rank within the first ``num_beams`` become finished hypotheses scored
``sum log p / generated_len ** length_penalty`` (generated_len includes the EOS token); the best
``num_beams`` non-stopped continue. The cache follows its beams with ``KVCache.select_rows``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gptkit.generation.plan import GenerateOutput, Plan
from gptkit.generation.processors import apply_processors
from gptkit.generation.steps import decode_step, prefill

NEG = -1.0e9  # transformers' "impossible" score


@dataclass
class Beams:
    """Running beams and finished hypotheses of B prompts (K beams each); sequences are (B, K, max_length)."""

    running: torch.Tensor  # (B, K, L) token ids of the live beams
    running_scores: torch.Tensor  # (B, K) cumulative log-probabilities
    finished: torch.Tensor  # (B, K, L) best finished hypotheses so far, best first
    finished_scores: torch.Tensor  # (B, K) their length-normalised scores
    finished_lengths: torch.Tensor  # (B, K) their generated lengths
    is_finished: torch.Tensor  # (B, K) whether each finished slot holds a real hypothesis
    improvable: torch.Tensor  # (B, 1) whether a live beam could still beat the worst finished one


def gather_beams(tensor: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """Select beams ``indices`` (B, N) along dim 1 of ``tensor`` (B, K, ...)."""
    while indices.dim() < tensor.dim():
        indices = indices.unsqueeze(-1)
    return torch.take_along_dim(tensor, indices, dim=1)


def start_beams(input_ids: torch.Tensor, num_beams: int, max_length: int, fill: int) -> Beams:
    """Every beam starts as the prompt; only beam 0 is live at first (the others score -1e9)."""
    B, T = input_ids.shape
    running = torch.full((B, num_beams, max_length), fill, dtype=torch.long, device=input_ids.device)
    running[:, :, :T] = input_ids[:, None]
    scores = torch.zeros((B, num_beams), dtype=torch.float, device=input_ids.device)
    scores[:, 1:] = NEG
    return Beams(
        running=running,
        running_scores=scores,
        finished=running.clone(),
        finished_scores=torch.full_like(scores, NEG),
        finished_lengths=torch.zeros((B, num_beams), dtype=torch.long, device=input_ids.device),
        is_finished=torch.zeros((B, num_beams), dtype=torch.bool, device=input_ids.device),
        improvable=torch.ones((B, 1), dtype=torch.bool, device=input_ids.device),
    )


def beam_search(plan: Plan) -> torch.Tensor | GenerateOutput:
    """Beam search (or beam sampling with do_sample) for every prompt; best num_return_sequences per prompt."""
    beams, step_scores = run_beams(plan)
    return finalize(plan, beams, step_scores)  # outside inference mode: plain tensors for the caller


@torch.inference_mode()
def run_beams(plan: Plan) -> tuple[Beams, list[torch.Tensor]]:
    """Decode until no prompt can improve its finished hypotheses; returns the final beams (and step scores)."""
    config, model = plan.config, plan.model
    B, T = plan.input_ids.shape
    K, L = config.num_beams, plan.max_length
    keep = max(2, 1 + len(config.eos_ids)) * K
    fill = config.pad_token_id if config.pad_token_id is not None else -1
    beams = start_beams(plan.input_ids, K, L, fill)
    cache, logits = prefill(model, plan.input_ids, plan.attention_mask, L)
    copies = torch.arange(B, device=logits.device).repeat_interleave(K)  # (B*K,) prompt of each beam
    cache.select_rows(copies)
    logits = logits[copies]  # (B*K, V)
    step_scores = []
    cur_len = T
    while True:
        log_probs = logits.log_softmax(dim=-1)
        log_probs = apply_processors(
            plan.processors, beams.running[:, :, :cur_len].reshape(B * K, cur_len), log_probs
        )
        if config.output_scores:
            step_scores.append(log_probs)
        source, hits = advance(plan, beams, log_probs, cur_len, keep)
        cur_len += 1
        if is_done(plan, beams, hits, cur_len):
            break
        offsets = torch.arange(B, device=source.device)[:, None] * K
        cache.select_rows((source + offsets).reshape(-1))
        logits = decode_step(model, cache, beams.running[:, :, cur_len - 1].reshape(-1))
    return beams, step_scores


def advance(
    plan: Plan, beams: Beams, log_probs: torch.Tensor, cur_len: int, keep: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """One beam step in place: pick continuations, move live beams, record finished ones.

    Returns the source beam of each new live beam (B, K) and which candidates stopped (B, keep).
    """
    B, K, _ = beams.running.shape
    vocab_size = log_probs.shape[-1]
    totals = (log_probs.view(B, K, vocab_size) + beams.running_scores[:, :, None]).view(B, K * vocab_size)
    top_scores, top_indices = top_continuations(totals, keep, plan.config.sampling, plan.generator)
    top_source = top_indices // vocab_size  # (B, keep) beam each candidate extends
    candidates = gather_beams(beams.running, top_source)  # (B, keep, L)
    candidates[:, :, cur_len] = top_indices % vocab_size
    hits = plan.stop(candidates[:, :, : cur_len + 1].reshape(B * keep, -1)).view(B, keep)
    live_scores = top_scores + hits.to(torch.float32) * NEG
    live = torch.topk(live_scores, k=K)[1]  # (B, K)
    new_running = gather_beams(candidates, live)
    new_running_scores = gather_beams(live_scores, live)
    record_finished(plan, beams, candidates, top_scores, hits, cur_len)
    beams.running, beams.running_scores = new_running, new_running_scores
    return gather_beams(top_source, live), hits


def top_continuations(
    totals: torch.Tensor, keep: int, sample: bool, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``keep`` best (or sampled, without replacement) continuations (B, keep), best first."""
    if not sample:
        return torch.topk(totals, k=keep)
    probs = totals.softmax(dim=-1)
    indices = torch.multinomial(probs if generator is None else probs.cpu(), keep, generator=generator)
    indices = indices.to(totals.device)
    scores, order = totals.gather(1, indices).sort(dim=-1, descending=True)
    return scores, indices.gather(-1, order)


def record_finished(
    plan: Plan,
    beams: Beams,
    candidates: torch.Tensor,
    top_scores: torch.Tensor,
    hits: torch.Tensor,
    cur_len: int,
) -> None:
    """Merge candidates that just stopped (within the first K) into the K best finished hypotheses."""
    config = plan.config
    B, K = beams.is_finished.shape
    generated = cur_len + 1 - plan.prompt_len
    in_top_k = torch.arange(hits.shape[1], device=hits.device) < K
    just_finished = hits & in_top_k[None, :]
    scores = top_scores / (generated**config.length_penalty)
    batch_full = torch.all(beams.is_finished, dim=-1, keepdim=True) & (config.early_stopping is True)
    scores += batch_full.to(torch.float32) * NEG
    scores += (~beams.improvable).to(torch.float32) * NEG
    scores += (~just_finished) * NEG
    merged_scores = torch.cat((beams.finished_scores, scores), dim=1)
    best = torch.topk(merged_scores, k=K)[1]
    lengths = torch.full_like(hits, generated, dtype=torch.long)
    beams.finished = gather_beams(torch.cat((beams.finished, candidates), dim=1), best)
    beams.finished_scores = gather_beams(merged_scores, best)
    beams.finished_lengths = gather_beams(torch.cat((beams.finished_lengths, lengths), dim=1), best)
    beams.is_finished = gather_beams(torch.cat((beams.is_finished, just_finished), dim=1), best)


def is_done(plan: Plan, beams: Beams, hits: torch.Tensor, cur_len: int) -> bool:
    """Update the early-stop heuristic; True when no prompt can still improve (transformers' rules)."""
    config = plan.config
    if config.early_stopping == "never" and config.length_penalty > 0.0:
        best_length = plan.max_length - plan.prompt_len
    else:
        best_length = cur_len - plan.prompt_len
    best_running = beams.running_scores[:, :1] / (best_length**config.length_penalty)
    worst_finished = torch.where(
        beams.is_finished, torch.min(beams.finished_scores, dim=1, keepdim=True)[0], NEG
    )
    beams.improvable = beams.improvable & torch.any(best_running > worst_finished, dim=-1, keepdim=True)
    open_beams = not (bool(beams.is_finished.all()) and config.early_stopping is True)
    return not (bool(beams.improvable.any()) and open_beams and not bool(hits.all()))


def finalize(plan: Plan, beams: Beams, step_scores: list[torch.Tensor]) -> torch.Tensor | GenerateOutput:
    """Best ``num_return_sequences`` hypotheses per prompt, cropped to the longest one: (B * R, T + new)."""
    R = plan.config.num_return_sequences
    B, K, L = beams.finished.shape
    sequences = beams.finished[:, :R].reshape(B * R, L)
    length = plan.prompt_len + int(beams.finished_lengths[:, :R].max())
    sequences = sequences[:, :length].clone()
    if not plan.config.return_dict_in_generate:
        return sequences
    scores = tuple(s.clone() for s in step_scores) if plan.config.output_scores else None
    return GenerateOutput(sequences, scores, beams.finished_scores[:, :R].reshape(-1).clone())
