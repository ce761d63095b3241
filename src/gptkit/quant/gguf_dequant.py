"""ggml block formats -> float tensors: torch dequantizers for the common types, the gguf package for the rest.

Quantized blocks are a format of their own (the layouts of ggml's block_q4_0 ... block_q6_K); the GGUF
reader (gptkit.weights.gguf_io) and the block-keeping layers (gptkit.quant.ggml) both read through here.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from gptkit.errors import UnsupportedTensorTypeError

Q = GGMLQuantizationType
QK_K = 256  # elements per K-quant super-block
# Each function maps blocks (n_blocks, type_size) uint8 -> (n_blocks, block_size) float32, bit-exact with
# gguf.quants (same operations in the same order; gguf's numpy code is the reference in the tests).


def _half(blocks: torch.Tensor, start: int) -> torch.Tensor:
    """The fp16 field at byte ``start`` of every block, as float32: (n_blocks, 1)."""
    return blocks[:, start : start + 2].contiguous().view(torch.float16).float()


def _bit_fields(
    x: torch.Tensor, group: int, shifts: tuple[int, ...], mask: int, dtype: torch.dtype = torch.uint8
) -> torch.Tensor:
    """Per ``group``-byte chunk of x (n, k): the fields at shifts[0] of all its bytes, then shifts[1], ...

    Returns (n, k * len(shifts)) of ``dtype``, written in place (no intermediate full-size tensors).
    """
    n = x.shape[0]
    chunks = x.reshape(n, -1, group)  # (n, c, group)
    out = torch.empty(n, chunks.shape[1], len(shifts), group, dtype=dtype)
    for i, shift in enumerate(shifts):
        out[:, :, i] = (chunks >> shift) & mask if shift else chunks & mask
    return out.reshape(n, -1)


def _bits_le(x: torch.Tensor) -> torch.Tensor:
    """The bits of little-endian words x (n, k bytes), lowest first: (n, 8k) of 0/1."""
    shift = torch.arange(8, dtype=torch.uint8)
    return ((x.unsqueeze(-1) >> shift) & 1).reshape(x.shape[0], -1)


def _q8_0(b: torch.Tensor) -> torch.Tensor:
    return b[:, 2:].view(torch.int8).float().mul_(_half(b, 0))


def _q4_0(b: torch.Tensor) -> torch.Tensor:
    q = _bit_fields(b[:, 2:], 16, (0, 4), 0x0F, torch.float32)  # (n, 32) in 0..15
    return q.sub_(8).mul_(_half(b, 0))


def _q4_1(b: torch.Tensor) -> torch.Tensor:
    q = _bit_fields(b[:, 4:], 16, (0, 4), 0x0F, torch.float32)  # (n, 32) in 0..15
    return q.mul_(_half(b, 0)).add_(_half(b, 2))


def _q5_0(b: torch.Tensor) -> torch.Tensor:
    q = _bit_fields(b[:, 6:], 16, (0, 4), 0x0F) | (_bits_le(b[:, 2:6]) << 4)  # (n, 32) in 0..31
    return q.float().sub_(16).mul_(_half(b, 0))


def _q5_1(b: torch.Tensor) -> torch.Tensor:
    q = _bit_fields(b[:, 8:], 16, (0, 4), 0x0F) | (_bits_le(b[:, 4:8]) << 4)  # (n, 32) in 0..31
    return q.float().mul_(_half(b, 0)).add_(_half(b, 2))


def _q2_k(b: torch.Tensor) -> torch.Tensor:
    n = b.shape[0]
    scales, qs = b[:, :16], b[:, 16:80]
    dl = (_half(b, 80) * (scales & 0x0F).float()).reshape(n, 16, 1)
    ml = (_half(b, 82) * (scales >> 4).float()).reshape(n, 16, 1)
    q = _bit_fields(qs, 32, (0, 2, 4, 6), 0x03, torch.float32).reshape(n, 16, 16)
    return q.mul_(dl).sub_(ml).reshape(n, QK_K)


def _q3_k(b: torch.Tensor) -> torch.Tensor:
    n = b.shape[0]
    hmask, qs, packed = b[:, :32], b[:, 32:96], b[:, 96:108]
    low = _bit_fields(packed[:, :8], 8, (0, 4), 0x0F)  # (n, 16)
    high = _bit_fields(packed[:, 8:], 4, (0, 2, 4, 6), 0x03)  # (n, 16)
    dl = (_half(b, 108) * (low | (high << 4)).float().sub_(32)).reshape(n, 16, 1)
    ql = _bit_fields(qs, 32, (0, 2, 4, 6), 0x03).reshape(n, 16, 16)
    qh = _bit_fields(hmask, 32, tuple(range(8)), 0x01).reshape(n, 16, 16) ^ 1  # offset applies when bit is 0
    q = ql.float().sub_((qh << 2).float())
    return q.mul_(dl).reshape(n, QK_K)


def _k_scale_min(packed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The eight 6-bit scales and mins packed into 12 bytes (Q4_K, Q5_K): 2 x (n, 8) uint8."""
    n = packed.shape[0]
    d, m, m_d = packed.reshape(n, 3, 4).unbind(1)
    scale = torch.cat([d & 0x3F, (m_d & 0x0F) | ((d >> 2) & 0x30)], dim=-1)
    minimum = torch.cat([m & 0x3F, (m_d >> 4) | ((m >> 2) & 0x30)], dim=-1)
    return scale, minimum


def _k_scaled(b: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Q4_K/Q5_K: (d * scale) * q - dmin * min per 32-value sub-block; q (n, 8, 32) float, overwritten."""
    n = b.shape[0]
    scale, minimum = _k_scale_min(b[:, 4:16])
    d = (_half(b, 0) * scale.float()).reshape(n, 8, 1)
    dm = (_half(b, 2) * minimum.float()).reshape(n, 8, 1)
    return q.mul_(d).sub_(dm).reshape(n, QK_K)


def _q4_k(b: torch.Tensor) -> torch.Tensor:
    return _k_scaled(b, _bit_fields(b[:, 16:], 32, (0, 4), 0x0F, torch.float32).reshape(-1, 8, 32))


def _q5_k(b: torch.Tensor) -> torch.Tensor:
    low = _bit_fields(b[:, 48:], 32, (0, 4), 0x0F)
    high = _bit_fields(b[:, 16:48], 32, tuple(range(8)), 0x01)
    return _k_scaled(b, (low | (high << 4)).reshape(-1, 8, 32).float())


def _q6_k(b: torch.Tensor) -> torch.Tensor:
    n = b.shape[0]
    ql, qh, scales = b[:, :128], b[:, 128:192], b[:, 192:208]
    d = (_half(b, 208) * scales.view(torch.int8).float()).reshape(n, 16, 1)
    low = _bit_fields(ql, 64, (0, 4), 0x0F)
    high = _bit_fields(qh, 32, (0, 2, 4, 6), 0x03)
    q = (low | (high << 4)).float().sub_(32).reshape(n, 16, 16)
    return q.mul_(d).reshape(n, QK_K)


def _f32(b: torch.Tensor) -> torch.Tensor:
    return b.view(torch.float32).clone()  # copy: never hand out memory of the mapped file


def _f16(b: torch.Tensor) -> torch.Tensor:
    return b.view(torch.float16).float()


def _bf16(b: torch.Tensor) -> torch.Tensor:
    return (b.view(torch.int16).to(torch.int32) << 16).view(torch.float32)


TORCH_DEQUANTIZERS: dict[GGMLQuantizationType, Callable[[torch.Tensor], torch.Tensor]] = {
    Q.F32: _f32, Q.F16: _f16, Q.BF16: _bf16, Q.Q8_0: _q8_0, Q.Q4_0: _q4_0, Q.Q4_1: _q4_1, Q.Q5_0: _q5_0,
    Q.Q5_1: _q5_1, Q.Q2_K: _q2_k, Q.Q3_K: _q3_k, Q.Q4_K: _q4_k, Q.Q5_K: _q5_k, Q.Q6_K: _q6_k,
}  # fmt: skip


def dequantize(data: torch.Tensor, ggml_type: GGMLQuantizationType, shape: tuple[int, ...]) -> torch.Tensor:
    """Raw bytes (n_bytes,) uint8 of ``ggml_type`` -> float32 tensor of ``shape`` (torch; gguf as fallback)."""
    block_size, type_size = GGML_QUANT_SIZES[ggml_type]
    fast = TORCH_DEQUANTIZERS.get(ggml_type)
    if fast is not None:
        blocks = data.view(-1, type_size) if block_size > 1 else data
        return fast(blocks).reshape(shape)
    return _reference_dequantize(data, ggml_type, shape)


def _reference_dequantize(data: torch.Tensor, ggml_type: GGMLQuantizationType, shape) -> torch.Tensor:
    """The ``gguf`` package's numpy dequantization, for the types without a torch kernel."""
    import gguf

    try:
        values = gguf.quants.dequantize(data.numpy().reshape(-1, GGML_QUANT_SIZES[ggml_type][1]), ggml_type)
    except NotImplementedError:
        raise UnsupportedTensorTypeError(f"ggml type {ggml_type.name} cannot be dequantized") from None
    return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)).reshape(shape)
