"""Metric functions against hand-computed values."""

from __future__ import annotations

import math

import pytest

from gptkit.eval import metrics


def test_squad_normalisation_drops_case_punctuation_articles_and_extra_space():
    assert metrics.normalize_answer("  The Cat,  sat on A mat! ") == "cat sat on mat"
    assert metrics.normalize_answer("an apple") == "apple"
    assert metrics.normalize_answer("theory") == "theory"  # 'the' only as a whole word


def test_exact_match_and_f1_use_the_best_reference():
    assert metrics.exact_match("The Paris.", ["London", "paris"]) == 1.0
    assert metrics.exact_match("Paris, France", ["paris"]) == 0.0
    # "red big car" vs "big red truck": 2 common tokens, precision = recall = 2/3
    assert metrics.token_f1("a red big car", ["the big red truck"]) == pytest.approx(2 / 3)
    assert metrics.token_f1("a red big car", ["nothing", "red big car"]) == 1.0
    assert metrics.token_f1("the", ["a"]) == 1.0  # both normalise to empty


def test_bleu_equals_the_hand_computed_geometric_mean():
    # clipped n-gram precisions 5/6, 3/5, 2/4, 1/3; equal lengths so no brevity penalty
    expected = 100 * (5 / 6 * 3 / 5 * 1 / 2 * 1 / 3) ** 0.25
    assert metrics.bleu(["the cat sat on the mat"], [["the cat sat on a mat"]]) == pytest.approx(
        expected, abs=1e-6
    )
    assert metrics.bleu(["the cat sat on the mat"], [["a dog", "the cat sat on the mat"]]) == pytest.approx(
        100
    )


def test_chrf_is_100_for_identical_text_and_lower_otherwise():
    assert metrics.chrf(["hello world"], [["hello world"]]) == pytest.approx(100)
    assert 0 < metrics.chrf(["hello word"], [["hello world"]]) < 100


def test_rouge_f_measures_by_hand():
    scores = metrics.rouge(["the cat sat"], [["the cat sat on the mat"]])
    assert scores["rouge1"] == pytest.approx(2 / 3)  # P = 3/3, R = 3/6
    assert scores["rouge2"] == pytest.approx(2 * 1 * 0.4 / 1.4)  # P = 2/2, R = 2/5
    assert scores["rougeL"] == pytest.approx(2 / 3)  # LCS = 3


def test_accuracy_and_macro_f1():
    predictions, golds = ["a", "a", "b", "b"], ["a", "b", "b", "b"]
    assert metrics.accuracy(predictions, golds) == 0.75
    # F1(a) = 2*1/(2+1) = 2/3, F1(b) = 2*2/(2+3) = 4/5
    assert metrics.macro_f1(predictions, golds) == pytest.approx((2 / 3 + 4 / 5) / 2)
    assert metrics.macro_f1(predictions, golds, ["a", "b", "c"]) == pytest.approx((2 / 3 + 4 / 5) / 3)


def test_generation_metrics_report_everything():
    scores = metrics.generation_metrics(["Paris"], [["paris", "Paris, France"]])
    assert set(scores) == {"bleu", "chrf", "rouge1", "rouge2", "rougeL", "exact_match", "f1"}
    assert scores["exact_match"] == 1.0 and scores["f1"] == 1.0
    assert not math.isnan(scores["bleu"])
    with pytest.raises(ValueError, match="2 predictions but 1"):
        metrics.generation_metrics(["a", "b"], [["a"]])
