"""``gptkit task TASK [TEXT ...]``: run an application pipeline and print a table or JSON lines."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from gptkit.options import Parser, add_model_options, load_options, positive_int

FILE_SUFFIXES = (".txt", ".md", ".json", ".jsonl", ".csv", ".tsv")
FILE_NAME = re.compile(r"\S+(" + "|".join(re.escape(s) for s in FILE_SUFFIXES) + ")", re.IGNORECASE)


def cmd_task(args: argparse.Namespace) -> int:
    """Run an application (sentiment-analysis, question-answering, translation, summarization,
    text-generation) on texts, files or stdin."""
    from gptkit.tasks import pipeline
    from gptkit.tasks.base import TaskError

    options = task_options(args)
    texts = [read_text(t) for t in args.texts] or ([] if args.question else [sys.stdin.read()])
    runner = pipeline(args.task, model=args.model, **load_options(args), **options)
    if args.question:
        if texts:
            raise TaskError("question-answering takes --question and --context, not positional texts")
        results = [runner(question=args.question, context=args.context)]
    else:
        results = runner(texts)
    inputs = [args.question] if args.question else texts
    rows = [flatten(r) for r in results]
    print_rows(rows, inputs, as_json=args.json)
    return 0


def read_text(value: str) -> str:
    """The contents of the file an argument names, or the argument itself as text. An argument that looks
    like a file name (no spaces, a FILE_SUFFIXES ending) but names no file is an error, not text."""
    from gptkit.tasks.base import TaskError

    path = Path(value)
    if len(value) < 4096 and "\n" not in value and path.is_file():
        return path.read_text()
    if FILE_NAME.fullmatch(value):
        raise TaskError(
            f"no such file: {value} (an argument ending in {', '.join(FILE_SUFFIXES)} is read as a file; "
            "pipe such a text on stdin instead)"
        )
    return value


def task_options(args: argparse.Namespace) -> dict[str, Any]:
    """Pipeline options from the flags that were given."""
    names = {
        "src": "src_lang", "tgt": "tgt_lang", "max_new_tokens": "max_new_tokens", "max_words": "max_words",
        "labels": "labels", "prompt": "prompt", "seed": "seed", "temperature": "temperature",
    }  # fmt: skip
    options = {key: getattr(args, flag) for flag, key in names.items() if getattr(args, flag) is not None}
    if args.sample:
        options["do_sample"] = True
    if args.calibrate:
        options["calibrate"] = True
    if args.all_labels:
        options["top_k"] = None
    return options


def flatten(result: Any) -> list[dict[str, Any]]:
    """One result as rows: a dict is one row, a list (all labels) several."""
    return list(result) if isinstance(result, list) else [result]


def print_rows(rows: list[list[dict[str, Any]]], inputs: list[str], as_json: bool) -> None:
    """JSON lines (one per input), or a table with one line per result and its input."""
    if as_json:
        for row in rows:
            print(json.dumps(row[0] if len(row) == 1 else row, ensure_ascii=False))
        return
    flat = [{**r, "input": text} for row, text in zip(rows, inputs, strict=True) for r in row]
    keys = list(flat[0])
    cells = [[format_cell(r.get(k)) for k in keys] for r in flat]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    print("  ".join(k.ljust(w) for k, w in zip(keys, widths, strict=True)).rstrip())
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def format_cell(value: Any) -> str:
    """Scores with 4 decimals; text on one line."""
    if isinstance(value, float):
        return f"{value:.4f}"
    return " ".join(str(value).split())


class IntermixedParser(Parser):
    """Accepts options before, between and after the positional texts (``--json "text"`` and ``"text" --json``)."""

    _intermixing = False

    def parse_known_args(self, args=None, namespace=None):
        if self._intermixing:
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``task`` subcommand."""
    p = subparsers.add_parser("task", help=cmd_task.__doc__.splitlines()[0], description=cmd_task.__doc__)
    p.__class__ = IntermixedParser  # argparse builds subparsers with the parent's class
    p.add_argument(
        "task", help="sentiment-analysis, question-answering, translation, summarization, text-generation"
    )
    p.add_argument("texts", nargs="*", help="input texts or files (stdin when none)")
    add_model_options(p)
    p.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    p.add_argument("--question", "-q", help="question-answering: the question")
    p.add_argument("--context", "-c", help="question-answering: the context (omit for closed-book)")
    p.add_argument("--src", help="translation: source language (default English)")
    p.add_argument("--tgt", help="translation: target language, e.g. French")
    p.add_argument("--max-words", type=positive_int, help="summarization: at most this many words")
    p.add_argument("--labels", nargs="+", help="classification: label names (default POSITIVE NEGATIVE)")
    p.add_argument("--all-labels", action="store_true", help="classification: print every label's score")
    p.add_argument("--calibrate", action="store_true", help="classification: contextual calibration")
    p.add_argument("--prompt", help="override the prompt template (str.format fields such as {text})")
    p.add_argument("--max-new-tokens", "-n", type=positive_int, help="generation tasks: new-token limit")
    p.add_argument("--sample", action="store_true", help="generation tasks: sample instead of greedy")
    p.add_argument("--temperature", "-t", type=float, help="sampling temperature")
    p.add_argument("--seed", type=int, help="random seed for sampling")
    p.set_defaults(func=cmd_task)
