"""Streamers with transformers' interface: ``put(token_ids)`` per step, ``end()`` once at the end.

Text is emitted as soon as it is final: decoded text that ends in U+FFFD (an incomplete multi-byte
character split across tokens) is held back until the next token completes it.
"""

from __future__ import annotations

from queue import Queue
from typing import Any

import torch

from gptkit.errors import GenerationError

INCOMPLETE = "\ufffd"


class TextStreamer:
    """Decode tokens incrementally and hand each new piece of text to :meth:`on_text` (prints by default)."""

    def __init__(self, tokenizer: Any, skip_prompt: bool = False, **decode_kwargs: Any) -> None:
        self.tokenizer = tokenizer
        self.skip_prompt = skip_prompt
        self.decode_kwargs = decode_kwargs
        self.token_cache: list[int] = []
        self.printed = 0  # characters of decode(token_cache) already emitted
        self.next_is_prompt = True

    def put(self, value: torch.Tensor | list[int]) -> None:
        """Receive the prompt (first call) or the next token(s) of a single sequence."""
        ids = torch.as_tensor(value)
        if ids.dim() > 1:
            if ids.shape[0] > 1:
                raise GenerationError("streamers support a batch of one sequence only")
            ids = ids[0]
        if self.skip_prompt and self.next_is_prompt:
            self.next_is_prompt = False
            return
        self.next_is_prompt = False
        self.token_cache.extend(ids.reshape(-1).tolist())
        text = self.tokenizer.decode(self.token_cache, **self.decode_kwargs)
        if text.endswith(INCOMPLETE):
            return
        if len(text) > self.printed:
            self.on_text(text[self.printed :], stream_end=False)
        if text.endswith("\n"):  # a line is final: start afresh so decoding stays cheap
            self.token_cache, self.printed = [], 0
        else:
            self.printed = len(text)

    def end(self) -> None:
        """Flush whatever is held back and signal the end of the stream."""
        text = self.tokenizer.decode(self.token_cache, **self.decode_kwargs) if self.token_cache else ""
        remainder = text[self.printed :]
        self.token_cache, self.printed, self.next_is_prompt = [], 0, True
        self.on_text(remainder, stream_end=True)

    def on_text(self, text: str, stream_end: bool = False) -> None:
        """Print the new text; a newline after the last piece."""
        print(text, flush=True, end="" if not stream_end else None)


class TextIteratorStreamer(TextStreamer):
    """A streamer that is also an iterator of text pieces; run generate in a thread and iterate here."""

    def __init__(
        self, tokenizer: Any, skip_prompt: bool = False, timeout: float | None = None, **decode_kwargs: Any
    ) -> None:
        super().__init__(tokenizer, skip_prompt, **decode_kwargs)
        self.text_queue: Queue[str | None] = Queue()
        self.timeout = timeout

    def on_text(self, text: str, stream_end: bool = False) -> None:
        """Queue the text; ``None`` marks the end of the stream."""
        if text:
            self.text_queue.put(text, timeout=self.timeout)
        if stream_end:
            self.text_queue.put(None, timeout=self.timeout)

    def __iter__(self) -> TextIteratorStreamer:
        return self

    def __next__(self) -> str:
        value = self.text_queue.get(timeout=self.timeout)
        if value is None:
            raise StopIteration
        return value
