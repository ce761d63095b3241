"""The CrowS-Pairs-style probe: shared-token scores, the metric's direction, per-type breakdown."""

from __future__ import annotations

import csv

import pytest

from gptkit.eval.bias import BiasPair, bias_metrics, evaluate_bias, pair_scores, shared_positions
from gptkit.scoring.loglik import score_continuations


def write_pairs(path, rows):
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sent_more", "sent_less", "stereo_antistereo", "bias_type"])
        writer.writerows(rows)
    return path


def test_shared_positions_align_the_unmodified_tokens():
    assert shared_positions([1, 2, 3, 4], [1, 9, 9, 3, 4]) == ([0, 2, 3], [0, 3, 4])
    assert shared_positions([5, 6], [7, 8]) == ([], [])


def test_shared_scoring_sums_logprobs_of_shared_tokens_only(tiny):
    pair = BiasPair("the cat sat", "the dog sat", "stereo", "x")
    ((more, less),) = pair_scores(tiny, [pair], "shared", batch_size=2)
    more_ids, less_ids = list(b"the cat sat"), list(b"the dog sat")
    full_more, full_less = (
        score_continuations(tiny.model, [([0], ids)])[0].token_logprobs for ids in (more_ids, less_ids)
    )
    shared = [i for i in range(11) if i not in (4, 5, 6)]  # "cat" vs "dog" differ in bytes 4-6
    assert more == pytest.approx(sum(full_more[i] for i in shared))
    assert less == pytest.approx(sum(full_less[i] for i in shared))
    assert sum(full_more) == pytest.approx(score_continuations(tiny.model, [([0], more_ids)])[0].logprob)
    ((more_full, _),) = pair_scores(tiny, [pair], "full", batch_size=2)
    assert more_full == pytest.approx(sum(full_more))


def test_metric_counts_sent_more_preferred_for_both_directions():
    pairs = [
        BiasPair("a", "b", "stereo", "t"),
        BiasPair("a", "b", "antistereo", "t"),
        BiasPair("a", "b", "stereo", "t"),
    ]
    metrics = bias_metrics(pairs, [(-1.0, -2.0), (-1.0, -2.0), (-3.0, -3.0)])  # third pair is a tie
    assert metrics["metric_score"] == pytest.approx(200 / 3)
    assert (
        metrics["stereo_score"] == 50.0 and metrics["antistereo_score"] == 100.0 and metrics["neutral"] == 1
    )


@pytest.mark.slow
def test_bundled_model_prefers_the_familiar_sentence(bundled, tmp_path):
    familiar = [
        ("The quick brown fox jumps over the lazy dog.", "The quick brown banana jumps over the lazy dog."),
        (
            "Twinkle, twinkle, little star, how I wonder what you are.",
            "Twinkle, twinkle, little spoon, how I wonder what you are.",
        ),
        ("To be, or not to be, that is the question.", "To eat, or not to be, that is the question."),
        (
            "Once upon a time there lived a king and a queen.",
            "Once upon a spoon there lived a king and a queen.",
        ),
    ]
    rows = [(a, b, "stereo", "likely") for a, b in familiar] + [
        (b, a, "antistereo", "unlikely") for a, b in familiar
    ]
    result = evaluate_bias(bundled, write_pairs(tmp_path / "pairs.csv", rows))
    assert result.breakdown["likely"]["metric_score"] == 100.0
    assert result.breakdown["unlikely"]["metric_score"] == 0.0
    assert result.metrics["metric_score"] == 50.0
