"""The small interface every tokenizer engine implements, plus the helpers they share."""

from __future__ import annotations

import abc
import functools
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from gptkit.errors import TokenizerError


@functools.cache
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table (byte-level token spelling)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    table, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            table[byte] = chr(byte)
        else:
            table[byte] = chr(256 + extra)
            extra += 1
    return table


@functools.cache
def unicode_to_bytes() -> dict[str, int]:
    """Inverse of ``bytes_to_unicode``."""
    return {char: byte for byte, char in bytes_to_unicode().items()}


def spell_bytes(data: bytes) -> str:
    """Byte-level spelling of raw bytes, e.g. b' hi' -> 'Ġhi'."""
    table = bytes_to_unicode()
    return "".join(table[b] for b in data)


def unspell_bytes(token: str) -> bytes | None:
    """Raw bytes of a byte-level spelled token, or None when it is not byte-level spelled."""
    table = unicode_to_bytes()
    if not all(char in table for char in token):
        return None
    return bytes(table[char] for char in token)


LONE_SURROGATE = re.compile("[\ud800-\udfff]")
REPLACEMENT_CHARACTER = "\ufffd"


def replace_lone_surrogates(text: str) -> str:
    """Text with every surrogate code point (U+D800..U+DFFF, which UTF-8 cannot encode) as U+FFFD.

    Keeps the length: each surrogate is one character and so is its replacement.
    """
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return LONE_SURROGATE.sub(REPLACEMENT_CHARACTER, text)
    return text


def split_on_special(
    text: str, allowed: Iterable[str], protected: Sequence[tuple[int, int]] = ()
) -> list[tuple[str, bool]]:
    """Cut text into (piece, is_special) runs, matching the allowed special tokens longest-first;
    a match that overlaps a ``protected`` (start, end) span stays part of the ordinary text."""
    tokens = sorted(set(allowed), key=len, reverse=True)
    if not tokens:
        return [(text, False)] if text else []
    pattern = re.compile("|".join(re.escape(t) for t in tokens))
    pieces, start = [], 0
    for match in pattern.finditer(text):
        if any(lo < match.end() and match.start() < hi for lo, hi in protected):
            continue
        if match.start() > start:
            pieces.append((text[start : match.start()], False))
        pieces.append((match.group(), True))
        start = match.end()
    if start < len(text):
        pieces.append((text[start:], False))
    return pieces


class Backend(abc.ABC):
    """A tokenizer engine: ordinary text <-> ids, plus its control (special) tokens."""

    #: what ``save_pretrained`` writes as ``tokenizer_class`` for transformers to load
    hf_tokenizer_class = "PreTrainedTokenizerFast"

    @property
    @abc.abstractmethod
    def special_tokens(self) -> dict[str, int]:
        """Control tokens (text -> id) that are only matched in text when the caller allows them."""

    @abc.abstractmethod
    def encode(self, text: str, allowed_special: frozenset[str]) -> list[int]:
        """Ids for text, matching only the allowed special-token texts as control tokens."""

    @abc.abstractmethod
    def decode(self, ids: list[int], skip_special_tokens: bool) -> str:
        """Text for ids (invalid UTF-8 becomes U+FFFD)."""

    @abc.abstractmethod
    def id_to_token(self, token_id: int) -> str | None:
        """The token's vocabulary spelling, or None when the id has no token."""

    @abc.abstractmethod
    def token_to_id(self, token: str) -> int | None:
        """The id of a token spelling, or None when it is not in the vocabulary."""

    @property
    @abc.abstractmethod
    def vocab_size(self) -> int:
        """Size of the base vocabulary (without tokens added on top of it)."""

    @abc.abstractmethod
    def __len__(self) -> int:
        """Size of the full vocabulary, added tokens included (max id + 1)."""

    @property
    def prefix_ids(self) -> list[int]:
        """Ids that ``add_special_tokens=True`` puts in front of a sequence (e.g. BOS)."""
        return []

    @property
    def suffix_ids(self) -> list[int]:
        """Ids that ``add_special_tokens=True`` puts after a sequence (e.g. EOS)."""
        return []

    @abc.abstractmethod
    def save(self, directory: Path) -> list[Path]:
        """Write the tokenizer.json for this engine into directory; return the written paths."""

    def check_ids(self, ids: list[int]) -> None:
        """Raise TokenizerError unless every id is inside the vocabulary."""
        if not ids:
            return
        low, high = min(ids), max(ids)
        if low < 0 or high >= len(self):
            bad = low if low < 0 else high
            raise TokenizerError(f"token id {bad} is out of range for this tokenizer (0..{len(self) - 1})")
