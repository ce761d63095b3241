"""What every weight-only quantized linear does around its kernel: rows in bf16 in, bias and shape out."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

KERNEL_DTYPE = torch.bfloat16  # the CPU int8/int4 kernels are 15-75x slower with fp32 activations


def weight_only_linear(
    x: torch.Tensor,
    in_features: int,
    out_features: int,
    bias: torch.Tensor | None,
    kernel: Callable[..., torch.Tensor],
    *weights: Any,
) -> torch.Tensor:
    """(..., K) -> (..., N): ``kernel(rows, *weights)`` maps the rows (M, K), cast to bf16, to (M, >= N)
    outputs, of which the first N are kept (padded kernels), cast back to x's dtype, plus ``bias``."""
    rows = x.reshape(-1, in_features).to(KERNEL_DTYPE)  # (M, K)
    y = kernel(rows, *weights)[:, :out_features].to(x.dtype)  # (M, N)
    if bias is not None:
        y = y + bias.to(x.dtype)
    return y.reshape(*x.shape[:-1], out_features)
