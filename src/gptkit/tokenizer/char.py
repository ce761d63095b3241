"""Character-level tokenizer (nanoGPT's shakespeare_char): one id per character, ids = sorted-char index.

On disk it is an ordinary tokenizer.json (WordLevel model, one-character pre-tokens, Fuse decoder), so
`tokenizers` and transformers load it too; gptkit recognises that shape and runs it with ``CharBackend``,
which encodes with numpy and names the character it does not know instead of mapping it to an unk token.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

from gptkit.errors import TokenizerError
from gptkit.tokenizer.backend import Backend, split_on_special

ANY_CHARACTER = r"[\s\S]"  # Oniguruma: exactly one code point, newlines included


def is_char_level(tokenizer: Tokenizer) -> bool:
    """True for a tokenizer.json of the shape ``CharBackend.to_tokenizer`` writes."""
    if not isinstance(tokenizer.model, models.WordLevel) or not isinstance(tokenizer.decoder, decoders.Fuse):
        return False
    return all(len(token) == 1 for token in tokenizer.get_vocab(with_added_tokens=False))


def _code_points(text: str) -> np.ndarray:
    """The code points of text as a uint32 array (lone surrogates included)."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


class CharBackend(Backend):
    """Characters -> ids by their index in ``chars``; special tokens get the ids after the characters."""

    def __init__(self, chars: Sequence[str], special_tokens: Sequence[str] = ()) -> None:
        if not chars or any(len(c) != 1 for c in chars) or len(set(chars)) != len(chars):
            raise TokenizerError("a character vocabulary needs distinct single characters")
        if set(special_tokens) & set(chars) or len(set(special_tokens)) != len(special_tokens):
            raise TokenizerError("special tokens must be distinct and differ from the characters")
        self.chars = list(chars)
        self._tokens = [*self.chars, *special_tokens]
        self._ids = {token: i for i, token in enumerate(self._tokens)}
        self._special = {token: len(self.chars) + i for i, token in enumerate(special_tokens)}
        codes = [ord(c) for c in self.chars]
        self._table = np.full(
            max(codes) + 2, -1, dtype=np.int32
        )  # code point -> id; the last -1 catches the rest
        self._table[codes] = np.arange(len(codes), dtype=np.int32)

    @classmethod
    def from_tokenizer(cls, tokenizer: Tokenizer) -> CharBackend:
        """The backend for a char-level tokenizer.json (see ``is_char_level``)."""
        vocab = tokenizer.get_vocab(with_added_tokens=False)
        chars = sorted(vocab, key=vocab.get)
        added = sorted(tokenizer.get_added_tokens_decoder().items())
        if [vocab[c] for c in chars] != list(range(len(chars))) or [i for i, _ in added] != list(
            range(len(chars), len(chars) + len(added))
        ):
            raise TokenizerError("a character-level tokenizer.json needs contiguous ids 0..n-1")
        return cls(chars, [token.content for _, token in added])

    def to_tokenizer(self) -> Tokenizer:
        """The same vocabulary as a `tokenizers` Tokenizer (what tokenizer.json stores)."""
        tokenizer = Tokenizer(models.WordLevel({c: i for i, c in enumerate(self.chars)}, unk_token="<unk>"))
        tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(ANY_CHARACTER), behavior="isolated")
        tokenizer.decoder = decoders.Fuse()
        tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in self._special])
        return tokenizer

    @property
    def special_tokens(self) -> dict[str, int]:
        return dict(self._special)

    def encode_ordinary(self, text: str) -> list[int]:
        """Ids of the characters of text; TokenizerError names the first character not in the vocabulary."""
        ids = self._table.take(_code_points(text), mode="clip")
        unknown = np.flatnonzero(ids < 0)
        if unknown.size:
            char = text[unknown[0]]
            raise TokenizerError(
                f"character {char!r} (U+{ord(char):04X}) at position {unknown[0]} is not in the "
                f"vocabulary of this character-level tokenizer"
            )
        return ids.tolist()

    def encode(self, text: str, allowed_special: frozenset[str]) -> list[int]:
        ids: list[int] = []
        for piece, is_special in split_on_special(text, allowed_special):
            ids += [self._special[piece]] if is_special else self.encode_ordinary(piece)
        return ids

    def decode(self, ids: list[int], skip_special_tokens: bool) -> str:
        skip = frozenset(self._special.values()) if skip_special_tokens else frozenset()
        return "".join(self._tokens[i] for i in ids if i not in skip)

    def id_to_token(self, token_id: int) -> str | None:
        return self._tokens[token_id] if 0 <= token_id < len(self._tokens) else None

    def token_to_id(self, token: str) -> int | None:
        return self._ids.get(token)

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def __len__(self) -> int:
        return len(self._tokens)

    def save(self, directory: Path) -> list[Path]:
        path = Path(directory) / "tokenizer.json"
        self.to_tokenizer().save(str(path))
        return [path]


def vocabulary(texts: Iterable[str]) -> list[str]:
    """The sorted set of characters in texts (nanoGPT's ``sorted(set(data))``)."""
    seen: set[str] = set()
    for text in texts:
        seen.update(text)
    return sorted(seen)
