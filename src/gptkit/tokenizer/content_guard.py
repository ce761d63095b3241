"""Chat content stays text: in a rendered chat, control tokens come only from the template itself.

Before a chat template runs, every special-token spelling inside caller data (message fields, tools,
documents) is swapped for a one-off marker; after rendering, the markers become the original text again
and their spans are recorded on a :class:`ChatText`. ``GPT4Tokenizer`` encodes those spans as ordinary
text even where it matches special tokens (``allowed_special="all"``), so a user who writes
``<|im_end|>`` in a message cannot close their turn or forge a system turn.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Mapping
from typing import Any

from gptkit.tokenizer.backend import Backend, split_on_special

MARK_OPEN, MARK_CLOSE = "\ue000", "\ue001"  # private-use characters around a marker


class ChatText(str):
    """Rendered chat text that remembers where message content spelled special tokens.

    ``protected`` holds ``(start, end)`` character spans that are ordinary text whatever
    ``allowed_special`` says. Any new string built from it (``+``, formatting, slicing) is a plain
    ``str`` again and loses the spans.
    """

    protected: tuple[tuple[int, int], ...]

    def __new__(cls, text: str, protected: Iterable[tuple[int, int]] = ()) -> ChatText:
        obj = super().__new__(cls, text)
        obj.protected = tuple(protected)
        return obj

    def __reduce__(self):
        return (ChatText, (str(self), self.protected))


class ContentGuard:
    """Escape special-token spellings in caller data before rendering; restore them as protected text."""

    def __init__(self, special_tokens: Iterable[str]) -> None:
        self.tokens = sorted(set(special_tokens), key=len, reverse=True)
        self.pattern = re.compile("|".join(re.escape(t) for t in self.tokens)) if self.tokens else None
        nonce = secrets.token_hex(8)  # per render: caller data cannot spell a marker that gets restored
        self.prefix = f"{MARK_OPEN}{nonce}:"
        self.marker = re.compile(f"{re.escape(self.prefix)}([0-9]+){MARK_CLOSE}")
        self.index = {token: i for i, token in enumerate(self.tokens)}

    def escape(self, value: Any) -> Any:
        """``value`` with every special-token spelling in its strings (nested dicts / lists too) marked."""
        if self.pattern is None:
            return value
        if isinstance(value, str):
            return self.pattern.sub(lambda m: f"{self.prefix}{self.index[m.group()]}{MARK_CLOSE}", value)
        if isinstance(value, Mapping):
            return {key: self.escape(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.escape(item) for item in value]
        return value

    def restore(self, rendered: str) -> ChatText:
        """The rendered text with markers turned back into their tokens' text, recorded as protected."""
        pieces, spans, start, length = [], [], 0, 0
        for match in self.marker.finditer(rendered):
            token = self.tokens[int(match.group(1))]
            before = rendered[start : match.start()]
            pieces += [before, token]
            length += len(before)
            spans.append((length, length + len(token)))
            length += len(token)
            start = match.end()
        pieces.append(rendered[start:])
        return ChatText("".join(pieces), spans)


def encode_guarded(backend: Backend, text: ChatText, allowed: frozenset[str]) -> list[int]:
    """Ids of ``text``: allowed special tokens outside its protected spans, everything else ordinary."""
    specials = backend.special_tokens
    ids: list[int] = []
    for piece, is_special in split_on_special(text, allowed, text.protected):
        ids += [specials[piece]] if is_special else backend.encode(piece, frozenset())
    return ids
