"""The CLI's rules: exit status 2 for usage errors and 1 for runtime errors, one line each; `generate`
checks everything before printing anything and crops a tiny context from the left (the training
walkthrough's last command works as documented)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from gptkit.cli import main

SHAKESPEARE = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"
WALKTHROUGH_YAML = """data_dir: {data}
out_dir: {out}
model: {{preset: gpt-nano, bias: true}}
batch_size: 4
max_iters: 3
eval_interval: 3
eval_iters: 1
lr: 1.0e-3
warmup_iters: 1
dtype: bfloat16
"""


def one_line_error(capsys, status: int, argv: list[str]) -> str:
    """Run ``argv``; it must exit with ``status``, print nothing on stdout and one line on stderr."""
    assert main(argv) == status
    out, err = capsys.readouterr()
    assert out == "", out
    assert err.count("\n") == 1 and err.startswith(f"gptkit {argv[0]}") and ": error: " in err, err
    return err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["generate", "-n", "-5", "hi"], "must be a positive integer, got -5"),
        (["generate", "-n", "five", "hi"], "must be a positive integer, got 'five'"),
        (["generate", "--dtype", "float16", "hi"], "float16 is not supported"),
        (["generate", "--dtype", "int3", "hi"], "must be float32 or bfloat16"),
        (["generate", "--temperature", "-1", "--sample", "hi"], "temperature"),
        (["generate", "--top-p", "2", "--sample", "hi"], "top_p"),
        (["generate", "   "], "the prompt is empty"),
        (["generate", "--no-such-flag", "hi"], "unrecognized arguments: --no-such-flag"),
        (["serve", "--port", "99999"], "must be a port number from 0 to 65535, got 99999"),
        (["serve", "--port", "-1"], "must be a port number"),
        (["serve", "--max-batch-size", "0"], "must be a positive integer"),
        (["serve", "--dtype", "float16"], "float16 is not supported"),
        (["chat", "--dtype", "fp16"], "float16 is not supported"),
        (["chat", "--max-tokens", "0"], "must be a positive integer"),
        (["task", "summarization", "--max-words", "0", "x"], "must be a positive integer"),
        (["eval", "perplexity", "x.txt", "--dtype", "float16"], "float16 is not supported"),
        (["cost", "--seq-len", "0"], "must be a positive integer"),
        (["info", "a", "b"], "unrecognized arguments: b"),
    ],
)
def test_usage_errors_exit_2_with_one_line(capsys, argv, message):
    assert message in one_line_error(capsys, 2, argv)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["info", "no-such-model"], "unknown model 'no-such-model'"),
        (["generate", "--model", "gpt-4", "hi"], "GPT-4's weights are not public"),
        (["task", "summarization", "missing-file.txt"], "no such file: missing-file.txt"),
        (["task", "sentiment-analysis", "notes/missing.md"], "no such file"),
        (["serve", "--host", "no-such-host.invalid"], "cannot listen on no-such-host.invalid"),
    ],
)
def test_runtime_errors_exit_1_with_one_line(capsys, argv, message):
    assert message in one_line_error(capsys, 1, argv)


def test_a_busy_port_is_a_runtime_error(capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert "in use" in one_line_error(capsys, 1, ["serve", "--port", str(port)])


def test_help_exits_0(capsys):
    assert main(["generate", "--help"]) == 0
    assert "tokens to generate" in capsys.readouterr().out


def test_an_existing_file_is_read_and_text_is_text(tmp_path):
    from gptkit.tasks.commands import read_text

    path = tmp_path / "article.txt"
    path.write_text("The text of the file.")
    assert read_text(str(path)) == "The text of the file."
    assert read_text("Summarize this sentence.") == "Summarize this sentence."  # prose, not a file name


@pytest.fixture(scope="module")
def walkthrough_model(tmp_path_factory) -> Path:
    """The training walkthrough (docs/training.md), shortened to 3 steps: a char model with context 64."""
    root = tmp_path_factory.mktemp("walkthrough")
    tok, data, out = root / "tok-char", root / "data", root / "out"
    assert main(["tokenizer", "train", "--char", str(SHAKESPEARE), "--out", str(tok)]) == 0
    assert main(["data", "prepare", str(SHAKESPEARE), "--tokenizer", str(tok), "--out", str(data)]) == 0
    (root / "shakespeare.yaml").write_text(WALKTHROUGH_YAML.format(data=data, out=out))
    assert main(["train", str(root / "shakespeare.yaml"), "--export", str(out / "hf")]) == 0
    return out / "hf"


def test_the_walkthrough_samples_200_tokens_from_a_64_token_context(walkthrough_model, capsys):
    capsys.readouterr()
    argv = ["generate", "ROMEO:", "-m", str(walkthrough_model), "--sample", "-n", "200", "--seed", "1"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert out.startswith("ROMEO:") and len(out.rstrip("\n")) == len("ROMEO:") + 200  # one char a token
    notes = err.strip().splitlines()
    assert len(notes) == 1 and "cropped from the left" in notes[0] and "64-token context" in notes[0]
    assert main(argv) == 0 and capsys.readouterr().out == out  # the seed gives the same sample


def test_generate_checks_before_printing(walkthrough_model, capsys):
    """A prompt that cannot be cropped (beam search) fails before the prompt is echoed."""
    capsys.readouterr()
    err = one_line_error(
        capsys, 1, ["generate", "ROMEO:" * 20, "-m", str(walkthrough_model), "--num-beams", "2"]
    )
    assert "exceeds the model's context window of 64 tokens" in err


def test_a_prompt_that_fits_is_not_cropped(walkthrough_model, capsys):
    capsys.readouterr()
    assert main(["generate", "ROMEO:", "-m", str(walkthrough_model), "-n", "20"]) == 0
    out, err = capsys.readouterr()
    assert err == "" and len(out.rstrip("\n")) == len("ROMEO:") + 20
