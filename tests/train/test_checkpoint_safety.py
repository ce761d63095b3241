"""Checkpoints survive crashes and corruption: a resume always lands on the newest good one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import tiny_config

from gptkit.modeling import GPT4LMHeadModel
from gptkit.train import TrainConfig, TrainingDivergedError, train
from gptkit.train.checkpoint import (
    WRITE_DELAY_ENV,
    CheckpointError,
    CheckpointWarning,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
)

TRAIN_SCRIPT = "import json, sys; from gptkit.train import train; train(json.loads(sys.argv[1]))"


@pytest.mark.slow  # fresh interpreters that import torch and train
def test_sigkill_during_a_checkpoint_write_keeps_the_previous_one(char_data, tmp_path):
    out = tmp_path / "out"
    config = tiny_config(char_data, out, max_iters=1000, checkpoint_interval=2, lr_decay_iters=1000)
    env = {**os.environ, WRITE_DELAY_ENV: "1.0"}  # each checkpoint file takes a second to "write"
    proc = subprocess.Popen([sys.executable, "-c", TRAIN_SCRIPT, json.dumps(config)], env=env)
    try:
        deadline = time.monotonic() + 120
        while not (out / "ckpt-000004.tmp").exists():  # step 2 is complete, step 4 is being written
            assert proc.poll() is None and time.monotonic() < deadline, "training never reached step 4"
            time.sleep(0.05)
        time.sleep(1.5)  # well inside the write
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert [p.name for p in list_checkpoints(out)] == ["ckpt-000002"]
    assert latest_checkpoint(out).step == 2
    resumed = train({**config, "max_iters": 4, "resume": True})
    assert (resumed.start_step, resumed.final_step) == (2, 4)


def _two_checkpoints(char_data, tmp_path) -> tuple[dict, Path]:
    out = tmp_path / "out"
    config = tiny_config(char_data, out, max_iters=8, checkpoint_interval=4)
    train(config)
    assert [p.name for p in list_checkpoints(out)] == ["ckpt-000004", "ckpt-000008"]
    return config, out


def test_truncated_checkpoint_falls_back_to_the_previous_one(char_data, tmp_path):
    config, out = _two_checkpoints(char_data, tmp_path)
    weights = out / "ckpt-000008" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(out / "ckpt-000008")
    with pytest.warns(CheckpointWarning, match="ckpt-000008"):
        resumed = train({**config, "resume": True})
    assert resumed.start_step == 4 and resumed.final_step == 8


def test_corrupted_bytes_are_detected(char_data, tmp_path):
    _, out = _two_checkpoints(char_data, tmp_path)
    state = out / "ckpt-000008" / "state.safetensors"
    data = bytearray(state.read_bytes())
    data[-1] ^= 0xFF  # same size, different content
    state.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(out / "ckpt-000008")
    with pytest.warns(CheckpointWarning):
        assert latest_checkpoint(out).step == 4


def test_no_valid_checkpoint_is_a_clear_error(char_data, tmp_path):
    config, out = _two_checkpoints(char_data, tmp_path)
    for path in list_checkpoints(out):
        (path / "COMPLETE").unlink()
    with (
        pytest.warns(CheckpointWarning, match="incomplete"),
        pytest.raises(CheckpointError, match="no valid"),
    ):
        train({**config, "resume": True})


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(char_data, tmp_path):
    config = tiny_config(char_data, tmp_path / "out", max_iters=8, checkpoint_interval=2)
    model = GPT4LMHeadModel(TrainConfig.from_dict(config).model_config())
    calls = []

    def poison(module, inputs, output):  # NaN embeddings from the 4th training forward on
        calls.append(module.training)
        return output * float("nan") if sum(calls) >= 4 and module.training else output

    model.embed.register_forward_hook(poison)
    with pytest.raises(TrainingDivergedError, match=r"loss became nan at step 4.*ckpt-000002"):
        train(config, model=model)
    assert [p.name for p in list_checkpoints(tmp_path / "out")] == ["ckpt-000002"]
    good = load_checkpoint(tmp_path / "out" / "ckpt-000002")
    assert all(torch.isfinite(t).all() for t in good.model.values())
