"""Observability: FLOPs and MFU, metrics.csv / metrics.jsonl, optional TensorBoard and W&B, the loss plot."""

from __future__ import annotations

import csv
import json
import math
import time
from pathlib import Path
from typing import Any

import torch

from gptkit.config import GPT4Config, Positions

LN2 = math.log(2)


def flops_per_token(config: GPT4Config, block_size: int) -> float:
    """Training FLOPs per token, nanoGPT's estimate: 6N (forward + backward matmuls) + 12·L·d·T (attention)."""
    n = config.num_parameters()
    if config.positions is Positions.LEARNED:
        n -= config.context_length * config.n_embd  # position tables do no matmuls
    return 6 * n + 12 * config.n_layer * config.n_embd * block_size


def batch_flops(config: GPT4Config, lengths: list[int]) -> float:
    """Training FLOPs of a batch whose rows hold ``lengths`` real tokens: flops_per_token at each row's own
    length for each of its tokens (padding is not useful work; B rows of T give B T flops_per_token(T))."""
    return sum(t * flops_per_token(config, t) for t in lengths)


_PEAK_CACHE: dict[tuple[str, torch.dtype], float] = {}


def measured_peak_flops(device: torch.device, dtype: torch.dtype, sizes=(512, 1024, 2048)) -> float:
    """The best matmul FLOP/s this device reaches in ``dtype`` (a few square sizes, best of 3 each)."""
    key = (str(device), dtype)
    if key not in _PEAK_CACHE:
        best = 0.0
        gen = torch.Generator(device=device).manual_seed(0)  # leaves the global RNG (and exact resume) alone
        for n in sizes:
            a = torch.randn(n, n, device=device, dtype=dtype, generator=gen)
            b = torch.randn(n, n, device=device, dtype=dtype, generator=gen)
            a @ b  # warm-up
            for _ in range(3):
                _sync(device)
                start = time.perf_counter()
                a @ b
                _sync(device)
                best = max(best, 2 * n**3 / max(time.perf_counter() - start, 1e-9))
        _PEAK_CACHE[key] = best
    return _PEAK_CACHE[key]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bits_per_byte(loss_nats: float, bytes_per_token: float | None) -> float | None:
    """bpb = loss / ln 2 * tokens / bytes."""
    if bytes_per_token is None or not math.isfinite(loss_nats):
        return None
    return loss_nats / LN2 / bytes_per_token


class MetricsLogger:
    """Appends one row per logged step to metrics.csv and metrics.jsonl (+ TensorBoard / W&B when on)."""

    def __init__(
        self, out_dir: Path, tensorboard: bool = True, wandb_project: str | None = None, config=None
    ):
        self.out_dir = out_dir
        self.rows: list[dict[str, Any]] = []
        self.jsonl_path = out_dir / "metrics.jsonl"
        self.csv_path = out_dir / "metrics.csv"
        self.tb = _tensorboard_writer(out_dir) if tensorboard else None
        self.wandb = _wandb_run(wandb_project, config, out_dir) if wandb_project else None

    def log(self, row: dict[str, Any]) -> None:
        """Record one row of metrics (``step`` plus any named values)."""
        row = {k: v for k, v in row.items() if v is not None}
        self.rows.append(row)
        with open(self.jsonl_path, "a") as f:
            f.write(json.dumps(row) + "\n")
        self._write_csv()
        scalars = {k: v for k, v in row.items() if k != "step" and isinstance(v, (int, float))}
        for key, value in scalars.items() if self.tb is not None else ():
            self.tb.add_scalar(key, value, row["step"])
        if self.wandb is not None:
            self.wandb.log(row, step=row["step"])

    def _write_csv(self) -> None:
        """Rewrite metrics.csv with the union of all columns seen (train and eval rows differ)."""
        columns = list(dict.fromkeys(k for row in self.rows for k in row))
        with open(self.csv_path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(self.rows)

    def load_previous(self) -> None:
        """Keep the rows an earlier (resumed) run wrote, so the CSV and plot cover the whole run."""
        if self.jsonl_path.is_file():
            lines = self.jsonl_path.read_text().splitlines()
            self.rows = [json.loads(line) for line in lines if line.strip()]

    def truncate_after(self, step: int) -> None:
        """Drop rows past ``step`` (a resumed run redoes them) from memory and metrics.jsonl."""
        self.rows = [r for r in self.rows if r["step"] <= step]
        self.jsonl_path.write_text("".join(json.dumps(r) + "\n" for r in self.rows))
        self._write_csv()

    def plot(self, path: Path) -> Path:
        """Train and val loss against step, written as a PNG (matplotlib, Agg backend)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4))
        for key, label in (("loss", "train"), ("val_loss", "val")):
            points = [(r["step"], r[key]) for r in self.rows if key in r]
            if points:
                ax.plot(
                    *zip(*points, strict=True),
                    label=label,
                    marker="o" if key == "val_loss" else None,
                    markersize=3,
                )
        ax.set_xlabel("step")
        ax.set_ylabel("loss (nats/token)")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()


def _tensorboard_writer(out_dir: Path):
    """A SummaryWriter when tensorboard is installed, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(out_dir / "tensorboard"))


def _wandb_run(project: str, config: dict[str, Any] | None, out_dir: Path):
    """A W&B run when wandb is installed, else None."""
    try:
        import wandb
    except ImportError:
        return None
    return wandb.init(project=project, config=config, dir=str(out_dir))
