"""The decoder itself: cached decoding, padding, loss, config switches, bad input."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gptkit import ConfigError, ContextLengthError, GPT4Config, GPT4LMHeadModel, WeightsError, preset

VARIANTS = {
    "gpt2-like": dict(positions="learned", norm="layernorm", mlp="gelu", bias=True),
    "sinusoidal": dict(positions="sinusoidal", norm="layernorm", mlp="gelu", bias=False),
    "llama-like-gqa": dict(positions="rope", norm="rmsnorm", mlp="swiglu", bias=False, n_kv_head=2),
    "qwen2-like": dict(
        positions="rope", norm="rmsnorm", mlp="swiglu", bias=False, qkv_bias=True, n_kv_head=2
    ),
    "mistral-like-window": dict(
        positions="rope", norm="rmsnorm", mlp="swiglu", bias=False, n_kv_head=1, sliding_window=5
    ),
    "untied-llama3-scaled": dict(
        positions="rope",
        norm="rmsnorm",
        mlp="swiglu",
        bias=False,
        tie_word_embeddings=False,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "original_max_position_embeddings": 16},
    ),
}


def tiny(**switches) -> GPT4LMHeadModel:
    torch.manual_seed(0)
    base = dict(vocab_size=97, n_layer=2, n_head=4, n_embd=32, intermediate_size=48, context_length=64)
    return GPT4LMHeadModel(GPT4Config(**{**base, **switches})).eval()


@pytest.fixture(params=list(VARIANTS), ids=list(VARIANTS))
def model(request) -> GPT4LMHeadModel:
    return tiny(**VARIANTS[request.param])


@torch.inference_mode()
def test_cached_decoding_equals_full_forward(model):
    ids = torch.randint(0, 97, (3, 20), generator=torch.Generator().manual_seed(1))
    full = model(ids).logits
    cache = model.new_cache(3, 32)
    pieces = [model(ids[:, :7], cache=cache).logits]
    pieces += [model(ids[:, t : t + 1], cache=cache).logits for t in range(7, 20)]
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=1e-5)


@torch.inference_mode()
def test_left_padded_batch_equals_each_row_alone(model):
    gen = torch.Generator().manual_seed(2)
    rows = [torch.randint(0, 97, (n,), generator=gen) for n in (12, 7, 3)]
    longest = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), longest, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, longest - len(r) :], mask[i, longest - len(r) :] = r, 1
    batched = model(ids, attention_mask=mask).logits
    cache = model.new_cache(len(rows), 24)
    cached = torch.cat(
        [model(ids[:, :5], attention_mask=mask[:, :5], cache=cache).logits]
        + [
            model(ids[:, t : t + 1], attention_mask=mask[:, t : t + 1], cache=cache).logits
            for t in range(5, longest)
        ],
        dim=1,
    )
    for i, r in enumerate(rows):
        alone = model(r[None]).logits[0]
        torch.testing.assert_close(batched[i, longest - len(r) :], alone, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(cached[i, longest - len(r) :], alone, atol=1e-5, rtol=1e-5)


def test_loss_is_shifted_cross_entropy_ignoring_minus_100():
    model = tiny(**VARIANTS["llama-like-gqa"])
    ids = torch.randint(0, 97, (2, 10))
    labels = ids.clone()
    labels[0, :4] = -100
    out = model(ids, labels=labels)
    expected = F.cross_entropy(
        out.logits[:, :-1].reshape(-1, 97), labels[:, 1:].reshape(-1), ignore_index=-100
    )
    torch.testing.assert_close(out.loss, expected)
    out.loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_sliding_window_limits_what_a_token_sees():
    model = tiny(**VARIANTS["mistral-like-window"])
    ids = torch.randint(0, 97, (1, 16))
    changed = ids.clone()
    changed[0, 0] = (ids[0, 0] + 1) % 97
    with torch.inference_mode():
        a, b = model(ids).logits, model(changed).logits
    # one layer's receptive field is 5 tokens; two layers reach back 2 * (5 - 1) = 8 positions
    assert not torch.allclose(a[0, 8], b[0, 8])
    torch.testing.assert_close(a[0, 9:], b[0, 9:])


def test_logits_to_keep_returns_only_the_last_positions(model):
    ids = torch.randint(0, 97, (2, 9))
    with torch.inference_mode():
        torch.testing.assert_close(model(ids, logits_to_keep=1).logits, model(ids).logits[:, -1:])


def test_parameter_count_matches_config_formula(model):
    assert model.num_parameters() == model.config.num_parameters()


def test_smollm2_preset_has_135m_parameters():
    assert 134e6 < preset("smollm2-135m").num_parameters() < 136e6


def test_tied_embeddings_share_storage():
    model = tiny(**VARIANTS["llama-like-gqa"])
    assert model.lm_head.weight is model.embed.weight


def test_prompt_longer_than_context_raises_naming_both_numbers():
    model = tiny(**VARIANTS["gpt2-like"])
    with pytest.raises(ContextLengthError, match="65.*64"):
        model(torch.zeros(1, 65, dtype=torch.long))


def test_cache_overflow_raises():
    model = tiny(**VARIANTS["llama-like-gqa"])
    cache = model.new_cache(1, 4)
    with pytest.raises(ContextLengthError, match="capacity 4"):
        model(torch.zeros(1, 5, dtype=torch.long), cache=cache)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (dict(positions="alibi"), "positions"),
        (dict(norm="batchnorm"), "norm"),
        (dict(n_embd=30, n_head=4), "divisible"),
        (dict(n_head=4, n_kv_head=3), "n_kv_head"),
        (dict(n_layer=0), "n_layer"),
        (dict(positions="rope", rope_scaling={"type": "dynamic", "factor": 2.0}), "dynamic"),
    ],
)
def test_invalid_configs_raise_config_error(changes, message):
    with pytest.raises(ConfigError, match=message):
        GPT4Config(**{**dict(n_embd=32, n_head=4), **changes})


def test_config_round_trips_through_dict():
    config = GPT4Config(**VARIANTS["qwen2-like"])
    assert GPT4Config.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="unknown config keys: bogus"):
        GPT4Config.from_dict({**config.to_dict(), "bogus": 1})


def test_from_state_dict_refuses_mismatched_shapes():
    model = tiny(**VARIANTS["llama-like-gqa"])
    state = {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}
    state["blocks.0.attn.qkv.weight"] = torch.zeros(5, 32)
    with pytest.raises(WeightsError, match=r"blocks\.0\.attn\.qkv\.weight.*\(5, 32\)"):
        GPT4LMHeadModel.from_state_dict(model.config, state)
    del state["norm.weight"]
    with pytest.raises(WeightsError, match="missing.*norm.weight"):
        GPT4LMHeadModel.from_state_dict(model.config, state)


def test_aligned_targets_train_every_position_and_agree_with_shifted_labels():
    model = tiny(**VARIANTS["gpt2-like"])
    window = torch.randint(0, 97, (2, 11))
    inputs, targets = window[:, :-1], window[:, 1:]
    out = model(inputs, targets=targets)
    expected = F.cross_entropy(out.logits.reshape(-1, 97), targets.reshape(-1))
    torch.testing.assert_close(out.loss, expected)
    # the first T-1 aligned targets are exactly what HF-style labels train on the same inputs
    shifted = F.cross_entropy(out.logits[:, :-1].reshape(-1, 97), targets[:, :-1].reshape(-1))
    torch.testing.assert_close(model(inputs, labels=inputs).loss, shifted)
