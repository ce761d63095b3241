"""ServeConfig: built once from `gptkit serve`'s options (whose defaults are its own) or from Python."""

from __future__ import annotations

import dataclasses

import pytest

from gptkit.cli import build_parser
from gptkit.errors import ConfigError
from gptkit.serve import Limits, ServeConfig, create_app
from gptkit.serve.commands import serve_config


def test_the_cli_defaults_are_serve_configs(monkeypatch):
    monkeypatch.delenv("GPTKIT_API_KEY", raising=False)
    assert serve_config(build_parser().parse_args(["serve", "m"])) == ServeConfig(model_name="m")


def test_every_serve_option_reaches_the_config(monkeypatch):
    monkeypatch.delenv("GPTKIT_API_KEY", raising=False)
    args = build_parser().parse_args(
        ["serve", "m", "--served-model-name", "name", "--api-key", "k", "--max-batch-size", "2",
         "--max-seq-len", "128", "--max-queue", "3", "--timeout", "5", "--read-timeout", "2", "--max-n", "4",
         "--max-choices", "8", "--max-tokens", "9", "--compile", "--host", "0.0.0.0", "--port", "9",
         "--log-level", "debug", "--prefix-cache-mb", "64"]
    )  # fmt: skip
    expected = ServeConfig(
        model_name="name", api_key="k", max_batch_size=2, max_seq_len=128, max_queue=3, timeout_s=5.0,
        limits=Limits(max_n=4, max_tokens=9, max_choices=8, read_timeout_s=2.0), compile=True,
        host="0.0.0.0", port=9, log_level="debug", prefix_cache_mb=64.0,
    )  # fmt: skip
    assert serve_config(args) == expected
    with pytest.raises(dataclasses.FrozenInstanceError):
        expected.port = 1  # type: ignore[misc]


def test_create_app_takes_a_config_and_keyword_settings(tiny_chat_model, chat_tokenizer):
    config = ServeConfig(model_name="tiny", max_batch_size=2, max_seq_len=64, limits=Limits(max_n=3))
    state = create_app(tiny_chat_model, chat_tokenizer, config).state.gptkit
    assert state.config == config and state.max_seq_len == 64 and state.driver.engine.max_batch_size == 2
    changed = create_app(tiny_chat_model, chat_tokenizer, config, api_key="k").state.gptkit
    assert changed.config == dataclasses.replace(config, api_key="k") and changed.api_key == "k"
    keywords = create_app(tiny_chat_model, chat_tokenizer, model_name="tiny", max_queue=5).state.gptkit
    assert keywords.config == ServeConfig(model_name="tiny", max_queue=5) and keywords.driver.max_queue == 5


def test_create_app_refuses_a_missing_name_or_an_unknown_setting(tiny_chat_model, chat_tokenizer):
    with pytest.raises(ConfigError, match="model_name"):
        create_app(tiny_chat_model, chat_tokenizer)
    with pytest.raises(TypeError, match="max_batch"):
        create_app(tiny_chat_model, chat_tokenizer, model_name="tiny", max_batch=2)
