"""The bridge to the task pipelines (``gptkit.pipeline``), imported lazily: they may not be installed."""

from __future__ import annotations

from typing import Any

from gptkit.eval.common import LoadedModel

ANSWER_KEYS = ("translation_text", "summary_text", "generated_text", "answer", "label", "text")


def find_pipeline_factory() -> Any | None:
    """``gptkit.pipeline`` (or ``gptkit.tasks.pipeline``), or None while the tasks package lacks it."""
    import gptkit

    factory = getattr(gptkit, "pipeline", None)
    if factory is None:
        try:
            import gptkit.tasks as tasks
        except ImportError:
            return None
        factory = getattr(tasks, "pipeline", None)
    return factory


def make_pipeline(task: str, loaded: LoadedModel, **options: Any) -> Any | None:
    """A task pipeline over the already-loaded model, or None when pipelines are not available."""
    factory = find_pipeline_factory()
    if factory is None:
        return None
    return factory(task, model=loaded.model, tokenizer=loaded.tokenizer, **options)


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
