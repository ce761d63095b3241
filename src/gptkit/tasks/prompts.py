"""Every task prompt in one place: a chat style (rendered by the model's chat template) and a base style
(a plain few-shot prompt), both ``str.format`` templates over the task's fields.

Override one with ``pipeline(..., prompt="...")`` (the user message / the base query) or
``templates={"system": ..., "user": ..., "instruction": ..., "query": ..., "answer": ..., "shots": ...}``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PromptTemplate:
    """How one task asks for an answer, for chat models and for base models."""

    user: str  # chat: the user message
    query: str  # base: one input, up to where the answer starts
    system: str | None = None  # chat: system message (None keeps the chat template's default)
    instruction: str = ""  # base: the text before the examples
    answer: str = " {answer}"  # base: how an answer follows its query (in examples and when scored)
    separator: str = "\n\n"  # base: between examples
    stop: tuple[str, ...] = ("\n",)  # base: generation stops at these strings
    shots: tuple[dict[str, str], ...] = ()  # base: default few-shot examples (fields plus "answer")


TEXT_GENERATION = PromptTemplate(user="{text}", query="{text}", answer="{answer}", stop=())

SENTIMENT = PromptTemplate(
    user="Is the sentiment of this text {choices}? Answer with one word.\n\nText: {text}",
    instruction="Classify the sentiment of each text as {choices}.",
    query="Text: {text}\nSentiment:",
    shots=(
        {"text": "What a wonderful day, everything went perfectly!", "answer": "positive"},
        {"text": "This was a waste of money, it broke after one day.", "answer": "negative"},
    ),
)

TRANSLATION = PromptTemplate(
    user="Translate the following {src_lang} text to {tgt_lang}. Reply with the translation only.\n\n{text}",
    instruction="Translate {src_lang} to {tgt_lang}.",
    query="{src_lang}: {text}\n{tgt_lang}:",
)

SUMMARIZATION = PromptTemplate(
    user="Summarize the following text {length}.\n\n{text}",
    instruction="Summarize each text {length}.",
    query="Text: {text}\nSummary:",
    shots=(
        {
            "text": "The city council met on Monday and voted to build a new public library downtown. "
            "Construction starts next spring and should take two years.",
            "answer": "The council approved a new downtown library, to be built over two years from next spring.",
        },
    ),
)

QUESTION_ANSWERING = PromptTemplate(
    user="{context}\n\nAnswer the question with a short phrase copied from the text above.\n"
    "Question: {question}",
    instruction="Answer each question with a short phrase copied from its context.",
    query="Context: {context}\nQuestion: {question}\nAnswer:",
    shots=(
        {
            "context": "Mount Everest is the highest mountain on Earth. It lies in the Himalayas.",
            "question": "In which mountain range is Mount Everest?",
            "answer": "the Himalayas",
        },
    ),
)

CLOSED_BOOK_QA = PromptTemplate(
    user="Answer the question briefly.\n\nQuestion: {question}",
    instruction="Answer each question briefly.",
    query="Question: {question}\nAnswer:",
    shots=({"question": "What is the largest planet of the solar system?", "answer": "Jupiter"},),
)

EXTRACTION = PromptTemplate(
    user="Extract the information from the text below as JSON that follows this JSON Schema:\n{schema}\n\n"
    "Text: {text}",
    instruction="Extract the information from each text as JSON that follows this JSON Schema: {schema}",
    query="Text: {text}\nJSON:",
    stop=(),
)

TEMPLATES: dict[str, PromptTemplate] = {
    "text-generation": TEXT_GENERATION,
    "sentiment-analysis": SENTIMENT,
    "translation": TRANSLATION,
    "summarization": SUMMARIZATION,
    "question-answering": QUESTION_ANSWERING,
    "closed-book-qa": CLOSED_BOOK_QA,
    "extraction": EXTRACTION,
}

# Few-shot translation examples for base models: the same sentence in several languages.
PARALLEL_SENTENCES: tuple[dict[str, str], ...] = (
    {
        "English": "Where is the train station?",
        "French": "Où est la gare ?",
        "German": "Wo ist der Bahnhof?",
        "Spanish": "¿Dónde está la estación de tren?",
        "Italian": "Dov'è la stazione ferroviaria?",
    },
    {
        "English": "I would like a cup of coffee, please.",
        "French": "Je voudrais une tasse de café, s'il vous plaît.",
        "German": "Ich hätte gern eine Tasse Kaffee, bitte.",
        "Spanish": "Quisiera una taza de café, por favor.",
        "Italian": "Vorrei una tazza di caffè, per favore.",
    },
)

# Label -> the word the model is asked to say (its verbalizer), for the standard label names.
VERBALIZERS = {"POSITIVE": "positive", "NEGATIVE": "negative", "NEUTRAL": "neutral"}
CONTENT_FREE_INPUT = "N/A"  # contextual calibration's default content-free input (Zhao et al., 2021)
