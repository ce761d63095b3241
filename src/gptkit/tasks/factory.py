"""``pipeline(task, model, tokenizer, **options)``: the task name -> pipeline class, model loading."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

from gptkit.registry import DEFAULT_MODEL
from gptkit.tasks.base import Pipeline, TaskError
from gptkit.tasks.classification import TextClassificationPipeline
from gptkit.tasks.extraction import ExtractionPipeline
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
    "extraction": ExtractionPipeline,
}
ALIASES = {"text-classification": "sentiment-analysis"}
MODEL_CACHE_SIZE = 2  # loaded (model, tokenizer) pairs kept for later pipeline() calls, least recent dropped
_loaded: OrderedDict[tuple, tuple[Any, Any]] = OrderedDict()


def pipeline(
    task: str,
    model: Any = DEFAULT_MODEL,
    tokenizer: Any = None,
    *,
    dtype: Any = None,
    quantize: str | None = None,
    **options: Any,
) -> Pipeline:
    """A callable pipeline for ``task`` on a model name/path or a loaded model (then pass its tokenizer).

    A model given by name is loaded once per (file, dtype, quantize) and reused by later calls (the last
    MODEL_CACHE_SIZE kept; :func:`clear_model_cache` drops them). ``options`` become the pipeline's
    defaults; a call's keyword arguments override them.
    """
    cls, task_options = resolve_task(task)
    model, tokenizer = load(model, tokenizer, dtype=dtype, quantize=quantize)
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


def load(model: Any, tokenizer: Any, *, dtype: Any = None, quantize: str | None = None) -> tuple[Any, Any]:
    """(model, tokenizer): names/paths are loaded (or taken from the cache); a loaded model needs its
    tokenizer."""
    from gptkit.tokenizer import GPT4Tokenizer

    if _is_name(model):
        if tokenizer is None or tokenizer == model:
            return cached_model_and_tokenizer(model, dtype, quantize)
        model = cached_model_and_tokenizer(model, dtype, quantize)[0]
    elif tokenizer is None:
        raise TaskError("a loaded model needs its tokenizer: pipeline(task, model, tokenizer=...)")
    elif dtype is not None or quantize is not None:
        raise TaskError("dtype= and quantize= apply to a model given by name, not to a loaded model")
    if _is_name(tokenizer):
        tokenizer = GPT4Tokenizer.from_pretrained(tokenizer)
    return model, tokenizer


def _is_name(value: Any) -> bool:
    return isinstance(value, str) or hasattr(value, "__fspath__")


def cached_model_and_tokenizer(name: Any, dtype: Any, quantize: str | None) -> tuple[Any, Any]:
    """The model and tokenizer that ``name`` names, loaded once per (file, its mtime, dtype, quantize)."""
    from gptkit.loader import load
    from gptkit.registry import resolve
    from gptkit.weights.loading import resolve_dtype

    path = Path(resolve(name).path).resolve()
    key = (str(path), path.stat().st_mtime_ns, resolve_dtype(dtype), quantize)
    if key in _loaded:
        _loaded.move_to_end(key)
        return _loaded[key]
    loaded = load(name, dtype=dtype, quantize=quantize)
    _loaded[key] = loaded
    while len(_loaded) > MODEL_CACHE_SIZE:
        _loaded.popitem(last=False)
    return loaded


def clear_model_cache() -> None:
    """Forget the models pipeline() loaded by name (their memory is freed once no pipeline uses them)."""
    _loaded.clear()
