"""Classification and generation evaluations, and the `gptkit eval` command line."""

from __future__ import annotations

import json

import pytest

from gptkit.cli import main
from gptkit.eval.classification import evaluate_classification, match_label
from gptkit.eval.generation import evaluate_generation, parse_item
from gptkit.eval.pipelines import output_text


def test_generation_rows_accept_input_or_question_and_reference_forms():
    item = parse_item({"question": "Who?", "context": "Ann did.", "references": ["Ann", "ann"]})
    assert item.references == ("Ann", "ann") and item.fields["context"] == "Ann did."
    assert parse_item({"input": "Hi", "reference": "Salut"}).references == ("Salut",)
    with pytest.raises(ValueError, match="reference"):
        parse_item({"input": "Hi"})


def test_pipeline_outputs_are_read_whatever_their_shape():
    assert output_text([{"translation_text": "Bonjour"}]) == "Bonjour"
    assert output_text({"answer": "Ann", "score": 0.9}) == "Ann"
    assert match_label("POSITIVE", ["negative", "positive"]) == "positive"


@pytest.mark.slow
def test_classification_through_the_sentiment_pipeline(bundled, tmp_path):
    path = tmp_path / "sentiment.tsv"
    path.write_text(
        "text\tlabel\nI love this wonderful film!\tpositive\nThis was awful and boring.\tnegative\n"
        "broken row without a label\nWhat a fantastic, happy day.\tpositive\n"
    )
    result = evaluate_classification(bundled, path)
    assert result.metrics == {"accuracy": 1.0, "macro_f1": 1.0}
    assert [(s.line, s.reason.split()[0]) for s in result.skipped] == [(4, "expected")]


@pytest.mark.slow
def test_generation_scores_answers_from_the_pipeline(bundled, tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text(
        json.dumps(
            {
                "question": "What colour is the bicycle?",
                "context": "Mia rides a red bicycle.",
                "reference": "red",
            }
        )
        + "\n"
    )
    result = evaluate_generation(bundled, path, task="question-answering", max_new_tokens=8)
    assert result.settings["answers_from"] == "pipeline"
    assert result.metrics["f1"] > 0 and 0 <= result.metrics["bleu"] <= 100


@pytest.mark.slow
def test_cli_prints_json_writes_output_and_reports_malformed_lines(tmp_path, capsys):
    path = tmp_path / "mc.jsonl"
    path.write_text(
        '{"query": "The capital of France is", "choices": ["Paris", "banana"], "gold": 0}\n'
        '{"query": "broken", "choices": ["x"], "gold": 0}\n'
    )
    out = tmp_path / "result.json"
    assert main(["eval", "multiple-choice", str(path), "--json", "--output", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(out.read_text())
    assert printed["metrics"]["acc"] == 1.0 and printed["n_skipped"] == 1
    assert printed["skipped_rows"][0]["line"] == 2
    assert main(["eval", "multiple-choice", str(path), "--strict"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "mc.jsonl:2:" in err and err.startswith("gptkit eval: error:")
