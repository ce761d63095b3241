"""Int4 weight-only linear: group-wise asymmetric 4-bit weights, activations stay bf16/fp32.

Runs ``aten._weight_int4pack_mm_for_cpu`` in bf16 for every row count: it streams half a byte per weight,
and with fp32 activations the same kernel is 25-75x slower (measured, docs/performance.md), so fp32
inputs are cast to bf16 and back. The kernel computes w = (q - 8) * scale + zero for q in 0..15, with one
(scale, zero) pair per group of ``group_size`` consecutive input features of an output row.
"""

from __future__ import annotations

import torch
from torch import nn

from gptkit.errors import ConfigError
from gptkit.quant.rows import KERNEL_DTYPE, weight_only_linear

GROUP_SIZES = (32, 64, 128, 256)  # the group sizes the kernel accepts
N_MULTIPLE = 16  # the kernel's packing needs a multiple of 16 output features; more are padded with zeros


def quantize_int4(weight: torch.Tensor, group_size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Asymmetric group-wise uint4: weight (N, K) -> (int32 q (N, K) in 0..15, bf16 scales_and_zeros).

    ``scales_and_zeros`` is (K / group_size, N, 2): [..., 0] the scale, [..., 1] the zero, the kernel's
    layout; weight ~= (q - 8) * scale + zero per group. Scale and zero are rounded to bf16 before the
    weights are rounded, so the kernel's bf16 scales are exact.
    """
    n_out, n_in = weight.shape
    check_group_size(n_in, group_size)
    w = weight.detach().float().reshape(n_out, n_in // group_size, group_size)  # (N, G, group)
    lo, hi = w.amin(-1), w.amax(-1)  # (N, G)
    step = ((hi - lo) / 15).clamp(min=1e-12)
    scale = step.to(KERNEL_DTYPE).float()  # nearest bf16: the ends move by <= 8 * 2^-8 of a step
    zero = (lo + 8 * step).to(KERNEL_DTYPE).float()  # the value of q = 8, the middle of the range
    q = torch.round((w - zero[..., None]) / scale[..., None] + 8).clamp(0, 15).to(torch.int32)
    scales_and_zeros = torch.stack([scale, zero], -1).transpose(0, 1).contiguous()  # (G, N, 2)
    return q.reshape(n_out, n_in), scales_and_zeros.to(KERNEL_DTYPE)


def dequantize_int4(q: torch.Tensor, scales_and_zeros: torch.Tensor) -> torch.Tensor:
    """The fp32 weight (N, K) that ``quantize_int4``'s output represents: (q - 8) * scale + zero."""
    n_out, n_in = q.shape
    groups = scales_and_zeros.shape[0]
    sz = scales_and_zeros.float().transpose(0, 1)  # (N, G, 2)
    w = (q.reshape(n_out, groups, -1).float() - 8) * sz[..., :1] + sz[..., 1:]  # (N, G, group)
    return w.reshape(n_out, n_in)


def check_group_size(in_features: int, group_size: int) -> None:
    """Raise ConfigError unless the kernel can use ``group_size`` on ``in_features`` inputs."""
    if group_size not in GROUP_SIZES:
        raise ConfigError(f"int4 group size must be one of {GROUP_SIZES}, got {group_size}")
    if in_features % group_size:
        raise ConfigError(
            f"int4 group size {group_size} does not divide in_features={in_features}; "
            f"choose one of {[g for g in GROUP_SIZES if in_features % g == 0] or 'none: keep this layer'}"
        )


class Int4Linear(nn.Module):
    """y = x @ W^T + b with W stored as packed uint4 (two per byte) plus a bf16 (scale, zero) per group."""

    def __init__(self, in_features: int, out_features: int, bias: bool, dtype: torch.dtype, group_size: int):
        super().__init__()
        check_group_size(in_features, group_size)
        self.in_features, self.out_features, self.group_size = in_features, out_features, group_size
        padded = -(-out_features // N_MULTIPLE) * N_MULTIPLE
        self.register_buffer("weight_int4", torch.zeros(padded, in_features // 2, dtype=torch.uint8))
        # bf16 bits stored as int16, so that model.to(dtype) leaves them alone: (K / group, N padded, 2)
        self.register_buffer(
            "scales_and_zeros", torch.zeros(in_features // group_size, padded, 2, dtype=torch.int16)
        )
        self.bias = nn.Parameter(torch.zeros(out_features, dtype=dtype)) if bias else None

    @classmethod
    def from_linear(
        cls, linear: nn.Linear, group_size: int = 32, dtype: torch.dtype | None = None
    ) -> Int4Linear:
        """Quantize an nn.Linear; ``dtype`` (default: the linear's) is the bias dtype."""
        dtype = dtype or linear.weight.dtype
        module = cls(linear.in_features, linear.out_features, linear.bias is not None, dtype, group_size)
        weight = linear.weight.detach().float()
        padding = module.weight_int4.shape[0] - linear.out_features
        weight = torch.cat([weight, weight.new_zeros(padding, linear.in_features)])  # (N padded, K)
        q, scales_and_zeros = quantize_int4(weight, group_size)
        module.weight_int4 = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 1)
        module.scales_and_zeros = scales_and_zeros.view(torch.int16)
        if linear.bias is not None:
            module.bias = nn.Parameter(linear.bias.detach().to(dtype), requires_grad=False)
        return module.to(linear.weight.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., K) -> (..., N) through the bf16 int4 kernel."""
        scales_and_zeros = self.scales_and_zeros.view(KERNEL_DTYPE)
        kernel = torch.ops.aten._weight_int4pack_mm_for_cpu  # (M, K) -> (M, N padded to 16)
        weights = (self.weight_int4, self.group_size, scales_and_zeros)
        return weight_only_linear(x, self.in_features, self.out_features, self.bias, kernel, *weights)

    def extra_repr(self) -> str:
        """Shapes in print(model)."""
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, group_size={self.group_size}"
        )
