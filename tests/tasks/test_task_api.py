"""pipeline(): task names and aliases, model loading, the lazy export, the CLI."""

from __future__ import annotations

import json

import pytest

import gptkit
from gptkit.cli import main
from gptkit.tasks import TASKS, TaskError, TextClassificationPipeline, TranslationPipeline, pipeline


def test_pipeline_is_exported_lazily():
    assert gptkit.pipeline is pipeline and "pipeline" in gptkit.__all__


def test_unknown_task_lists_the_tasks(smollm2):
    with pytest.raises(TaskError, match="unknown task 'summarise'; available tasks: text-generation") as info:
        pipeline("summarise", *smollm2)
    assert all(task in str(info.value) for task in TASKS)
    assert isinstance(info.value, ValueError)


def test_aliases_and_a_loaded_model_needs_its_tokenizer(smollm2):
    assert isinstance(pipeline("text-classification", *smollm2), TextClassificationPipeline)
    translator = pipeline("translation_de_to_en", *smollm2)
    assert isinstance(translator, TranslationPipeline)
    assert translator.defaults == {"src_lang": "German", "tgt_lang": "English"}
    with pytest.raises(TaskError, match="needs its tokenizer"):
        pipeline("summarization", smollm2[0])


def test_pipelines_reuse_a_model_loaded_by_name(monkeypatch, smollm2):
    """Models (and tokenizers) given by name load once per (file, dtype, quantize); other keys load anew."""
    from gptkit import GPT4LMHeadModel, GPT4Tokenizer
    from gptkit.tasks import clear_model_cache

    loads = []

    def fake_model(name, **kwargs):
        loads.append(("model", name, kwargs.get("dtype"), kwargs.get("quantize")))
        return smollm2[0]

    def fake_tokenizer(name, **kwargs):
        loads.append(("tokenizer", name))
        return smollm2[1]

    monkeypatch.setattr(GPT4LMHeadModel, "from_pretrained", fake_model)
    monkeypatch.setattr(GPT4Tokenizer, "from_pretrained", fake_tokenizer)
    clear_model_cache()
    first = pipeline("sentiment-analysis", "smollm2-135m-instruct")
    second = pipeline("summarization", "smollm2")  # an alias of the same file
    assert second.model is first.model and second.tokenizer is first.tokenizer
    assert loads == [("tokenizer", "smollm2-135m-instruct"), ("model", "smollm2-135m-instruct", None, None)]
    pipeline("summarization", "smollm2", dtype="bf16")
    pipeline("summarization", "smollm2", dtype="bfloat16")  # the same dtype by another name
    assert [entry[2] for entry in loads if entry[0] == "model"] == [None, "bf16"]
    clear_model_cache()
    pipeline("summarization")
    assert len([entry for entry in loads if entry[0] == "model"]) == 3
    with pytest.raises(TaskError, match="not to a loaded model"):
        pipeline("summarization", *smollm2, dtype="bfloat16")
    clear_model_cache()


@pytest.mark.slow
def test_cli_sentiment_table_and_json(capsys):
    assert (
        main(
            [
                "task",
                "sentiment-analysis",
                "I love this movie, it is wonderful!",
                "The service was terrible and rude.",
            ]
        )
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["label", "score", "input"]
    assert lines[1].startswith("POSITIVE") and lines[2].startswith("NEGATIVE")
    assert main(["task", "sentiment-analysis", "--json", "I love this movie, it is wonderful!"]) == 0
    assert json.loads(capsys.readouterr().out)["label"] == "POSITIVE"


@pytest.mark.slow
def test_cli_question_answering_and_summarization_from_a_file(capsys, tmp_path):
    context = "The capital of France is Paris. The capital of Germany is Berlin."
    assert (
        main(["task", "question-answering", "--json", "-q", "What is the capital of France?", "-c", context])
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert result["answer"] == "Paris" and context[result["start"] : result["end"]] == "Paris"
    path = tmp_path / "article.txt"
    path.write_text("Cats sleep for most of the day. They are most active at dawn and dusk, when they hunt.")
    assert main(["task", "summarization", "--json", "--max-words", "12", str(path)]) == 0
    summary = json.loads(capsys.readouterr().out)["summary_text"]
    assert summary and len(summary.split()) <= 12


def test_cli_errors_are_one_line_and_exit_1(capsys):
    assert main(["task", "no-such-task", "x"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown task 'no-such-task'" in err
