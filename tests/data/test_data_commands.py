"""The `gptkit data` and `gptkit tokenizer` subcommands, run through gptkit.cli.main."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gptkit.cli import main
from gptkit.data.shards import TokenShards
from gptkit.tokenizer import GPT4Tokenizer

SHAKESPEARE = str(Path(__file__).resolve().parents[3] / "shared" / "data" / "tinyshakespeare.txt")


def _one_line_error(capsys, prefix: str) -> str:
    """The error line: the last line of stderr, the only one from gptkit (the others are progress bars)."""
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(prefix) and sum(line.startswith("gptkit") for line in err) == 1, err
    return err[-1]


def test_char_tokenizer_then_prepare(tmp_path, capsys, shakespeare):
    assert main(["tokenizer", "train", SHAKESPEARE, "--char", "--out", str(tmp_path / "tok")]) == 0
    assert "65 tokens" in capsys.readouterr().out
    argv = [
        "data",
        "prepare",
        SHAKESPEARE,
        "--tokenizer",
        str(tmp_path / "tok"),
        "--out",
        str(tmp_path / "d"),
    ]
    assert main(argv) == 0
    assert "1,003,854 train + 111,540 val tokens" in capsys.readouterr().out
    shards = TokenShards.open(tmp_path / "d")
    assert GPT4Tokenizer.from_pretrained(tmp_path / "tok").decode(shards.val) == shakespeare[-111_540:]


def test_bpe_training_and_jsonl_prepare(tmp_path, capsys):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("\n".join(json.dumps({"body": f"record {i}: to be or not to be"}) for i in range(50)))
    text = tmp_path / "text.txt"
    text.write_text("to be or not to be, that is the question\n" * 50)
    out = tmp_path / "bpe"
    assert main(["tokenizer", "train", str(text), "--vocab-size", "300", "--out", str(out)]) == 0
    argv = [
        "data",
        "prepare",
        str(corpus),
        "-t",
        str(out),
        "-o",
        str(tmp_path / "d"),
        "--jsonl-field",
        "body",
    ]
    assert main([*argv, "--val-fraction", "0.2"]) == 0
    meta = json.loads((tmp_path / "d" / "meta.json").read_text())
    assert meta["documents"] == 50 and meta["dtype"] == "uint16" and meta["eos_token_id"] == 0


def test_scrub_prints_a_table(tmp_path, capsys):
    source = tmp_path / "in.txt"
    source.write_text("write to a@b.com\n")
    assert main(["data", "scrub", str(source), "--out", str(tmp_path / "clean"), "--mode", "remove"]) == 0
    out = capsys.readouterr().out
    assert "email" in out and "total" in out
    assert (tmp_path / "clean").read_text() == "write to \n"
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "in.txt").write_text("x\n")
    argv = ["data", "scrub", str(source), str(tmp_path / "sub" / "in.txt"), "--out", str(tmp_path / "dir")]
    assert main(argv) == 1
    assert "share a file name" in _one_line_error(capsys, "gptkit data: error:")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["data", "prepare", "{tmp}/none*.txt", "-t", "gpt-4", "-o", "{tmp}/o"], "matches no files"),
        (["data", "prepare", "{tmp}/bad.jsonl", "-t", "gpt-4", "-o", "{tmp}/o"], "bad.jsonl:2"),
        (["data", "prepare", "{tmp}/bad.jsonl", "-t", "{tmp}/nowhere", "-o", "{tmp}/o"], "nowhere"),
        (["data", "scrub", "{tmp}/bad.jsonl", "-o", "{tmp}/bad.jsonl"], "overwrite"),
        (["tokenizer", "train", "{tmp}/bad.jsonl", "--out", "{tmp}/t"], "--vocab-size is required"),
        (
            ["tokenizer", "train", "{tmp}/bad.jsonl", "--vocab-size", "100", "--out", "{tmp}/t"],
            "at least 257",
        ),
    ],
)
def test_errors_are_one_line_and_exit_1(tmp_path, capsys, argv, message):
    (tmp_path / "bad.jsonl").write_text('{"text": "fine"}\n{oops\n')
    assert main([a.format(tmp=tmp_path) for a in argv]) == 1
    assert message in _one_line_error(capsys, f"gptkit {argv[0]}: error:")
