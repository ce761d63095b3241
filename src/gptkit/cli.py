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
from gptkit.options import (
    MODEL_HELP,
    Parser,
    UsageError,
    add_model_options,
    load_from_args,
    positive_int,
)
from gptkit.registry import DEFAULT_MODEL

DEFAULT_PROMPT = "The quick brown fox jumps over the lazy dog"
# Modules that add subcommands: each defines `register(subparsers)`.
COMMAND_MODULES = (
    "gptkit.train.commands",  # data prepare, tokenizer train, train, finetune
    "gptkit.tasks.commands",  # task
    "gptkit.eval.commands",  # eval, cost, data scrub
    "gptkit.data.commands",
    "gptkit.serve.commands",  # serve
    "gptkit.serve.chat_cli",  # chat (terminal REPL)
)


def cmd_generate(args: argparse.Namespace) -> int:
    """Generate a continuation of a prompt, streaming tokens as they come."""
    prompt = args.prompt if args.prompt is not None else sys.stdin.read()
    if not prompt.strip():
        raise UsageError("the prompt is empty: pass it as an argument or on stdin")
    options = _generation_options(args)  # every argument checked before anything is loaded or printed
    model, tokenizer = load_from_args(args)
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
    options = {name: value for name, value in options.items() if value is not None}  # else: the defaults
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
    from gptkit.registry import REGISTRY, available_models

    for name, description, path in available_models():
        entry = REGISTRY[name]
        state = f"installed: {path}" if path else f"not installed: {entry.how_to_install}"
        checksum = f"\n  sha256 {entry.sha256}" if entry.sha256 else ""
        print(f"{name}\n  {description}\n  {state}{checksum}")
    print("gpt-4 / cl100k_base\n  GPT-4's tokenizer only: GPT-4's weights are not public")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    """Check a model's files and describe it: family, parameters, quantization, context length, tokenizer."""
    from gptkit.loader import describe

    for key, value in describe(args.model, metadata_only=args.metadata_only).items():
        print(f"{key:>17}: {value}")
    return 0


def _add_generate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help=cmd_generate.__doc__, description=cmd_generate.__doc__)
    p.add_argument("prompt", nargs="?", help="prompt text (read from stdin when omitted)")
    add_model_options(p)
    p.add_argument(
        "--max-new-tokens", "-n", type=positive_int, default=50, help="tokens to generate (default 50)"
    )
    p.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    # unset sampling options keep GenerationConfig's defaults (temperature 1, top-k 50, top-p 1, penalty 1)
    p.add_argument("--temperature", "-t", type=float, default=None, help="sampling temperature")
    p.add_argument("--top-k", type=int, default=None, help="keep the k most likely tokens when sampling")
    p.add_argument("--top-p", type=float, default=None, help="nucleus sampling probability mass")
    p.add_argument("--repetition-penalty", type=float, default=None, help="penalise repeated tokens (>1)")
    p.add_argument("--num-beams", type=positive_int, default=1, help="beam search width (1 = no beam search)")
    p.add_argument("--stop", action="append", help="stop when this text appears (repeatable)")
    p.add_argument("--seed", type=int, default=None, help="random seed for sampling")
    p.add_argument("--chat", action="store_true", help="wrap the prompt in the model's chat template")
    p.add_argument(
        "--lora", metavar="PATH", help="a LoRA adapter directory (PEFT's layout, or gptkit export --adapter)"
    )
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
    p.add_argument("model", nargs="?", default=DEFAULT_MODEL, help=MODEL_HELP)
    p.add_argument(
        "--metadata-only",
        action="store_true",
        help="read only the config / GGUF header (default: check every tensor's type, shape, size and offset)",
    )
    p.set_defaults(func=cmd_info)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


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
