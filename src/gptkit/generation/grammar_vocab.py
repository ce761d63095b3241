"""A tokenizer's vocabulary as llguidance sees it (an ``LLTokenizer``), built once per tokenizer and kept.

llguidance reads a `tokenizers.Tokenizer` through its JSON (GGUF vocabularies and tokenizer.json), a
tiktoken encoding through its ranks (cl100k), and any other vocabulary through the bytes of each token.
Building one takes ~0.3 s for a 50k-100k vocabulary, so the result is cached per tokenizer object.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

from gptkit.errors import GenerationError
from gptkit.tokenizer.char import CharBackend
from gptkit.tokenizer.cl100k import TiktokenBackend
from gptkit.tokenizer.hf_backend import TokenizersBackend

_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # tokenizer -> {(n_vocab, eos): LLTokenizer}
_LOCK = threading.Lock()


def ll_tokenizer(tokenizer: Any, n_vocab: int, eos_ids: list[int]) -> Any:
    """The llguidance tokenizer of ``tokenizer`` over ``n_vocab`` ids that ends grammars with ``eos_ids``."""
    if not eos_ids:
        raise GenerationError(
            "constrained decoding needs an end-of-sequence token id to end the output (eos_token_id)"
        )
    key = (n_vocab, tuple(eos_ids))
    with _LOCK:
        try:
            per_tokenizer = _CACHE.setdefault(tokenizer, {})
        except TypeError:  # not weak-referenceable: built every time
            per_tokenizer = {}
        if key not in per_tokenizer:
            per_tokenizer[key] = _build(tokenizer, n_vocab, list(eos_ids))
        return per_tokenizer[key]


def _build(tokenizer: Any, n_vocab: int, eos_ids: list[int]) -> Any:
    import llguidance
    from tokenizers import Tokenizer

    backend = getattr(tokenizer, "backend", None)
    n_vocab = max(n_vocab, len(tokenizer) if hasattr(tokenizer, "__len__") else 0)
    if isinstance(backend, TokenizersBackend):
        return llguidance.LLTokenizer(backend.tokenizer.to_str(), n_vocab=n_vocab, eos_token=eos_ids)
    if isinstance(tokenizer, Tokenizer):
        n_vocab = max(n_vocab, tokenizer.get_vocab_size(with_added_tokens=True))
        return llguidance.LLTokenizer(tokenizer.to_str(), n_vocab=n_vocab, eos_token=eos_ids)
    if isinstance(backend, TiktokenBackend):
        from llguidance.tiktoken import lltokenizer_from_encoding

        return lltokenizer_from_encoding(backend.encoding, n_vocab=n_vocab, eos_token=eos_ids)
    if isinstance(backend, CharBackend):
        wrapper = llguidance.TokenizerWrapper(_CharVocabulary(tokenizer, eos_ids[0]))
        return llguidance.LLTokenizer(wrapper, n_vocab=n_vocab, eos_token=eos_ids)
    raise GenerationError(
        f"constrained decoding does not support this tokenizer ({type(tokenizer).__name__}); "
        "use a gptkit GPT4Tokenizer or a tokenizers.Tokenizer"
    )


class _CharVocabulary:
    """What llguidance's TokenizerWrapper reads: each id's bytes, the special ids and an encoder."""

    def __init__(self, tokenizer: Any, eos_id: int) -> None:
        backend = tokenizer.backend
        self.eos_token_id, self.bos_token_id = eos_id, None
        specials = backend.special_tokens
        self.special_token_ids = sorted(specials.values())
        self.tokens = [(backend.id_to_token(i) or "").encode("utf-8") for i in range(len(backend))]
        self._encode = backend.encode

    def __call__(self, text: str) -> list[int]:
        return self._encode(text, frozenset())
