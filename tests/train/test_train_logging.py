"""TensorBoard and W&B (offline) receive the same metrics as metrics.jsonl."""

from __future__ import annotations

import json

import pytest
from conftest import tiny_config

from gptkit.train import TrainConfig, train


def logged_rows(out_dir):
    return [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]


def test_tensorboard_scalars_equal_metrics_jsonl(char_data, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "out"
    train(TrainConfig(**tiny_config(char_data, out, tensorboard=True)))
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    expected = [(row["step"], row["loss"]) for row in logged_rows(out) if "loss" in row]
    assert [(e.step, pytest.approx(e.value, rel=1e-6)) for e in events.Scalars("loss")] == expected
    val = [(row["step"], row["val_loss"]) for row in logged_rows(out) if "val_loss" in row]
    assert [(e.step, pytest.approx(e.value, rel=1e-6)) for e in events.Scalars("val_loss")] == val


@pytest.mark.slow
def test_wandb_offline_run_records_the_metrics(char_data, tmp_path, monkeypatch):
    """The offline run's record file (W&B's own binary log) holds every logged loss value.

    Values are stored as JSON text inside the records, in shortest round-trip form like json.dumps.
    """
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "out"
    train(TrainConfig(**tiny_config(char_data, out, wandb=True, wandb_project="gptkit-test")))
    (record_file,) = (out / "wandb").glob("offline-run-*/run-*.wandb")
    records = record_file.read_bytes()
    values = [row[key] for row in logged_rows(out) for key in ("loss", "val_loss") if key in row]
    assert len(values) >= 4
    for value in values:
        assert json.dumps(value).encode() in records
