"""Subcommands `gptkit data prepare|scrub` and `gptkit tokenizer train` (registered by gptkit.cli)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def cmd_data_prepare(args: argparse.Namespace) -> int:
    """Tokenize text / JSONL files into train.bin, val.bin and meta.json for training."""
    from gptkit.data.prepare import prepare

    meta = prepare(
        args.inputs,
        args.tokenizer,
        args.out,
        val_fraction=args.val_fraction,
        jsonl_field=args.jsonl_field,
        scrub=args.scrub,
    )
    print(
        f"{args.out}: {meta['train_tokens']:,} train + {meta['val_tokens']:,} val tokens "
        f"({meta['dtype']}, vocab {meta['vocab_size']:,}) from {meta['documents']:,} documents"
    )
    if meta["scrub"] is not None:
        from gptkit.data.scrub import format_counts

        print(format_counts(meta["scrub"]))
    return 0


def cmd_data_scrub(args: argparse.Namespace) -> int:
    """Mask or remove e-mails, phone numbers, IPs, card numbers and API keys in text / JSONL files."""
    from gptkit.data.scrub import format_counts, scrub_files

    counts = scrub_files(args.inputs, args.out, args.mode)
    print(format_counts(counts))
    return 0


def cmd_tokenizer_train(args: argparse.Namespace) -> int:
    """Train a byte-level BPE tokenizer with GPT-4's split regex (or --char: a character vocabulary)."""
    from gptkit.data.tokenizer_training import DEFAULT_SPECIAL_TOKENS, train_bpe, train_char

    if args.char:
        tokenizer = train_char(args.files, args.out, special_tokens=args.special_tokens or ())
    elif args.vocab_size is None:
        raise ValueError("--vocab-size is required for BPE (or pass --char)")
    else:
        special = DEFAULT_SPECIAL_TOKENS if args.special_tokens is None else args.special_tokens
        tokenizer = train_bpe(args.files, args.vocab_size, args.out, special_tokens=special)
    print(f"{args.out}: {type(tokenizer.backend).__name__} with {len(tokenizer):,} tokens", file=sys.stdout)
    return 0


def _add_data(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="prepare and scrub training data", description="Training data tools.")
    commands = data.add_subparsers(dest="data_command", required=True, metavar="COMMAND")
    p = commands.add_parser("prepare", help=cmd_data_prepare.__doc__, description=cmd_data_prepare.__doc__)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="text or .jsonl files, or glob patterns")
    p.add_argument(
        "--tokenizer", "-t", required=True, help="'gpt-4', a .gguf model, or a tokenizer directory"
    )
    p.add_argument("--out", "-o", required=True, type=Path, help="output directory")
    p.add_argument(
        "--val-fraction", type=float, default=0.1, help="last fraction of each input for val (0.1)"
    )
    p.add_argument("--jsonl-field", default="text", help="the text field of .jsonl records (text)")
    p.add_argument("--scrub", action="store_true", help="mask personal data and secrets first")
    p.set_defaults(func=cmd_data_prepare)
    p = commands.add_parser("scrub", help=cmd_data_scrub.__doc__, description=cmd_data_scrub.__doc__)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="text or .jsonl files, or glob patterns")
    p.add_argument("--out", "-o", required=True, type=Path, help="output file (one input) or directory")
    p.add_argument("--mode", choices=("mask", "remove"), default="mask", help="placeholders or deletion")
    p.set_defaults(func=cmd_data_scrub)


def _add_tokenizer(sub: argparse._SubParsersAction) -> None:
    group = sub.add_parser("tokenizer", help="train tokenizers", description="Tokenizer tools.")
    commands = group.add_subparsers(dest="tokenizer_command", required=True, metavar="COMMAND")
    p = commands.add_parser(
        "train", help=cmd_tokenizer_train.__doc__, description=cmd_tokenizer_train.__doc__
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="text files or glob patterns")
    p.add_argument("--vocab-size", type=int, help="BPE vocabulary size, special tokens included")
    p.add_argument("--out", "-o", required=True, type=Path, help="output directory")
    p.add_argument(
        "--special-tokens", nargs="*", help="special tokens; the first is EOS (BPE default: <|endoftext|>)"
    )
    p.add_argument("--char", action="store_true", help="character-level vocabulary instead of BPE")
    p.set_defaults(func=cmd_tokenizer_train)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `data` and `tokenizer` command groups to the gptkit parser."""
    _add_data(sub)
    _add_tokenizer(sub)
