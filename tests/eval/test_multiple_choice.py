"""Multiple choice: acc and acc_norm from log-likelihoods, few-shot prompts drawn from the file."""

from __future__ import annotations

import json

import pytest

from gptkit.eval.multiple_choice import (
    ChoiceItem,
    choice_predictions,
    evaluate_multiple_choice,
    fewshot_prompt,
)
from gptkit.scoring.loglik import score_continuations

ITEMS = [
    {"query": "ab", "choices": ["c", "cccccc", "xyz"], "gold": 0},
    {"query": "hello", "choices": ["world", "w", "é"], "gold": 1},
    {"query": "one two", "choices": ["three", "3"], "gold": 1},
    {"query": "q", "choices": ["long answer here", "no"], "gold": 0},
]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_acc_and_acc_norm_by_hand_on_a_tiny_model(tiny, tmp_path):
    result = evaluate_multiple_choice(tiny, write_jsonl(tmp_path / "mc.jsonl", ITEMS), batch_size=3)
    acc = acc_norm = 0
    for item in ITEMS:
        context = [0, *item["query"].encode()]
        scores = score_continuations(
            tiny.model, [(context, list((" " + c).encode())) for c in item["choices"]]
        )
        logprobs = [s.logprob for s in scores]
        per_byte = [lp / len(c.encode()) for lp, c in zip(logprobs, item["choices"], strict=True)]
        acc += logprobs.index(max(logprobs)) == item["gold"]
        acc_norm += per_byte.index(max(per_byte)) == item["gold"]
    assert result.metrics == {"acc": acc / 4, "acc_norm": acc_norm / 4}
    assert result.n_items == 4 and result.skipped == []


def test_acc_norm_divides_by_utf8_bytes_of_the_choice():
    # -6 over 6 bytes beats -2 over 1 byte; "é" is 2 bytes (1 character): -1.5 per byte beats -2.5
    assert choice_predictions([-2.0, -6.0], ("a", "abcdef")) == (0, 1)
    assert choice_predictions([-3.0, -2.5], ("é", "a")) == (1, 0)


def test_fewshot_examples_exclude_the_item_and_are_reproducible():
    items = [ChoiceItem(f"Q{i}", ("yes", "no"), i % 2) for i in range(6)]
    prompt = fewshot_prompt(items, 2, k=3)
    assert prompt == fewshot_prompt(items, 2, k=3)
    shots = prompt.split("\n\n")
    assert len(shots) == 4 and shots[-1] == "Q2" and "Q2 " not in shots[:-1]
    assert all(shot in {f"Q{i} {'no' if i % 2 else 'yes'}" for i in range(6)} for shot in shots[:-1])
    assert fewshot_prompt(items, 0, k=0) == "Q0"
    assert len(fewshot_prompt(items, 0, k=10).split("\n\n")) == 6  # at most the other 5


def test_limit_and_malformed_rows(tiny, tmp_path):
    path = tmp_path / "mc.jsonl"
    path.write_text(json.dumps(ITEMS[0]) + "\n{oops\n" + "".join(json.dumps(r) + "\n" for r in ITEMS[1:]))
    result = evaluate_multiple_choice(tiny, path, limit=2, num_fewshot=2)
    assert result.n_items == 2 and [s.line for s in result.skipped] == [2]


@pytest.mark.slow
def test_bundled_model_answers_obvious_questions(bundled, tmp_path):
    rows = [
        {"query": "The capital of France is", "choices": ["Paris", "banana", "seventeen"], "gold": 0},
        {"query": "One, two, three, four,", "choices": ["purple", "five"], "gold": 1},
        {"context": "Monday, Tuesday,", "choices": ["Wednesday", "carrot"], "gold": 0},
    ]
    result = evaluate_multiple_choice(bundled, write_jsonl(tmp_path / "easy.jsonl", rows), num_fewshot=1)
    assert result.metrics == {"acc": 1.0, "acc_norm": 1.0}
