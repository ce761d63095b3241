"""The `gptkit` command line: real subcommands on the bundled model and one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gptkit import GPT4LMHeadModel, GPT4Tokenizer
from gptkit.cli import main

BIN = Path(sys.executable).parent


def run_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [str(BIN / "gptkit"), *args], input=stdin, capture_output=True, text=True, timeout=300, env=env
    )


@pytest.fixture(scope="module")
def smollm2():
    return GPT4Tokenizer.from_pretrained("smollm2-135m-instruct"), GPT4LMHeadModel.from_pretrained(
        "smollm2-135m-instruct"
    )


@pytest.mark.slow
def test_generate_prints_the_prompt_and_the_greedy_continuation(smollm2):
    tokenizer, model = smollm2
    prompt = "The quick brown fox jumps over the lazy dog"
    ids = tokenizer.encode(prompt, return_tensors="pt")
    expected = tokenizer.decode(model.generate(ids, max_new_tokens=12)[0], skip_special_tokens=True)
    result = run_cli("generate", "-n", "12", prompt)
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip("\n") == expected


@pytest.mark.slow
def test_generate_reads_the_prompt_from_stdin_and_applies_the_chat_template(smollm2):
    tokenizer, model = smollm2
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")
    out = model.generate(ids, max_new_tokens=10)
    expected = tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
    result = run_cli("generate", "--chat", "-n", "10", stdin="What is the capital of France?")
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip("\n") == expected


def test_models_lists_the_bundled_model_and_explains_gpt4(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "smollm2-135m-instruct" in out
    assert "GPT-4's weights are not public" in out


def test_info_describes_the_bundled_model(capsys):
    assert main(["info", "smollm2-135m-instruct"]) == 0
    out = capsys.readouterr().out
    for fragment in ("llama", "134.5M", "Q4_1", "8192", "49152", "9 heads, 3 kv heads"):
        assert fragment in out


def test_info_of_an_hf_directory(tmp_path, capsys):
    torch.manual_seed(0)
    from gptkit import GPT4Config

    GPT4LMHeadModel(
        GPT4Config(vocab_size=50, n_layer=1, n_head=2, n_embd=16, context_length=32)
    ).save_pretrained(tmp_path)
    assert main(["info", str(tmp_path)]) == 0
    assert "gpt2" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["info", "no-such-model"], "unknown model 'no-such-model'"),
        (["info", "gpt-4"], "GPT-4's weights are not public"),
        (["generate", "--model", "gpt-4", "hi"], "GPT-4's weights are not public"),
    ],
)
def test_errors_are_one_line_with_nonzero_exit(args, message, capsys):
    assert main(args) == 1  # runtime errors; usage errors exit 2 (tests/test_cli_rules.py)
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1 and err.startswith("gptkit ")


def test_corrupt_gguf_is_a_one_line_error(tmp_path, bundled_gguf, capsys):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(bundled_gguf.read_bytes()[:5000])
    assert main(["generate", "--model", str(broken), "hi"]) == 1
    err = capsys.readouterr().err
    assert "corrupt or truncated" in err and err.count("\n") == 1


def test_console_script_help_lists_subcommands():
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("generate", "models", "info"):
        assert command in result.stdout
    assert "tokens to generate" in run_cli("generate", "--help").stdout


def test_generate_leaves_unset_sampling_options_to_generation_config():
    from gptkit.cli import _generation_options, build_parser
    from gptkit.generation import GenerationConfig

    unset = _generation_options(build_parser().parse_args(["generate", "hi", "--sample"]))
    assert not {"temperature", "top_k", "top_p", "repetition_penalty"} & set(unset)
    assert GenerationConfig(**unset) == GenerationConfig(max_new_tokens=50, do_sample=True, num_beams=1)
    given = _generation_options(build_parser().parse_args(["generate", "hi", "-t", "0.5", "--top-k", "5"]))
    assert (given["temperature"], given["top_k"]) == (0.5, 5)
