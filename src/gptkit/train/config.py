"""TrainConfig: the one source of training defaults, loaded from YAML and ``--key=value`` overrides."""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gptkit.config import GPT4Config, preset
from gptkit.errors import ConfigError

STRATEGIES = ("none", "ddp", "fsdp")
ALIASES = {  # other trainers' names for our keys, used only to suggest the right one
    "learning_rate": "lr",
    "gradient_accumulation_steps": "grad_accum",
    "context_length": "block_size",
    "epochs": "max_iters",
}
DTYPES = ("bfloat16", "float32")


@dataclass
class TrainConfig:
    """Everything one training run needs; every field can be set in YAML or as ``--key=value``."""

    data_dir: str = "data"  # prepared shards (gptkit data prepare)
    out_dir: str = "out"  # checkpoints, metrics.csv/jsonl, loss.png
    model: str | dict[str, Any] = "gpt-nano"  # preset name or a dict of GPT4Config fields
    init_from: str | None = None  # start from pretrained weights (anything from_pretrained accepts)
    batch_size: int = 12  # sequences per micro-batch per process
    block_size: int | None = None  # context length of a training window; None -> the model's
    grad_accum: int = 1  # micro-batches per optimizer step (derived from global_batch_size when that is set)
    global_batch_size: int | None = None  # sequences per optimizer step over all ranks, for any world size
    max_iters: int = 2000
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_iters: int = 100
    lr_decay_iters: int | None = None  # None -> max_iters
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float = 1.0  # 0 disables clipping
    dtype: str = "bfloat16"  # autocast dtype ("bfloat16") or plain "float32"; weights stay fp32
    compile: bool = False  # torch.compile the model (falls back to eager when compilation fails)
    eval_interval: int = 250
    eval_iters: int = 20
    log_interval: int = 10
    sample_interval: int = 0  # 0 disables samples
    sample_prompt: str = "\n"
    sample_tokens: int = 100
    checkpoint_interval: int = 500  # 0 -> only at the end
    keep_last: int = 3
    seed: int = 1337
    distributed: str = "none"  # "none" | "ddp" | "fsdp" (set automatically to ddp under torchrun)
    device: str = "auto"  # "auto" -> cuda when available, else cpu
    resume: bool = False  # continue from the newest complete checkpoint in out_dir
    progress: bool = True  # tqdm progress bar
    tensorboard: bool = True  # when torch.utils.tensorboard is importable
    wandb: bool = False  # when wandb is installed
    wandb_project: str = "gptkit"
    # fine-tuning (gptkit finetune)
    lora: bool = False
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    lora_targets: tuple[str, ...] | None = None  # linear-layer name suffixes; None -> gptkit.train.lora's
    sft_data: str | None = None  # a JSONL file of examples; replaces data_dir as the batch source
    sft_val_fraction: float = 0.05  # share of the SFT examples held out for eval
    max_length: int | None = None  # SFT example length cap; None -> block size
    extra: dict[str, Any] = field(default_factory=dict)  # free-form notes kept in config.json

    def __post_init__(self) -> None:
        if self.distributed not in STRATEGIES:
            raise ConfigError(f"distributed={self.distributed!r} is not one of: {', '.join(STRATEGIES)}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"dtype={self.dtype!r} is not one of: {', '.join(DTYPES)}")
        for name in ("batch_size", "grad_accum", "max_iters", "eval_iters", "log_interval", "keep_last"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.global_batch_size is not None and self.global_batch_size < 1:
            raise ConfigError(f"global_batch_size must be at least 1, got {self.global_batch_size}")
        self.betas = tuple(self.betas)
        self.lora_targets = tuple(self.lora_targets) if self.lora_targets is not None else None

    @property
    def decay_iters(self) -> int:
        return self.lr_decay_iters or self.max_iters

    def accumulation(self, world_size: int) -> int:
        """Micro-batches per optimizer step: global_batch_size / (world_size * batch_size), else grad_accum."""
        if self.global_batch_size is None:
            return self.grad_accum
        per_micro_step = world_size * self.batch_size
        steps, rest = divmod(self.global_batch_size, per_micro_step)
        if rest or steps < 1:
            raise ConfigError(
                f"global_batch_size={self.global_batch_size} is not a multiple of world_size={world_size} "
                f"x batch_size={self.batch_size}; choose a batch_size that divides it"
            )
        if self.grad_accum not in (1, steps):
            raise ConfigError(
                f"grad_accum={self.grad_accum} disagrees with global_batch_size={self.global_batch_size} "
                f"(which gives {steps} on {world_size} process(es)); set only one of them"
            )
        return steps

    def model_config(self) -> GPT4Config:
        """The GPT4Config this run trains from scratch (init_from runs read theirs from the weights)."""
        if isinstance(self.model, str):
            return preset(self.model)
        base = self.model.get("preset")
        fields = {k: v for k, v in self.model.items() if k != "preset"}
        return preset(base, **fields) if base else GPT4Config.from_dict(fields)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from a plain dict, refusing unknown keys (the error names the closest valid key)."""
        for key in data:
            _check_key(key)
        return cls(**data)


def field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(TrainConfig)]


def _check_key(key: str) -> None:
    """Raise ConfigError for a key TrainConfig does not have, suggesting the closest one."""
    names = field_names()
    if key in names:
        return
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    alias = difflib.get_close_matches(key, ALIASES, n=1, cutoff=0.6)
    suggestion = (
        close[0] if close else ALIASES[alias[0]] if alias else difflib.get_close_matches(key, names, 1, 0)[0]
    )
    raise ConfigError(f"unknown training config key {key!r}; did you mean {suggestion!r}?")


def load_config(
    path: str | Path | None = None, overrides: list[str] | dict[str, Any] | None = None
) -> TrainConfig:
    """A TrainConfig from an optional YAML file plus overrides (``["--lr=3e-4", ...]`` or a dict)."""
    data: dict[str, Any] = {}
    if path is not None:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path} must hold a mapping of config keys, got {type(loaded).__name__}")
        data.update(loaded)
    if isinstance(overrides, dict):
        data.update(overrides)
    else:
        data.update(parse_overrides(overrides or []))
    return TrainConfig.from_dict(data)


def parse_overrides(args: list[str]) -> dict[str, Any]:
    """``--key=value`` / ``--key value`` / ``--flag`` strings -> typed values (dashes become underscores)."""
    types_by_name = typing.get_type_hints(TrainConfig)
    out: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--"):
            raise ConfigError(f"expected --key=value, got {arg!r}")
        key, has_value, value = arg[2:].partition("=")
        key = key.replace("-", "_")
        _check_key(key)
        if not has_value:
            is_flag = types_by_name[key] is bool and (i + 1 == len(args) or args[i + 1].startswith("--"))
            value = "true" if is_flag else args[i + 1]
            i += 0 if is_flag else 1
        out[key] = coerce(key, value, types_by_name[key])
        i += 1
    return out


def coerce(key: str, text: str, hint: Any) -> Any:
    """Convert override text to the field's type (YAML syntax for dicts, lists and optional values)."""
    try:
        return _coerce(text, hint)
    except (ValueError, TypeError, yaml.YAMLError):
        raise ConfigError(f"--{key}={text!r} is not a valid {_type_name(hint)}") from None


def _coerce(text: str, hint: Any) -> Any:
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if text.lower() in ("none", "null") and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if str in options and dict in [typing.get_origin(a) or a for a in options]:
            parsed = yaml.safe_load(text)
            return parsed if isinstance(parsed, dict) else text
        return _coerce(text, options[0])
    if hint is bool:
        value = yaml.safe_load(text)
        if not isinstance(value, bool):
            raise ValueError(text)
        return value
    if hint in (int, float, str):
        return hint(text)
    value = yaml.safe_load(text)
    if typing.get_origin(hint) is tuple:
        if not isinstance(value, list):
            value = [value]
        return tuple(value)
    return value


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", str(hint))
