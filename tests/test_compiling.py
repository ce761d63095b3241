"""gptkit.compiling: the compiled callable until it fails once, then eager; the training forward uses it."""

from __future__ import annotations

import pytest
import torch

from gptkit import GPT4Config, GPT4LMHeadModel
from gptkit.compiling import CompiledOrEager
from gptkit.train.loop import CompiledForward


def failing_compiler(*args, **kwargs):
    raise RuntimeError("C++ compile error: no such file g++\nand many more lines")


def test_falls_back_once_with_one_warning_and_eager_results():
    warnings: list[str] = []
    calls: list[str] = []
    compiled = CompiledOrEager(
        failing_compiler, lambda x, y=0: calls.append("eager") or x + y, "a sum", warnings.append
    )
    assert compiled.is_compiled
    assert [compiled(1, y=2), compiled(3)] == [3, 3]
    assert not compiled.is_compiled and calls == ["eager", "eager"]
    assert warnings == [
        "torch.compile of a sum failed, running eagerly: RuntimeError: C++ compile error: no such file g++"
    ]


def test_a_working_compiled_callable_is_used_and_none_means_eager():
    warnings: list[str] = []
    compiled = CompiledOrEager(lambda x: ("compiled", x), lambda x: ("eager", x), "f", warnings.append)
    assert compiled(1) == ("compiled", 1) and compiled.is_compiled and not warnings
    eager = CompiledOrEager(None, lambda x: ("eager", x), "f", warnings.append)
    assert eager(2) == ("eager", 2) and not eager.is_compiled and not warnings


def test_training_forward_falls_back_to_eager_when_compiling_fails(monkeypatch):
    torch.manual_seed(0)
    model = GPT4LMHeadModel(GPT4Config(vocab_size=32, n_layer=1, n_head=2, n_embd=16, context_length=8))
    monkeypatch.setattr(torch, "compile", lambda module: failing_compiler)
    forward = CompiledForward(model, compile=True)
    ids = torch.randint(0, 32, (2, 8))
    with pytest.warns(UserWarning, match="torch.compile of the training forward failed.*no such file g"):
        loss = forward(ids, ids)
    assert torch.equal(loss, model(ids, labels=ids).loss)
    assert not forward.model.is_compiled
