"""When a sequence is done: EOS, maximum length, or a stop string in the generated text."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from gptkit.errors import GenerationError

STOP_WINDOW_SLACK = 8  # extra tokens decoded beyond the longest stop string (tokens that decode to "")


def truncate_at_stop(text: str, stops: Sequence[str]) -> str:
    """``text`` up to (not including) the earliest occurrence of any stop string, as text APIs return it."""
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=len(text))
    return text[:cut]


class StopCriteria:
    """Decides which sequences are finished after a token was appended: EOS, max_length, stop strings."""

    def __init__(
        self,
        *,
        prompt_len: int,
        max_length: int,
        eos_ids: Sequence[int],
        stop_strings: Sequence[str] = (),
        tokenizer: Any = None,
    ) -> None:
        if stop_strings and tokenizer is None:
            raise GenerationError("stop_strings needs tokenizer= (an object with decode(ids) -> str)")
        self.prompt_len = prompt_len
        self.max_length = max_length
        self.eos_ids = list(eos_ids)
        self.stop_strings = list(stop_strings)
        self.tokenizer = tokenizer
        self.window = max((len(s) for s in self.stop_strings), default=0) + STOP_WINDOW_SLACK

    def __call__(self, sequences: torch.Tensor) -> torch.Tensor:
        """(N,) booleans for sequences (N, L) whose last token ends them."""
        done = torch.zeros(sequences.shape[0], dtype=torch.bool, device=sequences.device)
        if sequences.shape[1] >= self.max_length:
            done[:] = True
        if self.eos_ids:
            eos = torch.as_tensor(self.eos_ids, device=sequences.device)
            done |= torch.isin(sequences[:, -1], eos)
        if self.stop_strings:
            done |= self._stop_string_hits(sequences[:, self.prompt_len :])
        return done

    def _stop_string_hits(self, generated: torch.Tensor) -> torch.Tensor:
        """Rows whose generated text (the last few tokens, decoded together) contains a stop string.

        Checked after every token, so the first hit is always completed by the newest token, even when
        the stop string spans several tokens.
        """
        tail = generated[:, -self.window :].tolist()
        hits = [any(s in self.tokenizer.decode(row) for s in self.stop_strings) for row in tail]
        return torch.tensor(hits, dtype=torch.bool, device=generated.device)
