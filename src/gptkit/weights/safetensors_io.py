"""Hugging Face directories: config.json + safetensors (single file or sharded), read and written safely.

Loading never unpickles: ``pytorch_model.bin`` checkpoints are refused. Every file is checked before use
(header, offsets against the file size, dtypes, the shard index) and failures raise typed errors that
name the file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from gptkit.config import GPT4Config
from gptkit.errors import ConfigError, ModelNotFoundError, WeightsError
from gptkit.model.decoder import parameter_shapes
from gptkit.weights.family_keymaps import keymap_for
from gptkit.weights.hf_config import config_from_hf, config_to_hf
from gptkit.weights.keymaps import canonical_names, hf_to_ours, ours_to_hf

CONFIG_FILE = "config.json"
GENERATION_CONFIG_FILE = "generation_config.json"
WEIGHTS_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
SHARD_PATTERN = re.compile(r"model-\d{5}-of-\d{5}\.safetensors")
PICKLE_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json")
SUPPORTED_DTYPES = ("F32", "F16", "BF16")
SIZE_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}


# ---- loading --------------------------------------------------------------------------------------------
def open_hf_state(
    directory: str | Path,
) -> tuple[GPT4Config, dict[str, tuple[int, ...]], Callable[[str], torch.Tensor]]:
    """(config, our parameter shapes, read) for a Hugging Face directory: every file, name and shape is
    checked, no tensor read; ``read(name)`` loads one of our parameters (checkpoint dtype) on demand."""
    directory = Path(directory)
    config = read_hf_config(directory)
    files = {path.name: path for path in weight_files(directory)}
    with ExitStack() as stack:
        handles = {name: stack.enter_context(_open_safetensors(path)) for name, path in files.items()}
        location = _tensor_locations(directory, handles)
        shapes = {name: tuple(handles[shard].get_slice(name).get_shape()) for name, shard in location.items()}
    keymap = keymap_for(config)
    expected = parameter_shapes(config)
    # validation only: hf_to_ours checks names and the shapes listed in ``shapes``; empty stand-ins for the
    # tensors read nothing (and, unlike meta tensors, do not make torch import sympy to concatenate them)
    hf_to_ours(keymap, config, expected, shapes, lambda name: torch.empty((0,) * len(shapes[name])))
    in_file = canonical_names(keymap, shapes)

    def read(ours: str) -> torch.Tensor:
        rule, layer = keymap.rule_for(ours)
        names = [in_file[name] for name in rule.hf_names(layer, config.n_experts)]
        return rule.to_ours([_read_tensor(files[location[name]], name) for name in names])

    return config, dict(expected), read


def _read_tensor(path: Path, name: str) -> torch.Tensor:
    """One tensor of a checked file, mapped only meanwhile: its pages then leave this process's memory."""
    with _open_safetensors(path) as handle:
        return handle.get_tensor(name)


def load_hf_state(directory: str | Path) -> tuple[GPT4Config, dict[str, torch.Tensor]]:
    """The config and our state dict (checkpoint dtype) of a Hugging Face safetensors directory."""
    config, shapes, read = open_hf_state(directory)
    return config, {name: read(name) for name in shapes}


def read_hf_config(directory: Path) -> GPT4Config:
    """The GPT4Config of ``directory/config.json``."""
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise ModelNotFoundError(
            f"{directory} has no {CONFIG_FILE}; it is not a Hugging Face model directory"
        )
    try:
        hf = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(hf, dict):
        raise ConfigError(f"{path} must hold a JSON object")
    return config_from_hf(hf)


def weight_files(directory: Path) -> list[Path]:
    """The safetensors file(s) holding the weights: model.safetensors, or every shard the index names."""
    single, index = directory / WEIGHTS_FILE, directory / INDEX_FILE
    if single.is_file():
        return [single]
    if index.is_file():
        shards = sorted(set(read_index(index).values()))
        missing = [shard for shard in shards if not (directory / shard).is_file()]
        if missing:
            raise ModelNotFoundError(
                f"{INDEX_FILE} names shard(s) missing from {directory}: {', '.join(missing)}"
            )
        return [directory / shard for shard in shards]
    pickles = [name for name in PICKLE_FILES if (directory / name).is_file()]
    if pickles:
        raise WeightsError(
            f"{directory} holds only {pickles[0]}, a pickle file; gptkit refuses to unpickle weights for "
            "safety. Convert it to safetensors (e.g. transformers' save_pretrained(..., "
            "safe_serialization=True)) and load that."
        )
    raise ModelNotFoundError(f"{directory} has neither {WEIGHTS_FILE} nor {INDEX_FILE}")


def read_index(path: Path) -> dict[str, str]:
    """The weight_map (tensor name -> shard file name) of a sharded checkpoint's index."""
    try:
        weight_map = json.loads(path.read_text())["weight_map"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise WeightsError(f"{path} is not a valid safetensors index (needs a 'weight_map'): {exc}") from exc
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise WeightsError(f"{path}: 'weight_map' must map tensor names to shard file names")
    bad = [shard for shard in weight_map.values() if Path(shard).name != shard]
    if bad:
        raise WeightsError(f"{path}: shard names must be plain file names, got {bad[0]!r}")
    return weight_map


def _open_safetensors(path: Path):
    """``safe_open`` on ``path``, which checks the header and that the offsets exactly cover the file."""
    try:
        return safe_open(path, framework="pt")
    except (SafetensorError, OSError) as exc:
        raise WeightsError(f"{path} is not a valid safetensors file (corrupt or truncated): {exc}") from exc


def _tensor_locations(directory: Path, handles: dict[str, Any]) -> dict[str, str]:
    """Tensor name -> file name, refusing duplicates, index mismatches and unsupported dtypes."""
    location: dict[str, str] = {}
    for shard, handle in handles.items():
        for name in handle.keys():  # noqa: SIM118 (safe_open handles are not iterable)
            if name in location:
                raise WeightsError(f"tensor {name!r} appears in both {location[name]} and {shard}")
            dtype = handle.get_slice(name).get_dtype()
            if dtype not in SUPPORTED_DTYPES:
                raise WeightsError(
                    f"tensor {name!r} in {shard} has dtype {dtype}; supported: {', '.join(SUPPORTED_DTYPES)}"
                )
            location[name] = shard
    if (directory / INDEX_FILE).is_file() and list(handles) != [WEIGHTS_FILE]:
        _check_index(read_index(directory / INDEX_FILE), location)
    return location


def _check_index(weight_map: dict[str, str], location: dict[str, str]) -> None:
    """The index and the shards must agree on where every tensor lives."""
    for name, shard in location.items():
        if weight_map.get(name) != shard:
            listed = weight_map.get(name)
            where = f"lists it in {listed}" if listed else "does not list it"
            raise WeightsError(f"tensor {name!r} is stored in {shard} but {INDEX_FILE} {where}")
    absent = sorted(set(weight_map) - set(location))
    if absent:
        raise WeightsError(
            f"{INDEX_FILE} lists tensor {absent[0]!r} in {weight_map[absent[0]]}, which lacks it"
        )


# ---- saving ---------------------------------------------------------------------------------------------
def save_pretrained(
    model: torch.nn.Module, directory: str | Path, max_shard_size: int | str | None = None
) -> None:
    """Write config.json, generation_config.json and safetensors weights that transformers can load.

    With ``max_shard_size`` (bytes, or "50KB", "5GB") larger checkpoints are split into
    ``model-0000k-of-0000n.safetensors`` files plus ``model.safetensors.index.json``.
    """
    config: GPT4Config = model.config
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    params = float_parameters(model)
    tensors = ours_to_hf(keymap_for(config), config, params)
    _write_json(directory / CONFIG_FILE, config_to_hf(config, dtype=model.dtype))
    _write_json(directory / GENERATION_CONFIG_FILE, generation_config(config))
    _remove_old_weights(directory)
    shards = _shard(tensors, _parse_size(max_shard_size))
    if len(shards) == 1:
        save_file(shards[0], directory / WEIGHTS_FILE, metadata={"format": "pt"})
        return
    weight_map = {}
    for k, shard in enumerate(shards, start=1):
        filename = f"model-{k:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, directory / filename, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shard, filename))
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    _write_json(directory / INDEX_FILE, {"metadata": {"total_size": total}, "weight_map": weight_map})


def float_parameters(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter by our name (a tied lm_head once), layers that keep GGUF blocks dequantized to fp32."""
    params = {name: p.detach().cpu() for name, p in model.named_parameters()}
    tied = model.config.tie_word_embeddings
    for name, module in model.named_modules():
        if hasattr(module, "qweight") and not (tied and name == "lm_head"):
            params[f"{name}.weight"] = module.dequantized_weight(torch.float32)
    return params


def generation_config(config: GPT4Config) -> dict[str, Any]:
    """generation_config.json: the special token ids that are set."""
    ids = {
        "bos_token_id": config.bos_token_id,
        "eos_token_id": config.eos_token_id,
        "pad_token_id": config.pad_token_id,
    }
    return {key: value for key, value in ids.items() if value is not None}


def _shard(tensors: dict[str, torch.Tensor], max_bytes: int | None) -> list[dict[str, torch.Tensor]]:
    """Tensors grouped in order into shards of at most ``max_bytes`` (a larger tensor gets its own)."""
    shards: list[dict[str, torch.Tensor]] = [{}]
    used = 0
    for name, tensor in tensors.items():
        size = tensor.numel() * tensor.element_size()
        if max_bytes is not None and shards[-1] and used + size > max_bytes:
            shards.append({})
            used = 0
        shards[-1][name] = tensor
        used += size
    return shards


def _parse_size(size: int | str | None) -> int | None:
    """Bytes from an int or a string like "50KB", "10MiB" or "5GB"."""
    if size is None or isinstance(size, int):
        return size
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]I?B|B)\s*", size.upper())
    if match is None:
        raise ValueError(f"max_shard_size {size!r} is not a size like '50KB', '10MiB' or '5GB'")
    return int(float(match.group(1)) * SIZE_UNITS[match.group(2)])


def _remove_old_weights(directory: Path) -> None:
    """Delete safetensors weights of an earlier save, so single-file and sharded layouts never mix."""
    for path in directory.iterdir():
        if path.name in (WEIGHTS_FILE, INDEX_FILE) or SHARD_PATTERN.fullmatch(path.name):
            path.unlink()


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Pretty-printed JSON with a trailing newline."""
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
