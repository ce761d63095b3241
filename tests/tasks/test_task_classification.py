"""Sentiment analysis scores labels by log-likelihood: right labels, distributions, calibration, few-shot."""

from __future__ import annotations

import pytest

from gptkit import pipeline
from gptkit.tasks import TaskError

POSITIVE = [
    "I love this movie, it is wonderful!",
    "The food was delicious and the staff were friendly.",
    "What a fantastic concert, I had a great time.",
]
NEGATIVE = [
    "This is the worst product I have ever bought.",
    "I hate waiting in line, it is awful.",
    "The service was terrible and rude.",
]


@pytest.fixture(scope="module")
def classifier(smollm2):
    return pipeline("sentiment-analysis", *smollm2)


def test_labels_are_right_and_scores_are_a_distribution(classifier):
    results = classifier(POSITIVE + NEGATIVE, top_k=None)
    assert [r[0]["label"] for r in results] == ["POSITIVE"] * 3 + ["NEGATIVE"] * 3
    for labels in results:
        assert {d["label"] for d in labels} == {"POSITIVE", "NEGATIVE"}
        assert sum(d["score"] for d in labels) == pytest.approx(1.0)
        assert labels[0]["score"] >= labels[1]["score"]


@pytest.mark.slow
def test_scores_are_deterministic_and_batching_equals_one_by_one(classifier):
    batched = classifier(POSITIVE[:2] + NEGATIVE[:1], batch_size=4)
    single = [classifier(text)[0] for text in POSITIVE[:2] + NEGATIVE[:1]]
    assert [r["label"] for r in batched] == [r["label"] for r in single]
    for a, b in zip(
        batched, single, strict=True
    ):  # many rows take the bf16 dense matmul, few the int16 kernel
        assert a["score"] == pytest.approx(b["score"], abs=1e-3)
    assert classifier(POSITIVE[0]) == classifier(POSITIVE[0])


def test_one_input_gives_a_one_item_list_like_transformers(classifier):
    result = classifier(POSITIVE[0])
    assert isinstance(result, list) and len(result) == 1 and set(result[0]) == {"label", "score"}


def test_three_labels_with_a_neutral_one_sum_to_one(classifier):
    labels = classifier(POSITIVE[0], labels=["POSITIVE", "NEGATIVE", "NEUTRAL"], top_k=None)[0]
    assert len(labels) == 3 and sum(d["score"] for d in labels) == pytest.approx(1.0)
    assert labels[0]["label"] == "POSITIVE"


def test_custom_labels_with_verbalizers(classifier):
    result = classifier(NEGATIVE[0], labels={"good": "positive", "bad": "negative"})[0]
    assert result["label"] == "bad"


def test_calibration_makes_the_content_free_input_uniform(classifier):
    raw = classifier("N/A", top_k=None)[0]
    assert abs(raw[0]["score"] - 0.5) > 0.05  # the model leans one way on a content-free input
    calibrated = classifier("N/A", top_k=None, calibrate=True)[0]
    assert [d["score"] for d in calibrated] == pytest.approx([0.5, 0.5])


def test_calibration_moves_scores_against_the_content_free_bias(classifier):
    raw = {d["label"]: d["score"] for d in classifier("N/A", top_k=None)[0]}
    favoured = max(raw, key=raw.get)
    text = POSITIVE[1]
    before = {d["label"]: d["score"] for d in classifier(text, top_k=None)[0]}
    after = {d["label"]: d["score"] for d in classifier(text, top_k=None, calibrate=True)[0]}
    assert after[favoured] < before[favoured]


def test_few_shot_examples_enter_the_prompt_and_change_the_scores(classifier):
    examples = [("Absolutely wonderful, I adore it.", "POSITIVE"), ("Dreadful, I regret it.", "NEGATIVE")]
    prompt = classifier.render_for(POSITIVE[2], examples=examples)
    assert "Absolutely wonderful, I adore it." in prompt and prompt.count("<|im_start|>assistant") == 3
    plain = classifier(POSITIVE[2])[0]["score"]
    shot = classifier(POSITIVE[2], examples=examples)[0]["score"]
    assert shot != pytest.approx(plain, abs=1e-3)


@pytest.mark.slow
def test_a_base_model_gets_a_few_shot_prompt_and_is_more_confident_with_it(smollm2, base_tokenizer):
    base = pipeline("sentiment-analysis", smollm2[0], base_tokenizer)
    prompt = base.render_for(POSITIVE[0])
    assert "<|im_start|>" not in prompt and prompt.count("Sentiment:") == 3  # two shots and the query
    with_shots = base(POSITIVE + NEGATIVE)
    assert [r["label"] for r in with_shots] == ["POSITIVE"] * 3 + ["NEGATIVE"] * 3
    zero_shot = base(POSITIVE + NEGATIVE, examples=[])
    assert sum(r["score"] for r in with_shots) > sum(r["score"] for r in zero_shot)


def test_prompt_override_is_used(classifier):
    prompt = classifier.render_for("great", prompt="Review: {text}\nIs it {choices}?")
    assert "Review: great\nIs it positive or negative?" in prompt
    assert classifier("great", prompt="Review: {text}\nIs it {choices}?") != classifier("great")


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ([], "non-empty"),
        (["POSITIVE"], "at least two"),
        (["A", "A"], "twice"),
        ({"A": "", "B": "b"}, "non-empty"),
    ],
)
def test_bad_label_sets_raise(classifier, labels, message):
    with pytest.raises(TaskError, match=message):
        classifier("fine", labels=labels)


def test_empty_text_and_unknown_options_raise(classifier):
    with pytest.raises(TaskError, match="empty"):
        classifier("   ")
    with pytest.raises(TaskError, match="unknown option"):
        classifier("fine", colour="red")
    with pytest.raises(TaskError, match="not one of"):
        classifier("fine", examples=[("good", "MAYBE")])
