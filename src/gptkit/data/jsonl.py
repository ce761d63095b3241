"""JSON Lines: the one reader every JSONL input (training data, fine-tuning data, evaluation sets) goes through."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def iter_jsonl(
    path: Path, on_bytes: Callable[[int], None] | None = None
) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """(line number, JSON object) for every non-blank line; a bad line gives (line number, problem text).

    The caller decides whether a problem stops the run or is reported and skipped. ``on_bytes`` is told
    the size of every line read (for progress bars).
    """
    with Path(path).open("rb") as lines:
        for number, raw in enumerate(lines, start=1):
            if on_bytes is not None:
                on_bytes(len(raw))
            if not raw.strip():
                continue
            yield number, _parse_object(raw)


def _parse_object(raw: bytes) -> dict[str, Any] | str:
    """The JSON object on one line, or a description of why it is not one."""
    try:
        value = json.loads(raw)
    except UnicodeDecodeError as exc:
        return f"not UTF-8 ({exc.reason})"
    except json.JSONDecodeError as exc:
        return f"not valid JSON ({exc.msg}, column {exc.colno})"
    return value if isinstance(value, dict) else f"expected a JSON object, got {type(value).__name__}"
