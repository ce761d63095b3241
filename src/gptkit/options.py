"""The command line's shared vocabulary, declared once: argument types, the model-loading options and
gptkit's argparse error rule. Every subcommand (gptkit.cli and each package's ``commands`` module) builds
its parser from these, and ``load_from_args`` turns the parsed options into ``gptkit.load``'s arguments.

Building a parser imports nothing heavy (no torch): help and usage errors stay instant.
"""

from __future__ import annotations

import argparse
from typing import Any

from gptkit.errors import GPTKitError
from gptkit.registry import DEFAULT_MODEL

MODEL_HELP = "registered name, .gguf file or HF directory"
# gptkit.quant.SCHEMES' names plus the load paths, listed here so that building the parser needs no torch
QUANTIZE_CHOICES = ("gguf", "none", "int8", "int4", "int4-g64", "int4-g128")
QUANTIZE_HELP = (
    "default: a quantized GGUF keeps its blocks on the native kernels (gguf); none: float weights "
    "(with --dtype float32: the exact reference path); int8 / int4 (-g64/-g128): re-quantized linears"
)
COMPILE_HELP = (
    "torch.compile the decode step: about a minute and a half to start the first time (seconds once "
    "cached), then ~2x faster decoding; decodes eagerly if compiling fails"
)
PREFIX_CACHE_HELP = (
    "MiB of KV cache blocks kept so that prompts starting like earlier ones (chat history, few-shot "
    "examples) skip prefilling that start; 0 turns it off (default 512)"
)
DTYPE_HELP = (
    "float32 (with --quantize none or alone: the exact reference path) or bfloat16; default: a quantized "
    "GGUF runs its blocks on the native kernels, other models bf16 where the CPU has it (float16 is refused)"
)


class UsageError(GPTKitError):
    """A command-line argument is invalid by itself (exit status 2)."""


class Parser(argparse.ArgumentParser):
    """argparse with gptkit's error rule: one line on stderr, exit status 2 (see gptkit.cli)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# ---- argument types -----------------------------------------------------------------------------------
def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _bounded_int(text, 1, None, "a positive integer")


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _bounded_int(text, 0, None, "an integer >= 0")


def port_number(text: str) -> int:
    """argparse type: a TCP port, 0..65535 (0: any free port)."""
    return _bounded_int(text, 0, 65535, "a port number from 0 to 65535")


def _bounded_int(text: str, low: int, high: int | None, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
    if value < low or (high is not None and value > high):
        raise argparse.ArgumentTypeError(f"must be {what}, got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    return _bounded_float(text, lambda v: v > 0, "a positive number")


def non_negative_float(text: str) -> float:
    """argparse type: a finite number >= 0."""
    return _bounded_float(text, lambda v: v >= 0, "a number >= 0")


def _bounded_float(text: str, accept, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
    if not (accept(value) and value < float("inf")):
        raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
    return value


def fraction(text: str) -> float:
    """argparse type: a number in (0, 1]."""
    value = positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1], got {text}")
    return value


def named_adapter(text: str) -> tuple[str, str]:
    """argparse type: NAME=PATH (a LoRA adapter served under NAME)."""
    name, sep, path = text.partition("=")
    if not sep or not name.strip() or not path.strip():
        raise argparse.ArgumentTypeError(
            f"must be NAME=PATH (an adapter name and its directory), got {text!r}"
        )
    return name.strip(), path.strip()


DTYPES = {
    "auto": None,  # the default path (see DTYPE_HELP)
    "float32": "float32",
    "fp32": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
}


def dtype_name(text: str) -> str | None:
    """argparse type: float32 or bfloat16 (and their short names); float16 is refused."""
    if text.lower() in DTYPES:
        return DTYPES[text.lower()]
    if text.lower() in ("float16", "fp16", "half"):
        raise argparse.ArgumentTypeError(
            "float16 is not supported: CPUs compute it very slowly and the models give degenerate output "
            "in it; use bfloat16 (half the memory of float32) or float32"
        )
    raise argparse.ArgumentTypeError(f"must be float32 or bfloat16, got {text!r}")


# ---- the model-loading options ------------------------------------------------------------------------
def add_model_options(
    parser: argparse.ArgumentParser, *, positional: bool = False, compile: bool = False
) -> None:
    """The model (positional, or ``--model/-m``), ``--dtype`` and ``--quantize``; ``--compile`` too when
    the command decodes through the engine."""
    if positional:
        parser.add_argument("model", nargs="?", default=DEFAULT_MODEL, help=MODEL_HELP)
    else:
        parser.add_argument("--model", "-m", default=DEFAULT_MODEL, help=MODEL_HELP)
    parser.add_argument("--dtype", type=dtype_name, default=None, help=DTYPE_HELP)
    parser.add_argument("--quantize", choices=QUANTIZE_CHOICES, default=None, help=QUANTIZE_HELP)
    if compile:
        parser.add_argument("--compile", action="store_true", help=COMPILE_HELP)


def add_prefix_cache_option(parser: argparse.ArgumentParser) -> None:
    """``--prefix-cache-mb`` for a command that runs an engine (None when not given: the engine's default)."""
    parser.add_argument("--prefix-cache-mb", type=non_negative_float, default=None, help=PREFIX_CACHE_HELP)


def load_options(args: argparse.Namespace) -> dict[str, Any]:
    """``gptkit.load``'s keyword options from parsed ``add_model_options`` arguments (and a ``--lora PATH``
    where the command has one: merged or applied, see gptkit.weights.adapters.load_adapter)."""
    lora = getattr(args, "lora", None)
    return {
        "dtype": args.dtype,
        "quantize": args.quantize,
        **({"lora": lora} if isinstance(lora, str) else {}),
    }


def load_from_args(args: argparse.Namespace):
    """(model, tokenizer) that the parsed ``add_model_options`` arguments name."""
    from gptkit.loader import load

    return load(args.model, **load_options(args))
