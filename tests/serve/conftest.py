"""One real server per test session: the bundled SmolLM2 behind uvicorn on a free port, plus an openai client."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest
import torch

from gptkit import GPT4LMHeadModel, GPT4Tokenizer
from gptkit.engine import Engine
from gptkit.registry import DEFAULT_MODEL
from gptkit.serve import create_app, serve_in_thread

API_KEY = "test-key"
MAX_BATCH_SIZE = 32  # 32 concurrent streaming clients share one batch


@dataclass
class BundledServer:
    """The session's running server and what it serves."""

    url: str  # http://127.0.0.1:PORT
    base_url: str  # url + "/v1", for openai.OpenAI(base_url=...)
    api_key: str
    model_name: str
    model: Any
    tokenizer: Any
    app: Any


@pytest.fixture(scope="session")
def bundled_model_and_tokenizer(bundled_gguf) -> tuple[Any, Any]:
    """The bundled SmolLM2-135M-Instruct (eval mode) and its tokenizer, loaded once."""
    model = GPT4LMHeadModel.from_pretrained(DEFAULT_MODEL).eval()
    return model, GPT4Tokenizer.from_pretrained(DEFAULT_MODEL)


@pytest.fixture(scope="session")
def bundled_server(bundled_model_and_tokenizer) -> Iterator[BundledServer]:
    """The bundled model served with api_key "test-key" and 32 slots, for the whole session."""
    model, tokenizer = bundled_model_and_tokenizer
    torch.set_num_threads(1)  # the tests share 2 cores; decode of a 135M model is fast single-threaded
    app = create_app(
        model, tokenizer, model_name=DEFAULT_MODEL, api_key=API_KEY, max_batch_size=MAX_BATCH_SIZE
    )
    with serve_in_thread(app) as running:
        yield BundledServer(running.url, running.url + "/v1", API_KEY, DEFAULT_MODEL, model, tokenizer, app)


@pytest.fixture
def openai_client(bundled_server) -> openai.OpenAI:
    """The official client pointed at the session's server (no retries: errors show at once)."""
    return openai.OpenAI(base_url=bundled_server.base_url, api_key=bundled_server.api_key, max_retries=0)


def read_metric(url: str, name: str, labels: dict[str, str] | None = None) -> float:
    """One sample's value from the server's /metrics (0 when absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(url + "/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in (labels or {}).items()):
                return sample.value
    return 0.0


@pytest.fixture(scope="session")
def metric() -> Callable[..., float]:
    """read_metric(url, name, labels): a sample of a server's /metrics."""
    return read_metric


def wait_until(condition: Callable[[], bool], timeout: float = 20.0, interval: float = 0.05) -> bool:
    """Poll ``condition`` until it holds (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


@pytest.fixture(scope="session")
def eventually() -> Callable[..., bool]:
    """wait_until(condition, timeout): poll until a condition holds."""
    return wait_until


@pytest.fixture(scope="session")
def reference_engine(bundled_model_and_tokenizer) -> Engine:
    """A separate Engine on the same model: what a request gives when run alone (one slot, and no prefix
    cache: the server's, on by default, must not change a thing)."""
    model, tokenizer = bundled_model_and_tokenizer
    return Engine(model, tokenizer, max_batch_size=1, prefix_cache_mb=0)


@pytest.fixture(scope="session")
def chat_tokenizer(bundled_gguf) -> Any:
    """The bundled model's tokenizer (ChatML template, <|im_start|> / <|im_end|> control tokens)."""
    return GPT4Tokenizer.from_pretrained(DEFAULT_MODEL)


@pytest.fixture(scope="session")
def tiny_chat_model(chat_tokenizer) -> Any:
    """A random one-layer model over the bundled vocabulary: real tokenizer and template, fast decoding."""
    from gptkit import GPT4Config

    torch.manual_seed(0)
    config = GPT4Config(
        vocab_size=len(chat_tokenizer), n_layer=1, n_head=2, n_embd=32, context_length=256,
        eos_token_id=chat_tokenizer.eos_token_id,
    )  # fmt: skip
    return GPT4LMHeadModel(config).eval()


@pytest.fixture(scope="session")
def tiny_app(tiny_chat_model, chat_tokenizer) -> Callable[..., Any]:
    """tiny_app(**create_app options): an app serving the tiny model as "tiny"."""
    torch.set_num_threads(1)

    def make(**options: Any) -> Any:
        return create_app(tiny_chat_model, chat_tokenizer, model_name="tiny", **options)

    return make
