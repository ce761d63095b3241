"""MultiLoRALinear: each row of a batch takes its own adapter (or none), as if it ran alone."""

from __future__ import annotations

import copy

import pytest
import torch

from gptkit import AdapterError, GenerationError, GPT4Config, GPT4LMHeadModel
from gptkit.model.adapters import (
    BASE,
    MultiLoRALinear,
    adapter_selection,
    adapters_active,
    add_adapter,
    use_adapters,
)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = GPT4Config(vocab_size=50, n_layer=2, n_head=2, n_embd=16, context_length=32, mlp="swiglu",
                        norm="rmsnorm", positions="rope", bias=False)  # fmt: skip
    return GPT4LMHeadModel(config).eval()


def random_adapter(model, targets, rank, seed):
    g = torch.Generator().manual_seed(seed)
    weights = {}
    for i in range(model.config.n_layer):
        for target in targets:
            m = model.get_submodule(f"blocks.{i}.{target}")
            weights[f"blocks.{i}.{target}"] = (
                torch.randn(rank, m.in_features, generator=g) * 0.3,
                torch.randn(m.out_features, rank, generator=g) * 0.3,
            )
    return weights


def merged_copy(model, weights):
    merged = copy.deepcopy(model)
    with torch.no_grad():
        for target, (A, B) in weights.items():
            merged.get_submodule(target).weight += B @ A
    return merged


@torch.no_grad()
def test_rows_of_one_batch_each_equal_their_own_merged_model(model):
    a = random_adapter(model, ("attn.qkv", "mlp.down"), rank=2, seed=1)
    b = random_adapter(model, ("attn.proj", "mlp.gate_up", "attn.qkv"), rank=5, seed=2)
    served = copy.deepcopy(model)
    assert add_adapter(served, "a", a) == 0 and add_adapter(served, "b", b) == 1
    ids = torch.randint(0, 50, (4, 7), generator=torch.Generator().manual_seed(3))
    with use_adapters(served, [1, BASE, 0, 1]):
        assert adapters_active(served)
        logits = served(ids).logits
    assert not adapters_active(served)  # the selection is reset after the block
    expected = [merged_copy(model, b), model, merged_copy(model, a), merged_copy(model, b)]
    for row, reference in enumerate(expected):
        torch.testing.assert_close(logits[row], reference(ids[row : row + 1]).logits[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(served(ids).logits, model(ids).logits)  # no selection: the base model


@torch.no_grad()
def test_a_default_adapter_applies_to_every_row_unless_rows_choose(model):
    a = random_adapter(model, ("attn.qkv",), rank=3, seed=4)
    served = copy.deepcopy(model)
    add_adapter(served, "a", a, default=True)
    ids = torch.randint(0, 50, (2, 5))
    torch.testing.assert_close(served(ids).logits, merged_copy(model, a)(ids).logits, atol=1e-5, rtol=1e-5)
    with use_adapters(served, [BASE, BASE]):  # BASE rows take the default adapter
        torch.testing.assert_close(
            served(ids).logits, merged_copy(model, a)(ids).logits, atol=1e-5, rtol=1e-5
        )


def test_bad_adapters_and_names_are_refused(model):
    served = copy.deepcopy(model)
    good = random_adapter(model, ("attn.qkv",), rank=2, seed=5)
    add_adapter(served, "a", good)
    with pytest.raises(AdapterError, match="already loaded"):
        add_adapter(served, "a", good)
    A, B = good["blocks.0.attn.qkv"]
    with pytest.raises(AdapterError, match="do not fit"):
        add_adapter(served, "wide", {"blocks.0.attn.qkv": (torch.zeros(2, 17), torch.zeros(B.shape[0], 2))})
    with pytest.raises(AdapterError, match="share a rank"):
        add_adapter(served, "ranks", {"blocks.0.attn.qkv": (A, B[:, :1])})
    with pytest.raises(AdapterError, match="not a linear layer"):
        add_adapter(served, "head", {"lm_head": (torch.zeros(2, 16), torch.zeros(50, 2))})
    with pytest.raises(AdapterError, match="no LoRA weights"):
        add_adapter(served, "empty", {})
    with pytest.raises(GenerationError, match="unknown adapter") as error:
        adapter_selection(served).index("b")
    assert error.value.param == "adapter"
    assert sum(isinstance(m, MultiLoRALinear) for m in served.modules()) == 2  # failed adds changed nothing
