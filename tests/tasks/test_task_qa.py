"""Question answering: the right span with exact character offsets; closed-book answers; bad questions."""

from __future__ import annotations

import pytest

from gptkit import pipeline
from gptkit.tasks import TaskError
from gptkit.tasks.question_answering import candidate_spans

CONTEXT = (
    "The capital of France is Paris. The capital of Germany is Berlin. "
    "Mount Everest is the highest mountain in the world."
)
CASES = [
    ("What is the capital of France?", ("Paris",)),
    ("What is the capital of Germany?", ("Berlin",)),
    ("What is the highest mountain in the world?", ("Mount Everest", "Everest")),
]
HAMLET = "Hamlet is a tragedy written by William Shakespeare sometime between 1599 and 1601."


@pytest.fixture(scope="module")
def qa(smollm2):
    return pipeline("question-answering", *smollm2)


@pytest.mark.parametrize(("question", "answers"), CASES)
def test_the_answer_is_the_right_context_span(qa, question, answers):
    result = qa(question=question, context=CONTEXT)
    assert result["answer"] in answers
    assert CONTEXT[result["start"] : result["end"]] == result["answer"]
    assert 0 < result["score"] <= 1


@pytest.mark.parametrize(
    ("question", "context", "answer"),
    [
        ("Who wrote Hamlet?", "Hamlet is a tragedy written by William Shakespeare.", "William Shakespeare"),
        ("Who wrote Hamlet?", HAMLET, "William Shakespeare"),  # the model's free reply quoted "tragedy"
        (
            "Where is Hamlet set?",
            "Hamlet is a tragedy written by William Shakespeare. It is set in Denmark.",
            "Denmark",
        ),
    ],
)
def test_the_answer_is_the_likeliest_complete_span_not_a_word_the_reply_happens_to_use(
    qa, question, context, answer
):
    result = qa(question=question, context=context)
    assert result["answer"] == answer and context[result["start"] : result["end"]] == answer


def test_a_list_of_questions_gives_a_list_of_answers(qa):
    results = qa([{"question": q, "context": CONTEXT} for q, _ in CASES[:2]])
    assert [r["answer"] for r in results] == ["Paris", "Berlin"]


def test_without_context_the_answer_is_generated(qa):
    result = qa(question="What is the capital of France?")
    assert "Paris" in result["answer"] and set(result) == {"answer", "score"} and 0 < result["score"] <= 1


def test_candidate_spans_come_from_the_matching_sentence_and_skip_question_words():
    spans = {s.text for s in candidate_spans(CONTEXT, "What is the capital of France?")}
    assert "Paris" in spans and "Berlin" not in spans and not any("capital" in s for s in spans)


def test_missing_or_empty_questions_raise(qa):
    with pytest.raises(TaskError, match="needs a question"):
        qa(context=CONTEXT)
    with pytest.raises(TaskError, match="question is empty"):
        qa(question="  ", context=CONTEXT)
    with pytest.raises(TaskError, match="context is empty"):
        qa(question="Why?", context="")
