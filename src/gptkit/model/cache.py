"""Static, preallocated key/value cache with per-row write positions."""

from __future__ import annotations

import torch

from gptkit.config import GPT4Config
from gptkit.errors import ContextLengthError


class KVCache:
    """Keys and values of every layer, preallocated once: ``k[layer]`` and ``v[layer]`` are each
    (B, n_kv_head, max_len, head_dim), one tensor per layer so that a compiled step updates them in place.

    Column ``c`` of row ``b`` holds one token. ``valid[b, c]`` says whether it is a real (non-pad) token,
    ``positions[b, c]`` its position id, and ``next_position[b]`` how many real tokens row ``b`` has seen.
    Rows advance independently, so left-padded batches and sequences of different lengths share a cache.
    """

    def __init__(
        self,
        config: GPT4Config,
        batch_size: int,
        max_len: int,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        shape = (batch_size, config.kv_heads, max_len, config.dim_per_head)
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(config.n_layer)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(config.n_layer)]
        self.valid = torch.zeros(batch_size, max_len, dtype=torch.bool, device=device)  # (B, S)
        self.positions = torch.zeros(batch_size, max_len, dtype=torch.long, device=device)  # (B, S)
        self.next_position = torch.zeros(batch_size, dtype=torch.long, device=device)  # (B,)
        self.next_column = torch.zeros(batch_size, dtype=torch.long, device=device)  # (B,)
        self.max_len = max_len

    @property
    def batch_size(self) -> int:
        return self.valid.shape[0]

    def reset_rows(self, rows: torch.Tensor | list[int]) -> None:
        """Forget everything stored for ``rows`` so the slots can hold new sequences."""
        rows = torch.as_tensor(rows, dtype=torch.long, device=self.valid.device)
        self.valid[rows] = False
        self.next_position[rows] = 0
        self.next_column[rows] = 0

    def adopt_prefix(self, row: int, length: int) -> None:
        """Mark columns [0, length) of the empty ``row`` as real tokens at positions 0..length-1, their
        keys and values having been copied in (a reused prompt prefix); new tokens go after them."""
        self.valid[row, :length] = True
        self.positions[row, :length] = torch.arange(length, device=self.positions.device)
        self.next_position[row] = length
        self.next_column[row] = length

    def row_range(self, start: int, stop: int) -> KVCache:
        """A cache over rows [start, stop) that shares this one's storage: writes land here, other rows
        stay untouched (an engine prefills one slot, or decodes the occupied slots, through it)."""
        view = object.__new__(KVCache)
        view.k = [k[start:stop] for k in self.k]  # slices are views, not copies
        view.v = [v[start:stop] for v in self.v]
        for name in ("valid", "positions", "next_position", "next_column"):
            setattr(view, name, getattr(self, name)[start:stop])
        view.max_len = self.max_len
        return view

    def select_rows(self, rows: torch.Tensor) -> None:
        """Reorder/duplicate rows in place (beam search): row i becomes old row ``rows[i]``."""
        self.k = [k[rows] for k in self.k]
        self.v = [v[rows] for v in self.v]
        for name in ("valid", "positions", "next_position", "next_column"):
            setattr(self, name, getattr(self, name)[rows])

    def copy_rows(self, rows: torch.Tensor | list[int], max_len: int) -> KVCache:
        """A new cache of ``len(rows)`` rows and ``max_len`` columns whose row i starts as a copy of row
        ``rows[i]`` here (a shared prefix computed once, then extended differently per row)."""
        rows = torch.as_tensor(rows, dtype=torch.long, device=self.valid.device)
        used = int(self.next_column.max()) if self.batch_size else 0
        if used > max_len:
            raise ContextLengthError(f"{used} cached columns do not fit a copy with {max_len} columns")
        copy = object.__new__(KVCache)
        copy.k, copy.v = [], []
        for source, target in ((self.k, copy.k), (self.v, copy.v)):
            for layer in source:  # (B, n_kv_head, max_len, head_dim) per layer
                new = layer.new_zeros(len(rows), layer.shape[1], max_len, layer.shape[3])
                new[:, :, :used] = layer[rows, :, :used]
                target.append(new)
        for name in ("valid", "positions"):  # (B, max_len): free columns are invalid
            new = getattr(self, name).new_zeros(len(rows), max_len)
            new[:, :used] = getattr(self, name)[rows, :used]
            setattr(copy, name, new)
        copy.next_position, copy.next_column = self.next_position[rows], self.next_column[rows]
        copy.max_len = max_len
        return copy

    def allocate(self, token_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reserve columns for T new tokens per row: returns (columns, position_ids), each (B, T).

        ``token_mask`` (B, T) marks real tokens; pad tokens get columns too (marked invalid) so that
        every row of a left-padded batch moves in lockstep.
        """
        steps = torch.arange(token_mask.shape[1], device=token_mask.device)
        columns = self.next_column[:, None] + steps  # (B, T)
        if int(columns.max()) >= self.max_len:
            raise ContextLengthError(
                f"KV cache is full: {int(columns.max()) + 1} tokens needed, capacity {self.max_len}"
            )
        mask = token_mask.bool()
        positions = (self.next_position[:, None] + mask.long().cumsum(-1) - 1).clamp(min=0)  # (B, T)
        rows = torch.arange(self.batch_size, device=columns.device)[:, None]
        self.valid[rows, columns] = mask
        self.positions[rows, columns] = positions
        self.next_column += token_mask.shape[1]
        self.next_position += mask.sum(-1)
        return columns, positions

    def write(self, layer: int, k: torch.Tensor, v: torch.Tensor, index: torch.Tensor, used: int):
        """Store k, v (B, n_kv_head, T, head_dim) at ``index`` (from :meth:`flat_index`); return the
        first ``used`` columns of the layer's keys and values, each (B, n_kv_head, used, head_dim)."""
        for cache, new in ((self.k[layer], k), (self.v[layer], v)):
            # one row copy per (row, head, token): far cheaper than advanced-index assignment
            flat = cache.view(-1, cache.shape[-1])  # (B * n_kv_head * max_len, head_dim)
            flat.index_copy_(0, index, new.reshape(-1, new.shape[-1]).to(cache.dtype))
        return self.k[layer][:, :, :used], self.v[layer][:, :, :used]

    def flat_index(self, columns: torch.Tensor) -> torch.Tensor:
        """Where new tokens at ``columns`` (B, T) go in a layer's cache viewed as rows of head_dim values:
        (B * n_kv_head * T,) indices (b * n_kv_head + h) * max_len + column, the same for every layer."""
        B, n_kv_head = columns.shape[0], self.k[0].shape[1]
        heads = torch.arange(B * n_kv_head, device=columns.device).view(B, n_kv_head, 1)
        return (heads * self.max_len + columns[:, None, :]).reshape(-1)

    def attention_mask(
        self, columns: torch.Tensor, positions: torch.Tensor, used: int, window: int | None
    ) -> torch.Tensor:
        """Which cached columns each new token may attend to: (B, 1, T, used) booleans."""
        keys = torch.arange(used, device=columns.device)
        visible = self.valid[:, None, :used] & (keys <= columns[..., None])  # (B, T, used)
        if window is not None:
            visible &= (positions[..., None] - self.positions[:, None, :used]) < window
        visible |= keys == columns[..., None]  # a pad query sees itself, so no row is all -inf
        return visible[:, None]


def check_fits(config: GPT4Config, n_tokens: int) -> None:
    """Raise ContextLengthError when ``n_tokens`` do not fit the model's context window."""
    if n_tokens > config.context_length:
        raise ContextLengthError(
            f"{n_tokens} tokens do not fit the model's context window of {config.context_length} tokens"
        )
