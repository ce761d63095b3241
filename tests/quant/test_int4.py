"""Int4 weight-only linears: kernel vs dequantized matmul, the int4 module swap, and its errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gptkit import GPT4LMHeadModel
from gptkit.config import MLP, GPT4Config, Norm, Positions
from gptkit.errors import ConfigError
from gptkit.quant import Int4Linear, Int8Linear, dequantize_int4, quantize_int4, quantize_model


@pytest.mark.parametrize("group_size", [32, 64, 128])
def test_quantize_int4_round_trips_within_half_a_step(group_size):
    torch.manual_seed(0)
    w = torch.randn(48, 256) * torch.rand(48, 1)  # rows of different magnitudes
    q, scales_and_zeros = quantize_int4(w, group_size)
    assert q.dtype == torch.int32 and 0 <= q.min() and q.max() <= 15
    assert scales_and_zeros.shape == (256 // group_size, 48, 2) and scales_and_zeros.dtype == torch.bfloat16
    scale = scales_and_zeros[..., 0].float().t().repeat_interleave(group_size, dim=1)  # (N, K)
    # half a step, plus rounding the scale (<= 8 * 2^-8 steps at the ends) and zero to bf16
    assert ((dequantize_int4(q, scales_and_zeros) - w).abs() <= 0.54 * scale).all()


def test_a_4_bit_grid_is_reproduced_almost_exactly():
    """Weights already on a 4-bit grid per group of 32 (a GGUF Q4_1 tensor) re-quantize to the same grid."""
    torch.manual_seed(0)
    step = torch.rand(64, 8, 1) + 0.1
    low = step * (torch.rand(64, 8, 1) * 4 - 10)  # groups centred within 2 steps of 0, like real weights
    levels = torch.randint(0, 16, (64, 8, 32))
    levels[..., 0], levels[..., 1] = 0, 15  # Q4_1 blocks span their whole range
    w = (low + step * levels).reshape(64, 256)
    q, scales_and_zeros = quantize_int4(w, 32)
    err = (dequantize_int4(q, scales_and_zeros) - w).abs().reshape(64, 8, 32)
    assert (err <= 0.05 * step).all()  # bf16 rounding of scale (<= 8 * 2^-8 steps) and zero, no re-rounding


SHAPES = [(576, 192, 32), (576, 192, 64), (256, 100, 128), (512, 48, 256)]  # (K, N, group); 100: padded N


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("rows", [1, 8, 9, 64])
@pytest.mark.parametrize(("in_features", "out_features", "group_size"), SHAPES)
@pytest.mark.parametrize("bias", [False, True])
def test_int4_linear_matches_the_dequantized_matmul(dtype, rows, in_features, out_features, group_size, bias):
    torch.manual_seed(0)
    linear = nn.Linear(in_features, out_features, bias=bias).to(dtype)
    layer = Int4Linear.from_linear(linear, group_size)
    weight = dequantize_int4(*quantize_int4(linear.weight, group_size))
    x = (
        torch.randn(2, rows, in_features, dtype=dtype)
        if rows > 1
        else torch.randn(1, 1, in_features, dtype=dtype)
    )
    want = F.linear(x.float(), weight, None if linear.bias is None else linear.bias.float())
    got = layer(x)
    assert got.dtype == dtype and got.shape == want.shape
    err = (got.float() - want).abs().max() / want.abs().max()
    assert err < 1e-2, err  # bf16 activations in the kernel; the weights are exact


@pytest.mark.parametrize("group_size", [16, 48, 512])
def test_a_group_size_the_kernel_cannot_use_is_refused(group_size):
    with pytest.raises(ConfigError, match="group size"):
        Int4Linear.from_linear(nn.Linear(256, 32), group_size)


def test_a_group_size_that_does_not_divide_in_features_is_refused_naming_the_valid_ones():
    with pytest.raises(ConfigError, match=r"does not divide in_features=576; choose one of \[32, 64\]"):
        Int4Linear.from_linear(nn.Linear(576, 32), 128)


def tiny_model(n_embd: int = 64) -> GPT4LMHeadModel:
    config = GPT4Config(vocab_size=96, context_length=64, n_layer=2, n_head=4, n_kv_head=2, n_embd=n_embd,
                        positions=Positions.ROPE, norm=Norm.RMSNORM, mlp=MLP.SWIGLU, tie_word_embeddings=True)  # fmt: skip
    torch.manual_seed(0)
    return GPT4LMHeadModel(config).eval()


def test_int4_swaps_the_block_linears_and_keeps_an_int8_head():
    model = tiny_model()
    ids = torch.randint(0, 96, (2, 12))
    with torch.inference_mode():
        before = model(ids).logits
        quantize_model(model, "int4")
        after = model(ids).logits
    assert not any(isinstance(m, nn.Linear) for m in model.modules())
    assert isinstance(model.blocks[0].attn.qkv, Int4Linear) and model.blocks[0].attn.qkv.group_size == 32
    assert isinstance(model.lm_head, Int8Linear)
    assert (after - before).abs().max() < 0.1 * before.abs().max()
    assert model.generate(ids[:1, :4], max_new_tokens=3, do_sample=False).shape == (1, 7)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_an_int4_model_decodes_in_either_dtype_and_survives_later_casts(dtype):
    model = quantize_model(tiny_model(), "int4-g64", dtype=dtype).to(torch.bfloat16).to(dtype)
    down = model.blocks[1].mlp.down
    assert down.group_size == 64 and down.weight_int4.dtype == torch.uint8
    assert down.scales_and_zeros.dtype == torch.int16  # bf16 bits, untouched by the casts
    for rows in (1, 12):
        assert model(torch.ones(1, rows, dtype=torch.long)).logits.dtype == dtype
    assert model.generate(torch.tensor([[1, 2, 3]]), max_new_tokens=4, do_sample=False).shape == (1, 7)


def test_a_scheme_whose_group_size_does_not_fit_is_refused_before_anything_changes():
    model = tiny_model(n_embd=96)  # 96 is not a multiple of 64
    with pytest.raises(ConfigError, match="group size 64 does not divide in_features=96"):
        quantize_model(model, "int4-g64")
    assert isinstance(model.blocks[0].attn.qkv, nn.Linear) and not hasattr(model, "quantization")


def test_an_unknown_scheme_is_refused_naming_every_choice():
    with pytest.raises(ConfigError, match="choose one of: int8, int4, int4-g64, int4-g128"):
        quantize_model(tiny_model(), "int2")


def test_an_int4_layer_round_trips_through_its_state_dict():
    layer = Int4Linear.from_linear(nn.Linear(256, 100, bias=True), 64)  # 100 outputs: padded to 112
    empty = Int4Linear(256, 100, bias=True, dtype=torch.float32, group_size=64)
    empty.load_state_dict(layer.state_dict())
    x = torch.randn(3, 256)
    assert torch.equal(empty(x), layer(x))


def test_the_cli_offers_every_quantization_scheme():
    from gptkit.cli import build_parser
    from gptkit.options import QUANTIZE_CHOICES
    from gptkit.quant import SCHEMES

    assert QUANTIZE_CHOICES == ("gguf", "none", *SCHEMES)  # the file's blocks, float weights, re-quantized
    args = build_parser().parse_args(["generate", "--quantize", "int4", "hi"])
    assert args.quantize == "int4"
