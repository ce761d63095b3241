"""Int8 weight-only linear: per-output-channel symmetric int8 weights, activations stay bf16/fp32.

Decode (few rows) runs ``aten._weight_int8pack_mm`` in bf16, which streams 1 byte per weight instead of
2 (bf16) or 4 (fp32); prefill (many rows) is compute-bound, so it casts the int8 weights to the activation
dtype and uses the dense matmul, applying the per-channel scales to the output.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

KERNEL_DTYPE = torch.bfloat16  # the CPU int8pack kernel is ~15x slower with fp32 activations
KERNEL_MAX_ROWS = 8  # above this the int8 kernel loses to a dense matmul (measured, docs/performance.md)


def quantize_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-row int8: weight (N, K) -> (int8 (N, K), fp32 scales (N,)), weight ~= q * scale.

    Scales are rounded up to bf16 values before the weights are rounded, so the bf16 kernel's scales are
    exact (no per-row scale error) and |w / scale| <= 127 still holds.
    """
    w = weight.detach().float()
    scales = (w.abs().amax(dim=1) / 127).clamp(min=1e-12) * (1 + 2**-8)  # (N,); up to a bf16 step
    scales = scales.to(KERNEL_DTYPE).float()
    q = torch.round(w / scales[:, None]).clamp(-127, 127).to(torch.int8)  # (N, K)
    return q, scales


class Int8Linear(nn.Module):
    """y = x @ (q * scale)^T + b with int8 weights q (N, K) and fp32 per-output-channel scales (N,)."""

    def __init__(self, in_features: int, out_features: int, bias: bool, dtype: torch.dtype) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("weight_int8", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("scales", torch.ones(out_features))
        self.bias = nn.Parameter(torch.zeros(out_features, dtype=dtype)) if bias else None

    @classmethod
    def from_linear(cls, linear: nn.Linear, dtype: torch.dtype | None = None) -> Int8Linear:
        """Quantize an nn.Linear; ``dtype`` (default: the linear's) is the bias dtype."""
        dtype = dtype or linear.weight.dtype
        module = cls(linear.in_features, linear.out_features, linear.bias is not None, dtype)
        q, scales = quantize_int8(linear.weight)
        module.weight_int8, module.scales = q, scales
        if linear.bias is not None:
            module.bias = nn.Parameter(linear.bias.detach().to(dtype), requires_grad=False)
        return module.to(linear.weight.device)

    def dequantized_weight(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The weight the layer represents, q * scale: (N, K)."""
        return (self.weight_int8.float() * self.scales[:, None]).to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., K) -> (..., N): int8 kernel in bf16 for few rows, dense matmul for many."""
        shape = x.shape  # (..., K)
        x2 = x.reshape(-1, self.in_features)  # (M, K)
        if x2.shape[0] <= KERNEL_MAX_ROWS:
            scales = self.scales.to(KERNEL_DTYPE)  # exact: the scales are bf16 values (quantize_int8)
            y = torch.ops.aten._weight_int8pack_mm(x2.to(KERNEL_DTYPE), self.weight_int8, scales)
            y = y.to(x.dtype)  # (M, N)
        else:
            y = F.linear(x2, self.weight_int8.to(x.dtype)) * self.scales.to(x.dtype)  # (M, N)
        if self.bias is not None:
            y = y + self.bias.to(x.dtype)
        return y.reshape(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        """Shapes in print(model)."""
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
        )
