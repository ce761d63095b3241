"""Benchmark: gptkit's training loop vs a plain fp32 PyTorch script on character-level tinyshakespeare.

The well-known CPU config of nanoGPT's shakespeare_char: 4 layers, 4 heads, 128 wide, context 64, batch 12,
2000 iterations, lr 1e-3 cosine to 1e-4, dropout 0, no biases. gptkit trains it twice: with learned
positions (the plain script's model: loop speed like for like) and Llama-style (RoPE, RMSNorm, SwiGLU:
gptkit's config switches, same parameter count; evaluated along the way: time to a given loss). Prints training seconds, final val losses and the ratios.
Run: ``.venv/bin/python bench/train_shakespeare.py [--iters 2000] [--dtype float32] [--compile]``.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gptkit.data import shards
from gptkit.train import TrainConfig, train

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"
N_LAYER, N_HEAD, N_EMBD, BLOCK, BATCH, LR, MIN_LR, WARMUP = 4, 4, 128, 64, 12, 1e-3, 1e-4, 100
EVAL_BATCHES = 200  # val loss = mean over this many random val batches (nanoGPT's CPU recipe uses 20)
TARGET = 1.88  # the well-known val loss of this config
# gptkit's config switches for the same size: RoPE, RMSNorm and SwiGLU with the MLP width that keeps the
# parameter count (3 * 128 * 344 ~ 2 * 128 * 512): a Llama-style model, no position table
ARCHITECTURES = {
    "learned": {"preset": "gpt-nano"},
    "llama": {
        "preset": "gpt-nano",
        "positions": "rope",
        "norm": "rmsnorm",
        "mlp": "swiglu",
        "intermediate_size": 344,
    },
}


def char_ids() -> tuple[np.ndarray, np.ndarray, int]:
    """(train ids, val ids, vocab size): sorted characters, first 90% train, last 10% val."""
    text = DATA.read_text()
    chars = sorted(set(text))
    lookup = {c: i for i, c in enumerate(chars)}
    ids = np.array([lookup[c] for c in text], dtype=np.uint16)
    split = int(0.9 * len(ids))
    return ids[:split], ids[split:], len(chars)


def write_shards(directory: Path, train_ids: np.ndarray, val_ids: np.ndarray, vocab: int) -> Path:
    train_ids.tofile(directory / "train.bin")
    val_ids.tofile(directory / "val.bin")
    meta = {"vocab_size": vocab, "dtype": "uint16", "tokenizer": None, "eos_token_id": None}
    shards.write_meta(directory, {**meta, "train_tokens": len(train_ids), "val_tokens": len(val_ids),
                                  "bytes_per_token": 1.0})  # fmt: skip
    return directory


def run_gptkit(data_dir: Path, out_dir: Path, iters: int, dtype: str, compile: bool, arch: str, evals: int):
    """gptkit.train.train on the config above with an architecture of ARCHITECTURES, evaluating ``evals``
    times along the way; returns the TrainResult (train_seconds excludes evaluation)."""
    config = TrainConfig(
        data_dir=str(data_dir), out_dir=str(out_dir), model=ARCHITECTURES[arch],
        batch_size=BATCH, block_size=BLOCK, max_iters=iters, lr=LR, min_lr=MIN_LR, warmup_iters=WARMUP,
        lr_decay_iters=iters, dtype=dtype, compile=compile, eval_interval=max(1, iters // evals),
        eval_iters=EVAL_BATCHES, log_interval=100, checkpoint_interval=0, keep_last=1, progress=False,
        tensorboard=False,
    )  # fmt: skip
    return train(config)


def seconds_to_reach(result, loss: float) -> float | None:
    """Training seconds at the first evaluation whose val loss is <= ``loss`` (None if never)."""
    reached = [step for step, val in sorted(result.val_losses.items()) if val <= loss]
    return result.val_train_seconds[reached[0]] if reached else None


# ---- the plain from-scratch script ------------------------------------------------------------------
class PlainBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(N_EMBD), nn.LayerNorm(N_EMBD)
        self.qkv, self.proj = nn.Linear(N_EMBD, 3 * N_EMBD, bias=False), nn.Linear(N_EMBD, N_EMBD, bias=False)
        self.up, self.down = (
            nn.Linear(N_EMBD, 4 * N_EMBD, bias=False),
            nn.Linear(4 * N_EMBD, N_EMBD, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(C, dim=-1)
        q, k, v = (t.view(B, T, N_HEAD, C // N_HEAD).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, C)
        x = x + self.proj(y)
        return x + self.down(F.gelu(self.up(self.ln2(x))))


class PlainGPT(nn.Module):
    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, N_EMBD), nn.Embedding(BLOCK, N_EMBD)
        self.blocks = nn.Sequential(*[PlainBlock() for _ in range(N_LAYER)])
        self.ln, self.head = nn.LayerNorm(N_EMBD), nn.Linear(N_EMBD, vocab, bias=False)
        self.head.weight = self.tok.weight
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        """GPT-2 initialisation N(0, 0.02), as nanoGPT-style scripts do (default init trains far worse)."""
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1]))
        logits = self.head(self.ln(self.blocks(x)))
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))


def run_plain(train_ids: np.ndarray, val_ids: np.ndarray, vocab: int, iters: int) -> tuple[float, float]:
    """(training wall seconds, final val loss) of a typical fp32 script: torch.randint batches, AdamW."""
    torch.manual_seed(1337)
    train_data, val_data = (
        torch.from_numpy(train_ids.astype(np.int64)),
        torch.from_numpy(val_ids.astype(np.int64)),
    )

    def batch(data):
        ix = torch.randint(len(data) - BLOCK, (BATCH,))
        x = torch.stack([data[i : i + BLOCK] for i in ix])
        y = torch.stack([data[i + 1 : i + 1 + BLOCK] for i in ix])
        return x, y

    model = PlainGPT(vocab)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, betas=(0.9, 0.99), weight_decay=0.1)
    start = time.perf_counter()
    for it in range(iters):
        lr = LR * (it + 1) / (WARMUP + 1) if it < WARMUP else MIN_LR + 0.5 * (LR - MIN_LR) * (
            1 + math.cos(math.pi * (it - WARMUP) / max(1, iters - WARMUP)))  # fmt: skip
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss = model(*batch(train_data))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    wall = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        val = torch.stack([model(*batch(val_data)) for _ in range(EVAL_BATCHES)]).mean().item()
    return wall, val


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=2000)
    parser.add_argument("--dtype", default="float32", choices=["bfloat16", "float32"])
    parser.add_argument("--compile", action="store_true", help="torch.compile gptkit's model")
    parser.add_argument("--evals", type=int, default=40, help="evaluations during the Llama-style run")
    parser.add_argument("--skip-plain", action="store_true")
    parser.add_argument("--out-dir", default="out/train_shakespeare", help="metrics, loss.png, checkpoint")
    args = parser.parse_args()
    train_ids, val_ids, vocab = char_ids()
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = write_shards(Path(tmp), train_ids, val_ids, vocab)
        for arch, evals in (("learned", 1), ("llama", args.evals)):
            out_dir = Path(args.out_dir) / arch
            runs[arch] = run_gptkit(data_dir, out_dir, args.iters, args.dtype, args.compile, arch, evals)
    tag = f"{args.dtype}{', compiled' if args.compile else ''}"
    rows = [(f"gptkit, learned positions ({tag})", runs["learned"].train_seconds, runs["learned"].final_val_loss),
            (f"gptkit, Llama-style ({tag})", runs["llama"].train_seconds, runs["llama"].final_val_loss)]  # fmt: skip
    if not args.skip_plain:
        rows.append(
            ("plain PyTorch, learned positions (fp32)", *run_plain(train_ids, val_ids, vocab, args.iters))
        )
    print(f"\n{'loop':<44} {'train s':>8} {'val loss':>9}")
    for name, wall, val in rows:
        print(f"{name:<44} {wall:>8.1f} {val:>9.4f}")
    print_ratios(rows, runs["llama"])
    print(f"loss plots: {Path(args.out_dir) / '*' / 'loss.png'}")


def print_ratios(rows: list[tuple[str, float, float]], llama) -> None:
    """Same-model loop speed, and time to the plain loop's final loss and to the well-known 1.88."""
    for target_name, target in (
        ("1.88", TARGET),
        *((("the plain loop's", rows[2][2]),) if len(rows) == 3 else ()),
    ):
        seconds = seconds_to_reach(llama, target)
        when = f"after {seconds:.1f} s of training" if seconds is not None else "never"
        print(f"gptkit Llama-style reaches {target_name} val loss ({target:.4f}): {when}")
    if len(rows) == 3:
        print(f"loop speed, same model (plain / gptkit learned): {rows[2][1] / rows[0][1]:.2f}x")
        seconds = seconds_to_reach(llama, rows[2][2])
        if seconds is not None:
            print(f"time to the same loss (plain / gptkit Llama-style): {rows[2][1] / seconds:.2f}x")


if __name__ == "__main__":
    main()
