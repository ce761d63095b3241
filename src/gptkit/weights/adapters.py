"""LoRA adapter directories in PEFT's layout: ``adapter_config.json`` + ``adapter_model.safetensors``.

Tensor names are PEFT's (``base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight``); the family's
key map (gptkit.weights.keymaps) turns the Hugging Face module into ours (``blocks.0.attn.qkv``). Where we
fuse modules (q/k/v -> qkv, gate/up -> gate_up) the parts' adapters are fused too: one shared A with B's
rows stacked when the parts share A (as our own exports do), else A stacked and B block-diagonal. PEFT's
scaling (``lora_alpha / r``, or ``/ sqrt(r)`` with rsLoRA) is folded into B. ``gptkit finetune --lora``
checkpoints export to the same layout (:func:`save_adapter`), so both load the same way.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from gptkit.config import GPT4Config
from gptkit.errors import AdapterError
from gptkit.model.adapters import add_adapter
from gptkit.model.decoder import parameter_shapes
from gptkit.weights.family_keymaps import keymap_for
from gptkit.weights.keymaps import KeyMap, Rule, layer_template, part_sizes

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model."
LORA_KEY = re.compile(r"^(?P<module>.+)\.lora_(?P<which>[AB])(?:\.[A-Za-z0-9_-]+)?\.weight$")
UNSUPPORTED = {"use_dora": "DoRA", "alpha_pattern": "alpha_pattern", "modules_to_save": "modules_to_save"}

Pair = tuple[torch.Tensor, torch.Tensor]  # A (r, in), B (out, r)


@dataclass
class LoRAWeights:
    """An adapter as our modules take it: module name -> (A (r, in), B (out, r) with the scaling in B)."""

    path: Path
    modules: dict[str, Pair]
    config: dict[str, Any]

    @property
    def rank(self) -> int:
        return max(A.shape[0] for A, _ in self.modules.values())


def read_adapter(path: str | Path, config: GPT4Config) -> LoRAWeights:
    """Read a PEFT LoRA directory for a model of ``config``; AdapterError when it does not fit."""
    path = Path(path)
    settings = _read_config(path)
    tensors = _read_tensors(path)
    keymap = keymap_for(config)
    owners = _hf_module_owners(keymap, config)
    parts: dict[str, dict[int, dict[str, torch.Tensor]]] = {}
    for key, tensor in tensors.items():
        match = LORA_KEY.match(key)
        if match is None:
            raise AdapterError(
                f"{path}: tensor {key!r} is not a LoRA matrix (lora_A / lora_B) gptkit can serve"
            )
        module = _owner(owners, keymap, match["module"].removeprefix(PEFT_PREFIX), path)
        parts.setdefault(module[0], {}).setdefault(module[1], {})[match["which"]] = tensor.float()
    if not parts:
        raise AdapterError(f"{path}/{WEIGHTS_FILE} holds no LoRA tensors")
    shapes = _linear_shapes(config)
    modules = {
        ours: _fuse(ours, found, keymap, config, shapes, settings, path) for ours, found in parts.items()
    }
    return LoRAWeights(path, modules, settings)


def _read_config(path: Path) -> dict[str, Any]:
    """adapter_config.json, refusing what gptkit does not serve (not LoRA, DoRA, bias or saved modules)."""
    file = path / CONFIG_FILE
    if not file.is_file():
        raise AdapterError(f"{path} is not a LoRA adapter directory: {CONFIG_FILE} is missing")
    try:
        settings = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise AdapterError(f"{file} is not valid JSON: {error}") from None
    if not isinstance(settings, dict):
        raise AdapterError(f"{file} must hold a JSON object")
    if settings.get("peft_type", "LORA") != "LORA":
        raise AdapterError(f"{file}: peft_type {settings['peft_type']!r} is not supported (only LORA)")
    for key, what in UNSUPPORTED.items():
        if settings.get(key):
            raise AdapterError(f"{file}: {what} adapters are not supported")
    if settings.get("bias", "none") != "none":
        raise AdapterError(f"{file}: bias={settings['bias']!r} is not supported (only 'none')")
    alpha = settings.get("lora_alpha", settings.get("r"))
    if not isinstance(alpha, int | float) or isinstance(alpha, bool):
        raise AdapterError(f"{file}: lora_alpha must be a number, got {alpha!r}")
    return settings


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of adapter_model.safetensors (pickled adapter_model.bin files are refused)."""
    file = path / WEIGHTS_FILE
    if not file.is_file():
        pickled = (
            " (adapter_model.bin is pickle: convert it to safetensors)"
            if (path / "adapter_model.bin").exists()
            else ""
        )
        raise AdapterError(f"{path}: {WEIGHTS_FILE} is missing{pickled}")
    try:
        with safe_open(str(file), framework="pt") as handle:
            return {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as error:
        raise AdapterError(f"{file} is not a readable safetensors file: {error}") from None


def _hf_module_owners(keymap: KeyMap, config: GPT4Config) -> dict[str, tuple[str, int]]:
    """Hugging Face module name -> (our module, index of its part) for every linear of the blocks."""
    owners = {}
    for rule in keymap.rules:
        if "{i}" not in rule.ours or not rule.ours.endswith(".weight"):
            continue
        for layer in range(config.n_layer):
            ours = rule.ours.replace("{i}", str(layer)).removesuffix(".weight")
            for index, name in enumerate(rule.hf_names(str(layer))):
                owners[name.removesuffix(".weight")] = (ours, index)
    return owners


def _owner(owners: dict[str, tuple[str, int]], keymap: KeyMap, hf_module: str, path: Path) -> tuple[str, int]:
    """Our module (and part) for a PEFT module name (with or without the base model's prefix)."""
    for candidate in (hf_module, keymap.base_prefix + hf_module):
        if candidate in owners:
            return owners[candidate]
    raise AdapterError(
        f"{path}: the adapter targets {hf_module!r}, which is not a linear layer of this "
        f"{keymap.family} model's blocks (wrong base model, or more layers than it has?)"
    )


def _fuse(ours: str, found: dict[int, dict[str, torch.Tensor]], keymap: KeyMap, config: GPT4Config,
          shapes: dict[str, tuple[int, ...]], settings: dict[str, Any], path: Path) -> Pair:  # fmt: skip
    """One (A, B) for our module from its parts' (A, B), checking shapes and folding in the scaling."""
    rule, layer = keymap.rule_for(ours + ".weight")
    names = rule.hf_names(layer)
    out_sizes, in_features = _part_rows(rule, config, shapes), shapes[rule.ours][1]
    pairs: dict[int, Pair] = {}
    for index, matrices in found.items():
        name = names[index].removesuffix(".weight")
        if set(matrices) != {"A", "B"}:
            raise AdapterError(f"{path}: {name} has lora_{''.join(matrices)} without its partner")
        A, B = matrices["A"], matrices["B"]
        rank = A.shape[0] if A.dim() == 2 else 0
        if A.dim() != 2 or B.dim() != 2 or A.shape[1] != in_features or B.shape != (out_sizes[index], rank):
            raise AdapterError(
                f"{path}: {name} has lora_A {tuple(A.shape)} and lora_B {tuple(B.shape)}; this model needs "
                f"(r, {in_features}) and ({out_sizes[index]}, r): an adapter for another model?"
            )
        pairs[index] = (A, B * _scaling(settings, rank))
    return _stack_parts(pairs, out_sizes)


def _part_rows(rule: Rule, config: GPT4Config, shapes: dict[str, tuple[int, ...]]) -> list[int]:
    """Output rows of each Hugging Face part of our module (one part unless fused)."""
    if rule.split:
        sizes = part_sizes(config)
        return [sizes[s] for s in rule.split]
    return [shapes[rule.ours][0]]


def _linear_shapes(config: GPT4Config) -> dict[str, tuple[int, ...]]:
    """Our parameter shapes by layer template ('blocks.{i}.attn.qkv.weight' -> (out, in))."""
    return {layer_template(name)[0]: shape for name, shape in parameter_shapes(config).items()}


def _scaling(settings: dict[str, Any], rank: int) -> float:
    """PEFT's scaling: lora_alpha / r, or lora_alpha / sqrt(r) with use_rslora."""
    alpha = settings.get("lora_alpha", settings.get("r", rank))
    return alpha / math.sqrt(rank) if settings.get("use_rslora") else alpha / rank


def _stack_parts(pairs: dict[int, Pair], out_sizes: list[int]) -> Pair:
    """Fuse parts' (A, B): a shared A with B's rows stacked when every part has the same A, else A
    stacked along the rank and B block-diagonal; a missing part's rows stay zero."""
    if len(out_sizes) == 1:
        return pairs[0]
    offsets = [sum(out_sizes[:i]) for i in range(len(out_sizes))]
    first_A = next(iter(pairs.values()))[0]
    if len(pairs) == len(out_sizes) and all(torch.equal(A, first_A) for A, _ in pairs.values()):
        return first_A, torch.cat([pairs[i][1] for i in range(len(out_sizes))])
    ranks = {i: A.shape[0] for i, (A, _) in pairs.items()}
    A = torch.cat([pairs[i][0] for i in sorted(pairs)])  # (sum r, in)
    B = torch.zeros(sum(out_sizes), sum(ranks.values()))  # (out, sum r)
    column = 0
    for i in sorted(pairs):
        B[offsets[i] : offsets[i] + out_sizes[i], column : column + ranks[i]] = pairs[i][1]
        column += ranks[i]
    return A, B


# ---- attaching ----------------------------------------------------------------------------------------
def load_adapter(model: nn.Module, path: str | Path, name: str | None = None) -> str:
    """Give ``model`` the adapter at ``path``: under ``name`` for per-request serving (rows choose it), or
    with no name *merged* into float linears (W += B A, exact, no cost) and *applied* to every row on
    quantized ones (their blocks cannot take it). Returns how it was attached, in words."""
    weights = read_adapter(path, model.config)
    if name is not None:
        add_adapter(model, name, weights.modules)
        return f"adapter {name!r} (rank {weights.rank}, {len(weights.modules)} layers)"
    merged = {t: w for t, w in weights.modules.items() if _is_float_linear(model.get_submodule(t))}
    with torch.no_grad():
        for target, (A, B) in merged.items():
            weight = model.get_submodule(target).weight
            weight.add_((B @ A).to(weight.dtype))  # (out, in)
    applied = {t: w for t, w in weights.modules.items() if t not in merged}
    if applied:
        add_adapter(model, str(path), applied, default=True)
    return f"LoRA {path}: {len(merged)} layers merged, {len(applied)} applied"


def _is_float_linear(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear) and module.weight.is_floating_point()


# ---- writing --------------------------------------------------------------------------------------------
def save_adapter(
    directory: str | Path,
    config: GPT4Config,
    lora_state: dict[str, torch.Tensor],
    *,
    rank: int,
    alpha: float,
    base_model: str | None = None,
) -> Path:
    """Write our LoRA state (``blocks.0.attn.qkv.lora_A`` (r, in) / ``.lora_B`` (out, r)) as a PEFT
    directory: a fused module's A is repeated for each of its parts and B split along its rows (exact)."""
    keymap = keymap_for(config)
    tensors: dict[str, torch.Tensor] = {}
    targets = set()
    for key in sorted(k for k in lora_state if k.endswith(".lora_A")):
        module = key.removesuffix(".lora_A")
        A, B = lora_state[key].float(), lora_state[module + ".lora_B"].float()
        rule, layer = keymap.rule_for(module + ".weight")
        if layer is None:
            raise AdapterError(f"LoRA on {module!r} is outside the blocks: it cannot be saved as an adapter")
        B_parts = B.split(_part_rows(rule, config, {})) if rule.split else [B]
        for name, B_part in zip(rule.hf_names(layer), B_parts, strict=True):
            hf_module = PEFT_PREFIX + name.removesuffix(".weight")
            tensors[hf_module + ".lora_A.weight"] = A.clone()
            tensors[hf_module + ".lora_B.weight"] = B_part.clone()
            targets.add(name.removesuffix(".weight").split(f".{layer}.", 1)[1])
    if not tensors:
        raise AdapterError("the model has no LoRA layers to save")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(directory / WEIGHTS_FILE), metadata={"format": "pt"})
    settings = {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": rank, "lora_alpha": alpha,
        "target_modules": sorted(targets), "lora_dropout": 0.0, "bias": "none",
        "fan_in_fan_out": keymap.family == "gpt2", "use_rslora": False, "use_dora": False,
        "base_model_name_or_path": base_model, "inference_mode": True,
    }  # fmt: skip
    (directory / CONFIG_FILE).write_text(json.dumps(settings, indent=2) + "\n")
    return directory
