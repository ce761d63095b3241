"""Perplexity and bits-per-byte of text files, with a sliding window (Hugging Face's perplexity guide).

The text is tokenized once, with the start token (BOS) in front so that its first token is scored too.
Windows of at most ``window`` tokens start every ``stride`` tokens; in each window only the tokens not
scored by the previous window are scored, the overlap is context only. So every token is scored exactly
once, with up to ``window - 1`` tokens of context::

    ppl = exp(total NLL / scored tokens)        bpb = total NLL / ln 2 / UTF-8 bytes
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from gptkit.eval.common import EvalResult, LoadedModel, score_with_progress
from gptkit.eval.data import EvalDataError


@dataclass(frozen=True)
class TextScore:
    """Summed negative log-likelihood (nats) of a text, its scored tokens and its UTF-8 bytes."""

    nll: float
    n_tokens: int
    n_bytes: int

    @property
    def perplexity(self) -> float:
        return math.exp(self.nll / self.n_tokens)

    @property
    def bits_per_byte(self) -> float:
        return self.nll / math.log(2) / self.n_bytes

    def metrics(self) -> dict[str, float]:
        """The score as a metrics dict."""
        return {
            "perplexity": self.perplexity,
            "bits_per_byte": self.bits_per_byte,
            "nll_per_token": self.nll / self.n_tokens,
            "tokens": self.n_tokens,
            "bytes": self.n_bytes,
        }

    def __add__(self, other: TextScore) -> TextScore:
        return TextScore(self.nll + other.nll, self.n_tokens + other.n_tokens, self.n_bytes + other.n_bytes)


def sliding_windows(n_tokens: int, window: int, stride: int) -> list[tuple[int, int, int]]:
    """(begin, end, first scored position) of each window over a sequence of ``n_tokens`` tokens."""
    if window < 2 or not 1 <= stride <= window:
        raise ValueError(f"need window >= 2 and 1 <= stride <= window, got window={window}, stride={stride}")
    spans, scored_until = [], 0
    for begin in range(0, n_tokens, stride):
        end = min(begin + window, n_tokens)
        if end > scored_until:
            spans.append((begin, end, scored_until))
        scored_until = end
        if end == n_tokens:
            break
    return spans


def score_text(
    loaded: LoadedModel, text: str, *, window: int, stride: int, batch_size: int = 2, limit: int | None = None
) -> TextScore:
    """Summed NLL of ``text`` (its first ``limit`` tokens, if given) under the sliding-window scheme."""
    ids = loaded.encode(text)[:limit] if limit else loaded.encode(text)
    if limit:
        text = loaded.tokenizer.decode(ids)
    sequence = loaded.start_token + ids
    pairs = [
        (sequence[b:first], sequence[first:end])
        for b, end, first in sliding_windows(len(sequence), window, stride)
    ]
    scores = score_with_progress(loaded.model, pairs, batch_size=batch_size, desc="perplexity")
    return TextScore(
        -sum(s.logprob for s in scores), sum(s.n_tokens for s in scores), len(text.encode("utf-8"))
    )


def evaluate_perplexity(
    loaded: LoadedModel,
    files: list[str | Path],
    *,
    window: int | None = None,
    stride: int | None = None,
    batch_size: int = 2,
    limit: int | None = None,
) -> EvalResult:
    """Perplexity and bits-per-byte over ``files`` (totals, and per file in the breakdown)."""
    window = min(window or 1024, loaded.model.config.context_length)
    stride = stride or max(1, window // 2)
    per_file: dict[str, TextScore] = {}
    for path in map(Path, files):
        text = _read_text(path)
        per_file[str(path)] = score_text(
            loaded, text, window=window, stride=stride, batch_size=batch_size, limit=limit
        )
    total = sum(per_file.values(), TextScore(0.0, 0, 0))
    return EvalResult(
        task="perplexity",
        model=loaded.name,
        metrics=total.metrics(),
        n_items=len(per_file),
        settings={
            "window": window,
            "stride": stride,
            "limit_tokens": limit,
            "start_token": loaded.start_token,
        },
        breakdown={name: score.metrics() for name, score in per_file.items()} if len(per_file) > 1 else {},
    )


def _read_text(path: Path) -> str:
    """A text file's contents; empty or missing files are errors."""
    if not path.is_file():
        raise EvalDataError(f"{path}: no such file")
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        raise EvalDataError(f"{path}: the file is empty")
    return text
