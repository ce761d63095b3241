"""Exact resume: N steps + resume + N steps gives bit-identical losses to 2N steps straight."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import tiny_config

from gptkit.train import train
from gptkit.train.checkpoint import CheckpointError

RESUME_SCRIPT = """
import json, sys
from gptkit.train import train
config = json.loads(sys.argv[1])
print("LOSSES=" + json.dumps(train(config).losses))
"""


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_resume_in_process_is_bit_identical(char_data, tmp_path, dtype):
    straight = train(tiny_config(char_data, tmp_path / "a", dtype=dtype))
    first = train(tiny_config(char_data, tmp_path / "b", dtype=dtype, max_iters=4))
    second = train(tiny_config(char_data, tmp_path / "b", dtype=dtype, resume=True))
    assert second.start_step == 4
    assert first.losses + second.losses == straight.losses
    assert second.val_losses[8] == straight.val_losses[8]


@pytest.mark.slow  # two fresh interpreters that import torch and train
def test_resume_in_fresh_process_is_bit_identical(char_data, tmp_path):
    model = {
        "preset": "gpt-nano",
        "n_layer": 2,
        "n_head": 2,
        "n_embd": 32,
        "context_length": 16,
        "dropout": 0.1,
    }
    straight = train(tiny_config(char_data, tmp_path / "a", model={**model, "vocab_size": 30}))
    train(tiny_config(char_data, tmp_path / "b", model={**model, "vocab_size": 30}, max_iters=4))
    config = tiny_config(char_data, tmp_path / "b", model={**model, "vocab_size": 30}, resume=True)
    run = subprocess.run(
        [sys.executable, "-c", RESUME_SCRIPT, json.dumps(config)], capture_output=True, text=True, check=True
    )
    losses = json.loads(run.stdout.split("LOSSES=")[1])
    assert losses == straight.losses[4:]


def test_resume_with_a_different_model_names_the_field(char_data, tmp_path):
    train(tiny_config(char_data, tmp_path / "out", max_iters=4))
    config = tiny_config(char_data, tmp_path / "out", resume=True)
    config["model"] = {**config["model"], "n_embd": 64}
    with pytest.raises(CheckpointError, match="n_embd"):
        train(config)


def test_resume_without_checkpoints_is_a_clear_error(char_data, tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        train(tiny_config(char_data, tmp_path / "empty", resume=True))
