"""Question answering: extractive over a context (decoding constrained to candidate spans), or closed-book."""

from __future__ import annotations

import heapq
import math
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from gptkit.tasks.base import Pipeline, TaskError, example_dicts, require_text

WORD = re.compile(r"\w+(?:[-'’.,]\w+)*")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
FUNCTION_WORDS = """a am an the is are was were be been being of in on at to for from by with and or but not no
as that this these those it its it's he she they we you i his her their our your what which who whom whose
when where why how do does did has have had will would can could should may might than then there here so if
about into over under also very"""
STOPWORDS = frozenset(FUNCTION_WORDS.split())
MAX_ANSWER_WORDS = 6
MAX_EXPANSIONS = 48  # model forwards of the exact answer search before it turns greedy


@dataclass(frozen=True)
class Span:
    """A candidate answer: context[start:end]."""

    start: int
    end: int
    text: str


class QuestionAnsweringPipeline(Pipeline):
    """``{"answer", "score", "start", "end"}`` over a context; ``{"answer", "score"}`` without one."""

    task = "question-answering"
    template_key = "question-answering"
    options = frozenset({"question", "context", "max_answer_words"})
    single_unwrapped = True  # like transformers: one question gives one dict

    def _inputs(self, inputs: Any, opts: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
        """{"question", "context"} dicts from a dict, a list of dicts, or question=/context= (str or lists)."""
        if inputs is None:
            inputs = opts.get("question")
        if inputs is None:
            raise TaskError(
                "question-answering needs a question: pass question=... (and optionally context=...)"
            )
        single = isinstance(inputs, (str, dict))
        items = [inputs] if single else inputs
        if not isinstance(items, (list, tuple)) or not items:
            raise TaskError(
                f"question-answering takes a question or a non-empty list of them, got {inputs!r}"
            )
        contexts = opts.get("context")
        if isinstance(contexts, (list, tuple)) and len(contexts) != len(items):
            raise TaskError(f"{len(items)} questions but {len(contexts)} contexts")
        contexts = list(contexts) if isinstance(contexts, (list, tuple)) else [contexts] * len(items)
        return [qa_item(item, ctx) for item, ctx in zip(items, contexts, strict=True)], single

    def _run(self, items: list[dict[str, Any]], opts: dict[str, Any]) -> list[dict[str, Any]]:
        return [self._extractive(i, opts) if i["context"] else self._closed_book(i, opts) for i in items]

    def _extractive(self, item: dict[str, Any], opts: dict[str, Any]) -> dict[str, Any]:
        """The likeliest complete answer among the candidate spans (each followed by the end of the answer,
        with or without a full stop), found by best-first search over their tokens."""
        chat, template = self.uses_chat(opts), self.template(opts)
        prompt = self.encode(self._prompt(item, opts), chat)
        spans = candidate_spans(
            item["context"], item["question"], opts.get("max_answer_words", MAX_ANSWER_WORDS)
        )
        answers: dict[tuple[int, ...], Span] = {}  # a span's tokens, then the end of the answer -> the span
        for span in spans:
            for text in (span.text, span.text + "."):
                closed = self.continuation(template, text, chat, closed=True)
                answers.setdefault(tuple(self.encode(closed, chat, prompt=False)), span)
        self.check_fits(prompt, max(map(len, answers)))
        path, shares = self._likeliest_answer(prompt, answers)
        span = answers[path]
        span_tokens = self.encode(self.continuation(template, span.text, chat), chat, prompt=False)
        return span_result(span, math.prod(shares[: common_prefix(path, span_tokens)]))

    @torch.inference_mode()
    def _likeliest_answer(self, prompt: list[int], answers: Collection[tuple[int, ...]]):
        """(the answer of highest log-likelihood, the share of each of its tokens among the tokens that
        could follow its prefix): best-first search, exact within MAX_EXPANSIONS forwards, then greedy."""
        heap: list[tuple[float, tuple[int, ...], tuple[float, ...]]] = [(0.0, (), ())]
        expansions = 0
        while True:
            cost, path, shares = heapq.heappop(heap)
            if path in answers:
                return path, shares
            allowed = sorted({a[len(path)] for a in answers if len(a) > len(path) and a[: len(path)] == path})
            ids = torch.tensor([prompt + list(path)], device=self.model.device)
            logprobs = self.model(ids, logits_to_keep=1).logits[0, -1].float().log_softmax(-1)[allowed]
            share = logprobs.softmax(-1).tolist()
            expansions += 1
            children = range(len(allowed)) if expansions < MAX_EXPANSIONS else [int(logprobs.argmax())]
            for i in children:
                step = (cost - float(logprobs[i]), (*path, allowed[i]), (*shares, share[i]))
                heapq.heappush(heap, step)

    def _closed_book(self, item: dict[str, Any], opts: dict[str, Any]) -> dict[str, Any]:
        """A generated answer; score = its geometric-mean token probability."""
        chat, template = self.uses_chat(opts), self.template(opts, "closed-book-qa")
        prompt = self._prompt(item, opts)
        answer = self.generate([prompt], chat, () if chat else template.stop, max_new_tokens=48)[0].strip()
        if not answer:
            return {"answer": "", "score": 0.0}
        result = self.score([(prompt, self.continuation(template, answer, chat, closed=True))], chat)[0]
        return {"answer": answer, "score": math.exp(result.logprob / result.n_tokens)}

    def _prompt(self, item: dict[str, Any], opts: dict[str, Any]) -> str:
        """Context and question (closed-book: the question alone)."""
        chat, key = self.uses_chat(opts), None if item["context"] else "closed-book-qa"
        template = self.template(opts, key)
        fields = item if item["context"] else {"question": item["question"]}
        return self.render(template, fields, self._examples(opts, template, chat), chat)

    def _examples(self, opts: dict[str, Any], template, chat: bool) -> list[dict[str, str]]:
        """User examples (dicts with question, context, answer), else the base template's shots."""
        if opts.get("examples") is not None:
            return example_dicts(opts["examples"], "question")
        return [] if chat else list(template.shots)


def qa_item(item: Any, context: Any) -> dict[str, Any]:
    """One {"question", "context"} with a non-empty question; context may be None (closed-book)."""
    if isinstance(item, dict):
        item, context = item.get("question"), item.get("context", context)
    if item is None:
        raise TaskError("question-answering needs a question for every input")
    question = require_text(item, "question").strip()
    if context is not None:
        context = require_text(context, "context")
    return {"question": question, "context": context}


def span_result(span: Span, score: float) -> dict[str, Any]:
    """transformers' question-answering output."""
    return {"answer": span.text, "score": score, "start": span.start, "end": span.end}


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading items a and b share."""
    n = min(len(a), len(b))
    return next((i for i in range(n) if a[i] != b[i]), n)


def candidate_spans(context: str, question: str, max_words: int = MAX_ANSWER_WORDS) -> list[Span]:
    """Word n-grams inside the sentences sharing most words with the question that could answer: not
    starting or ending with a function word, and not repeating the question's content words."""
    words = [(m.start(), m.end(), m.group().lower()) for m in WORD.finditer(context)]
    breaks = [m.start() for m in SENTENCE_END.finditer(context)]
    sentence = [sum(b < start for b in breaks) for start, _, _ in words]
    asked = {w.group().lower() for w in WORD.finditer(question)} - STOPWORDS
    relevant = relevant_sentences([w for _, _, w in words], sentence, asked)
    for banned in (asked, set()):  # relax the question-word rule if nothing is left
        spans = [
            Span(words[i][0], words[j][1], context[words[i][0] : words[j][1]])
            for i in range(len(words))
            for j in range(i, min(i + max_words, len(words)))
            if sentence[i] == sentence[j] in relevant
            and plausible([w for _, _, w in words[i : j + 1]], banned)
        ]
        if spans:
            return spans
    raise TaskError("the context has no words to answer from")


def relevant_sentences(words: list[str], sentence: list[int], asked: set[str]) -> set[int]:
    """The sentences that share the most distinct content words with the question."""
    shared: dict[int, set[str]] = {s: set() for s in sentence}
    for word, s in zip(words, sentence, strict=True):
        if word in asked:
            shared[s].add(word)
    most = max((len(v) for v in shared.values()), default=0)
    return {s for s, v in shared.items() if len(v) == most}


def plausible(words: list[str], banned: set[str]) -> bool:
    """A span does not start or end with a function word nor contain a word of the question."""
    return words[0] not in STOPWORDS and words[-1] not in STOPWORDS and not banned.intersection(words)
