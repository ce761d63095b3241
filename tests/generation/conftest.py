"""Fixtures for generation tests: tiny random transformers models and gptkit twins with equal weights."""

from __future__ import annotations

import pytest
import torch

from gptkit import GPT4Config, GPT4LMHeadModel

VOCAB = 96
INIT_STD = 0.35  # wide logits: random-model argmax/beam choices are far from float ties


@pytest.fixture(autouse=True)
def _one_thread(single_thread):
    """Every test here runs single-threaded (see tests/conftest.py)."""


def gptkit_twin(hf: torch.nn.Module, tmp_dir) -> GPT4LMHeadModel:
    """Load a transformers model's saved files with gptkit's production loader (same weights)."""
    hf.save_pretrained(tmp_dir, safe_serialization=True)
    return GPT4LMHeadModel.from_pretrained(tmp_dir, dtype=torch.float32)


def _randomize(model: torch.nn.Module, seed: int) -> None:
    """Wide random weights so logits are well separated."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or "ln_" in name:
                continue
            p.copy_(torch.randn(p.shape, generator=g) * INIT_STD)


@pytest.fixture(scope="session")
def llama_pair(tmp_path_factory):
    """(transformers LlamaForCausalLM, GPT4LMHeadModel) with identical weights (GQA: 4 heads, 2 kv heads)."""
    import transformers

    hf_cfg = transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, rope_theta=10000.0, tie_word_embeddings=False,
        bos_token_id=None, eos_token_id=None, pad_token_id=None,
    )  # fmt: skip
    hf = transformers.LlamaForCausalLM(hf_cfg).eval()
    _randomize(hf, 0)
    ours = gptkit_twin(hf, tmp_path_factory.mktemp("llama"))
    return hf, ours


@pytest.fixture(scope="session")
def gpt2_pair(tmp_path_factory):
    """(transformers GPT2LMHeadModel, GPT4LMHeadModel) with identical weights."""
    import transformers

    hf_cfg = transformers.GPT2Config(
        vocab_size=VOCAB, n_positions=64, n_embd=32, n_layer=2, n_head=4, bos_token_id=None, eos_token_id=None
    )
    hf = transformers.GPT2LMHeadModel(hf_cfg).eval()
    _randomize(hf, 1)
    ours = gptkit_twin(hf, tmp_path_factory.mktemp("gpt2"))
    return hf, ours


@pytest.fixture(scope="session", params=["llama", "gpt2"])
def model_pair(request, llama_pair, gpt2_pair):
    """Both families, one at a time."""
    return llama_pair if request.param == "llama" else gpt2_pair


@pytest.fixture(scope="session")
def byte_model(byte_tokenizer):
    """A random gptkit model over the byte tokenizer's vocabulary."""
    torch.manual_seed(0)
    cfg = GPT4Config(
        vocab_size=byte_tokenizer.get_vocab_size(), n_layer=1, n_head=2, n_embd=32, context_length=128
    )
    model = GPT4LMHeadModel(cfg).eval()
    _randomize(model, 2)
    return model
