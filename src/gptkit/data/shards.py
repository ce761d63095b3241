"""Tokenized training data on disk: flat token arrays (numpy memmap) plus a metadata file.

Layout of a shard directory::

    meta.json   {"format": "gptkit-shards", "version": 1, "tokenizer": ..., "vocab_size": ...,
                 "dtype": "uint16" | "uint32", "train_tokens": ..., "val_tokens": ..., "eos_token_id": ...}
    train.bin   all training tokens, documents separated by the tokenizer's EOS id when it has one
    val.bin     the validation split, same encoding
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gptkit.errors import GPTKitError

FORMAT = "gptkit-shards"
VERSION = 1
SPLITS = ("train", "val")


class DataError(GPTKitError, ValueError):
    """Training data is missing, empty, malformed, or does not fit its declared format."""


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits (vocab <= 65536), else uint32."""
    if vocab_size < 1:
        raise DataError(f"vocab_size must be positive, got {vocab_size}")
    if vocab_size <= np.iinfo(np.uint16).max + 1:
        return np.dtype(np.uint16)
    if vocab_size <= np.iinfo(np.uint32).max + 1:
        return np.dtype(np.uint32)
    raise DataError(f"vocab_size {vocab_size} does not fit uint32 token ids")


def write_meta(directory: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """Write meta.json (format and version filled in); return what was written."""
    meta = {"format": FORMAT, "version": VERSION, **meta}
    (directory / "meta.json").write_text(json.dumps(meta, indent=2))
    return meta


@dataclass
class TokenShards:
    """A prepared shard directory opened read-only: ``.train`` / ``.val`` are 1-D memmaps of token ids."""

    directory: Path
    meta: dict[str, Any]
    train: np.ndarray
    val: np.ndarray

    @classmethod
    def open(cls, directory: str | Path) -> TokenShards:
        """Open and validate a shard directory written by ``gptkit data prepare``."""
        directory = Path(directory)
        meta_path = directory / "meta.json"
        if not meta_path.is_file():
            raise DataError(f"{directory} is not a prepared data directory (no meta.json)")
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError as exc:
            raise DataError(f"{meta_path} is not valid JSON: {exc}") from None
        if meta.get("format") != FORMAT:
            raise DataError(f"{meta_path} has format {meta.get('format')!r}, expected {FORMAT!r}")
        dtype = np.dtype(meta["dtype"])
        arrays = {split: _open_split(directory, split, dtype, meta) for split in SPLITS}
        return cls(directory, meta, arrays["train"], arrays["val"])

    @property
    def vocab_size(self) -> int:
        return int(self.meta["vocab_size"])


def _open_split(directory: Path, split: str, dtype: np.dtype, meta: dict[str, Any]) -> np.ndarray:
    path = directory / f"{split}.bin"
    if not path.is_file():
        raise DataError(f"missing {path}")
    size = path.stat().st_size
    if size % dtype.itemsize:
        raise DataError(f"{path} has {size} bytes, not a whole number of {dtype} tokens")
    expected = meta.get(f"{split}_tokens")
    if expected is not None and expected * dtype.itemsize != size:
        raise DataError(f"{path} holds {size // dtype.itemsize} tokens, meta.json says {expected}")
    if size == 0:
        return np.zeros(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r")
