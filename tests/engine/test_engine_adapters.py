"""Requests for different LoRA adapters and for the base model share one batch; each equals running alone.

On the bundled GGUF (quantized default path: the fused native decode block steps aside for batches with
an adapter row) and on a float model against the merged weights.
"""

from __future__ import annotations

import copy

import pytest
import torch

from gptkit import GenerationError
from gptkit.engine import Engine, SamplingParams
from gptkit.model import decoder
from gptkit.model.adapters import add_adapter
from gptkit.weights.adapters import load_adapter

PROMPTS = ["Once upon a time", "The capital of France is", "def fibonacci(n):", "Roses are red,"]
GREEDY = SamplingParams(max_tokens=12, temperature=0, logprobs=1)


def random_adapter(model, targets, rank, seed, std=0.05):
    g = torch.Generator().manual_seed(seed)
    weights = {}
    for i in range(model.config.n_layer):
        for target in targets:
            m = model.get_submodule(f"blocks.{i}.{target}")
            weights[f"blocks.{i}.{target}"] = (
                torch.randn(rank, m.in_features, generator=g) * std,
                torch.randn(m.out_features, rank, generator=g) * std,
            )
    return weights


@pytest.fixture(scope="module")
def bundled_with_adapters(bundled_gguf):
    """The bundled model (its own copy, GGUF blocks on the native kernels) with adapters "a" and "b"."""
    from gptkit import load

    model, tokenizer = load()
    add_adapter(model, "a", random_adapter(model, ("attn.qkv", "mlp.down"), rank=4, seed=1))
    add_adapter(model, "b", random_adapter(model, ("attn.proj", "mlp.gate_up"), rank=8, seed=2))
    return model, tokenizer


def _close_logprobs(one, other, atol):
    return max(abs(x.logprob - y.logprob) for x, y in zip(one.logprobs, other.logprobs, strict=True)) < atol


@pytest.mark.slow
def test_two_adapters_and_the_base_model_in_one_batch_each_equal_running_alone(
    bundled_with_adapters, single_thread, monkeypatch
):
    model, tokenizer = bundled_with_adapters
    engine = Engine(model, tokenizer, max_batch_size=4)
    adapters = [None, "a", "b", "a"]
    together = engine.generate(PROMPTS, GREEDY, adapters=adapters)
    for prompt, adapter, completion in zip(PROMPTS, adapters, together, strict=True):
        alone = engine.generate([prompt], GREEDY, adapters=[adapter])[0]
        assert completion.token_ids == alone.token_ids, (prompt, adapter)
        assert _close_logprobs(completion, alone, atol=2e-3)
    base = engine.generate(PROMPTS, GREEDY)
    assert together[0].token_ids == base[0].token_ids
    assert any(t.token_ids != b.token_ids for t, b in zip(together[1:], base[1:], strict=True))
    calls = []
    native = decoder.fused_decode

    def recording(block, x, inputs):
        calls.append((x.shape[0], result := native(block, x, inputs)))
        return result

    monkeypatch.setattr(decoder, "fused_decode", recording)
    engine.generate(PROMPTS[:2], SamplingParams(max_tokens=3, temperature=0))
    assert any(r is not None for _, r in calls)  # base-only batches keep the fused native block
    calls.clear()
    engine.generate(PROMPTS[:2], SamplingParams(max_tokens=3, temperature=0), adapters=[None, "b"])
    both_rows = [r for rows, r in calls if rows == 2]
    assert both_rows and all(r is None for r in both_rows)  # a batch with an adapter row runs the modules


def test_an_unknown_adapter_is_refused_at_submission(wide_tiny_llama, byte_tokenizer):
    engine = Engine(wide_tiny_llama, byte_tokenizer, max_batch_size=2)
    with pytest.raises(GenerationError, match="no LoRA adapters") as error:
        engine.add_request([1, 2, 3], adapter="nope")
    assert error.value.param == "adapter"


def test_a_served_adapter_gives_the_merged_models_logits(
    wide_tiny_llama, byte_tokenizer, peft_adapter_writer, tmp_path, single_thread
):
    targets = ("self_attn.q_proj", "self_attn.v_proj", "mlp.down_proj")
    peft_adapter_writer(wide_tiny_llama.config, tmp_path, targets, rank=4, alpha=8, std=0.3)
    served, merged = copy.deepcopy(wide_tiny_llama), copy.deepcopy(wide_tiny_llama)
    load_adapter(served, tmp_path, name="tuned")
    load_adapter(merged, tmp_path)  # float weights: merged
    prompts = [[5, 6, 7, 8], [9, 10, 11]]
    params = SamplingParams(max_tokens=10, temperature=0, logprobs=5)
    engine = Engine(served, byte_tokenizer, max_batch_size=4)
    got = engine.generate(prompts * 2, params, adapters=["tuned", "tuned", None, None])
    want = Engine(merged, byte_tokenizer, max_batch_size=4).generate(prompts, params)
    base = Engine(wide_tiny_llama, byte_tokenizer, max_batch_size=4).generate(prompts, params)
    for completion, reference in zip(got, want + base, strict=True):
        assert completion.token_ids == reference.token_ids
        for ours, theirs in zip(completion.logprobs, reference.logprobs, strict=True):
            assert dict(ours.top).keys() == dict(theirs.top).keys()
            assert all(abs(dict(ours.top)[t] - v) < 1e-4 for t, v in theirs.top)
    assert got[0].token_ids != base[0].token_ids or got[1].token_ids != base[1].token_ids


def test_the_prefix_cache_reuses_kv_only_within_one_adapter(
    wide_tiny_llama, byte_tokenizer, peft_adapter_writer, tmp_path, single_thread
):
    peft_adapter_writer(wide_tiny_llama.config, tmp_path, ("self_attn.k_proj", "self_attn.v_proj"), std=0.3)
    model = copy.deepcopy(wide_tiny_llama)
    load_adapter(model, tmp_path, name="tuned")
    prompt = list(range(5, 45))  # 40 tokens: two full 16-token blocks to reuse
    params = SamplingParams(max_tokens=6, temperature=0, logprobs=2)
    cached = Engine(model, byte_tokenizer, max_batch_size=2)
    fresh = Engine(model, byte_tokenizer, max_batch_size=2, prefix_cache_mb=0)
    base_first = cached.generate([prompt], params)[0]  # stores the base model's KV of the prompt
    tuned = cached.generate([prompt], params, adapters=["tuned"])[0]
    assert tuned.cached_tokens == 0  # the base model's KV is not the adapter's
    again = cached.generate([prompt], params, adapters=["tuned"])[0]
    assert again.cached_tokens == 32  # the adapter's own KV is reused
    expected = fresh.generate([prompt], params, adapters=["tuned"])[0]
    for completion in (tuned, again):
        assert completion.token_ids == expected.token_ids
        assert _close_logprobs(completion, expected, atol=1e-5)
    assert cached.generate([prompt], params)[0].token_ids == base_first.token_ids
