"""DDP and FSDP2 through torchrun (gloo on CPU): the same global batch gives the same losses."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml
from conftest import tiny_config

from gptkit.train import train

pytestmark = pytest.mark.slow


def _torchrun(config: dict, tmp_path, strategy: str) -> list[float]:
    """Run `gptkit train` on 2 processes; the per-step losses rank 0 logged to metrics.jsonl."""
    path = tmp_path / f"{strategy}.yaml"
    path.write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "gptkit", "train", str(path), f"--distributed={strategy}"]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / strategy / "metrics.jsonl").read_text().splitlines()]
    return [row["loss"] for row in rows]


def test_ddp_matches_one_process_with_the_same_global_batch(char_data, tmp_path):
    common = dict(max_iters=6, log_interval=1, eval_interval=6, checkpoint_interval=6, grad_accum=2)
    single = train(tiny_config(char_data, tmp_path / "single", batch_size=8, **common))
    losses = _torchrun(tiny_config(char_data, tmp_path / "ddp", batch_size=4, **common), tmp_path, "ddp")
    assert losses == pytest.approx(single.losses, abs=1e-5)
    assert (tmp_path / "ddp" / "ckpt-000006" / "COMPLETE").is_file()


def test_fsdp2_trains_and_checkpoints(char_data, tmp_path):
    common = dict(max_iters=4, log_interval=1, eval_interval=4, checkpoint_interval=4)
    single = train(tiny_config(char_data, tmp_path / "single", batch_size=8, **common))
    losses = _torchrun(tiny_config(char_data, tmp_path / "fsdp", batch_size=4, **common), tmp_path, "fsdp")
    assert losses == pytest.approx(single.losses, abs=1e-4)
    assert (tmp_path / "fsdp" / "ckpt-000004" / "COMPLETE").is_file()
