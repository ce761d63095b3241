"""A training run's bookkeeping: its result, throughput and MFU windows, the metrics logger and summary."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from gptkit.train.config import TrainConfig
from gptkit.train.data import BatchSource
from gptkit.train.metrics import MetricsLogger


@dataclass
class TrainResult:
    """What a run did: per-step losses, evaluations, throughput and where its files are."""

    out_dir: Path
    start_step: int
    final_step: int
    losses: list[float]  # training loss of every step this process ran (steps start_step+1 .. final_step)
    val_losses: dict[int, float] = field(default_factory=dict)
    val_train_seconds: dict[int, float] = field(default_factory=dict)  # step -> train_seconds at that eval
    best_val_loss: float = math.inf
    val_bpb: float | None = None
    tokens: int = 0  # tokens trained on by this process's run, all ranks together
    wall_time: float = 0.0
    train_seconds: float = 0.0  # time in training steps only (no eval, logging, samples, checkpoints)
    tokens_per_s: float = 0.0
    mfu: float | None = None
    checkpoint: Path | None = None
    plot: Path | None = None
    model: nn.Module | None = None

    @property
    def final_val_loss(self) -> float | None:
        return self.val_losses[max(self.val_losses)] if self.val_losses else None


class Throughput:
    """Tokens and FLOPs since the last log row (tokens/s, MFU) and since the start (overall MFU)."""

    def __init__(self, peak_flops: float) -> None:
        self.peak_flops = peak_flops  # all ranks together; 0 when unknown
        self.start = self.window_start = time.perf_counter()
        self.window_tokens, self.window_flops, self.total_flops = 0, 0.0, 0.0

    def add(self, tokens: int, flops: float) -> None:
        self.window_tokens += tokens
        self.window_flops += flops
        self.total_flops += flops

    def window(self) -> dict[str, Any]:
        """tokens_per_s and mfu over the window since the last call, which starts a new one."""
        elapsed = max(time.perf_counter() - self.window_start, 1e-9)
        row = {"tokens_per_s": self.window_tokens / elapsed, "mfu": self._mfu(self.window_flops, elapsed)}
        self.window_start, self.window_tokens, self.window_flops = time.perf_counter(), 0, 0.0
        return row

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def overall_mfu(self, wall_time: float) -> float | None:
        return self._mfu(self.total_flops, max(wall_time, 1e-9))

    def _mfu(self, flops: float, seconds: float) -> float | None:
        return flops / seconds / self.peak_flops if self.peak_flops else None


def open_logger(config: TrainConfig, out_dir: Path, step: int) -> MetricsLogger:
    """The run's metrics logger; on resume it keeps the earlier rows up to ``step``."""
    wandb_project = config.wandb_project if config.wandb else None
    logger = MetricsLogger(out_dir, config.tensorboard, wandb_project, config.to_dict())
    if config.resume:
        logger.load_previous()
        logger.truncate_after(step)
    return logger


def bytes_per_token_of(source: BatchSource, tokenizer) -> float | None:
    """UTF-8 bytes per token of the validation split: decoded with the tokenizer, else from meta.json."""
    shards = getattr(source, "shards", None)
    if shards is None:
        return None
    meta = shards.meta
    if tokenizer is not None and len(shards.val):
        sample = shards.val[:100_000].tolist()
        return len(tokenizer.decode(sample).encode("utf-8")) / len(sample)
    if meta.get("val_bytes") and meta.get("val_tokens"):
        return meta["val_bytes"] / meta["val_tokens"]
    return meta.get("bytes_per_token")


def summary(result: TrainResult) -> str:
    """A few lines that say how the run went."""
    mfu = f"{100 * result.mfu:.1f}%" if result.mfu is not None else "n/a"
    bpb = f" ({result.val_bpb:.3f} bits/byte)" if result.val_bpb is not None else ""
    lines = [
        f"trained steps {result.start_step} -> {result.final_step} in {result.wall_time:.1f}s",
        f"final val loss {result.final_val_loss if result.final_val_loss is not None else float('nan'):.4f}{bpb}, "
        f"best {result.best_val_loss:.4f}",
        f"tokens {result.tokens:,} at {result.tokens_per_s:,.0f} tokens/s, MFU {mfu}",
    ]
    if result.checkpoint:
        lines.append(f"checkpoint {result.checkpoint}")
    if result.plot:
        lines.append(f"loss plot {result.plot}")
    return "\n".join(lines)
