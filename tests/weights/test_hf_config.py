"""config.json <-> GPT4Config: field dialects, refusals, family choice and round trips."""

from __future__ import annotations

import pytest

from gptkit import ConfigError, GPT4Config
from gptkit.weights.hf_config import config_from_hf, config_to_hf, family_for

GPT2 = {"model_type": "gpt2", "vocab_size": 100, "n_embd": 32, "n_layer": 2, "n_head": 4, "n_positions": 64}
LLAMA = {
    "model_type": "llama", "vocab_size": 100, "hidden_size": 32, "intermediate_size": 48,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
    "max_position_embeddings": 64, "rms_norm_eps": 1e-5, "hidden_act": "silu",
}  # fmt: skip
ROPE = dict(positions="rope", norm="rmsnorm", mlp="swiglu", bias=False, intermediate_size=48)


def test_gpt2_fields():
    config = config_from_hf(
        {**GPT2, "layer_norm_epsilon": 1e-6, "activation_function": "gelu", "eos_token_id": 7}
    )
    assert (config.n_embd, config.context_length, config.norm_eps) == (32, 64, 1e-6)
    assert config.gelu_approximate == "none" and config.bias and config.tie_word_embeddings
    assert config.eos_token_id == 7 and config.extra["hf_model_type"] == "gpt2"


def test_gpt2_n_ctx_stands_in_for_n_positions():
    hf = {k: v for k, v in GPT2.items() if k != "n_positions"}
    assert config_from_hf({**hf, "n_ctx": 48}).context_length == 48


@pytest.mark.parametrize(
    "switch, value",
    [
        ("scale_attn_by_inverse_layer_idx", True),
        ("reorder_and_upcast_attn", True),
        ("scale_attn_weights", False),
    ],
)
def test_gpt2_unsupported_switches_are_refused(switch, value):
    with pytest.raises(ConfigError, match=f"{switch}={value}"):
        config_from_hf({**GPT2, switch: value})


def test_gpt2_unknown_activation_is_refused():
    with pytest.raises(ConfigError, match="activation_function 'relu'"):
        config_from_hf({**GPT2, "activation_function": "relu"})


def test_llama_fields_and_defaults():
    config = config_from_hf({**LLAMA, "rope_theta": 5e5, "head_dim": 16, "bos_token_id": 1})
    assert (config.n_kv_head, config.head_dim, config.intermediate_size) == (2, 16, 48)
    assert config.rope_theta == 5e5 and config.rope_scaling is None and not config.tie_word_embeddings
    assert not config.bias and not config.has_qkv_bias and config.sliding_window is None


def test_default_sizes_are_canonical():
    config = config_from_hf({**LLAMA, "num_key_value_heads": 4, "head_dim": 8, "intermediate_size": 128})
    assert (config.n_kv_head, config.head_dim, config.intermediate_size) == (None, None, None)


def test_legacy_and_new_rope_keys_agree():
    scaling = {
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 16,
    }
    legacy = config_from_hf({**LLAMA, "rope_theta": 500.0, "rope_scaling": {"type": "llama3", **scaling}})
    new = config_from_hf(
        {**LLAMA, "rope_parameters": {"rope_type": "llama3", "rope_theta": 500.0, **scaling}}
    )
    assert (
        legacy == new and new.rope_scaling == {"rope_type": "llama3", **scaling} and new.rope_theta == 500.0
    )


def test_unsupported_rope_scaling_is_refused():
    with pytest.raises(ConfigError, match="rope scaling type 'dynamic' is not supported"):
        config_from_hf({**LLAMA, "rope_scaling": {"type": "dynamic", "factor": 2.0}})


def test_llama_biases():
    assert config_from_hf({**LLAMA, "attention_bias": True, "mlp_bias": True}).bias
    with pytest.raises(ConfigError, match="attention_bias=True with mlp_bias=False"):
        config_from_hf({**LLAMA, "attention_bias": True})


def test_gated_mlp_needs_silu():
    with pytest.raises(ConfigError, match="hidden_act 'gelu'"):
        config_from_hf({**LLAMA, "hidden_act": "gelu"})


def test_qwen2_has_qkv_only_bias_and_optional_window():
    qwen = {**LLAMA, "model_type": "qwen2", "sliding_window": 8}
    config = config_from_hf({**qwen, "use_sliding_window": False})
    assert config.qkv_bias and not config.bias and config.sliding_window is None
    assert config_from_hf({**qwen, "use_sliding_window": True, "max_window_layers": 0}).sliding_window == 8
    with pytest.raises(ConfigError, match="only some layers"):
        config_from_hf({**qwen, "use_sliding_window": True, "max_window_layers": 1})
    with pytest.raises(ConfigError, match="only some layers"):
        config_from_hf({**qwen, "layer_types": ["full_attention", "sliding_attention"]})


def test_mistral_window():
    assert config_from_hf({**LLAMA, "model_type": "mistral", "sliding_window": 8}).sliding_window == 8
    assert config_from_hf({**LLAMA, "model_type": "mistral", "sliding_window": None}).sliding_window is None


def test_unknown_model_type_and_missing_sizes():
    with pytest.raises(ConfigError, match="model_type 'bert' is not supported"):
        config_from_hf({**LLAMA, "model_type": "bert"})
    with pytest.raises(ConfigError, match="lacks 'hidden_size'"):
        config_from_hf({k: v for k, v in LLAMA.items() if k != "hidden_size"})


ROUND_TRIPS = {
    "gpt2": GPT4Config(vocab_size=100, n_layer=2, n_head=4, n_embd=32, context_length=64, bos_token_id=3),
    "gpt2-exact-untied": GPT4Config(
        vocab_size=100,
        n_layer=2,
        n_head=4,
        n_embd=32,
        intermediate_size=40,
        gelu_approximate="none",
        tie_word_embeddings=False,
    ),  # fmt: skip
    "llama": GPT4Config(
        vocab_size=100,
        n_layer=2,
        n_head=4,
        n_kv_head=2,
        n_embd=32,
        head_dim=16,
        rope_theta=5e5,
        **ROPE,
        rope_scaling={"rope_type": "linear", "factor": 2.0},
        eos_token_id=[2, 3],
        tie_word_embeddings=False,
    ),  # fmt: skip
    "llama-bias": GPT4Config(vocab_size=100, n_layer=2, n_head=4, n_embd=32, **{**ROPE, "bias": True}),
    "qwen2": GPT4Config(vocab_size=100, n_layer=2, n_head=4, n_embd=32, qkv_bias=True, **ROPE),
    "qwen2-window": GPT4Config(
        vocab_size=100, n_layer=2, n_head=4, n_embd=32, qkv_bias=True, sliding_window=8, **ROPE
    ),
    "mistral": GPT4Config(vocab_size=100, n_layer=2, n_head=4, n_embd=32, sliding_window=8, **ROPE),
}


@pytest.mark.parametrize("name", list(ROUND_TRIPS))
def test_round_trip(name):
    config = ROUND_TRIPS[name]
    hf = config_to_hf(config)
    assert hf["model_type"] == name.split("-")[0] == family_for(config)
    assert config_from_hf(hf) == config


@pytest.mark.parametrize("name", list(ROUND_TRIPS))
def test_transformers_reads_our_config(name):
    transformers = pytest.importorskip("transformers")
    config = ROUND_TRIPS[name]
    hf = config_to_hf(config)
    theirs = transformers.AutoConfig.for_model(**hf)
    assert type(theirs).__name__.lower().startswith(hf["model_type"].replace("2", ""))
    assert theirs.vocab_size == config.vocab_size and theirs.tie_word_embeddings == config.tie_word_embeddings
    assert getattr(theirs, "sliding_window", None) == config.sliding_window


@pytest.mark.parametrize(
    "changes, reason",
    [
        (dict(positions="sinusoidal"), "matches no Hugging Face family"),
        (dict(n_kv_head=2), "grouped-query attention"),
        (dict(bias=False), "linear layers without bias"),
        (dict(sliding_window=8), "a sliding window"),
    ],
)
def test_gpt2_shaped_configs_that_transformers_cannot_express(changes, reason):
    with pytest.raises(ConfigError, match=reason):
        config_to_hf(ROUND_TRIPS["gpt2"].replace(**changes))


@pytest.mark.parametrize(
    "changes, reason",
    [
        (dict(norm_bias=True), "RMSNorm with a bias"),
        (dict(bias=True, qkv_bias=False), "but not on q/k/v"),
        (dict(bias=True, sliding_window=8), "sliding_window with linear biases"),
        (dict(norm="layernorm"), "matches no Hugging Face family"),
    ],
)
def test_rope_configs_that_transformers_cannot_express(changes, reason):
    with pytest.raises(ConfigError, match=reason):
        config_to_hf(ROUND_TRIPS["llama-bias"].replace(**changes))
