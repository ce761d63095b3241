"""Batch sources: what the training loop draws from. Pretraining and fine-tuning differ only here."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from gptkit.data.shards import DataError, TokenShards

Batch = tuple[torch.Tensor, torch.Tensor]  # input_ids (B, T) long, labels (B, T) long (-100 = ignored)


def label_kind(source: object) -> str:
    """How a source's second tensor is meant: "labels" (HF, shifted by the model) or "targets" (aligned)."""
    return getattr(source, "label_kind", "labels")


@runtime_checkable
class BatchSource(Protocol):
    """The training loop's only view of data: batches plus a resumable, JSON-serialisable position.

    A source may set ``label_kind = "targets"`` when its second tensor is already aligned with the inputs
    (see ``GPT4LMHeadModel.forward``); otherwise it holds transformers-style labels.
    """

    def next_batch(self) -> Batch: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def eval_batches(self, n: int) -> Iterator[Batch]: ...


class PretrainBatches:
    """Random windows of ``block_size`` + 1 tokens from a prepared shard directory: every input position
    trains one prediction (``label_kind = "targets"``, nanoGPT's aligned targets).

    Every call draws one *global* batch of ``batch_size * world_size`` window offsets from a numpy
    generator seeded identically on every rank; rank r keeps rows r::world_size. So K processes see
    exactly the windows one process with ``batch_size * K`` would see, and the generator state alone
    makes resuming exact.
    """

    def __init__(
        self,
        shards: TokenShards,
        batch_size: int,
        block_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        for split in ("train", "val"):
            tokens = len(getattr(shards, split))
            if tokens <= block_size:
                raise DataError(
                    f"{shards.directory}/{split}.bin holds {tokens} tokens; need more than "
                    f"block_size={block_size} to draw a window"
                )
        self.shards, self.batch_size, self.block_size = shards, batch_size, block_size
        self.label_kind = "targets"
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.rng = np.random.Generator(np.random.PCG64(seed))

    @classmethod
    def open(
        cls, data_dir: str, batch_size: int, block_size: int, seed: int, rank: int = 0, world_size: int = 1
    ):
        """Open ``data_dir`` (raises DataError when missing, empty or malformed)."""
        return cls(TokenShards.open(data_dir), batch_size, block_size, seed, rank, world_size)

    def next_batch(self) -> Batch:
        """This rank's rows of the next global training batch."""
        return self._windows(self.shards.train, self.rng)

    def eval_batches(self, n: int) -> Iterator[Batch]:
        """The same ``n`` validation batches every time (a fixed generator, the training one untouched)."""
        rng = np.random.Generator(np.random.PCG64(self.seed + 1))
        for _ in range(n):
            yield self._windows(self.shards.val, rng)

    def _windows(self, tokens: np.ndarray, rng: np.random.Generator) -> Batch:
        """Gather windows of T + 1 tokens with numpy fancy indexing: inputs w[:T], targets w[1:]."""
        starts = rng.integers(0, len(tokens) - self.block_size, size=self.batch_size * self.world_size)
        starts = starts[self.rank :: self.world_size]  # (B,)
        index = starts[:, None] + np.arange(self.block_size + 1)  # (B, T + 1)
        window = torch.from_numpy(tokens[index].astype(np.int64))  # (B, T + 1)
        return window[:, :-1], window[:, 1:]  # inputs (B, T), aligned next-token targets (B, T)

    def state_dict(self) -> dict[str, Any]:
        return {"kind": "pretrain", "seed": self.seed, "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
