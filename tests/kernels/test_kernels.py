"""The native kernels against pure-torch references: the `gguf` package's dequantization, then a matmul;
SDPA for decode attention. Tolerances: the float kernel (K-quants, Q5) is exact up to fp32 summation
order (1e-6 of the products' magnitude); the x16 packed kernel (Q4_0, Q4_1, Q8_0) quantizes activations to int16 per block
of 32, so 1e-4 of the products' magnitude max(|x| @ |w|^T); the bf16 dense path 1e-2."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from gguf import GGML_QUANT_SIZES, quants
from gguf import GGMLQuantizationType as Q

from gptkit import kernels
from gptkit.quant.ggml import KERNEL_TYPES, PACKED_TYPES, GGMLWeight, pack
from gptkit.weights.gguf_io import StoredRows

native = kernels.ops()
pytestmark = pytest.mark.skipif(native is None, reason="native kernels unavailable (no C++ compiler)")

# byte offsets of the fp16 scale fields (d, dmin) inside one K-quant block
K_QUANT_SCALE_FIELDS = {Q.Q2_K: (80, 82), Q.Q3_K: (108,), Q.Q4_K: (0, 2), Q.Q5_K: (0, 2), Q.Q6_K: (208,)}
NO_ORDER = torch.empty(0, dtype=torch.long)  # ggml_pack: rows as stored
SIMPLE = (Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q8_0)
ALL = SIMPLE + tuple(K_QUANT_SCALE_FIELDS)


def random_blocks(qtype: Q, n: int, k: int, rng: np.random.Generator, scale: float = 1.0) -> torch.Tensor:
    """(n, row_bytes) blocks: gguf's quantizer for the simple types, random bytes with finite scales else."""
    if qtype in SIMPLE:
        values = rng.normal(0, scale, (n, k)).astype(np.float32)
        return torch.from_numpy(quants.quantize(values, qtype).copy()).view(torch.uint8).reshape(n, -1)
    block_size, type_size = GGML_QUANT_SIZES[qtype]
    blocks = rng.integers(0, 256, (n * k // block_size, type_size), dtype=np.uint8)
    for offset in K_QUANT_SCALE_FIELDS[qtype]:
        scales = (rng.uniform(-0.05, 0.05, (blocks.shape[0], 1)) * scale).astype(np.float16)
        blocks[:, offset : offset + 2] = scales.view(np.uint8)
    return torch.from_numpy(blocks.reshape(n, -1))


def reference(blocks: torch.Tensor, qtype: Q, k: int) -> torch.Tensor:
    return torch.from_numpy(quants.dequantize(blocks.numpy(), qtype)).reshape(blocks.shape[0], k)


def kernel_activations(x: torch.Tensor) -> torch.Tensor:
    """x (M, K) as the packed kernel reads it: each block of 32 rounded to 15-bit codes times amax / 16383."""
    blocks = x.reshape(x.shape[0], -1, 32)
    step = blocks.abs().amax(-1, keepdim=True) / 16383  # float32 arithmetic, as the kernel's
    codes = (blocks * torch.where(step > 0, 1 / step, 0)).round().clamp(-16383, 16383)
    return (codes.double() * step.double()).reshape(x.shape)


def assert_packed_matmul_close(actual: torch.Tensor, x: torch.Tensor, w: torch.Tensor) -> None:
    """Exact up to fp32 rounding for the rounded activations, and within their rounding (half a step of
    amax / 16383 per element) of the float product."""
    assert_matmul_close(actual.double(), kernel_activations(x), w.double(), 2e-6)
    assert_matmul_close(actual, x, w, 1e-4)


def assert_matmul_close(actual: torch.Tensor, x: torch.Tensor, w: torch.Tensor, relative: float) -> None:
    """|actual - x @ w^T| <= relative * max(|x| @ |w|^T): errors measured against the products' magnitude."""
    scale = (x.abs() @ w.abs().T).max().clamp(min=1e-12)
    error = (actual - x @ w.T).abs().max()
    assert error <= relative * scale, error / scale


@pytest.mark.parametrize("qtype", ALL, ids=lambda t: t.name)
def test_dequantize_equals_gguf(qtype):
    rng = np.random.default_rng(0)
    k = 512
    blocks = random_blocks(qtype, 33, k, rng)
    expected = reference(blocks, qtype, k)
    assert torch.equal(native.ggml_dequantize(blocks, int(qtype), k, torch.float32), expected)
    assert torch.equal(native.ggml_dequantize(blocks, int(qtype), k, torch.bfloat16), expected.bfloat16())


@pytest.mark.parametrize("qtype", ALL, ids=lambda t: t.name)
@pytest.mark.parametrize("n", [1, 15, 16, 17, 33])
def test_block_matmul_equals_dequantized_matmul(qtype, n):
    rng = np.random.default_rng(n)
    block = GGML_QUANT_SIZES[qtype][0]
    for k in (block, 2 * block, 3 * block):
        blocks = random_blocks(qtype, n, k, rng)
        w = reference(blocks, qtype, k)
        for m in range(1, 17):
            x = torch.randn(m, k, generator=torch.Generator().manual_seed(m))
            assert_matmul_close(native.ggml_matmul(x, blocks, int(qtype)), x, w, 1e-6)


@pytest.mark.parametrize("qtype", sorted(PACKED_TYPES), ids=lambda t: Q(t).name)
@pytest.mark.parametrize("n", [1, 15, 16, 17, 40])
@pytest.mark.parametrize("k", [32, 64, 96, 576])
def test_packed_matmul_equals_dequantized_matmul(qtype, n, k):
    rng = np.random.default_rng(n * k)
    blocks = random_blocks(Q(qtype), n, k, rng)
    w = reference(blocks, Q(qtype), k)
    packed = native.ggml_pack([blocks], NO_ORDER, qtype, k)
    rows = torch.arange(n)
    assert torch.equal(native.ggml_packed_rows(packed, qtype, k, rows, torch.float32), w)  # lossless layout
    assert torch.equal(
        native.ggml_packed_transposed(packed, qtype, k, 0, packed.shape[0], torch.float32)[:, :n], w.T
    )
    for m in (*range(1, 17), 40, 70):
        x = torch.randn(m, k, generator=torch.Generator().manual_seed(m))
        assert_packed_matmul_close(native.ggml_packed_matmul(x, packed, qtype, n), x, w)


@pytest.mark.parametrize("qtype", sorted(PACKED_TYPES), ids=lambda t: Q(t).name)
@pytest.mark.parametrize("scale", [1e-6, 1e3, -1.0])
def test_packed_matmul_extreme_and_negative_scales(qtype, scale):
    rng = np.random.default_rng(1)
    blocks = random_blocks(Q(qtype), 32, 128, rng, scale=abs(scale))
    if scale < 0:  # flip the sign of every block's d (and m): negative scales
        view = blocks.view(32, -1, GGML_QUANT_SIZES[Q(qtype)][1])
        view[..., 1] ^= 0x80
    w = reference(blocks, Q(qtype), 128)
    packed = native.ggml_pack([blocks], NO_ORDER, qtype, 128)
    x = torch.randn(3, 128) * 100
    assert_packed_matmul_close(native.ggml_packed_matmul(x, packed, qtype, 32), x, w)


def test_pack_takes_parts_in_a_row_order():
    """[q; k; v] parts and a row permutation (llama.cpp's Q/K un-permute) are packed without a copy first."""
    rng = np.random.default_rng(4)
    parts = [random_blocks(Q.Q8_0, n, 64, rng) for n in (32, 16, 5)]
    order = torch.randperm(53, generator=torch.Generator().manual_seed(0))
    expected = native.ggml_pack([torch.cat(parts)[order].contiguous()], NO_ORDER, int(Q.Q8_0), 64)
    assert torch.equal(native.ggml_pack(parts, order, int(Q.Q8_0), 64), expected)
    with pytest.raises(RuntimeError, match="order"):
        native.ggml_pack(parts, order[:10], int(Q.Q8_0), 64)


def test_zero_activations_and_weights_give_zeros():
    blocks = random_blocks(Q.Q4_1, 16, 64, np.random.default_rng(0))
    packed = native.ggml_pack([blocks], NO_ORDER, int(Q.Q4_1), 64)
    assert torch.equal(
        native.ggml_packed_matmul(torch.zeros(2, 64), packed, int(Q.Q4_1), 16), torch.zeros(2, 16)
    )


def test_weight_layer_switches_paths_by_row_count():
    """GGMLWeight: kernel for few rows, dequantized dense matmul (dense_dtype) for many; both agree."""
    rng = np.random.default_rng(3)
    for qtype in (Q.Q4_1, Q.Q6_K):
        blocks = random_blocks(qtype, 48, 256, rng)
        w = reference(blocks, qtype, 256)
        data, packed = pack(StoredRows("w", int(qtype), [blocks], None))
        assert packed == (int(qtype) in PACKED_TYPES)
        weight = GGMLWeight(data, int(qtype), (48, 256), packed)
        for m in (1, 16, 200):
            x = torch.randn(m, 256)
            assert_matmul_close(weight.matmul(x), x, w, 1e-2)  # bf16 dense path: 1e-2
        assert torch.equal(weight.rows(torch.tensor([5, 0, 47])), w[[5, 0, 47]])


def test_kernel_errors_are_clear():
    blocks = random_blocks(Q.Q4_0, 4, 64, np.random.default_rng(0))
    with pytest.raises(RuntimeError, match="not a multiple of the block size"):
        native.ggml_matmul(torch.randn(1, 48), blocks[:, :27].contiguous(), int(Q.Q4_0))
    with pytest.raises(RuntimeError, match="not supported"):
        native.ggml_matmul(torch.randn(1, 64), blocks, 99)
    assert 99 not in KERNEL_TYPES


# ---- decode attention ------------------------------------------------------------------------------
@pytest.mark.parametrize("n_head,n_kv_head", [(4, 4), (6, 2), (8, 2), (8, 1)])
def test_decode_attention_equals_sdpa(n_head, n_kv_head):
    """Rows of different lengths (one just full), masked columns, GQA ratios 1/3/4/8."""
    gen = torch.Generator().manual_seed(n_head * 10 + n_kv_head)
    B, S_max, D = 3, 37, 16
    q = torch.randn(B, n_head, D, generator=gen)
    k = torch.randn(B, n_kv_head, S_max, D, generator=gen)
    v = torch.randn(B, n_kv_head, S_max, D, generator=gen)
    used = S_max  # row 0 fills the cache exactly
    visible = torch.zeros(B, used, dtype=torch.bool)
    visible[0, :] = True
    visible[1, :5] = True
    visible[2, 3:20:2] = True  # holes (padding) and a short row
    out = native.decode_attention(q, k, v, visible, 1 / math.sqrt(D))
    expected = F.scaled_dot_product_attention(
        q[:, :, None], k[:, :, :used], v[:, :, :used], attn_mask=visible[:, None, None], enable_gqa=True
    )[:, :, 0]
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_results_do_not_depend_on_thread_count():
    rng = np.random.default_rng(5)
    blocks = random_blocks(Q.Q4_1, 100, 576, rng)
    packed = native.ggml_pack([blocks], NO_ORDER, int(Q.Q4_1), 576)
    x = torch.randn(5, 576)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = (
            native.ggml_packed_matmul(x, packed, int(Q.Q4_1), 100),
            native.ggml_matmul(x, blocks, int(Q.Q4_1)),
        )
        torch.set_num_threads(2)
        two = (
            native.ggml_packed_matmul(x, packed, int(Q.Q4_1), 100),
            native.ggml_matmul(x, blocks, int(Q.Q4_1)),
        )
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one[0], two[0]) and torch.equal(one[1], two[1])


@pytest.mark.parametrize("isa", ["portable", "avx2"])
def test_every_instruction_set_gives_the_same_results(isa):
    """The portable and AVX2 builds of the kernels agree with the best one (forced like GPTKIT_KERNELS)."""
    if kernels.ISAS[isa] > native.cpu_isa():
        pytest.skip(f"this CPU cannot run {isa}")
    rng = np.random.default_rng(9)
    blocks = {t: random_blocks(t, 40, 256, rng) for t in (Q.Q4_0, Q.Q4_1, Q.Q8_0, Q.Q4_K, Q.Q6_K)}
    x = torch.randn(6, 256)

    def run():
        out = []
        for t, b in blocks.items():
            out.append(native.ggml_matmul(x, b, int(t)))
            if int(t) in PACKED_TYPES:
                packed = native.ggml_pack([b], NO_ORDER, int(t), 256)
                out.append(native.ggml_packed_matmul(x, packed, int(t), 40))
                out.append(native.ggml_packed_transposed(packed, int(t), 256, 0, 3, torch.bfloat16).float())
        return out

    best = native.get_isa()
    expected = run()
    try:
        native.set_isa(kernels.ISAS[isa])
        actual = run()
    finally:
        native.set_isa(best)
    for a, e in zip(actual, expected, strict=True):
        torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-4)  # fp32 summation order differs


def test_fake_kernels_give_the_real_shapes():
    """torch.compile traces the ops through their fake kernels: each must give the real output's shape."""
    rng = np.random.default_rng(11)
    blocks = random_blocks(Q.Q4_1, 40, 64, rng)
    packed = native.ggml_pack([blocks], NO_ORDER, int(Q.Q4_1), 64)
    q, cache = torch.randn(2, 4, 16), torch.randn(2, 2, 9, 16)
    calls = [
        (native.ggml_matmul, (torch.randn(3, 64), blocks, int(Q.Q4_1))),
        (native.ggml_dequantize, (blocks, int(Q.Q4_1), 64, torch.bfloat16)),
        (native.ggml_packed_matmul, (torch.randn(3, 64), packed, int(Q.Q4_1), 40)),
        (native.ggml_packed_transposed, (packed, int(Q.Q4_1), 64, 1, 3, torch.float32)),
        (native.ggml_packed_rows, (packed, int(Q.Q4_1), 64, torch.tensor([0, 39]), torch.float32)),
        (native.decode_attention, (q, cache, cache.clone(), torch.ones(2, 9, dtype=torch.bool), 0.25)),
    ]
    for op, args in calls:
        torch.library.opcheck(op.default, args, test_utils=("test_schema", "test_faketensor"))
