"""What every evaluation shares: the loaded model, progress-reporting scoring, and the result record."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from gptkit.eval.data import SkippedRow
from gptkit.scoring.loglik import SCORING_BATCH_SIZE, Loglik, score_continuations


@dataclass
class LoadedModel:
    """A model and its tokenizer, with the name they were loaded from."""

    model: Any
    tokenizer: Any
    name: str

    @property
    def start_token(self) -> list[int]:
        """The token put before a text so its first token is scored too (BOS, else EOS, else none)."""
        config = self.model.config
        token = (
            config.bos_token_id if config.bos_token_id is not None else next(iter(config.eos_token_ids), None)
        )
        return [] if token is None else [token]

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without special tokens."""
        return self.tokenizer.encode(text, add_special_tokens=False)


def load_model(name: str, **options: Any) -> LoadedModel:
    """Load a model and its tokenizer by registered name or path (options: gptkit.load's)."""
    from gptkit.loader import load

    return LoadedModel(*load(name, **options), name)


def score_with_progress(
    model: Any,
    pairs: Sequence[tuple[list[int], list[int]]],
    *,
    batch_size: int = SCORING_BATCH_SIZE,
    desc: str = "scoring",
) -> list[Loglik]:
    """:func:`score_continuations` with a tqdm bar on a terminal."""
    with tqdm(total=len(pairs), desc=desc, unit="seq", disable=None, leave=False) as bar:
        return score_continuations(model, pairs, batch_size=batch_size, progress=bar.update)


@dataclass
class EvalResult:
    """One evaluation's outcome: headline metrics, optional breakdown rows, and what was skipped."""

    task: str
    model: str
    metrics: dict[str, float]
    n_items: int
    skipped: list[SkippedRow] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    breakdown: dict[str, dict[str, float]] = field(default_factory=dict)  # e.g. per file, per bias type

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "task": self.task,
            "model": self.model,
            "n_items": self.n_items,
            "n_skipped": len(self.skipped),
            "metrics": self.metrics,
            "breakdown": self.breakdown,
            "settings": self.settings,
            "skipped_rows": [vars(row) for row in self.skipped],
        }


def format_result(result: EvalResult) -> str:
    """A plain-text table of a result's metrics, breakdown and skipped rows."""
    lines = [f"{result.task} | model {result.model} | {result.n_items} items, {len(result.skipped)} skipped"]
    lines += _table(["metric", "value"], [[name, _fmt(value)] for name, value in result.metrics.items()])
    if result.breakdown:
        columns = sorted({key for row in result.breakdown.values() for key in row})
        rows = [[name] + [_fmt(row.get(c, "")) for c in columns] for name, row in result.breakdown.items()]
        lines += [""] + _table(["group", *columns], rows)
    lines += [f"skipped {row}" for row in result.skipped]
    return "\n".join(lines)


def write_json(data: dict[str, Any], path: str | Path) -> None:
    """Write ``data`` as indented JSON."""
    Path(path).write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _fmt(value: Any) -> str:
    """Numbers with four significant decimals, the rest as is."""
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1e5 else f"{value:.4g}"
    return str(value)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Left-aligned columns separated by two spaces, with a rule under the header."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    render = lambda row: "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()  # noqa: E731
    return [render(header), render(["-" * w for w in widths]), *map(render, rows)]
