"""Layers that keep a GGUF file's quantized blocks as they are and compute on them with native kernels.

A weight (N, K) stays the file's ggml blocks, (N, row_bytes) uint8, one row of blocks per output
feature. Few rows of activations (decode, the Engine's batched decode) go through
``gptkit_native::ggml_matmul``, which dequantizes each block in registers and shares it between the rows;
many rows (prefill, scoring) dequantize ``DENSE_CHUNK`` weights at a time into ``dense_dtype()`` for a dense
matmul. Without the native kernels both use gptkit's torch dequantization (slower, same values).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from gptkit import kernels

# ggml type ids the native kernels read: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K
KERNEL_TYPES = frozenset({2, 3, 6, 7, 8, 10, 11, 12, 13, 14})
KERNEL_MAX_ROWS = 16  # above this a dequantized dense matmul is faster (measured, docs/performance.md)
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


def dequantize_blocks(blocks: torch.Tensor, ggml_type: int, in_features: int, dtype: torch.dtype) -> torch.Tensor:
    """Rows of ggml blocks (N, row_bytes) -> (N, in_features) in ``dtype``."""
    native = kernels.ops()
    if native is not None and ggml_type in KERNEL_TYPES and dtype in (torch.float32, torch.bfloat16):
        return native.ggml_dequantize(blocks, ggml_type, in_features, dtype)
    from gguf import GGMLQuantizationType

    from gptkit.weights.gguf_io import dequantize

    qtype = GGMLQuantizationType(ggml_type)
    return dequantize(blocks.reshape(-1), qtype, (blocks.shape[0], in_features)).to(dtype)


class GGMLLinear(nn.Module):
    """y = x @ W^T + b with W kept as ggml blocks (N, row_bytes) uint8 of one ggml type."""

    def __init__(self, blocks: torch.Tensor, ggml_type: int, in_features: int, bias: torch.Tensor | None = None):
        super().__init__()
        self.register_buffer("blocks", blocks)  # (N, row_bytes) uint8: the file's bytes, unchanged
        self.ggml_type, self.in_features, self.out_features = ggml_type, in_features, blocks.shape[0]
        self.bias = None if bias is None else nn.Parameter(bias, requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., K) -> (..., N) in x's dtype."""
        rows = x.reshape(-1, self.in_features)  # (M, K)
        native = kernels.ops()
        if native is not None and rows.shape[0] <= KERNEL_MAX_ROWS and self.ggml_type in KERNEL_TYPES:
            y = native.ggml_matmul(rows.float(), self.blocks, self.ggml_type).to(x.dtype)  # (M, N)
        else:
            y = self._dense(rows)
        if self.bias is not None:
            y = y + self.bias.to(y.dtype)
        return y.reshape(*x.shape[:-1], self.out_features)

    def _dense(self, rows: torch.Tensor) -> torch.Tensor:
        """Many rows: dequantize DENSE_CHUNK weights at a time for a dense matmul, (M, K) -> (M, N)."""
        dtype = dense_dtype()
        chunk = max(1, DENSE_CHUNK // self.in_features)
        inputs = rows.to(dtype)
        parts = [
            F.linear(inputs, dequantize_blocks(b, self.ggml_type, self.in_features, dtype))
            for b in self.blocks.split(chunk)
        ]  # each (M, chunk)
        return (torch.cat(parts, -1) if len(parts) > 1 else parts[0]).to(rows.dtype)

    def dequantized_weight(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The weight the blocks represent: (N, K)."""
        return dequantize_blocks(self.blocks, self.ggml_type, self.in_features, dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, ggml_type={self.ggml_type}"


class GGMLEmbedding(nn.Module):
    """Token embeddings kept as ggml blocks (vocab, row_bytes): looked-up rows are dequantized."""

    def __init__(self, blocks: torch.Tensor, ggml_type: int, embedding_dim: int, dtype: torch.dtype):
        super().__init__()
        self.register_buffer("blocks", blocks)  # (vocab, row_bytes) uint8
        self.ggml_type, self.embedding_dim, self.dtype = ggml_type, embedding_dim, dtype
        self.num_embeddings = blocks.shape[0]

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(...) token ids -> (..., embedding_dim)."""
        rows = self.blocks.index_select(0, input_ids.reshape(-1))  # (n, row_bytes)
        values = dequantize_blocks(rows, self.ggml_type, self.embedding_dim, torch.float32).to(self.dtype)
        return values.view(*input_ids.shape, self.embedding_dim)

    def dequantized_weight(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The whole table: (vocab, embedding_dim)."""
        return dequantize_blocks(self.blocks, self.ggml_type, self.embedding_dim, dtype)
