"""Any `tokenizers.Tokenizer` (a tokenizer.json, or one built from GGUF metadata) as a gptkit backend."""

from __future__ import annotations

import threading
from pathlib import Path

from tokenizers import Tokenizer, processors

from gptkit.errors import TokenizerError
from gptkit.tokenizer.backend import Backend, split_on_special


def load_tokenizer_json(path: Path) -> Tokenizer:
    """Parse a tokenizer.json file, turning parse failures into TokenizerError."""
    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises plain Exception on bad JSON / unknown components
        raise TokenizerError(f"{path}: not a valid tokenizer.json: {exc}") from exc


def bos_eos_processor(
    bos: tuple[str, int] | None, eos: tuple[str, int] | None
) -> processors.TemplateProcessing:
    """A post-processor adding BOS in front and/or EOS at the end (transformers' update_post_processor)."""
    front = f"{bos[0]}:0 " if bos else ""
    back = f" {eos[0]}:0" if eos else ""
    single = f"{front}$A:0{back}"
    pair = f"{single}{' ' + bos[0] + ':1' if bos else ''} $B:1{' ' + eos[0] + ':1' if eos else ''}"
    special = [t for t in (bos, eos) if t is not None]
    return processors.TemplateProcessing(
        single=single, pair=pair, special_tokens=list(dict.fromkeys(special))
    )


def _affixes(tokenizer: Tokenizer) -> tuple[list[int], list[int]]:
    """The ids the post-processor puts before and after a single sequence."""
    plain = tokenizer.encode("a", add_special_tokens=False).ids
    full = tokenizer.encode("a", add_special_tokens=True).ids
    for start in range(len(full) - len(plain) + 1):
        if full[start : start + len(plain)] == plain:
            return full[:start], full[start + len(plain) :]
    return full, []


def _ids(tokenizer: Tokenizer, text: str) -> list[int]:
    """Ids without post-processing; the batch "fast" path skips offset tracking (~2x on huge inputs)."""
    return tokenizer.encode_batch_fast([text], add_special_tokens=False)[0].ids


class _SpecialSwitch:
    """One Tokenizer seen with special-token text parsed (``special=True``) or kept as text, through its
    ``encode_special_tokens`` switch under a lock shared by both views (threads encode concurrently): a
    second copy of the tokenizer cost SmolLM2 ~40 MiB of memory."""

    def __init__(self, tokenizer: Tokenizer, lock: threading.Lock, special: bool) -> None:
        self.tokenizer, self.lock, self.special = tokenizer, lock, special

    def encode_batch_fast(self, texts: list[str], add_special_tokens: bool):
        with self.lock:
            self.tokenizer.encode_special_tokens = not self.special
            return self.tokenizer.encode_batch_fast(texts, add_special_tokens=add_special_tokens)


class TokenizersBackend(Backend):
    """Byte-level (or any) BPE run by HF `tokenizers`; its special added tokens are the control tokens."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        tokenizer.no_padding()
        tokenizer.no_truncation()
        self.tokenizer = tokenizer
        lock = threading.Lock()
        self._parsing = _SpecialSwitch(tokenizer, lock, special=True)  # special-token text -> control ids
        self._ordinary = _SpecialSwitch(tokenizer, lock, special=False)  # special-token text stays text
        added = tokenizer.get_added_tokens_decoder()
        self._special = {tok.content: token_id for token_id, tok in added.items() if tok.special}
        self._prefix, self._suffix = _affixes(tokenizer)

    @property
    def special_tokens(self) -> dict[str, int]:
        return dict(self._special)

    def encode(self, text: str, allowed_special: frozenset[str]) -> list[int]:
        if not allowed_special:
            return _ids(self._ordinary, text)
        if allowed_special.issuperset(self._special):
            return _ids(self._parsing, text)
        ids: list[int] = []
        for piece, is_special in split_on_special(text, allowed_special):
            ids += [self._special[piece]] if is_special else _ids(self._ordinary, piece)
        return ids

    def decode(self, ids: list[int], skip_special_tokens: bool) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)

    def id_to_token(self, token_id: int) -> str | None:
        return self.tokenizer.id_to_token(token_id)

    def token_to_id(self, token: str) -> int | None:
        return self.tokenizer.token_to_id(token)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=False)

    def __len__(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    @property
    def prefix_ids(self) -> list[int]:
        return list(self._prefix)

    @property
    def suffix_ids(self) -> list[int]:
        return list(self._suffix)

    def save(self, directory: Path) -> list[Path]:
        path = Path(directory) / "tokenizer.json"
        with self._parsing.lock:  # the saved file parses special tokens, as transformers expects
            self.tokenizer.encode_special_tokens = False
            self.tokenizer.save(str(path))
        return [path]
