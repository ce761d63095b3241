"""The loop learns, refuses bad data, writes its metrics and plot, and exports a loadable model."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import tiny_config, write_char_shards

from gptkit.config import preset
from gptkit.data.shards import DataError
from gptkit.modeling import GPT4LMHeadModel
from gptkit.train import train
from gptkit.train.export import export_checkpoint
from gptkit.train.metrics import bits_per_byte, flops_per_token


def test_a_tiny_model_overfits_a_small_text(tmp_path):
    data = write_char_shards(tmp_path / "data", "the quick brown fox jumps over the lazy dog. " * 30)
    model = {
        "preset": "gpt-nano",
        "n_layer": 2,
        "n_head": 2,
        "n_embd": 64,
        "context_length": 32,
        "vocab_size": 28,
    }
    config = tiny_config(data, tmp_path / "out", model=model, max_iters=150, lr=1e-2, min_lr=1e-3,
                         warmup_iters=10, lr_decay_iters=150, batch_size=8, eval_interval=150, checkpoint_interval=0)  # fmt: skip
    result = train(config)
    assert result.losses[0] > 3.0
    assert sum(result.losses[-10:]) / 10 < 0.05
    assert result.final_val_loss < 0.05


def test_missing_data_dir_is_a_data_error(tmp_path):
    config = tiny_config(write_char_shards(tmp_path / "data"), tmp_path / "out")
    with pytest.raises(DataError, match="meta.json"):
        train({**config, "data_dir": str(tmp_path / "nowhere")})


def test_empty_data_is_a_data_error(tmp_path):
    data = write_char_shards(tmp_path / "data")
    (data / "val.bin").write_bytes(b"")
    meta = json.loads((data / "meta.json").read_text())
    (data / "meta.json").write_text(json.dumps({**meta, "val_tokens": 0}))
    with pytest.raises(DataError, match="val.bin holds 0 tokens"):
        train(tiny_config(data, tmp_path / "out"))


def test_metrics_files_and_plot_are_written(char_data, tmp_path):
    result = train(tiny_config(char_data, tmp_path / "out"))
    rows = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4, 6, 8]
    assert {"loss", "lr", "tokens_per_s", "mfu"} <= set(rows[0]) and "val_loss" in rows[1]
    header = (tmp_path / "out" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"step", "loss", "val_loss"} <= set(header)
    assert result.plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert 0 < result.mfu < 1 and result.tokens == 8 * 4 * 16


def test_export_writes_a_model_from_pretrained_loads(char_data, tmp_path):
    config = tiny_config(char_data, tmp_path / "out")
    config["model"] = {**config["model"], "bias": True}  # HF GPT-2 has biases
    result = train(config)
    export_checkpoint(tmp_path / "out", tmp_path / "hf")
    loaded = GPT4LMHeadModel.from_pretrained(tmp_path / "hf", dtype="float32")
    ids = torch.randint(0, 30, (2, 16))
    torch.testing.assert_close(loaded(ids).logits, result.model.eval()(ids).logits, rtol=0, atol=0)


def test_flops_and_bits_per_byte():
    config = preset("gpt-nano")
    n = config.num_parameters() - 64 * 128
    assert flops_per_token(config, 64) == 6 * n + 12 * 4 * 128 * 64
    assert bits_per_byte(1.0, 1.0) == pytest.approx(1 / 0.6931471805599453)
    assert bits_per_byte(1.0, None) is None
