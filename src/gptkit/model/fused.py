"""The decode fast path: a whole decoder block for one new token per row in one native op.

Used by Block.forward when the block's linears keep GGUF blocks (gptkit.quant.ggml), the activations and
the KV cache are float32 and nothing needs gradients; any other case returns None and the modules run as
usual. The op computes what the modules compute (same norms, rotary, attention and MLP), with the
quantized matmuls of gptkit.kernels.
"""

from __future__ import annotations

import torch
from torch import nn

from gptkit import kernels
from gptkit.model.attention import AttentionInputs

MLP_KINDS = {"swiglu": 0, "none": 1, "tanh": 2}  # SwiGLU, GELU (erf), GELU (tanh)


def fused_decode(block: nn.Module, x: torch.Tensor, inputs: AttentionInputs) -> torch.Tensor | None:
    """x (B, 1, C) -> the block's output through gptkit_native::decode_block, or None when it does not apply."""
    native = _usable(block, x, inputs)
    if native is None:
        return None
    attn, mlp = block.attn, block.mlp
    swiglu = hasattr(mlp, "gate_up")
    up = mlp.gate_up if swiglu else mlp.up
    cos, sin = inputs.rotary if inputs.rotary is not None else (x.new_empty(0), x.new_empty(0))
    B = x.shape[0]
    out = native.decode_block(
        x.reshape(B, -1).contiguous(),
        *_norm(block.attn_norm),
        *_linear(attn.qkv),
        *_linear(attn.proj),
        *_norm(block.mlp_norm),
        *_linear(up),
        *_linear(mlp.down),
        cos.reshape(B, -1).float().contiguous(),
        sin.reshape(B, -1).float().contiguous(),
        inputs.cache.k[attn.layer],
        inputs.cache.v[attn.layer],
        inputs.columns.reshape(B),
        inputs.mask[:, 0, 0],
        attn.n_head,
        1 if isinstance(block.attn_norm, nn.LayerNorm) else 0,
        _eps(block.attn_norm),
        MLP_KINDS["swiglu" if swiglu else mlp.approximate],
        mlp.ffn_dim if swiglu else mlp.up.out_features,
    )
    return out.view(B, 1, -1)


def _usable(block: nn.Module, x: torch.Tensor, inputs: AttentionInputs):
    """The native ops when this block and input take the fused path, else None."""
    if x.shape[1] != 1 or inputs.cache is None or inputs.columns is None or x.dtype != torch.float32:
        return None
    if block.training or torch.is_grad_enabled() or x.device.type != "cpu" or torch.compiler.is_compiling():
        return None
    mlp = block.mlp
    linears = (block.attn.qkv, block.attn.proj, getattr(mlp, "gate_up", None) or mlp.up, mlp.down)
    if not all(hasattr(linear, "qweight") for linear in linears):
        return None
    if inputs.cache.k[0].dtype != torch.float32 or block.attn_norm.weight.dtype != torch.float32:
        return None
    return kernels.ops()


def _norm(norm: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    return norm.weight, norm.bias


def _eps(norm: nn.Module) -> float:
    return float(norm.eps)


def _linear(linear: nn.Module) -> tuple:
    """(data, ggml type, packed?, bias) of a GGMLLinear."""
    weight = linear.qweight
    return weight.data, weight.ggml_type, weight.packed, linear.bias
