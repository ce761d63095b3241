"""Sentiment analysis / text classification: score each label's word by log-likelihood, never parse text."""

from __future__ import annotations

import math
from typing import Any

from gptkit.checks import is_int
from gptkit.scoring.loglik import SCORING_BATCH_SIZE
from gptkit.tasks.base import Pipeline, TaskError, example_dicts, softmax
from gptkit.tasks.prompts import CONTENT_FREE_INPUT, VERBALIZERS, PromptTemplate

DEFAULT_LABELS = ("POSITIVE", "NEGATIVE")


class TextClassificationPipeline(Pipeline):
    """``{"label", "score"}``: score = softmax over the labels' log-likelihoods (optionally calibrated)."""

    task = "sentiment-analysis"
    template_key = "sentiment-analysis"
    options = frozenset({"labels", "top_k", "calibrate"})

    def _run(self, items: list[str], opts: dict[str, Any]) -> list[Any]:
        logprobs = self._label_logprobs(items, opts)
        if opts.get("calibrate"):
            content_free = opts["calibrate"] if isinstance(opts["calibrate"], str) else CONTENT_FREE_INPUT
            baseline = softmax(self._label_logprobs([content_free], opts)[0])
            logprobs = [[lp - math.log(p) for lp, p in zip(row, baseline, strict=True)] for row in logprobs]
        labels = list(label_verbalizers(opts.get("labels", DEFAULT_LABELS)))
        return [ranked(labels, softmax(row), opts.get("top_k", 1)) for row in logprobs]

    def _prompt(self, text: str, opts: dict[str, Any]) -> str:
        """The instruction naming the label words, the examples, then the text."""
        verbalizers = label_verbalizers(opts.get("labels", DEFAULT_LABELS))
        chat, template = self.uses_chat(opts), self.template(opts)
        examples = self._examples(opts, verbalizers, template, chat)
        fields = {"text": text, "choices": join_choices(list(verbalizers.values()))}
        return self.render(template, fields, examples, chat)

    def _examples(
        self, opts: dict[str, Any], verbalizers: dict[str, str], template: PromptTemplate, chat: bool
    ) -> list[dict[str, str]]:
        """User examples (labels verbalized), else the base template's default shots that fit the labels."""
        if opts.get("examples") is None:
            words = set(verbalizers.values())
            return [] if chat else [s for s in template.shots if s["answer"] in words]
        examples = example_dicts(opts["examples"], "text")
        for example in examples:
            if example["answer"] not in verbalizers:
                raise TaskError(f"example label {example['answer']!r} is not one of {list(verbalizers)}")
            example["answer"] = verbalizers[example["answer"]]
        return examples

    def _label_logprobs(self, items: list[str], opts: dict[str, Any]) -> list[list[float]]:
        """log p(label word | prompt) for every item (rows) and label (columns)."""
        chat, template = self.uses_chat(opts), self.template(opts)
        verbalizers = label_verbalizers(opts.get("labels", DEFAULT_LABELS))
        words = [self.continuation(template, word, chat) for word in verbalizers.values()]
        prompts = [self._prompt(text, opts) for text in items]
        pairs = [(prompt, word) for prompt in prompts for word in words]
        scores = self.score(pairs, chat, opts.get("batch_size", SCORING_BATCH_SIZE))
        n = len(words)
        return [[s.logprob for s in scores[i : i + n]] for i in range(0, len(scores), n)]


def label_verbalizers(labels: Any) -> dict[str, str]:
    """Label -> the word the model says for it: a dict as given; a list maps known names, else lowercases."""
    if isinstance(labels, str) or not labels:
        raise TaskError(
            f"labels must be a non-empty list of label names or a dict label -> word, got {labels!r}"
        )
    pairs = (
        labels.items()
        if isinstance(labels, dict)
        else [(x, VERBALIZERS.get(x, str(x).lower())) for x in labels]
    )
    verbalizers = {}
    for label, word in pairs:
        if not isinstance(label, str) or not label.strip() or not isinstance(word, str) or not word.strip():
            raise TaskError(f"labels and their words must be non-empty strings, got {label!r}: {word!r}")
        if label in verbalizers:
            raise TaskError(f"label {label!r} appears twice")
        verbalizers[label] = word
    if len(verbalizers) < 2:
        raise TaskError(f"classification needs at least two labels, got {list(verbalizers)}")
    return verbalizers


def join_choices(words: list[str]) -> str:
    """'a or b', 'a, b or c'."""
    return " or ".join([", ".join(words[:-1]), words[-1]])


def ranked(labels: list[str], scores: list[float], top_k: Any) -> Any:
    """The best label as a dict (top_k=1), or the top_k best (None: all) as a list, best first."""
    order = sorted(range(len(labels)), key=lambda i: -scores[i])
    results = [{"label": labels[i], "score": scores[i]} for i in order]
    if top_k == 1:
        return results[0]
    if top_k is None:
        return results
    if not is_int(top_k) or top_k < 1:
        raise TaskError(f"top_k must be a positive integer or None, got {top_k!r}")
    return results[:top_k]
