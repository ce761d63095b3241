"""BatchEncoding (what `tokenizer(...)` returns) and the padding / truncation rules behind it."""

from __future__ import annotations

from typing import Any

from gptkit.errors import TokenizerError

SIDES = ("left", "right")


class BatchEncoding(dict):
    """A dict of model inputs (input_ids, attention_mask) that also allows attribute access and .to()."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def to(self, device) -> BatchEncoding:
        """Move every tensor value to device (in place); returns self like transformers."""
        for key, value in self.items():
            if hasattr(value, "to"):
                self[key] = value.to(device)
        return self


def check_side(side: str, what: str) -> str:
    """side if it is 'left' or 'right', else TokenizerError."""
    if side not in SIDES:
        raise TokenizerError(f"{what} must be 'left' or 'right', got {side!r}")
    return side


def padding_strategy(padding: bool | str) -> str:
    """Normalise transformers' padding argument to 'do_not_pad', 'longest' or 'max_length'."""
    if padding is True:
        return "longest"
    if padding is False or padding is None:
        return "do_not_pad"
    if padding in ("longest", "max_length", "do_not_pad"):
        return padding
    raise TokenizerError(
        f"unknown padding strategy {padding!r}; use True/False, 'longest', 'max_length' or 'do_not_pad'"
    )


def truncate(ids: list[int], limit: int, side: str) -> list[int]:
    """At most limit ids, dropping from the given side."""
    if len(ids) <= limit:
        return ids
    return ids[len(ids) - limit :] if side == "left" else ids[:limit]


def padded_length(
    lengths: list[int], strategy: str, max_length: int | None, multiple: int | None
) -> int | None:
    """The common length a batch is padded to, or None for no padding."""
    if strategy == "do_not_pad":
        return None
    if strategy == "max_length":
        if max_length is None:
            raise TokenizerError("padding='max_length' needs max_length (or a tokenizer model_max_length)")
        target = max_length
    else:
        target = max(lengths, default=0)
    if multiple:
        target = -(-target // multiple) * multiple
    return target


def pad(
    rows: list[list[int]], target: int, pad_id: int, side: str
) -> tuple[list[list[int]], list[list[int]]]:
    """(padded ids, attention masks) with every row brought up to target on the given side."""
    ids, masks = [], []
    for row in rows:
        fill = max(target - len(row), 0)
        if side == "left":
            ids.append([pad_id] * fill + row)
            masks.append([0] * fill + [1] * len(row))
        else:
            ids.append(row + [pad_id] * fill)
            masks.append([1] * len(row) + [0] * fill)
    return ids, masks


def as_tensor(rows: list[list[int]]):
    """A (B, T) LongTensor, or TokenizerError for ragged rows."""
    import torch

    if len({len(r) for r in rows}) > 1:
        raise TokenizerError("sequences have different lengths; pass padding=True to return tensors")
    return torch.tensor(rows, dtype=torch.long)
