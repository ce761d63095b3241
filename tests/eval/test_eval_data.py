"""Malformed rows are reported with file and line and the rest is evaluated; --strict stops at the first."""

from __future__ import annotations

import pytest

from gptkit.eval.bias import parse_pair
from gptkit.eval.data import EvalDataError, read_dataset
from gptkit.eval.multiple_choice import parse_item

JSONL = (
    '{"query": "Q1", "choices": ["a", "b"], "gold": 0}\n'
    "not json at all\n"
    "\n"
    '{"query": "Q2", "choices": ["a", "b"], "gold": 5}\n'
    '{"ctx": "Q3", "endings": ["a", "b", "c"], "label": "2"}\n'
    '{"question": "Q4", "choices": {"text": ["x", "y"], "label": ["A", "B"]}, "answerKey": "B"}\n'
    '["a list"]\n'
)


def test_jsonl_rows_are_parsed_or_reported_with_their_line(tmp_path):
    path = tmp_path / "mc.jsonl"
    path.write_text(JSONL)
    dataset = read_dataset(path, parse_item)
    assert [(i.query, i.gold) for i in dataset.items] == [("Q1", 0), ("Q3", 2), ("Q4", 1)]
    assert [row.line for row in dataset.skipped] == [2, 4, 7]
    assert "not valid JSON" in dataset.skipped[0].reason
    assert "out of range" in dataset.skipped[1].reason
    assert str(dataset.skipped[0]).startswith(f"{path}:2: ")


def test_strict_stops_at_the_first_malformed_row(tmp_path):
    path = tmp_path / "mc.jsonl"
    path.write_text(JSONL)
    with pytest.raises(EvalDataError, match=r"mc.jsonl:2: not valid JSON"):
        read_dataset(path, parse_item, strict=True)


def test_csv_rows_with_wrong_fields_or_values_are_reported(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text(
        "sent_more,sent_less,stereo_antistereo,bias_type\n"
        '"A, quoted",B,stereo,age\n'
        "only,three,fields\n"
        "C,D,sideways,age\n"
        '"multi\nline",E,antistereo,gender\n'
        "F,G,stereo,\n"
    )
    dataset = read_dataset(path, parse_pair)
    assert [(p.sent_more, p.direction) for p in dataset.items] == [
        ("A, quoted", "stereo"),
        ("multi\nline", "antistereo"),
    ]
    assert [(row.line, row.reason.split()[0]) for row in dataset.skipped] == [
        (3, "expected"),
        (4, "stereo_antistereo"),
        (7, "field"),
    ]


def test_empty_or_missing_inputs_are_clear_errors(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(EvalDataError, match="no items to evaluate"):
        read_dataset(empty, parse_item)
    with pytest.raises(EvalDataError, match="no such file"):
        read_dataset(tmp_path / "absent.jsonl", parse_item)
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{}\n")
    with pytest.raises(EvalDataError, match=r"1 malformed rows, first: .*bad.jsonl:1"):
        read_dataset(bad, parse_item)
