"""Generation past the context window (`gptkit generate` only): the oldest tokens are cropped from the left.

nanoGPT crops its context to the last ``block_size`` tokens before every step. Here each round keeps the
last ``context - step`` tokens, prefills them afresh (positions restart, so learned and rotary positions
both stay in range) and generates up to ``step = context // 4`` tokens with the KV cache: every token still
sees at least three quarters of a window, at a quarter of the prefills. The library's ``generate`` keeps
refusing prompts that do not fit (ContextLengthError).
"""

from __future__ import annotations

from typing import Any

import torch

from gptkit.generation.generate import stream_generate

WINDOW_STEP_FRACTION = 4  # each round generates context_length // 4 tokens


def generate_in_windows(
    model: torch.nn.Module,
    prompt: list[int],
    *,
    max_new_tokens: int,
    tokenizer: Any = None,
    streamer: Any = None,
    seed: int | None = None,
    stop_strings: str | list[str] | None = None,
    **options: Any,
) -> list[int]:
    """The new token ids of one prompt, generated in windows of the model's context (greedy/sampling)."""
    window = model.config.context_length
    step = max(1, window // WINDOW_STEP_FRACTION)
    generator = None if seed is None else torch.Generator().manual_seed(seed)  # one stream for all rounds
    stops = [stop_strings] if isinstance(stop_strings, str) else list(stop_strings or [])
    eos = set(model.config.eos_token_ids)
    tokens, new = list(prompt), []
    if streamer is not None:
        streamer.put(torch.tensor(prompt))
    while len(new) < max_new_tokens:
        n = min(step, max_new_tokens - len(new))
        context = tokens[-(window - n) :]
        produced = []
        for token in stream_generate(
            model, context, max_new_tokens=n, tokenizer=tokenizer, generator=generator,
            stop_strings=stops or None, **options,
        ):  # fmt: skip
            produced.append(token)
            if streamer is not None:
                streamer.put(torch.tensor([token]))
        tokens += produced
        new += produced
        if len(produced) < n or produced[-1] in eos or _stopped(tokenizer, new, stops):
            break
    if streamer is not None:
        streamer.end()
    return new


def _stopped(tokenizer: Any, new: list[int], stops: list[str]) -> bool:
    """Whether a stop string appears in the new text (it may end a round exactly)."""
    return bool(stops) and any(stop in tokenizer.decode(new) for stop in stops)
