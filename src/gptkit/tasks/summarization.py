"""Summarization with length control: ``max_words`` (asked for, then enforced) or token bounds."""

from __future__ import annotations

import re
from typing import Any

from gptkit.checks import is_int
from gptkit.tasks.base import Pipeline, TaskError, example_dicts

DEFAULT_NEW_TOKENS = 96
DEFAULT_LENGTH = "in one or two sentences"
SENTENCE_ENDS = (".", "!", "?", '."', '!"', '?"', ".)", "…")
SENTENCE = re.compile(r".+?(?:[.!?…]+[\"')\]]*(?=\s|$)|$)", re.DOTALL)  # a sentence with its end, or the rest


class SummarizationPipeline(Pipeline):
    """``{"summary_text": ...}``; ``max_words=N`` or ``min_length``/``max_length`` (new tokens)."""

    task = "summarization"
    template_key = "summarization"
    options = frozenset({"max_words", "min_length", "max_length"})
    passes_generation_options = True

    def _run(self, items: list[str], opts: dict[str, Any]) -> list[dict[str, str]]:
        max_words = positive_or_none(opts.get("max_words"), "max_words")
        chat, template = self.uses_chat(opts), self.template(opts)
        prompts = [self._prompt(text, opts) for text in items]
        texts = self.generate(
            prompts, chat, () if chat else template.stop, **self._generation(opts, max_words)
        )
        return [{"summary_text": limit_words(t.strip(), max_words)} for t in texts]

    def _prompt(self, text: str, opts: dict[str, Any]) -> str:
        """Summarize-this prompt with the length asked for."""
        max_words = positive_or_none(opts.get("max_words"), "max_words")
        chat, template = self.uses_chat(opts), self.template(opts)
        length = f"in at most {max_words} words" if max_words else DEFAULT_LENGTH
        examples = (
            example_dicts(opts["examples"], "text") if opts.get("examples") else self._shots(template, chat)
        )
        return self.render(template, {"text": text, "length": length}, examples, chat)

    def _shots(self, template, chat: bool) -> list[dict[str, str]]:
        """The template's default shots, for base models only."""
        return [] if chat else list(template.shots)

    def _generation(self, opts: dict[str, Any], max_words: int | None) -> dict[str, Any]:
        """generate() options: min/max_length are new-token bounds; max_words budgets ~2 tokens a word."""
        max_new = positive_or_none(opts.get("max_length"), "max_length")
        min_new = positive_or_none(opts.get("min_length"), "min_length") or 0
        if max_new is None:
            max_new = 2 * max_words + 8 if max_words else DEFAULT_NEW_TOKENS
        if min_new > max_new:
            raise TaskError(f"min_length={min_new} exceeds max_length={max_new}")
        return self.generation_options(opts, max_new_tokens=max_new, min_new_tokens=min_new)


def positive_or_none(value: Any, name: str) -> int | None:
    """value if it is a positive int, None when unset; TaskError otherwise."""
    if value is None:
        return None
    if not is_int(value) or value < 1:
        raise TaskError(f"{name} must be a positive integer, got {value!r}")
    return value


def limit_words(text: str, max_words: int | None) -> str:
    """The whole sentences of ``text`` that fit in ``max_words`` words (an unfinished last sentence is
    dropped); when even the first sentence is longer, its first ``max_words`` words and "…"."""
    if max_words is None:
        return text
    sentences = [m.group().strip() for m in SENTENCE.finditer(text)]
    kept: list[str] = []
    for sentence in sentences:
        if len(" ".join([*kept, sentence]).split()) > max_words or not sentence.endswith(SENTENCE_ENDS):
            break
        kept.append(sentence)
    if kept:
        return " ".join(kept)
    words = text.split()
    if len(words) <= max_words:
        return text
    return " ".join(words[:max_words]).rstrip(",;:-–— ") + "…"
