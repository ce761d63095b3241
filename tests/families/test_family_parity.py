"""Logit parity with transformers for every family: tiny random models saved as HF directories and as
GGUF files (F32, Q8_0, Q4_0) load in gptkit with the same logits and greedy tokens."""

from __future__ import annotations

import copy

import gguf
import numpy as np
import pytest
import torch
from family_models import FAMILIES, VOCAB, greedy_hf, greedy_ours, save_hf, tiny_hf, write_family_gguf
from gguf import GGMLQuantizationType as Q

from gptkit.modeling import GPT4LMHeadModel

IDS = torch.randint(0, VOCAB, (2, 40), generator=torch.Generator().manual_seed(1))  # past Phi-3's 32
GGUF_FAMILIES = [f for f in FAMILIES if f != "olmoe"]  # llama.cpp has no OLMoE converter in this list
GGUF_OVERRIDES = {"gemma2": dict(query_pre_attn_scalar=32)}  # llama.cpp scales Gemma 2 by 1/sqrt(head_dim)


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request):
    return request.param


@pytest.mark.parametrize("family", list(FAMILIES))
def test_hf_checkpoint_matches_transformers(tmp_path, family):
    hf = tiny_hf(family)
    ours = GPT4LMHeadModel.from_pretrained(save_hf(hf, tmp_path), dtype=torch.float32)
    assert ours.config.extra["hf_model_type"] == hf.config.model_type
    with torch.no_grad():
        expected = hf(IDS).logits
        torch.testing.assert_close(ours(IDS).logits, expected, atol=1e-4, rtol=0)
        prompt = IDS[:1, :10]
        assert greedy_ours(ours, prompt, 12) == greedy_hf(hf, prompt, 12)


def test_gemma2_soft_caps_and_sliding_window_matter(tmp_path):
    """The parity above would fail without each Gemma 2 switch: the window (6) is shorter than the input."""
    hf = tiny_hf("gemma2")
    ours = GPT4LMHeadModel.from_pretrained(save_hf(hf, tmp_path), dtype=torch.float32)
    params = {name: p.detach() for name, p in ours.named_parameters()}
    with torch.no_grad():
        expected = hf(IDS).logits
        for change in (dict(attn_softcap=None), dict(final_softcap=None), dict(layer_types=None)):
            changed = GPT4LMHeadModel.from_state_dict(ours.config.replace(**change), params)
            assert (changed(IDS).logits - expected).abs().max() > 0.1, change
        cached = greedy_ours(ours, IDS[:1, :10], 12)  # decode with the cache crosses the window too
    assert cached == greedy_hf(hf, IDS[:1, :10], 12)


def _decode_logits(model, ids):
    cache = model.new_cache(ids.shape[0], ids.shape[1])
    return torch.cat([model(ids[:, t : t + 1], cache=cache).logits for t in range(ids.shape[1])], 1)


def _round_trip(model, qtype):
    """A copy of the transformers model whose quantized tensors hold what the GGUF file holds."""
    model = copy.deepcopy(model)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2 and not name.endswith(".gate.weight"):  # the router stays float32
                blocks = gguf.quants.quantize(p.numpy(), qtype)
                p.copy_(torch.from_numpy(gguf.quants.dequantize(blocks, qtype)).reshape(p.shape))
    return model


@pytest.mark.parametrize("qtype", (Q.F32, Q.Q8_0, Q.Q4_0), ids=lambda q: q.name)
@pytest.mark.parametrize("family", GGUF_FAMILIES)
def test_gguf_copy_matches_transformers(tmp_path, family, qtype, single_thread):
    hf = tiny_hf(family, **GGUF_OVERRIDES.get(family, {}))
    path = write_family_gguf(hf, family, tmp_path / f"{family}.gguf", qtype)
    reference = GPT4LMHeadModel.from_pretrained(path, dtype=torch.float32)  # dequantized, float32
    default = GPT4LMHeadModel.from_pretrained(path)  # quantized blocks on the native kernels
    expected_hf = hf if qtype == Q.F32 else _round_trip(hf, qtype)
    with torch.no_grad():
        expected = expected_hf(IDS).logits
        torch.testing.assert_close(reference(IDS).logits, expected, atol=1e-4, rtol=0)
        short = expected_hf(IDS[:, :8]).logits  # 16 rows: the native kernels' exact paths
        scale = short.abs().max()
        assert (default(IDS[:, :8]).logits - short).abs().max() <= 3e-3 * scale
        decoded = _decode_logits(default, IDS[:, :8])  # one token per step through the cache
        assert (decoded - short).abs().max() <= 3e-3 * scale
        prompt = IDS[:1, :10]
        assert greedy_ours(reference, prompt, 8) == greedy_hf(expected_hf, prompt, 8)
    assert np.isfinite(expected.numpy()).all()
