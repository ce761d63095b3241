"""One generation run, resolved and checked before the first model call: inputs, lengths, processors, stops."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from gptkit.errors import GenerationError
from gptkit.generation.config import GenerationConfig, resolve_max_length, with_model_defaults
from gptkit.generation.constraints import GrammarMask, build_grammar_mask
from gptkit.generation.processors import LogitsProcessor, build_processors
from gptkit.generation.stopping import StopCriteria


@dataclass
class GenerateOutput:
    """``return_dict_in_generate=True`` result: sequences (N, L), and scores when asked for."""

    sequences: torch.Tensor
    scores: tuple[torch.Tensor, ...] | None = None  # processed next-token scores of every step
    sequences_scores: torch.Tensor | None = None  # beam search: final length-normalised beam scores (N,)
    speculation: Any = None  # speculative decoding: a SpeculationStats (drafted, accepted, acceptance_rate)


@dataclass
class Plan:
    """Everything one generation run needs, resolved and checked before the first model call."""

    model: torch.nn.Module
    config: GenerationConfig
    input_ids: torch.Tensor  # (B, T), already expanded for num_return_sequences when sampling
    attention_mask: torch.Tensor | None  # (B, T) or None
    max_length: int
    processors: list[LogitsProcessor]
    stop: StopCriteria
    generator: torch.Generator | None
    constraint: GrammarMask | None = None  # json_schema / regex / grammar: also first in ``processors``

    @property
    def prompt_len(self) -> int:
        return self.input_ids.shape[1]


def make_plan(
    model: torch.nn.Module,
    input_ids: Any,
    attention_mask: Any,
    generation_config: GenerationConfig | None,
    tokenizer: Any,
    generator: torch.Generator | None,
    options: dict[str, Any],
) -> Plan:
    """Validate the arguments against the model and resolve lengths, special tokens and processors."""
    base = generation_config or GenerationConfig()
    config = with_model_defaults(base.replace(**options), model.config)
    input_ids, attention_mask = _as_batch(input_ids, attention_mask, model)
    max_length = resolve_max_length(config, input_ids.shape[1], model.config.context_length)
    if config.sampling and config.num_beams == 1 and config.num_return_sequences > 1:
        input_ids = input_ids.repeat_interleave(config.num_return_sequences, dim=0)
        if attention_mask is not None:
            attention_mask = attention_mask.repeat_interleave(config.num_return_sequences, dim=0)
    pad_lengths = None if attention_mask is None else (attention_mask != 0).int().argmax(dim=1)  # (B,)
    if pad_lengths is not None and config.num_beams > 1:
        pad_lengths = pad_lengths.repeat_interleave(config.num_beams)
    keep = 1 if config.num_beams == 1 else max(len(config.eos_ids), 1) + 1
    processors = build_processors(config, input_ids.shape[1], pad_lengths, min_tokens_to_keep=keep)
    constraint = build_grammar_mask(
        config, tokenizer, model.config.vocab_size, list(model.config.eos_token_ids), *input_ids.shape
    )
    if constraint is not None:
        processors.insert(0, constraint)
    stop = StopCriteria(
        prompt_len=input_ids.shape[1],
        max_length=max_length,
        eos_ids=config.eos_ids,
        stop_strings=config.stops,
        tokenizer=tokenizer,
    )
    rng = _rng(config, generator)
    return Plan(model, config, input_ids, attention_mask, max_length, processors, stop, rng, constraint)


def _as_batch(input_ids: Any, attention_mask: Any, model: torch.nn.Module) -> tuple[torch.Tensor, Any]:
    """Token ids as a (B, T) long tensor on the model's device (a 1-D prompt becomes a batch of one)."""
    if input_ids is None:
        raise GenerationError("input_ids is required (a prompt of at least one token)")
    ids = torch.as_tensor(input_ids, device=model.device)
    if ids.dim() == 1:
        ids = ids[None]
    if ids.dim() != 2 or ids.numel() == 0 or ids.is_floating_point():
        raise GenerationError(
            f"input_ids must be non-empty integer ids (batch, seq_len), got {tuple(ids.shape)}"
        )
    vocab_size = model.config.vocab_size
    if int(ids.min()) < 0 or int(ids.max()) >= vocab_size:
        raise GenerationError(
            f"input_ids must lie in [0, {vocab_size}), got values {int(ids.min())}..{int(ids.max())}"
        )
    if attention_mask is None:
        return ids.long(), None
    mask = torch.as_tensor(attention_mask, device=model.device)
    mask = mask[None] if mask.dim() == 1 else mask
    if mask.shape != ids.shape:
        raise GenerationError(
            f"attention_mask shape {tuple(mask.shape)} differs from input_ids {tuple(ids.shape)}"
        )
    return ids.long(), None if bool(mask.bool().all()) else mask.long()


def _rng(config: GenerationConfig, generator: torch.Generator | None) -> torch.Generator | None:
    """The random generator for sampling: given, seeded from ``seed``, or None (torch's global RNG)."""
    if generator is not None or config.seed is None:
        return generator
    return torch.Generator(device="cpu").manual_seed(config.seed)
