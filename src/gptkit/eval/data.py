"""Reading evaluation files (JSONL, CSV, TSV): malformed rows are reported with file and line, not fatal.

Each task passes a ``parse`` function that turns one raw row (a dict) into its item or raises
``ValueError`` with a reason; the row is then skipped and recorded, or, with ``strict``, the whole
evaluation stops there.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from gptkit.data.jsonl import iter_jsonl
from gptkit.errors import GPTKitError

GENERATION_TASKS = ("translation", "summarization", "question-answering", "text-generation")

Item = TypeVar("Item")


class EvalDataError(GPTKitError, ValueError):
    """An evaluation file is missing, empty, or (with ``strict``) has a malformed row."""


@dataclass(frozen=True)
class SkippedRow:
    """A row that could not be evaluated, and why."""

    file: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


@dataclass
class Dataset(Generic[Item]):
    """The parsed items of one file and the rows that were skipped."""

    items: list[Item] = field(default_factory=list)
    skipped: list[SkippedRow] = field(default_factory=list)


def read_dataset(
    path: str | Path,
    parse: Callable[[dict[str, Any]], Item],
    *,
    strict: bool = False,
    limit: int | None = None,
) -> Dataset[Item]:
    """Parse every row of a JSONL/CSV/TSV file with ``parse``; at most ``limit`` items are kept."""
    path = Path(path)
    dataset: Dataset[Item] = Dataset()
    for line, row in _raw_rows(path):
        if limit is not None and len(dataset.items) >= limit:
            break
        try:
            if isinstance(row, Exception):
                raise row
            dataset.items.append(parse(row))
        except (ValueError, TypeError, KeyError) as exc:
            skipped = SkippedRow(str(path), line, _reason(exc))
            if strict:
                raise EvalDataError(f"{skipped} (--strict stops at the first malformed row)") from None
            dataset.skipped.append(skipped)
    if not dataset.items:
        detail = (
            f" ({len(dataset.skipped)} malformed rows, first: {dataset.skipped[0]})"
            if dataset.skipped
            else ""
        )
        raise EvalDataError(f"{path}: no items to evaluate{detail}")
    return dataset


def _reason(exc: Exception) -> str:
    """A short description of why a row was rejected."""
    if isinstance(exc, KeyError):
        return f"missing field {exc.args[0]!r}"
    return str(exc) or type(exc).__name__


def _raw_rows(path: Path) -> Iterator[tuple[int, dict[str, Any] | Exception]]:
    """(1-based line number, row dict or the error that row raised) for every non-blank row."""
    if not path.is_file():
        raise EvalDataError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        return _jsonl_rows(path)
    if suffix in (".csv", ".tsv"):
        return _delimited_rows(path, "\t" if suffix == ".tsv" else ",")
    raise EvalDataError(f"{path}: unsupported file type {suffix!r} (use .jsonl, .csv or .tsv)")


def _jsonl_rows(path: Path) -> Iterator[tuple[int, dict[str, Any] | Exception]]:
    """One JSON object per line; a bad line becomes a ValueError row (reported, the rest evaluated)."""
    for line, row in iter_jsonl(path):
        yield line, ValueError(row) if isinstance(row, str) else row


def _delimited_rows(path: Path, delimiter: str) -> Iterator[tuple[int, dict[str, Any] | Exception]]:
    """CSV/TSV rows keyed by the header line; rows with the wrong number of fields are errors."""
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        header = next(reader, None)
        if header is None:
            return
        header = [name.strip() for name in header]
        start = reader.line_num + 1
        for fields in reader:
            line, start = start, reader.line_num + 1  # a quoted field may span several lines
            if not any(f.strip() for f in fields):
                continue
            if len(fields) != len(header):
                yield (
                    line,
                    ValueError(f"expected {len(header)} fields ({', '.join(header)}), got {len(fields)}"),
                )
                continue
            yield line, dict(zip(header, fields, strict=True))


def require_text(row: dict[str, Any], *names: str) -> str:
    """The first of ``names`` present in ``row``, as a non-empty string."""
    for name in names:
        if name in row and row[name] is not None:
            value = row[name]
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"field {name!r} must be a non-empty string")
            return value
    raise ValueError(f"missing field {' / '.join(map(repr, names))}")
