"""SentencePiece-style GGUF vocabularies (``tokenizer.ggml.model = "llama"``: Llama 2, Gemma, Phi-3) as a
`tokenizers` BPE model.

llama.cpp's SPM tokenizer replaces spaces with U+2581, prepends one when ``add_space_prefix`` says so (the
default; Gemma's files say no), then repeatedly merges the adjacent pair whose joined text is the
highest-scoring token, and spells pieces outside the vocabulary as ``<0xNN>`` byte tokens. A BPE model
whose merges are ranked by the merged token's score computes the same; the merges are recovered from the
vocabulary and scores as transformers' GGUF converter recovers them.
"""

from __future__ import annotations

from typing import Any

from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers

from gptkit.errors import TokenizerError

SPACE = "\u2581"
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6  # tokenizer.ggml.token_type
NOT_MERGED = frozenset({CONTROL, UNUSED, BYTE, UNKNOWN})  # never built from text by merging


def build_sentencepiece(meta: dict[str, Any]) -> Tokenizer:
    """A `tokenizers.Tokenizer` that tokenizes as llama.cpp does a SentencePiece GGUF vocabulary."""
    tokens = [_respelled(t) for t in meta["tokenizer.ggml.tokens"]]
    scores = meta.get("tokenizer.ggml.scores")
    if scores is None or len(scores) != len(tokens):
        raise TokenizerError(
            "a SentencePiece GGUF vocabulary needs one tokenizer.ggml.scores entry per token"
        )
    types = list(meta.get("tokenizer.ggml.token_type") or [NORMAL] * len(tokens))
    vocab: dict[str, int] = {}
    for index, token in enumerate(tokens):
        vocab.setdefault(token, index)
    unk_id = meta.get("tokenizer.ggml.unknown_token_id")
    unk = tokens[unk_id] if isinstance(unk_id, int) and 0 <= unk_id < len(tokens) else None
    mergeable = {t: s for t, s, kind in zip(tokens, scores, types, strict=False) if kind not in NOT_MERGED}
    bpe = models.BPE(
        vocab=vocab, merges=merges_by_score(mergeable), unk_token=unk, fuse_unk=True, byte_fallback=True
    )
    tokenizer = Tokenizer(bpe)
    prefix = bool(meta.get("tokenizer.ggml.add_space_prefix", True))
    replace = normalizers.Replace(" ", SPACE)
    tokenizer.normalizer = normalizers.Sequence([normalizers.Prepend(SPACE), replace]) if prefix else replace
    steps = [decoders.Replace(SPACE, " "), decoders.ByteFallback(), decoders.Fuse()]
    tokenizer.decoder = decoders.Sequence(steps + ([decoders.Strip(" ", 1, 0)] if prefix else []))
    _add_typed_tokens(tokenizer, tokens, types)
    return tokenizer


def _respelled(token: str) -> str:
    """Gemma's files store tokens of several spaces as real spaces; the model sees them as U+2581s."""
    return SPACE * len(token) if token and not token.strip(" ") else token


def merges_by_score(scores: dict[str, float]) -> list[tuple[str, str]]:
    """Every (left, right) split of a token into two tokens, best merged score first (ties: longer left)."""
    merges = []
    for token, score in scores.items():
        for cut in range(1, len(token)):
            left, right = token[:cut], token[cut:]
            if left in scores and right in scores:
                merges.append((score, len(left), len(right), left, right))
    merges.sort(key=lambda m: (m[0], m[1], m[2]), reverse=True)
    return [(left, right) for *_, left, right in merges]


def _add_typed_tokens(tokenizer: Tokenizer, tokens: list[str], types: list[int]) -> None:
    """Control tokens become special added tokens, user-defined ones plain added tokens (always matched)."""
    control = [t for t, kind in zip(tokens, types, strict=False) if kind == CONTROL and t]
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in control])
    user = [t for t, kind in zip(tokens, types, strict=False) if kind == USER_DEFINED and t]
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in user])
