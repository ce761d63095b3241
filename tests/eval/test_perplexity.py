"""Sliding-window perplexity: every token scored once; equal to transformers on the bundled weights."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from gptkit.cli import main
from gptkit.eval.perplexity import TextScore, evaluate_perplexity, score_text, sliding_windows


@given(n=st.integers(1, 300), window=st.integers(2, 64), data=st.data())
def test_windows_score_every_token_once_with_at_most_window_minus_one_context(n, window, data):
    stride = data.draw(st.integers(1, window))
    spans = sliding_windows(n, window, stride)
    scored = [p for _, end, first in spans for p in range(first, end)]
    assert scored == list(range(n))
    for begin, end, first in spans:
        assert begin <= first < end and end - begin <= window


@torch.inference_mode()
def reference_nll(model, ids: list[int], window: int, stride: int) -> tuple[float, int]:
    """Hugging Face's perplexity-guide loop, written out independently: (summed NLL, scored tokens)."""
    nll, count, prev_end = 0.0, 0, 0
    for begin in range(0, len(ids), stride):
        end = min(begin + window, len(ids))
        target_len = end - prev_end
        chunk = torch.tensor([ids[begin:end]])
        logprobs = torch.log_softmax(model(chunk).logits[0].float(), dim=-1)
        for pos in range(end - begin - target_len, end - begin):
            if pos > 0:
                nll -= float(logprobs[pos - 1, chunk[0, pos]])
                count += 1
        prev_end = end
        if end == len(ids):
            break
    return nll, count


@pytest.mark.parametrize(("window", "stride"), [(64, 64), (64, 16), (17, 5), (2, 1)])
def test_score_text_equals_the_reference_loop(tiny, window, stride):
    text = "To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer. " * 2
    score = score_text(tiny, text, window=window, stride=stride, batch_size=3)
    nll, count = reference_nll(tiny.model, [0, *text.encode()], window, stride)
    assert score.n_tokens == count and score.n_bytes == len(text.encode())
    assert score.nll == pytest.approx(nll, rel=1e-5)
    assert score.perplexity == pytest.approx(math.exp(nll / count), rel=1e-5)
    assert score.bits_per_byte == pytest.approx(nll / math.log(2) / len(text.encode()), rel=1e-5)


def test_several_files_add_up(tiny, tmp_path):
    (tmp_path / "a.txt").write_text("abc " * 30)
    (tmp_path / "b.txt").write_text("héllo wörld " * 10)
    result = evaluate_perplexity(tiny, [tmp_path / "a.txt", tmp_path / "b.txt"], window=32, stride=16)
    parts = [TextScore(-0.0, 0, 0)] + [
        score_text(tiny, (tmp_path / n).read_text(), window=32, stride=16) for n in ("a.txt", "b.txt")
    ]
    total = parts[0] + parts[1] + parts[2]
    assert result.metrics["perplexity"] == pytest.approx(total.perplexity)
    assert result.metrics["bytes"] == 120 + len(("héllo wörld " * 10).encode())
    assert set(result.breakdown) == {str(tmp_path / "a.txt"), str(tmp_path / "b.txt")}


@pytest.mark.bundled  # the command loads the default model before it reads the files
def test_empty_and_missing_files_are_one_line_cli_errors(tmp_path, capsys):
    (tmp_path / "empty.txt").write_text("  \n")
    assert main(["eval", "perplexity", str(tmp_path / "empty.txt")]) == 1
    assert main(["eval", "perplexity", str(tmp_path / "missing.txt")]) == 1
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 2 and "is empty" in errors[0] and "no such file" in errors[1]


@pytest.mark.slow
def test_bundled_model_perplexity_equals_transformers(bundled, bundled_gguf, shakespeare):
    transformers = pytest.importorskip("transformers")
    text = shakespeare[:3000]
    window, stride = 256, 128
    score = score_text(bundled, text, window=window, stride=stride)
    hf = transformers.AutoModelForCausalLM.from_pretrained(
        bundled_gguf.parent, gguf_file=bundled_gguf.name, dtype=torch.float32
    ).eval()
    ids = [bundled.model.config.bos_token_id, *bundled.encode(text)]
    nll, count = reference_nll(hf, ids, window, stride)
    assert score.n_tokens == count == len(ids) - 1
    assert score.perplexity == pytest.approx(math.exp(nll / count), rel=0.005)
