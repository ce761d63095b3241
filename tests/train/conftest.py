"""Fixtures for the training tests: tiny character-level shard directories and tiny model configs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gptkit.data import shards

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\nAll:\nSpeak, speak.\n" * 40


def write_char_shards(directory: Path, text: str = TEXT, val_fraction: float = 0.1) -> Path:
    """A shard directory of ``text`` encoded as ids of its sorted characters (no tokenizer named)."""
    directory.mkdir(parents=True, exist_ok=True)
    chars = sorted(set(text))
    ids = np.array([chars.index(c) for c in text], dtype=np.uint16)
    split = int(len(ids) * (1 - val_fraction))
    ids[:split].tofile(directory / "train.bin")
    ids[split:].tofile(directory / "val.bin")
    meta = {"vocab_size": len(chars), "dtype": "uint16", "tokenizer": None, "eos_token_id": None}
    shards.write_meta(directory, {**meta, "train_tokens": split, "val_tokens": len(ids) - split})
    return directory


def tiny_config(data_dir: Path, out_dir: Path, **overrides) -> dict:
    """A seconds-long run of a 2-layer, 32-wide model (fp32, no progress bar, no TensorBoard)."""
    vocab = shards.TokenShards.open(data_dir).vocab_size
    model = {
        "preset": "gpt-nano",
        "n_layer": 2,
        "n_head": 2,
        "n_embd": 32,
        "context_length": 16,
        "vocab_size": vocab,
    }
    config = dict(
        data_dir=str(data_dir), out_dir=str(out_dir), model=model, batch_size=4, max_iters=8, lr=3e-3,
        min_lr=3e-4, warmup_iters=2, lr_decay_iters=8, dtype="float32", eval_interval=4, eval_iters=2,
        log_interval=2, checkpoint_interval=4, keep_last=3, progress=False, tensorboard=False, seed=7,
    )  # fmt: skip
    return {**config, **overrides}


@pytest.fixture
def char_data(tmp_path: Path) -> Path:
    return write_char_shards(tmp_path / "data")
