"""Text classification accuracy and macro-F1 through the sentiment-analysis pipeline.

Rows have a text column (``text``/``sentence``/``input``) and a label column (``label``); the label set
is the one given (``--labels``) or the distinct labels of the data, in order of appearance.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gptkit.checks import is_number
from gptkit.errors import GPTKitError
from gptkit.eval.common import EvalResult, LoadedModel
from gptkit.eval.data import read_dataset, require_text
from gptkit.eval.metrics import accuracy, macro_f1
from gptkit.eval.pipelines import make_pipeline
from gptkit.scoring.loglik import SCORING_BATCH_SIZE


@dataclass(frozen=True)
class LabelledText:
    text: str
    label: str


def parse_item(row: dict[str, Any]) -> LabelledText:
    """A row with a text and a label."""
    label = row.get("label")
    if is_number(label):
        label = str(label)
    if not isinstance(label, str) or not label.strip():
        raise ValueError("missing or empty field 'label'")
    return LabelledText(require_text(row, "text", "sentence", "input"), label.strip())


def match_label(predicted: str, labels: list[str]) -> str:
    """The label the pipeline answered, matched case-insensitively to the data's spelling."""
    by_folded = {label.casefold(): label for label in labels}
    return by_folded.get(str(predicted).strip().casefold(), str(predicted))


def evaluate_classification(
    loaded: LoadedModel,
    path: str | Path,
    *,
    labels: list[str] | None = None,
    limit: int | None = None,
    strict: bool = False,
    batch_size: int = SCORING_BATCH_SIZE,
) -> EvalResult:
    """Accuracy and macro-F1 of the sentiment pipeline's labels against the file's labels."""
    dataset = read_dataset(path, parse_item, strict=strict, limit=limit)
    items = dataset.items
    label_set = labels or list(dict.fromkeys(item.label for item in items))
    unknown = sorted({item.label for item in items} - set(label_set))
    if unknown:
        raise GPTKitError(f"{path}: labels {unknown} are not among --labels {label_set}")
    classifier = make_pipeline("sentiment-analysis", loaded, labels=label_set)
    outputs = classifier([item.text for item in items], batch_size=batch_size)
    predictions = [match_label(out["label"], label_set) for out in outputs]
    golds = [item.label for item in items]
    return EvalResult(
        task="classification",
        model=loaded.name,
        metrics={
            "accuracy": accuracy(predictions, golds),
            "macro_f1": macro_f1(predictions, golds, label_set),
        },
        n_items=len(items),
        skipped=dataset.skipped,
        settings={"file": str(path), "labels": label_set, "limit": limit},
    )
