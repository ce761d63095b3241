"""generate(): transformers' ``generate`` semantics (greedy, sampling, beam search) over gptkit's KV cache."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from gptkit.errors import GenerationError
from gptkit.generation.beam_search import beam_search
from gptkit.generation.config import GenerationConfig
from gptkit.generation.plan import GenerateOutput, Plan, make_plan
from gptkit.generation.processors import apply_processors
from gptkit.generation.speculative import SpeculationStats, make_drafter, speculative_steps
from gptkit.generation.steps import decode_step, prefill
from gptkit.generation.verify import sample_from


def generate(
    model: torch.nn.Module,
    input_ids: torch.Tensor | list[int] | list[list[int]],
    attention_mask: torch.Tensor | None = None,
    *,
    generation_config: GenerationConfig | None = None,
    tokenizer: Any = None,
    streamer: Any = None,
    generator: torch.Generator | None = None,
    assistant_model: torch.nn.Module | None = None,
    **options: Any,
) -> torch.Tensor | GenerateOutput:
    """Continue ``input_ids`` (B, T); returns (B * num_return_sequences, T + new) token ids, prompt included.

    ``options`` are GenerationConfig fields (max_new_tokens, do_sample, temperature, top_k, top_p,
    repetition_penalty, num_beams, ...), overriding ``generation_config``. Left-padded batches pass
    ``attention_mask``. Finished rows are padded with ``pad_token_id``. ``tokenizer`` is needed for
    ``stop_strings``; ``streamer`` receives the prompt, then each new token (batch of one, no beams);
    ``generator`` (or ``seed``) makes sampling reproducible. Speculative decoding, as in transformers:
    ``prompt_lookup_num_tokens=k`` drafts k tokens per step by n-gram lookup in the prompt and the output,
    ``assistant_model=`` drafts ``num_assistant_tokens`` with a smaller model of the same vocabulary;
    ``return_dict_in_generate=True`` then reports the acceptance in ``output.speculation``.
    """
    plan = make_plan(model, input_ids, attention_mask, generation_config, tokenizer, generator, options)
    config = plan.config
    drafter = make_drafter(plan, assistant_model)
    if config.num_beams > 1:
        if streamer is not None:
            raise GenerationError("streamer is not supported with beam search (num_beams > 1)")
        return beam_search(plan)
    step_scores: list[torch.Tensor] | None = [] if config.output_scores else None
    if streamer is not None:
        streamer.put(plan.input_ids.cpu())
    stats = SpeculationStats() if drafter is not None else None
    steps = (
        token_steps(plan, step_scores)
        if drafter is None
        else speculative_steps(plan, drafter, step_scores, stats)
    )
    new_tokens = []
    for tokens in steps:
        new_tokens.append(tokens)
        if streamer is not None:
            streamer.put(tokens.cpu())
    if streamer is not None:
        streamer.end()
    sequences = torch.cat([plan.input_ids, torch.stack(new_tokens, dim=1)], dim=1)  # (B, T + new)
    if not config.return_dict_in_generate:
        return sequences
    scores = tuple(s.clone() for s in step_scores) if step_scores is not None else None  # plain tensors
    return GenerateOutput(sequences, scores, speculation=stats)


def stream_generate(
    model: torch.nn.Module,
    input_ids: torch.Tensor | list[int],
    attention_mask: torch.Tensor | None = None,
    *,
    generation_config: GenerationConfig | None = None,
    tokenizer: Any = None,
    generator: torch.Generator | None = None,
    assistant_model: torch.nn.Module | None = None,
    **options: Any,
) -> Iterator[int]:
    """Yield the new token ids of a single prompt one by one, as they are generated (greedy or sampled).

    Arguments are checked at the call, before iteration starts. Speculative options as in :func:`generate`
    (accepted drafts arrive together).
    """
    plan = make_plan(model, input_ids, attention_mask, generation_config, tokenizer, generator, options)
    if plan.input_ids.shape[0] != 1 or plan.config.num_beams != 1:
        raise GenerationError("stream_generate takes one prompt and no beam search (num_beams=1)")
    drafter = make_drafter(plan, assistant_model)
    steps = token_steps(plan) if drafter is None else speculative_steps(plan, drafter)
    return (int(tokens[0]) for tokens in steps)


# ---- greedy / sampling loop ----------------------------------------------------------------------------
@torch.inference_mode()
def token_steps(plan: Plan, step_scores: list[torch.Tensor] | None = None) -> Iterator[torch.Tensor]:
    """Yield the next token of every row (B,) per step; finished rows get the pad id. Stops when all finish."""
    B, T = plan.input_ids.shape
    pad = plan.config.pad_token_id
    buffer = plan.input_ids.new_full((B, plan.max_length), 0 if pad is None else pad)  # (B, max_length)
    buffer[:, :T] = plan.input_ids
    sequences = buffer[:, :T]  # the tokens so far, a view of the buffer
    unfinished = torch.ones(B, dtype=torch.bool, device=buffer.device)
    cache, logits = prefill(plan.model, plan.input_ids, plan.attention_mask, plan.max_length)
    while True:
        scores = apply_processors(plan.processors, sequences, logits)  # (B, V)
        if step_scores is not None:
            step_scores.append(scores)
        tokens = choose_tokens(scores, plan.config.sampling, plan.generator)
        if pad is not None:
            tokens = torch.where(unfinished, tokens, pad)
        length = sequences.shape[1]
        buffer[:, length] = tokens
        sequences = buffer[:, : length + 1]
        yield tokens
        unfinished &= ~plan.stop(sequences)
        if not bool(unfinished.any()):
            return
        logits = decode_step(plan.model, cache, tokens)


def choose_tokens(scores: torch.Tensor, sample: bool, generator: torch.Generator | None) -> torch.Tensor:
    """argmax of scores (B, V), or one draw from softmax(scores) as transformers does (torch.multinomial)."""
    if not sample:
        return scores.argmax(dim=-1)
    return sample_from(scores.softmax(dim=-1), generator)
