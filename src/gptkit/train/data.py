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

    Each optimizer step draws one *global* batch of ``batch_size * world_size * grad_accum`` window offsets
    in a single call to a numpy generator seeded identically on every rank, and cuts it into micro-batches
    of ``batch_size`` rows: micro-batch c goes to rank ``c % world_size`` (its ``c // world_size``-th
    micro-step). No two ranks read the same rows, and the global batch (hence the gradient) depends only
    on its size, not on how many processes share it: the generator state at a step boundary is the same
    for any world size, so a run resumes exactly on a different one.
    """

    def __init__(
        self,
        shards: TokenShards,
        batch_size: int,
        block_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        grad_accum: int = 1,
    ) -> None:
        for split in ("train", "val"):
            tokens = len(getattr(shards, split))
            if tokens <= block_size:
                raise DataError(
                    f"{shards.directory}/{split}.bin holds {tokens} tokens; need more than "
                    f"block_size={block_size} to draw a window"
                )
        if not 0 <= rank < world_size:
            raise DataError(f"rank {rank} is not in [0, world_size={world_size})")
        self.shards, self.batch_size, self.block_size = shards, batch_size, block_size
        self.label_kind = "targets"
        self.rank, self.world_size, self.grad_accum, self.seed = rank, world_size, grad_accum, seed
        self.rng = np.random.Generator(np.random.PCG64(seed))
        self._pending: list[np.ndarray] = []  # this rank's micro-batches of the current global batch
        self._state_before_draw = self.rng.bit_generator.state

    @classmethod
    def open(
        cls,
        data_dir: str,
        batch_size: int,
        block_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        grad_accum: int = 1,
    ):
        """Open ``data_dir`` (raises DataError when missing, empty or malformed)."""
        return cls(TokenShards.open(data_dir), batch_size, block_size, seed, rank, world_size, grad_accum)

    @property
    def global_batch_size(self) -> int:
        return self.batch_size * self.world_size * self.grad_accum

    def next_batch(self) -> Batch:
        """This rank's next micro-batch of the current global batch (a new global batch when it is used up)."""
        if not self._pending:
            self._state_before_draw = self.rng.bit_generator.state
            self._pending = self._share(self._draw(self.shards.train, self.rng))
        return self._windows(self.shards.train, self._pending.pop(0))

    def eval_batches(self, n: int) -> Iterator[Batch]:
        """This rank's share of the same ``n`` global validation batches every time (training RNG untouched)."""
        rng = np.random.Generator(np.random.PCG64(self.seed + 1))
        for _ in range(n):
            for starts in self._share(self._draw(self.shards.val, rng)):
                yield self._windows(self.shards.val, starts)

    def _draw(self, tokens: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Start offsets of one global batch, in one generator call (the draw never depends on the world size)."""
        return rng.integers(0, len(tokens) - self.block_size, size=self.global_batch_size)  # (G,)

    def _share(self, starts: np.ndarray) -> list[np.ndarray]:
        """This rank's micro-batches: chunks rank, rank + world_size, ... of ``batch_size`` rows each."""
        chunks = starts.reshape(-1, self.batch_size)  # (grad_accum * world_size, B)
        return list(chunks[self.rank :: self.world_size])

    def _windows(self, tokens: np.ndarray, starts: np.ndarray) -> Batch:
        """Gather windows of T + 1 tokens with numpy fancy indexing: inputs w[:T], targets w[1:]."""
        index = starts[:, None] + np.arange(self.block_size + 1)  # (B, T + 1)
        window = torch.from_numpy(tokens[index].astype(np.int64))  # (B, T + 1)
        return window[:, :-1], window[:, 1:]  # inputs (B, T), aligned next-token targets (B, T)

    def state_dict(self) -> dict[str, Any]:
        """The generator at the last step boundary (a half-used global batch is drawn again on resume)."""
        rng = self._state_before_draw if self._pending else self.rng.bit_generator.state
        return {
            "kind": "pretrain",
            "seed": self.seed,
            "rng": rng,
            "global_batch_size": self.global_batch_size,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        self._pending = []
