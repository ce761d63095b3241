"""Build a `tokenizers.Tokenizer` from the vocabulary a GGUF file embeds (`tokenizer.ggml.*` metadata)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenizers import AddedToken, Tokenizer, decoders, models, processors

from gptkit.errors import TokenizerError, WeightsError
from gptkit.tokenizer.backend import bytes_to_unicode, spell_bytes
from gptkit.tokenizer.hf_backend import bos_eos_processor
from gptkit.tokenizer.pretokenize import IGNORE_MERGES, byte_level_pre_tokenizer

CONTROL, USER_DEFINED = 3, 4  # llama.cpp token types (tokenizer.ggml.token_type)
_SPECIAL_ID_KEYS = {
    "bos_token": "tokenizer.ggml.bos_token_id",
    "eos_token": "tokenizer.ggml.eos_token_id",
    "unk_token": "tokenizer.ggml.unknown_token_id",
    "pad_token": "tokenizer.ggml.padding_token_id",
}


@dataclass(frozen=True)
class GGUFTokenizerInfo:
    """What a GGUF file says about its tokenizer besides the vocabulary."""

    special_tokens: dict[str, str | None]  # bos_token/eos_token/unk_token/pad_token -> token text
    chat_template: str | None
    add_bos_token: bool
    add_eos_token: bool


def read_tokenizer_metadata(path: Path) -> dict[str, Any]:
    """The GGUF metadata, with file errors reported as TokenizerError."""
    from gptkit.weights.gguf_file import read_metadata

    try:
        return read_metadata(path)
    except WeightsError as exc:
        raise TokenizerError(f"cannot read the tokenizer from {path}: {exc}") from exc


def tokenizer_info(meta: dict[str, Any]) -> GGUFTokenizerInfo:
    """Special tokens, chat template and BOS/EOS policy from the metadata."""
    tokens = meta["tokenizer.ggml.tokens"]
    special = {}
    for name, key in _SPECIAL_ID_KEYS.items():
        token_id = meta.get(key)
        special[name] = tokens[token_id] if token_id is not None and 0 <= token_id < len(tokens) else None
    is_sentencepiece = meta.get("tokenizer.ggml.model") == "llama"
    return GGUFTokenizerInfo(
        special_tokens=special,
        chat_template=meta.get("tokenizer.chat_template"),
        add_bos_token=bool(meta.get("tokenizer.ggml.add_bos_token", is_sentencepiece)),
        add_eos_token=bool(meta.get("tokenizer.ggml.add_eos_token", False)),
    )


def build_tokenizer(meta: dict[str, Any], pre_tokenizer: str | None = None) -> Tokenizer:
    """A `tokenizers.Tokenizer` equivalent to the GGUF's; `pre_tokenizer` overrides tokenizer.ggml.pre."""
    if "tokenizer.ggml.tokens" not in meta:
        raise TokenizerError("this GGUF file has no embedded tokenizer (no tokenizer.ggml.tokens)")
    model = meta.get("tokenizer.ggml.model")
    if model == "llama":  # SentencePiece (Llama 2, Gemma, Phi-3): no pre-tokenizer, scores rank the merges
        from gptkit.tokenizer.sentencepiece import build_sentencepiece

        tokenizer = build_sentencepiece(meta)
        tokenizer.post_processor = _post_processor(meta, tokenizer_info(meta))
        return tokenizer
    if model != "gpt2":
        raise TokenizerError(
            f"unsupported GGUF tokenizer model {model!r} (tokenizer.ggml.model); gptkit supports 'gpt2' "
            "(byte-level BPE) and 'llama' (SentencePiece); convert this model's tokenizer.json and load the "
            "HF directory instead"
        )
    pre = pre_tokenizer or meta.get("tokenizer.ggml.pre")
    tokenizer = Tokenizer(_byte_level_bpe(meta, ignore_merges=(pre or "") in IGNORE_MERGES))
    tokenizer.pre_tokenizer = byte_level_pre_tokenizer(pre)
    tokenizer.decoder = decoders.ByteLevel()
    _add_typed_tokens(tokenizer, meta)
    tokenizer.post_processor = _post_processor(meta, tokenizer_info(meta))
    return tokenizer


def _byte_level_bpe(meta: dict[str, Any], ignore_merges: bool) -> models.BPE:
    """The BPE model: tokens respelled into the byte alphabet where the file did not, plus the merges."""
    alphabet = set(bytes_to_unicode().values())
    vocab = {
        token if set(token) <= alphabet else spell_bytes(token.encode("utf-8")): index
        for index, token in enumerate(meta["tokenizer.ggml.tokens"])
    }
    merges = []
    for merge in meta.get("tokenizer.ggml.merges", []):
        parts = merge.split(" ")
        if len(parts) != 2:
            raise TokenizerError(f"malformed GGUF merge {merge!r} (expected two tokens separated by a space)")
        merges.append((parts[0], parts[1]))
    return models.BPE(
        vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False, ignore_merges=ignore_merges
    )


def _add_typed_tokens(tokenizer: Tokenizer, meta: dict[str, Any]) -> None:
    """Control tokens become special added tokens, user-defined ones plain added tokens (always matched)."""
    alphabet = set(bytes_to_unicode().values())
    typed = list(
        zip(meta["tokenizer.ggml.tokens"], meta.get("tokenizer.ggml.token_type") or [], strict=False)
    )
    # A control token outside the byte alphabet is a llama.cpp mislabel; adding it would grow the vocabulary.
    control = [t for t, kind in typed if kind == CONTROL and set(t) <= alphabet]
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in control])
    vocab = tokenizer.get_vocab(with_added_tokens=False)
    user = [t for t, kind in typed if kind == USER_DEFINED and t in vocab]
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in user])


def _post_processor(meta: dict[str, Any], info: GGUFTokenizerInfo) -> processors.PostProcessor | None:
    """BOS/EOS insertion as the file's add_bos_token / add_eos_token flags say."""
    tokens = meta["tokenizer.ggml.tokens"]

    def flagged(flag: bool, key: str) -> tuple[str, int] | None:
        token_id = meta.get(f"tokenizer.ggml.{key}_token_id")
        return (tokens[token_id], token_id) if flag and token_id is not None else None

    bos, eos = flagged(info.add_bos_token, "bos"), flagged(info.add_eos_token, "eos")
    return bos_eos_processor(bos, eos) if bos or eos else None
