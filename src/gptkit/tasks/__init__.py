"""Applications on one prompt/score mechanism: text generation, translation, summarization,
question answering and sentiment analysis, with transformers' ``pipeline`` conventions."""

from gptkit.tasks.base import Pipeline, TaskError
from gptkit.tasks.classification import TextClassificationPipeline
from gptkit.tasks.factory import ALIASES, TASKS, pipeline
from gptkit.tasks.prompts import TEMPLATES, PromptTemplate
from gptkit.tasks.question_answering import QuestionAnsweringPipeline
from gptkit.tasks.summarization import SummarizationPipeline
from gptkit.tasks.text_generation import TextGenerationPipeline
from gptkit.tasks.translation import TranslationPipeline

__all__ = [
    "ALIASES",
    "TASKS",
    "TEMPLATES",
    "Pipeline",
    "PromptTemplate",
    "QuestionAnsweringPipeline",
    "SummarizationPipeline",
    "TaskError",
    "TextClassificationPipeline",
    "TextGenerationPipeline",
    "TranslationPipeline",
    "pipeline",
]
