"""Open a GGUF file safely: parse with the `gguf` package, turn its failures into typed errors."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from gptkit.errors import WeightsError

GGUF_MAGIC = b"GGUF"


@functools.lru_cache(maxsize=4)
def open_gguf(path: str | Path):
    """A memory-mapped ``gguf.GGUFReader`` for ``path`` (cached: the tokenizer and weights share it)."""
    import gguf

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"GGUF file not found: {path}")
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic != GGUF_MAGIC:
        raise WeightsError(f"{path} is not a GGUF file (magic {magic!r}, expected {GGUF_MAGIC!r})")
    try:
        return gguf.GGUFReader(path, "r")
    except Exception as exc:  # the gguf package raises ValueError/IndexError/struct errors on corruption
        raise WeightsError(
            f"{path} is a corrupt or truncated GGUF file: {type(exc).__name__}: {exc}"
        ) from exc


def read_metadata(path: str | Path) -> dict[str, Any]:
    """All key/value metadata as plain Python values (strings, numbers, lists)."""
    reader = open_gguf(str(path))
    out: dict[str, Any] = {}
    for key, fld in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        try:
            out[key] = fld.contents()
        except Exception as exc:
            raise WeightsError(f"{path}: cannot read metadata key {key!r}: {exc}") from exc
    return out
