"""Applications on one prompt/score mechanism: text generation, translation, summarization,
question answering, sentiment analysis and extraction to a JSON Schema, with transformers' ``pipeline`` conventions."""

from gptkit._lazy import lazy_getattr

_EXPORTS = {
    "Pipeline": "gptkit.tasks.base",
    "TaskError": "gptkit.tasks.base",
    "TextClassificationPipeline": "gptkit.tasks.classification",
    "ExtractionPipeline": "gptkit.tasks.extraction",
    "ALIASES": "gptkit.tasks.factory",
    "TASKS": "gptkit.tasks.factory",
    "pipeline": "gptkit.tasks.factory",
    "clear_model_cache": "gptkit.tasks.factory",
    "TEMPLATES": "gptkit.tasks.prompts",
    "PromptTemplate": "gptkit.tasks.prompts",
    "QuestionAnsweringPipeline": "gptkit.tasks.question_answering",
    "SummarizationPipeline": "gptkit.tasks.summarization",
    "TextGenerationPipeline": "gptkit.tasks.text_generation",
    "TranslationPipeline": "gptkit.tasks.translation",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_getattr(__name__, _EXPORTS)
