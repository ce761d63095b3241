"""The bridge to the task pipelines (``gptkit.pipeline``): build one over a loaded model, read its answers."""

from __future__ import annotations

from typing import Any

from gptkit.eval.common import LoadedModel
from gptkit.tasks.factory import pipeline

ANSWER_KEYS = ("translation_text", "summary_text", "generated_text", "answer", "label", "text")


def make_pipeline(task: str, loaded: LoadedModel, **options: Any) -> Any:
    """A task pipeline over the already-loaded model."""
    return pipeline(task, model=loaded.model, tokenizer=loaded.tokenizer, **options)


def output_text(result: Any) -> str:
    """The answer text of one pipeline result, whatever its shape (a dict, a one-item list, a string)."""
    if isinstance(result, list) and result:
        result = result[0]
    if isinstance(result, dict):
        for key in ANSWER_KEYS:
            if isinstance(result.get(key), str):
                return result[key]
    if isinstance(result, str):
        return result
    raise ValueError(f"cannot read an answer from the pipeline result {result!r}")
