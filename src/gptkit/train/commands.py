"""`gptkit train`, `gptkit finetune` and `gptkit export`: parse, then call the library."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from gptkit.errors import ConfigError

FINETUNE_ROOT = "out"  # `gptkit finetune` writes to out/finetune-NAME unless --out_dir says otherwise
OVERRIDES_HELP = "TrainConfig overrides: --key=value (e.g. --max_iters=100 --lr=3e-4 --resume)"


def cmd_train(args: argparse.Namespace) -> int:
    """Pretrain (or continue training) a GPT from a YAML config; torchrun for several processes."""
    from gptkit.train.config import load_config
    from gptkit.train.loop import train

    overrides, export_to = _pop_option(args.overrides, "--export")
    result = train(load_config(args.config, overrides))
    return _maybe_export(result, export_to)


def cmd_finetune(args: argparse.Namespace) -> int:
    """Fine-tune a model on a JSONL file of chats or prompt/completion pairs (LoRA with --lora)."""
    from gptkit.train.config import load_config, parse_overrides
    from gptkit.train.finetune import finetune

    overrides, export_to = _pop_option(args.overrides, "--export")
    overrides, config_path = _pop_option(overrides, "--config")
    values = {"init_from": args.model, "sft_data": args.data, **parse_overrides(overrides)}
    config = load_config(config_path, values)
    if "out_dir" not in values and not _yaml_sets(config_path, "out_dir"):
        config = dataclasses.replace(config, out_dir=default_finetune_dir(args.model))
    result = finetune(config)
    return _maybe_export(result, export_to)


def _yaml_sets(path: str | None, key: str) -> bool:
    """Whether the YAML config file (if any) sets ``key``."""
    if path is None:
        return False
    import yaml

    data = yaml.safe_load(Path(path).read_text())
    return isinstance(data, dict) and key in data


def default_finetune_dir(model: str) -> str:
    """``out/finetune-NAME`` (NAME: the registered name, or the model file's / directory's name)."""
    from gptkit.registry import resolve

    return str(Path(FINETUNE_ROOT) / f"finetune-{resolve(model).name}")


def cmd_export(args: argparse.Namespace) -> int:
    """Write a checkpoint (or a run directory's newest one) as a Hugging Face model directory."""
    from gptkit.train.export import export_adapter, export_checkpoint

    export = export_adapter if args.adapter else export_checkpoint
    print(f"wrote {export(args.checkpoint, args.out)}")
    return 0


def _maybe_export(result, export_to: str | None) -> int:
    """Export the run's final checkpoint when --export was given (rank 0 only)."""
    if export_to is not None and result.checkpoint is not None:
        from gptkit.train.export import export_checkpoint

        print(f"exported {export_checkpoint(result.checkpoint, export_to)}")
    return 0


def _pop_option(args: list[str], name: str) -> tuple[list[str], str | None]:
    """Remove ``name=VALUE`` / ``name VALUE`` from ``args``; returns (the rest, VALUE or None)."""
    rest, value, i = [], None, 0
    while i < len(args):
        if args[i].startswith(name + "="):
            value = args[i].split("=", 1)[1]
        elif args[i] == name:
            if i + 1 == len(args):
                raise ConfigError(f"{name} needs a value")
            value, i = args[i + 1], i + 1
        else:
            rest.append(args[i])
        i += 1
    return rest, value


def register(sub: argparse._SubParsersAction) -> None:
    """Add the train, finetune and export subcommands."""
    p = sub.add_parser("train", help=cmd_train.__doc__, description=cmd_train.__doc__)
    p.add_argument("config", help="YAML file of TrainConfig fields")
    p.add_argument("overrides", nargs=argparse.REMAINDER, help=OVERRIDES_HELP + "; --export DIR afterwards")
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("finetune", help=cmd_finetune.__doc__, description=cmd_finetune.__doc__)
    p.add_argument("model", help="pretrained model: registered name, .gguf file or HF directory")
    p.add_argument("data", help="JSONL file: {messages: [...]} or {prompt, completion} per line")
    p.add_argument(
        "overrides",
        nargs=argparse.REMAINDER,
        help=OVERRIDES_HELP + " (--lora --lora-rank 8 ...; --config YAML)",
    )
    p.set_defaults(func=cmd_finetune)
    p = sub.add_parser("export", help=cmd_export.__doc__, description=cmd_export.__doc__)
    p.add_argument("checkpoint", help="ckpt-NNNNNN directory, or a run's out_dir (newest checkpoint)")
    p.add_argument("--out", required=True, help="Hugging Face directory to write")
    p.add_argument(
        "--adapter",
        action="store_true",
        help="a LoRA run: write only the adapter (PEFT's layout) for gptkit serve --lora / generate --lora",
    )
    p.set_defaults(func=cmd_export)
