"""Int8 weight-only linears: kernel vs dequantized matmul, the module swap, and its errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gptkit import GPT4LMHeadModel
from gptkit.config import MLP, GPT4Config, Norm, Positions
from gptkit.errors import ConfigError
from gptkit.quant import Int8Linear, int8, quantize_int8, quantize_model
from gptkit.quant.int8 import KERNEL_MAX_ROWS


def test_quantize_int8_round_trips_within_half_a_step():
    w = torch.randn(64, 96)
    q, scales = quantize_int8(w)
    assert q.dtype == torch.int8 and q.abs().max() <= 127
    assert ((q.float() * scales[:, None] - w).abs() <= scales[:, None] / 2 + 1e-7).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("rows", [1, KERNEL_MAX_ROWS, KERNEL_MAX_ROWS + 1, 16, 64])  # kernel, dense paths
@pytest.mark.parametrize("chunk", [int8.DENSE_CHUNK, 576 * 50])  # one dense chunk; 4 chunks, the last short
@pytest.mark.parametrize("bias", [False, True])
def test_int8_linear_matches_the_dequantized_matmul(dtype, rows, chunk, bias, monkeypatch):
    monkeypatch.setattr(int8, "DENSE_CHUNK", chunk)
    torch.manual_seed(0)
    linear = nn.Linear(576, 192, bias=bias).to(dtype)
    layer = Int8Linear.from_linear(linear)
    x = torch.randn(1, rows, 576, dtype=dtype)
    want = F.linear(
        x.float(), layer.dequantized_weight(), None if linear.bias is None else linear.bias.float()
    )
    got = layer(x)
    assert got.dtype == dtype and got.shape == want.shape
    err = (got.float() - want).abs().max() / want.abs().max()
    assert err < 2e-2, err  # bf16 activations/accumulation in the kernel; the weights are exact
    close_to_original = (got.float() - linear(x).float()).abs().max() / want.abs().max()
    assert close_to_original < 3e-2


def tiny_model() -> GPT4LMHeadModel:
    config = GPT4Config(vocab_size=96, context_length=64, n_layer=2, n_head=4, n_kv_head=2, n_embd=64,
                        positions=Positions.ROPE, norm=Norm.RMSNORM, mlp=MLP.SWIGLU, tie_word_embeddings=True)  # fmt: skip
    torch.manual_seed(0)
    return GPT4LMHeadModel(config).eval()


def test_quantize_model_swaps_every_linear_and_keeps_the_embedding_table():
    model = tiny_model()
    table = model.embed.weight.detach().clone()
    ids = torch.randint(0, 96, (2, 12))
    with torch.inference_mode():
        before = model(ids).logits
        quantize_model(model, "int8")
        after = model(ids).logits
    assert not any(isinstance(m, nn.Linear) for m in model.modules())
    assert isinstance(model.lm_head, Int8Linear) and isinstance(model.blocks[0].attn.qkv, Int8Linear)
    assert torch.equal(model.embed.weight, table)
    assert (after - before).abs().max() < 0.05 * before.abs().max()
    assert model.generate(ids[:1, :4], max_new_tokens=3, do_sample=False).shape == (1, 7)


def test_quantize_model_casts_to_bfloat16_and_decodes_with_a_cache():
    model = quantize_model(tiny_model(), "int8", dtype=torch.bfloat16)
    assert model.dtype == torch.bfloat16
    out = model.generate(torch.tensor([[1, 2, 3]]), max_new_tokens=4, do_sample=False)
    assert out.shape == (1, 7)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_quantized_model_survives_later_dtype_casts(dtype):
    model = quantize_model(tiny_model(), "int8", dtype=dtype).to(torch.bfloat16).to(dtype)
    assert model.lm_head.weight_int8.dtype == torch.int8
    for rows in (1, 12):  # kernel and dense paths
        assert model(torch.ones(1, rows, dtype=torch.long)).logits.dtype == dtype


def test_unknown_scheme_is_refused_naming_the_choices():
    with pytest.raises(ConfigError, match="choose one of: int8, int4"):
        quantize_model(tiny_model(), "int3")
