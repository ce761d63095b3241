"""Multiple-choice evaluation by log-likelihood, as lm-evaluation-harness does it.

Each choice is scored as a continuation of the (few-shot) prompt: ``log p(" " + choice | prompt)``.
``acc`` picks the highest log-likelihood; ``acc_norm`` the highest log-likelihood per UTF-8 byte of
the choice text (without the separating space). Few-shot examples are other items of the same file,
drawn with a fixed seed per item, shown as ``query + " " + gold choice`` separated by blank lines.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gptkit.checks import is_int
from gptkit.eval.common import EvalResult, LoadedModel, score_with_progress
from gptkit.eval.data import read_dataset, require_text
from gptkit.scoring.loglik import SCORING_BATCH_SIZE

FEWSHOT_SEED = 1234
FEWSHOT_SEPARATOR = "\n\n"


@dataclass(frozen=True)
class ChoiceItem:
    """A question, its candidate answers and the index of the right one."""

    query: str
    choices: tuple[str, ...]
    gold: int


def parse_item(row: dict[str, Any]) -> ChoiceItem:
    """Accept {query|context, choices, gold}, HellaSwag's {ctx, endings, label}, ARC's {question, choices, answerKey}."""
    query = require_text(row, "query", "context", "ctx", "question")
    choices, gold = _choices_and_gold(row)
    if len(choices) < 2 or not all(isinstance(c, str) and c.strip() for c in choices):
        raise ValueError("'choices' must be a list of at least two non-empty strings")
    if not 0 <= gold < len(choices):
        raise ValueError(f"gold index {gold} is out of range for {len(choices)} choices")
    return ChoiceItem(query, tuple(choices), gold)


def _choices_and_gold(row: dict[str, Any]) -> tuple[list[str], int]:
    """The choice texts and gold index from any of the accepted layouts."""
    choices = row.get("choices", row.get("endings"))
    if isinstance(choices, dict):  # ARC: {"text": [...], "label": ["A", "B", ...]}, answerKey "B"
        labels = [str(label) for label in choices.get("label", [])]
        key = str(row.get("answerKey", ""))
        if key not in labels:
            raise ValueError(f"answerKey {key!r} is not one of the choice labels {labels}")
        return list(choices.get("text", [])), labels.index(key)
    if not isinstance(choices, list):
        raise ValueError("missing field 'choices' (a list of strings)")
    gold = row.get("gold", row.get("label"))
    if isinstance(gold, str) and gold.strip().isdigit():
        gold = int(gold)
    if not is_int(gold):
        raise ValueError("missing or non-integer field 'gold'")
    return choices, gold


def continuation_text(choice: str) -> str:
    """The scored text of a choice: a space in front unless it already starts with whitespace."""
    return choice if choice[:1].isspace() else " " + choice


def fewshot_prompt(items: list[ChoiceItem], index: int, k: int, seed: int = FEWSHOT_SEED) -> str:
    """The prompt for ``items[index]``: ``k`` other items with their gold answers, then its query."""
    others = [i for i in range(len(items)) if i != index]
    shots = random.Random(seed * 100_003 + index).sample(others, min(k, len(others))) if k else []
    examples = [items[i].query + continuation_text(items[i].choices[items[i].gold]) for i in shots]
    return FEWSHOT_SEPARATOR.join([*examples, items[index].query])


def choice_predictions(logprobs: list[float], choices: tuple[str, ...]) -> tuple[int, int]:
    """(argmax of log-likelihood, argmax of log-likelihood per UTF-8 byte of the choice)."""
    per_byte = [lp / len(c.encode("utf-8")) for lp, c in zip(logprobs, choices, strict=True)]
    return _argmax(logprobs), _argmax(per_byte)


def _argmax(values: list[float]) -> int:
    """Index of the largest value (the first on ties)."""
    return max(range(len(values)), key=values.__getitem__)


def evaluate_multiple_choice(
    loaded: LoadedModel,
    path: str | Path,
    *,
    num_fewshot: int = 0,
    limit: int | None = None,
    strict: bool = False,
    batch_size: int = SCORING_BATCH_SIZE,
) -> EvalResult:
    """acc and acc_norm of the model on a multiple-choice JSONL file."""
    dataset = read_dataset(path, parse_item, strict=strict)
    items, scored = dataset.items, dataset.items[:limit] if limit else dataset.items
    pairs = []
    for index, item in enumerate(scored):
        context = loaded.start_token + loaded.encode(fewshot_prompt(items, index, num_fewshot))
        pairs += [(context, loaded.encode(continuation_text(c))) for c in item.choices]
    logprobs = iter(
        s.logprob for s in score_with_progress(loaded.model, pairs, batch_size=batch_size, desc="choices")
    )
    hits = [0, 0]
    for item in scored:
        predicted = choice_predictions([next(logprobs) for _ in item.choices], item.choices)
        hits = [h + (p == item.gold) for h, p in zip(hits, predicted, strict=True)]
    return EvalResult(
        task="multiple-choice",
        model=loaded.name,
        metrics={"acc": hits[0] / len(scored), "acc_norm": hits[1] / len(scored)},
        n_items=len(scored),
        skipped=dataset.skipped,
        settings={
            "file": str(path),
            "num_fewshot": num_fewshot,
            "fewshot_seed": FEWSHOT_SEED,
            "limit": limit,
        },
    )
