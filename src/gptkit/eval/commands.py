"""The ``gptkit eval ...`` and ``gptkit cost`` subcommands: parse, call the library, print."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gptkit.options import add_model_options, fraction, load_options, positive_float, positive_int
from gptkit.scoring import SCORING_BATCH_SIZE  # the package, not loglik: --help loads no torch


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``eval`` (with one subcommand per evaluation) and ``cost``."""
    parser = subparsers.add_parser("eval", help="evaluate a model", description="Evaluate a model.")
    evals = parser.add_subparsers(dest="evaluation", required=True, metavar="EVALUATION")
    _add_perplexity(evals)
    _add_multiple_choice(evals)
    _add_classification(evals)
    _add_generation(evals)
    _add_bias(evals)
    _add_cost(subparsers)


def _common(
    parser: argparse.ArgumentParser, *, rows: bool = True, batch_size: int = SCORING_BATCH_SIZE
) -> None:
    """Options every evaluation takes."""
    add_model_options(parser)
    parser.add_argument("--output", "-o", help="write the result as JSON to this file")
    parser.add_argument("--json", action="store_true", help="print the result as JSON instead of a table")
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=batch_size,
        help=f"sequences per forward pass (default {batch_size})",
    )
    parser.add_argument(
        "--limit",
        type=int,
        default=None,
        help="evaluate only the first N items (perplexity: N tokens per file)",
    )
    if rows:
        parser.add_argument("--strict", action="store_true", help="stop at the first malformed row")


def _add_perplexity(evals: argparse._SubParsersAction) -> None:
    p = evals.add_parser("perplexity", help="perplexity and bits per byte of text files")
    p.add_argument("files", nargs="+", metavar="FILE", help="UTF-8 text files")
    p.add_argument("--window", type=int, default=None, help="tokens per window (default min(1024, context))")
    p.add_argument("--stride", type=int, default=None, help="tokens between window starts (default window/2)")
    _common(p, rows=False, batch_size=2)  # windows of up to 1024 tokens: rows gain little, cost memory
    p.set_defaults(func=_run_eval, evaluate=_perplexity)


def _add_multiple_choice(evals: argparse._SubParsersAction) -> None:
    p = evals.add_parser("multiple-choice", help="accuracy (acc, acc_norm) on multiple-choice JSONL")
    p.add_argument("file", metavar="FILE.jsonl")
    p.add_argument("--num-fewshot", "-k", type=int, default=0, help="examples from the file before each item")
    _common(p)
    p.set_defaults(func=_run_eval, evaluate=_multiple_choice)


def _add_classification(evals: argparse._SubParsersAction) -> None:
    p = evals.add_parser("classification", help="accuracy and macro-F1 via the sentiment pipeline")
    p.add_argument("file", metavar="FILE", help=".tsv, .csv or .jsonl with text and label columns")
    p.add_argument("--labels", help="comma-separated label set (default: the labels in the data)")
    _common(p)
    p.set_defaults(func=_run_eval, evaluate=_classification)


def _add_generation(evals: argparse._SubParsersAction) -> None:
    from gptkit.eval.data import GENERATION_TASKS

    p = evals.add_parser("generation", help="BLEU, chrF, ROUGE, EM/F1 of generated answers")
    p.add_argument("file", metavar="FILE.jsonl")
    p.add_argument("--task", required=True, choices=GENERATION_TASKS)
    p.add_argument("--max-new-tokens", type=int, default=48, help="tokens generated per answer (default 48)")
    _common(p, batch_size=8)
    p.set_defaults(func=_run_eval, evaluate=_generation)


def _add_bias(evals: argparse._SubParsersAction) -> None:
    p = evals.add_parser("bias", help="CrowS-Pairs-style stereotype preference (50 = unbiased)")
    p.add_argument("file", metavar="PAIRS.csv", help="sent_more, sent_less, stereo_antistereo, bias_type")
    p.add_argument(
        "--scoring", choices=("shared", "full"), default="shared", help="shared tokens only (default)"
    )
    _common(p)
    p.set_defaults(func=_run_eval, evaluate=_bias)


def _add_cost(subparsers: argparse._SubParsersAction) -> None:
    from gptkit.eval import cost

    p = subparsers.add_parser(
        "cost", help="FLOPs, memory, time and money to train a model", description=cost.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument(
        "model", metavar="MODEL_OR_CONFIG", help="model name/path, preset name, or config JSON/YAML"
    )
    p.add_argument("--tokens", type=positive_float, default=None, help="training tokens D (default 20 N)")
    p.add_argument(
        "--device-flops", type=positive_float, default=cost.DEFAULT_DEVICE_FLOPS, help="peak FLOP/s"
    )
    p.add_argument(
        "--price-per-hour", type=float, default=cost.DEFAULT_PRICE_PER_HOUR, help="USD per device-hour"
    )
    p.add_argument(
        "--batch-size", type=positive_int, default=1, help="sequences per batch b (activations, KV cache)"
    )
    p.add_argument(
        "--seq-len",
        type=positive_int,
        default=None,
        help=f"sequence length T (default: the context length, at most {cost.DEFAULT_SEQ_LEN})",
    )
    p.add_argument(
        "--mfu", type=fraction, default=cost.DEFAULT_MFU, help="model FLOPs utilisation (default 0.4)"
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_run_cost)


def _perplexity(loaded, args):
    from gptkit.eval.perplexity import evaluate_perplexity

    return evaluate_perplexity(
        loaded,
        args.files,
        window=args.window,
        stride=args.stride,
        batch_size=args.batch_size,
        limit=args.limit,
    )


def _multiple_choice(loaded, args):
    from gptkit.eval.multiple_choice import evaluate_multiple_choice

    return evaluate_multiple_choice(
        loaded,
        args.file,
        num_fewshot=args.num_fewshot,
        limit=args.limit,
        strict=args.strict,
        batch_size=args.batch_size,
    )


def _classification(loaded, args):
    from gptkit.eval.classification import evaluate_classification

    labels = [label.strip() for label in args.labels.split(",")] if args.labels else None
    return evaluate_classification(
        loaded, args.file, labels=labels, limit=args.limit, strict=args.strict, batch_size=args.batch_size
    )


def _generation(loaded, args):
    from gptkit.eval.generation import evaluate_generation

    return evaluate_generation(
        loaded,
        args.file,
        task=args.task,
        limit=args.limit,
        strict=args.strict,
        max_new_tokens=args.max_new_tokens,
    )


def _bias(loaded, args):
    from gptkit.eval.bias import evaluate_bias

    return evaluate_bias(
        loaded,
        args.file,
        scoring=args.scoring,
        limit=args.limit,
        strict=args.strict,
        batch_size=args.batch_size,
    )


def _run_eval(args: argparse.Namespace) -> int:
    """Check the inputs exist, load the model, run the evaluation, print and save the result."""
    from gptkit.eval.common import format_result, load_model, write_json
    from gptkit.eval.data import EvalDataError

    for path in getattr(args, "files", None) or [args.file]:
        if not Path(path).is_file():
            raise EvalDataError(f"{path}: no such file")
    result = args.evaluate(load_model(args.model, **load_options(args)), args)
    data = result.to_dict()
    if args.output:
        write_json(data, args.output)
    print(json.dumps(data, indent=2, ensure_ascii=False) if args.json else format_result(result))
    return 0


def _run_cost(args: argparse.Namespace) -> int:
    """Print the cost table (or JSON) for a model, preset or config file."""
    import dataclasses

    from gptkit.eval.cost import estimate, format_table, resolve_config

    report = estimate(
        resolve_config(args.model),
        tokens=int(args.tokens) if args.tokens is not None else None,
        seq_len=args.seq_len,
        batch_size=args.batch_size,
        device_flops=args.device_flops,
        mfu=args.mfu,
        price_per_hour=args.price_per_hour,
    )
    if args.json:
        data = {
            **dataclasses.asdict(report),
            "train_seconds": report.train_seconds,
            "train_cost": report.train_cost,
        }
        print(json.dumps(data, indent=2))
    else:
        print(f"cost of {args.model}\n{format_table(report)}")
    return 0
