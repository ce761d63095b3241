"""Training checkpoints: one directory per step, safetensors + JSON only (never pickle), written atomically.

Layout of ``OUT/ckpt-000123/``::

    model.safetensors   parameters under our names (fp32 master weights)
    config.json         {"model": GPT4Config.to_dict(), "train": TrainConfig.to_dict()}
    state.safetensors   optimizer tensors ("optim/<param>/<key>") and RNG states as uint8 tensors
    state.json          step, optimizer param groups, python/numpy RNG scalars, data-source state, best loss
    COMPLETE            written last: size and sha256 of every file above

A directory is written as ``ckpt-000123.tmp/`` (each file fsynced), renamed, then marked COMPLETE; one
without the marker, or whose files disagree with it, is never resumed from.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from gptkit.config import GPT4Config
from gptkit.errors import GPTKitError

PREFIX = "ckpt-"
MARKER = "COMPLETE"
FILES = ("model.safetensors", "config.json", "state.safetensors", "state.json")
WRITE_DELAY_ENV = "GPTKIT_CHECKPOINT_WRITE_DELAY"  # seconds to sleep after each file (tests: crash mid-write)


class CheckpointError(GPTKitError, ValueError):
    """A checkpoint is missing, corrupt, or does not match the run that wants to resume from it."""


class CheckpointWarning(UserWarning):
    """A checkpoint was skipped (incomplete or corrupt) and an older one is used instead."""


@dataclass
class Checkpoint:
    """Everything a run needs to continue exactly where it stopped."""

    step: int
    model: dict[str, torch.Tensor]  # parameter name -> fp32 tensor
    optimizer: dict[str, Any]  # torch.distributed.checkpoint format: {"state": {fqn: {...}}, "param_groups"}
    state: dict[str, Any]  # state.json
    config: dict[str, Any]  # config.json: {"model": ..., "train": ...}
    rng: dict[str, torch.Tensor] = field(default_factory=dict)  # "torch", "cuda.0", "numpy" uint8 tensors
    path: Path | None = None


def checkpoint_dir(out_dir: str | Path, step: int) -> Path:
    return Path(out_dir) / f"{PREFIX}{step:06d}"


# ---- writing ---------------------------------------------------------------------------------------
def save_checkpoint(out_dir: str | Path, ckpt: Checkpoint, keep_last: int) -> Path:
    """Write ``ckpt`` atomically into ``OUT/ckpt-<step>/`` and delete all but the newest ``keep_last``."""
    final = checkpoint_dir(out_dir, ckpt.step)
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tensors, state = _split_state(ckpt)
    _write(tmp / "model.safetensors", lambda p: save_file(_contiguous(ckpt.model), p))
    _write(tmp / "config.json", lambda p: Path(p).write_text(json.dumps(ckpt.config, indent=2)))
    _write(tmp / "state.safetensors", lambda p: save_file(tensors, p))
    _write(tmp / "state.json", lambda p: Path(p).write_text(json.dumps(state)))
    _fsync_dir(tmp)
    shutil.rmtree(final, ignore_errors=True)  # re-saving a step (e.g. after a resume)
    os.replace(tmp, final)
    _fsync_dir(final.parent)
    marker = {name: _file_record(final / name) for name in FILES}
    _write(final / MARKER, lambda p: Path(p).write_text(json.dumps(marker, indent=2)))
    _fsync_dir(final)
    prune(out_dir, keep_last)
    return final


def _split_state(ckpt: Checkpoint) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Optimizer + RNG tensors for state.safetensors; everything JSON-serialisable for state.json."""
    tensors = {f"rng/{name}": t.contiguous() for name, t in ckpt.rng.items()}
    for fqn, entries in ckpt.optimizer["state"].items():
        for key, value in entries.items():
            tensors[f"optim/{fqn}/{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    groups = [
        {k: list(v) if isinstance(v, tuple) else v for k, v in g.items()}
        for g in ckpt.optimizer["param_groups"]
    ]
    return tensors, {**ckpt.state, "step": ckpt.step, "param_groups": groups}


def _contiguous(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in tensors.items()}


def _write(path: Path, writer) -> None:
    """Write one file through ``writer(path)``, then fsync it."""
    writer(str(path))
    with open(path, "rb+") as f:
        os.fsync(f.fileno())
    delay = float(os.environ.get(WRITE_DELAY_ENV, "0") or 0)
    if delay:
        time.sleep(delay)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _file_record(path: Path) -> dict[str, Any]:
    return {"bytes": path.stat().st_size, "sha256": _sha256(path)}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def prune(out_dir: str | Path, keep_last: int) -> None:
    """Delete leftover ``.tmp`` directories, incomplete checkpoints and all but the newest complete ones."""
    out_dir = Path(out_dir)
    for tmp in out_dir.glob(f"{PREFIX}*.tmp"):
        shutil.rmtree(tmp, ignore_errors=True)
    complete = [p for p in list_checkpoints(out_dir) if (p / MARKER).is_file()]
    newest = complete[-1] if complete else None
    for path in list_checkpoints(out_dir):
        stale = path in complete[:-keep_last] or (not (path / MARKER).is_file() and newest and path < newest)
        if stale:
            shutil.rmtree(path, ignore_errors=True)


# ---- reading ---------------------------------------------------------------------------------------
def list_checkpoints(out_dir: str | Path) -> list[Path]:
    """Checkpoint directories in ``out_dir`` (complete or not, no ``.tmp``), oldest first."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return []
    found = [
        p for p in out_dir.iterdir() if p.is_dir() and p.name.startswith(PREFIX) and p.name[5:].isdigit()
    ]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX) :]))


def verify(path: str | Path) -> None:
    """Raise CheckpointError unless ``path`` is complete and every file matches its recorded size and hash."""
    path = Path(path)
    marker = path / MARKER
    if not marker.is_file():
        raise CheckpointError(f"{path} is incomplete (no {MARKER} marker: the write was interrupted)")
    try:
        records = json.loads(marker.read_text())
    except json.JSONDecodeError:
        raise CheckpointError(f"{marker} is corrupt") from None
    for name in FILES:
        file = path / name
        if not file.is_file():
            raise CheckpointError(f"{path} is missing {name}")
        expected = records.get(name, {})
        if file.stat().st_size != expected.get("bytes"):
            raise CheckpointError(
                f"{file} has {file.stat().st_size} bytes, {expected.get('bytes')} were written (truncated?)"
            )
        if _sha256(file) != expected.get("sha256"):
            raise CheckpointError(f"{file} is corrupt (its sha256 differs from the one recorded at save)")


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Verify and read a checkpoint directory (safetensors and JSON only)."""
    path = Path(path)
    verify(path)
    try:
        model = load_file(str(path / "model.safetensors"))
        tensors = load_file(str(path / "state.safetensors"))
        state = json.loads((path / "state.json").read_text())
        config = json.loads((path / "config.json").read_text())
    except (SafetensorError, json.JSONDecodeError, OSError) as exc:
        raise CheckpointError(f"{path} cannot be read: {exc}") from None
    optim_state: dict[str, dict[str, torch.Tensor]] = {}
    rng = {}
    for name, tensor in tensors.items():
        kind, _, rest = name.partition("/")
        if kind == "rng":
            rng[rest] = tensor
        else:
            fqn, _, key = rest.rpartition("/")
            optim_state.setdefault(fqn, {})[key] = tensor
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in state.pop("param_groups")]
    optimizer = {"state": optim_state, "param_groups": groups}
    return Checkpoint(state["step"], model, optimizer, state, config, rng, path)


def latest_checkpoint(out_dir: str | Path) -> Checkpoint:
    """The newest checkpoint that verifies; corrupt or incomplete newer ones are skipped with a warning."""
    candidates = list_checkpoints(out_dir)
    if not candidates:
        raise CheckpointError(f"nothing to resume from: no checkpoint in {out_dir}")
    for path in reversed(candidates):
        try:
            return load_checkpoint(path)
        except CheckpointError as exc:
            warnings.warn(f"skipping checkpoint: {exc}; trying an older one", CheckpointWarning, stacklevel=2)
    raise CheckpointError(
        f"no valid checkpoint in {out_dir}: all {len(candidates)} are incomplete or corrupt"
    )


def check_model_config(saved: dict[str, Any], current: GPT4Config) -> None:
    """Raise CheckpointError naming the first architecture field that differs between checkpoint and run."""
    wanted = current.to_dict()
    for name, value in wanted.items():
        if name == "extra":
            continue
        if name in saved and _normalise(saved[name]) != _normalise(value):
            raise CheckpointError(
                f"cannot resume: model config field {name!r} is {saved[name]!r} in the checkpoint "
                f"but {value!r} in this run"
            )


def _normalise(value: Any) -> Any:
    return json.loads(json.dumps(value))


# ---- RNG state -------------------------------------------------------------------------------------
def capture_rng() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(uint8 tensors, JSON scalars) for torch, CUDA, numpy's global and Python's ``random`` generators."""
    np_state = np.random.get_state()
    tensors = {"torch": torch.get_rng_state(), "numpy": torch.from_numpy(np_state[1].view(np.uint8).copy())}
    if torch.cuda.is_available():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = state
    py_version, py_state, py_gauss = random.getstate()
    scalars = {
        "python": [py_version, list(py_state), py_gauss],
        "numpy": [np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])],
    }
    return tensors, scalars


def restore_rng(tensors: dict[str, torch.Tensor], scalars: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng`."""
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("cuda.")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])
    name, pos, has_gauss, gauss = scalars["numpy"]
    keys = tensors["numpy"].numpy().view(np.uint32)
    np.random.set_state((name, keys, pos, has_gauss, gauss))
    version, state, py_gauss = scalars["python"]
    random.setstate((version, tuple(state), py_gauss))
