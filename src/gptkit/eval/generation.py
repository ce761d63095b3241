"""Generation tasks (translation, summarization, question answering, free text) scored against references.

Answers come from the task pipeline (``gptkit.pipeline``) over the loaded model.
Every task reports BLEU, chrF, ROUGE-1/2/L and SQuAD exact match / F1 (:mod:`gptkit.eval.metrics`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from gptkit.eval.common import EvalResult, LoadedModel
from gptkit.eval.data import GENERATION_TASKS as TASKS
from gptkit.eval.data import read_dataset, require_text
from gptkit.eval.metrics import generation_metrics
from gptkit.eval.pipelines import make_pipeline, output_text


@dataclass(frozen=True)
class GenerationItem:
    """An input (or a question with its context) and the acceptable reference answers."""

    fields: dict[str, str]
    references: tuple[str, ...]


def parse_item(row: dict[str, Any]) -> GenerationItem:
    """A row with ``input`` (or ``question`` + ``context``) and ``reference`` or ``references``."""
    if "question" in row:
        fields = {"question": require_text(row, "question"), "context": require_text(row, "context")}
    else:
        fields = {"input": require_text(row, "input", "text", "source")}
    fields["target_lang"] = str(row.get("target_lang") or "French")
    refs = row.get("references", row.get("reference", row.get("answers")))
    refs = [refs] if isinstance(refs, str) else refs
    if not isinstance(refs, list) or not refs or not all(isinstance(r, str) and r.strip() for r in refs):
        raise ValueError("missing field 'reference' (a string) or 'references' (a list of strings)")
    return GenerationItem(fields, tuple(refs))


def evaluate_generation(
    loaded: LoadedModel,
    path: str | Path,
    *,
    task: str,
    limit: int | None = None,
    strict: bool = False,
    max_new_tokens: int = 48,
) -> EvalResult:
    """Generate an answer for every item and score the answers against the references."""
    if task not in TASKS:
        raise ValueError(f"unknown generation task {task!r}; choose one of {', '.join(TASKS)}")
    dataset = read_dataset(path, parse_item, strict=strict, limit=limit)
    answers = generate_answers(loaded, task, dataset.items, max_new_tokens)
    return EvalResult(
        task=f"generation/{task}",
        model=loaded.name,
        metrics=generation_metrics(answers, [item.references for item in dataset.items]),
        n_items=len(dataset.items),
        skipped=dataset.skipped,
        settings={
            "file": str(path),
            "answers_from": "pipeline",
            "max_new_tokens": max_new_tokens,
            "limit": limit,
        },
    )


def generate_answers(
    loaded: LoadedModel, task: str, items: list[GenerationItem], max_new_tokens: int
) -> list[str]:
    """One answer per item, from the task's pipeline."""
    pipe = make_pipeline(task, loaded)
    return [_pipeline_answer(pipe, task, item, max_new_tokens) for item in _progress(items)]


def _progress(items: list[GenerationItem]):
    """A tqdm bar over the items (shown only on a terminal)."""
    return tqdm(items, desc="generating", unit="item", disable=None, leave=False)


def _pipeline_answer(pipe: Any, task: str, item: GenerationItem, max_new_tokens: int) -> str:
    """The pipeline's answer: QA takes a question/context dict, the others a text plus options."""
    fields = item.fields
    if task == "question-answering":
        return output_text(pipe({"question": fields["question"], "context": fields["context"]})).strip()
    options: dict[str, Any] = {"max_new_tokens": max_new_tokens}
    if task == "translation":
        options["tgt_lang"] = fields["target_lang"]
    if task == "text-generation":
        options["return_full_text"] = False
    return output_text(pipe(fields["input"], **options)).strip()
