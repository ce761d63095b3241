"""The int8 weight-only matmul, callable eagerly and from a torch.compile'd graph.

Eagerly it is torch's own CPU kernel. Inside a compiled graph it goes through the ``gptkit::int8_weight_mm``
custom op, which inductor calls as an opaque kernel: torch 2.13's inductor cannot lower
``aten._weight_int8pack_mm`` when its inputs are fused computations (``LoweringException: AssertionError:
<class 'torch._inductor.ir.Pointwise'>``). The int4 kernel needs no such wrapper: inductor lowers it to
the same CPU kernel.
"""

from __future__ import annotations

import torch


@torch.library.custom_op("gptkit::int8_weight_mm", mutates_args=())
def _int8_op(x: torch.Tensor, weight: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    return torch.ops.aten._weight_int8pack_mm(x, weight, scales)


@_int8_op.register_fake
def _(x: torch.Tensor, weight: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    return x.new_empty(x.shape[0], weight.shape[0])


def int8_weight_mm(x: torch.Tensor, weight: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """x (M, K) bf16 @ (weight (N, K) int8 * scales (N,) bf16)^T -> (M, N) bf16."""
    if torch.compiler.is_compiling():
        return torch.ops.gptkit.int8_weight_mm(x, weight, scales)
    return torch.ops.aten._weight_int8pack_mm(x, weight, scales)
