"""Int8 weight-only linear: per-output-channel symmetric int8 weights; the model's activations stay bf16/fp32.

Both paths compute in bf16 (fp32 inputs are cast and the output cast back), like the int4 kernel: decode
(few rows) runs ``aten._weight_int8pack_mm``, which streams 1 byte per weight instead of 2 (bf16) or 4
(fp32) and is ~15x slower with fp32 activations; batched decode and prefill (more rows) are compute-bound,
so they cast the int8 weights to bf16 chunk by chunk for a dense matmul, scaling the output per channel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gptkit.quant.rows import KERNEL_DTYPE, weight_only_linear

KERNEL_MAX_ROWS = 8  # above this the int8 kernel loses to a dense matmul (measured, docs/performance.md)
DENSE_CHUNK = 2**21  # int8 weights cast at a time by the dense (many-row) path; 4 MiB in bf16
QUANTIZE_ROWS = 4096  # rows quantize_int8 takes at a time (~9 MiB of fp32 temporaries per 576 columns)


def quantize_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-row int8: weight (N, K) -> (int8 (N, K), fp32 scales (N,)), weight ~= q * scale.

    Scales are rounded up to bf16 values before the weights are rounded, so the bf16 kernel's scales are
    exact (no per-row scale error) and |w / scale| <= 127 still holds. ``QUANTIZE_ROWS`` rows at a time:
    the fp32 temporaries of a whole 49152 x 576 head took ~340 MB.
    """
    q = torch.empty(weight.shape, dtype=torch.int8, device=weight.device)  # (N, K)
    scales = torch.empty(weight.shape[0], device=weight.device)  # (N,)
    for start in range(0, weight.shape[0], QUANTIZE_ROWS):
        w = weight[start : start + QUANTIZE_ROWS].detach().float()  # (rows, K)
        rows = slice(start, start + w.shape[0])
        step = (w.abs().amax(dim=1) / 127).clamp(min=1e-12) * (1 + 2**-8)  # (rows,); up to a bf16 step
        scales[rows] = step.to(KERNEL_DTYPE).float()
        q[rows] = torch.round(w / scales[rows, None]).clamp(-127, 127)  # exact integers: the cast is too
    return q, scales


def dense_int8_matmul(x: torch.Tensor, q: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """x (M, K) @ (q * scales)^T in x's dtype, casting q to it ``DENSE_CHUNK`` weights at a time.

    Casting all of a large q at once allocates (and page-faults) a fresh dense copy on every call: 3-4x
    slower for the 49152x576 lm_head at 9-16 rows (docs/performance.md).
    """
    rows = max(1, DENSE_CHUNK // q.shape[1])
    parts = [F.linear(x, chunk.to(x.dtype)) for chunk in q.split(rows)]  # each (M, rows)
    y = torch.cat(parts, -1) if len(parts) > 1 else parts[0]  # (M, N)
    return y * scales.to(x.dtype)


def int8_matmul(x: torch.Tensor, q: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """x (M, K) bf16 @ (q (N, K) int8 * scales (N,) bf16)^T -> (M, N): the kernel for few rows, else dense."""
    if x.shape[0] <= KERNEL_MAX_ROWS:
        return torch.ops.aten._weight_int8pack_mm(x, q, scales)
    return dense_int8_matmul(x, q, scales)


# Inside a torch.compile'd graph the int8 matmul is this opaque custom op: torch 2.13's inductor cannot lower
# aten._weight_int8pack_mm on fused inputs (LoweringException: AssertionError: <class '...Pointwise'>), and
# choosing the path inside the op keeps the row count out of the graph's guards (one graph for any M).
@torch.library.custom_op("gptkit::int8_matmul", mutates_args=())
def _int8_matmul_op(x: torch.Tensor, q: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    return int8_matmul(x, q, scales)


@_int8_matmul_op.register_fake
def _(x: torch.Tensor, q: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    return x.new_empty(x.shape[0], q.shape[0])


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
        """(..., K) -> (..., N), computed in bf16: the int8 kernel for few rows, a dense matmul for more."""
        scales = self.scales.to(KERNEL_DTYPE)  # exact: the scales are bf16 values (quantize_int8)
        kernel = torch.ops.gptkit.int8_matmul if torch.compiler.is_compiling() else int8_matmul
        weights = (self.weight_int8, scales)
        return weight_only_linear(x, self.in_features, self.out_features, self.bias, kernel, *weights)

    def extra_repr(self) -> str:
        """Shapes in print(model)."""
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
        )
