"""Layers that keep a GGUF file's quantized blocks and compute on them with the native kernels.

A weight (N, K) is a GGMLWeight: Q4_0, Q4_1 and Q8_0 repacked once at load into the kernels' x16 layout
(the same bytes rearranged, kernels/csrc/packed.h), other types the file's rows (N, row_bytes) as stored.
Few rows of activations (decode, the Engine's batched decode) run ``ggml_packed_matmul`` (up to
PACKED_MAX_ROWS) or ``ggml_matmul`` (up to KERNEL_MAX_ROWS); more rows (prefill, scoring) dequantize
``DENSE_CHUNK`` weights at a time into ``dense_dtype()`` for a dense matmul. Without the native kernels the
rows stay as stored and gptkit's torch dequantization does the work (slower, same values).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from gptkit import kernels

# ggml type ids the native kernels read: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K
KERNEL_TYPES = frozenset({2, 3, 6, 7, 8, 10, 11, 12, 13, 14})
KERNEL_MAX_ROWS = kernels.KERNEL_MAX_ROWS
PACKED_MAX_ROWS = kernels.PACKED_MAX_ROWS
DENSE_CHUNK = 2**21  # weights dequantized at a time by the many-row path (4 MiB in bf16)


@functools.cache
def dense_dtype() -> torch.dtype:
    """bf16 for dense matmuls where the CPU multiplies bf16 natively (AVX-512 BF16, AMX), else fp32."""
    try:
        with open("/proc/cpuinfo") as fh:
            flags = next((line for line in fh if line.startswith("flags")), "").split()
    except OSError:
        return torch.float32
    return torch.bfloat16 if {"avx512_bf16", "amx_bf16"} & set(flags) else torch.float32


# ggml types the native kernels repack into their x16 layout at load: Q4_0, Q4_1, Q8_0 (kernels/csrc/packed.h)
PACKED_TYPES = frozenset({2, 3, 8})


def pack(stored) -> tuple[torch.Tensor, bool]:
    """(weight data, packed?) of a parameter's StoredRows (gptkit.weights.gguf_io): the kernels' x16 layout
    where they have one (built straight from the file's pages), else the rows as stored (checked)."""
    native = kernels.ops()
    if native is None or stored.ggml_type not in PACKED_TYPES:
        return stored.materialize(), False
    order = stored.order if stored.order is not None else torch.empty(0, dtype=torch.long)
    in_features = _in_features(stored)
    try:
        return native.ggml_pack(stored.parts, order, stored.ggml_type, in_features), True
    except RuntimeError as error:
        if "NaN or infinite" not in str(error):
            raise
        from gptkit.errors import WeightsError

        raise WeightsError(f"tensor {stored.name!r} has NaN or infinite block scales") from None


def _in_features(stored) -> int:
    """K of a parameter from its row bytes and its type's block size."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    block_size, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(stored.ggml_type)]
    return stored.parts[0].shape[1] // type_size * block_size


def dequantize_blocks(
    blocks: torch.Tensor, ggml_type: int, in_features: int, dtype: torch.dtype
) -> torch.Tensor:
    """Rows of ggml blocks (N, row_bytes) -> (N, in_features) in ``dtype``."""
    native = kernels.ops()
    if native is not None and ggml_type in KERNEL_TYPES and dtype in (torch.float32, torch.bfloat16):
        return native.ggml_dequantize(blocks, ggml_type, in_features, dtype)
    from gguf import GGMLQuantizationType

    from gptkit.quant.gguf_dequant import dequantize

    qtype = GGMLQuantizationType(ggml_type)
    return dequantize(blocks.reshape(-1), qtype, (blocks.shape[0], in_features)).to(dtype)


class GGMLWeight(nn.Module):
    """A weight (N, K) kept as ggml blocks: (N, row_bytes) uint8 as in the file, or the kernels' x16
    layout (ceil(N / 16), K / 32 * group bytes) when ``packed``."""

    def __init__(self, data: torch.Tensor, ggml_type: int, shape: tuple[int, int], packed: bool):
        super().__init__()
        self.register_buffer("data", data)
        self.ggml_type, self.packed = ggml_type, packed
        self.out_features, self.in_features = shape

    def matmul(self, rows: torch.Tensor) -> torch.Tensor:
        """rows (M, K) -> (M, N) float32: native kernels for few rows, else a dequantized dense matmul."""
        native = kernels.ops()
        if native is not None and self.packed and rows.shape[0] <= PACKED_MAX_ROWS:
            return native.ggml_packed_matmul(rows.float(), self.data, self.ggml_type, self.out_features)
        if (
            native is not None
            and not self.packed
            and rows.shape[0] <= KERNEL_MAX_ROWS
            and self.ggml_type in KERNEL_TYPES
        ):
            return native.ggml_matmul(rows.float(), self.data, self.ggml_type)
        return self._dense(rows).float()

    def _dense(self, rows: torch.Tensor) -> torch.Tensor:
        """Dequantize DENSE_CHUNK weights at a time for a dense matmul in dense_dtype(): (M, K) -> (M, N)."""
        dtype = dense_dtype()
        inputs = rows.to(dtype)
        if self.packed:  # whole groups of 16 rows, dequantized straight into W^T: y = x @ W^T
            native, groups = kernels.ops(), self.data.shape[0]
            step = max(1, DENSE_CHUNK // (16 * self.in_features))
            parts = [
                inputs
                @ native.ggml_packed_transposed(
                    self.data, self.ggml_type, self.in_features, g, min(g + step, groups), dtype
                )
                for g in range(0, groups, step)
            ]
        else:
            step = max(1, DENSE_CHUNK // self.in_features)
            parts = [
                F.linear(inputs, self.dequantize(dtype, n, n + step))
                for n in range(0, self.out_features, step)
            ]
        y = torch.cat(parts, -1) if len(parts) > 1 else parts[0]  # (M, N or N padded to 16)
        return y[:, : self.out_features]

    def dequantize(
        self, dtype: torch.dtype = torch.float32, start: int = 0, stop: int | None = None
    ) -> torch.Tensor:
        """Rows [start, stop) of the weight: (stop - start, K) in ``dtype``."""
        stop = self.out_features if stop is None else min(stop, self.out_features)
        return self.rows(torch.arange(start, stop), dtype)

    def rows(self, index: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The weight rows ``index`` (n,) -> (n, K) in ``dtype`` (an embedding lookup)."""
        if self.packed:
            native = kernels.ops()
            kernel_dtype = dtype if dtype in (torch.float32, torch.bfloat16) else torch.float32
            return native.ggml_packed_rows(
                self.data, self.ggml_type, self.in_features, index, kernel_dtype
            ).to(dtype)
        return dequantize_blocks(self.data.index_select(0, index), self.ggml_type, self.in_features, dtype)


class GGMLLinear(nn.Module):
    """y = x @ W^T + b with W a GGMLWeight (the file's quantized blocks)."""

    def __init__(self, weight: GGMLWeight, bias: torch.Tensor | None = None):
        super().__init__()
        self.qweight = weight
        self.in_features, self.out_features = weight.in_features, weight.out_features
        self.bias = None if bias is None else nn.Parameter(bias, requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., K) -> (..., N) in x's dtype."""
        y = self.qweight.matmul(x.reshape(-1, self.in_features)).to(x.dtype)  # (M, N)
        if self.bias is not None:
            y = y + self.bias.to(y.dtype)
        return y.reshape(*x.shape[:-1], self.out_features)

    def dequantized_weight(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The weight the blocks represent: (N, K)."""
        return self.qweight.dequantize(dtype)

    def extra_repr(self) -> str:
        w = self.qweight
        return f"in_features={self.in_features}, out_features={self.out_features}, ggml_type={w.ggml_type}, packed={w.packed}"


class GGMLEmbedding(nn.Module):
    """Token embeddings kept as a GGMLWeight (shared with a tied lm_head): looked-up rows are dequantized."""

    def __init__(self, weight: GGMLWeight, dtype: torch.dtype):
        super().__init__()
        self.qweight, self.dtype = weight, dtype
        self.num_embeddings, self.embedding_dim = weight.out_features, weight.in_features

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(...) token ids -> (..., embedding_dim)."""
        values = self.qweight.rows(input_ids.reshape(-1), self.dtype)  # (n, embedding_dim)
        return values.view(*input_ids.shape, self.embedding_dim)

    def dequantized_weight(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The whole table: (vocab, embedding_dim)."""
        return self.qweight.dequantize(dtype)
