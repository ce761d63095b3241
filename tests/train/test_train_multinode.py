"""Two "nodes" on localhost: torchrun --nnodes 2 with c10d rendezvous, one gloo process per node.

The global batch is fixed (``global_batch_size``), so every world size computes the same steps: two nodes match
one process, and a run killed on one world size resumes on another with the reference's losses.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import tiny_config

from gptkit.train import train

pytestmark = pytest.mark.slow

STEPS = 12
COMMON = dict(
    max_iters=STEPS, lr_decay_iters=STEPS, batch_size=4, global_batch_size=8, log_interval=1,
    eval_interval=STEPS, checkpoint_interval=2, keep_last=10,
)  # fmt: skip
DDP_TOLERANCE = 1e-5
FSDP_TOLERANCE = 1e-4  # FSDP2 reduce-scatters gradients: another summation order


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_config(tmp_path: Path, config: dict, name: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _launch(argv: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start a command in a session of its own, its output in ``log``."""
    with open(log, "w") as out:
        return subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )


def _nodes(config: Path, port: int, tmp_path: Path, *overrides: str, env=None) -> list[subprocess.Popen]:
    """The two-node recipe of docs/training.md, both "nodes" on this machine."""
    launches = []
    for node_rank in (0, 1):
        argv = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", f"--node-rank={node_rank}",
                "--nproc-per-node=1", "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}",
                "--rdzv-id=gptkit-test", "-m", "gptkit", "train", str(config), *overrides]  # fmt: skip
        launches.append(_launch(argv, tmp_path / f"node{node_rank}.log", env))
        time.sleep(0.5)  # node 0 hosts the rendezvous store
    return launches


def _single(config: Path, tmp_path: Path, *overrides: str, env=None) -> subprocess.Popen:
    argv = [sys.executable, "-m", "gptkit", "train", str(config), *overrides]
    return _launch(argv, tmp_path / "single.log", env)


def _wait_all(launches: list[subprocess.Popen], tmp_path: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    for p in launches:
        rc = p.wait(timeout=max(1.0, deadline - time.monotonic()))
        logs = "\n".join(f.read_text()[-2000:] for f in sorted(tmp_path.glob("*.log")))
        assert rc == 0, logs


def _process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (torchrun starts its workers in sessions of their own)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        tree.append(todo.pop())
        todo.extend(children.get(tree[-1], []))
    return tree


def _kill_node(launch: subprocess.Popen) -> None:
    """SIGKILL a launcher and every process under it: the node is gone."""
    for pid in _process_tree(launch.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    launch.wait()


def _kill_after_checkpoint(victim: subprocess.Popen, out_dir: Path, others=(), step: int = 4) -> None:
    """SIGKILL ``victim``'s process group once checkpoint ``step`` is complete; the others then die too."""
    marker = out_dir / f"ckpt-{step:06d}" / "COMPLETE"
    deadline = time.monotonic() + 240
    while not marker.is_file():
        assert victim.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    _kill_node(victim)
    for p in others:  # a surviving node fails on its next collective; never let it hang the test
        try:
            assert p.wait(timeout=120) != 0
        except subprocess.TimeoutExpired:
            _kill_node(p)
            pytest.fail("the surviving node hung after its peer died")


def _logged_losses(out_dir: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    return {row["step"]: row["loss"] for row in rows}


@pytest.fixture
def reference(char_data, tmp_path) -> list[float]:
    """The single-process run on the same global batch (in-process: batch 4 x grad_accum 2)."""
    return train(tiny_config(char_data, tmp_path / "reference", **COMMON)).losses


def test_two_nodes_match_one_process(char_data, tmp_path, reference):
    out = tmp_path / "two-nodes"
    config = _write_config(tmp_path, tiny_config(char_data, out, **COMMON), "two-nodes")
    _wait_all(_nodes(config, _free_port(), tmp_path), tmp_path)
    losses = _logged_losses(out)
    assert sorted(losses) == list(range(1, STEPS + 1))
    assert [losses[s] for s in sorted(losses)] == pytest.approx(reference, abs=DDP_TOLERANCE)
    assert (out / f"ckpt-{STEPS:06d}" / "COMPLETE").is_file()
    assert "ddp over 2 processes (2 node(s) x 1)" in "".join(
        p.read_text() for p in tmp_path.glob("node*.log")
    )


def _resumed_step(log_text: str) -> int:
    line = next(line for line in log_text.splitlines() if line.startswith("resuming from"))
    return int(line.rsplit("step ", 1)[1].rstrip(")"))


def test_fsdp_two_nodes_killed_resume_on_one_process(char_data, tmp_path, reference):
    out = tmp_path / "run"
    config = _write_config(tmp_path, tiny_config(char_data, out, **COMMON), "run")
    slow_writes = {"GPTKIT_CHECKPOINT_WRITE_DELAY": "0.3"}
    node0, node1 = _nodes(config, _free_port(), tmp_path, "--distributed=fsdp", env=slow_writes)
    _kill_after_checkpoint(node1, out, others=[node0])
    before = _logged_losses(out)
    resumed = train(tiny_config(char_data, out, **COMMON, resume=True))  # world size 2 -> 1
    start = resumed.start_step
    assert 4 <= start < STEPS
    assert [before[s] for s in range(1, start + 1)] == pytest.approx(reference[:start], abs=FSDP_TOLERANCE)
    assert resumed.losses == pytest.approx(reference[start:], abs=FSDP_TOLERANCE)


def test_one_process_killed_resume_on_two_fsdp_nodes(char_data, tmp_path, reference):
    out = tmp_path / "run"
    config = _write_config(tmp_path, tiny_config(char_data, out, **COMMON), "run")
    single = _single(config, tmp_path, env={"GPTKIT_CHECKPOINT_WRITE_DELAY": "0.3"})
    _kill_after_checkpoint(single, out)
    _wait_all(_nodes(config, _free_port(), tmp_path, "--distributed=fsdp", "--resume"), tmp_path)
    start = _resumed_step("".join(p.read_text() for p in tmp_path.glob("node*.log")))
    assert 4 <= start < STEPS
    losses = _logged_losses(out)
    assert sorted(losses) == list(range(1, STEPS + 1))
    assert [losses[s] for s in range(1, start + 1)] == pytest.approx(reference[:start], abs=DDP_TOLERANCE)
    resumed = [losses[s] for s in range(start + 1, STEPS + 1)]
    assert resumed == pytest.approx(reference[start:], abs=FSDP_TOLERANCE)
