"""``pipeline(task, model, tokenizer, **options)``: the task name -> pipeline class, model loading."""

from __future__ import annotations

from typing import Any

from gptkit.registry import DEFAULT_MODEL
from gptkit.tasks.base import Pipeline, TaskError
from gptkit.tasks.classification import TextClassificationPipeline
from gptkit.tasks.question_answering import QuestionAnsweringPipeline
from gptkit.tasks.summarization import SummarizationPipeline
from gptkit.tasks.text_generation import TextGenerationPipeline
from gptkit.tasks.translation import TASK_ALIAS, TranslationPipeline, languages_of_task

TASKS: dict[str, type[Pipeline]] = {
    "text-generation": TextGenerationPipeline,
    "translation": TranslationPipeline,
    "summarization": SummarizationPipeline,
    "question-answering": QuestionAnsweringPipeline,
    "sentiment-analysis": TextClassificationPipeline,
}
ALIASES = {"text-classification": "sentiment-analysis"}


def pipeline(task: str, model: Any = DEFAULT_MODEL, tokenizer: Any = None, **options: Any) -> Pipeline:
    """A callable pipeline for ``task`` on a model name/path or a loaded model (then pass its tokenizer).

    ``options`` become the pipeline's defaults; a call's keyword arguments override them.
    """
    cls, task_options = resolve_task(task)
    model, tokenizer = load(model, tokenizer)
    return cls(model, tokenizer, **{**task_options, **options})


def resolve_task(task: str) -> tuple[type[Pipeline], dict[str, str]]:
    """The pipeline class of a task name or alias, and options the name implies (translation_xx_to_yy)."""
    if isinstance(task, str) and TASK_ALIAS.fullmatch(task):
        return TranslationPipeline, languages_of_task(task)
    name = ALIASES.get(task, task) if isinstance(task, str) else task
    if name not in TASKS:
        known = [*TASKS, *ALIASES, "translation_xx_to_yy"]
        raise TaskError(f"unknown task {task!r}; available tasks: {', '.join(known)}")
    return TASKS[name], {}


def load(model: Any, tokenizer: Any) -> tuple[Any, Any]:
    """(model, tokenizer): names/paths are loaded; a loaded model needs its tokenizer."""
    from gptkit.model.decoder import GPT4LMHeadModel
    from gptkit.tokenizer import GPT4Tokenizer

    if isinstance(model, str) or hasattr(model, "__fspath__"):
        tokenizer = tokenizer if tokenizer is not None else model
        model = GPT4LMHeadModel.from_pretrained(model)
    elif tokenizer is None:
        raise TaskError("a loaded model needs its tokenizer: pipeline(task, model, tokenizer=...)")
    if isinstance(tokenizer, str) or hasattr(tokenizer, "__fspath__"):
        tokenizer = GPT4Tokenizer.from_pretrained(tokenizer)
    return model, tokenizer
