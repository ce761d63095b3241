"""The decode fast path: a whole decoder block for a few new tokens per row in one native op.

One token per row is a decode step; a few (up to MAX_TOKENS) are a speculative verification or a short
prompt over a cache.

Used by Block.forward when the block's linears keep GGUF blocks (gptkit.quant.ggml), the activations and
the KV cache are float32 and nothing needs gradients; any other case returns None and the modules run as
usual. The op computes what the modules compute (same norms, rotary, attention and MLP), with the
quantized matmuls of gptkit.kernels.
"""

from __future__ import annotations

import torch
from torch import nn

from gptkit import kernels
from gptkit.model.adapters import MultiLoRALinear
from gptkit.model.attention import AttentionInputs

MLP_KINDS = {"swiglu": 0, "none": 1, "tanh": 2}  # SwiGLU, GELU (erf), GELU (tanh)
MAX_TOKENS = 16  # new tokens per row the fused block takes; longer prompts run the modules (dense matmuls)


def _applies(x: torch.Tensor, inputs: AttentionInputs) -> bool:
    """Whether x (B, T, C) is one, or a few, fp32 tokens per row over a cache."""
    return (
        x.shape[1] <= MAX_TOKENS
        and inputs.cache is not None
        and inputs.columns is not None
        and x.dtype == torch.float32
    )


def _kernel_takes(weights: tuple, tokens: int) -> bool:
    """Whether the quantized kernels are the fast way for this many tokens (else the dense matmuls are)."""
    all_packed = all(weights[i] for i in _PACKED_FLAGS)
    return tokens <= (kernels.PACKED_MAX_ROWS if all_packed else kernels.KERNEL_MAX_ROWS)


def fused_decode(block: nn.Module, x: torch.Tensor, inputs: AttentionInputs) -> torch.Tensor | None:
    """x (B, T, C) -> the block's output through gptkit_native::decode_block, or None when it does not apply."""
    if not _applies(x, inputs):
        return None
    if block.training or torch.is_grad_enabled() or torch.compiler.is_compiling():
        return None
    if any(isinstance(linear, MultiLoRALinear) and linear.adapter_active for linear in _linears(block)):
        return None  # a LoRA adapter applies to some row: the modules run (gptkit.model.adapters)
    weights = _block_arguments(block)
    if weights is None or (x.shape[1] > 1 and not _kernel_takes(weights, x.shape[0] * x.shape[1])):
        return None
    native = kernels.ops()
    if native is None or inputs.cache.k[0].dtype != torch.float32 or x.device.type != "cpu":
        return None
    if block.attn_norm.weight.dtype != torch.float32:  # model.to(dtype) keeps the objects, not their dtype
        return None
    B, T, C = x.shape
    M = B * T  # the new tokens, row by row
    cos, sin = inputs.rotary if inputs.rotary is not None else (_EMPTY, _EMPTY)
    layer = block.attn.layer
    out = native.decode_block.default(
        x.reshape(M, C).contiguous(),
        *weights,
        cos.reshape(M, -1).contiguous() if cos.numel() else cos,
        sin.reshape(M, -1).contiguous() if sin.numel() else sin,
        inputs.cache.k[layer],
        inputs.cache.v[layer],
        inputs.columns.reshape(M),
        inputs.mask[:, 0].reshape(M, -1),  # (B, 1, T, S) -> (M, S)
        *block._fused_config,
    )
    return out.view(B, T, C)


_EMPTY = torch.empty(0)
_PACKED_FLAGS = (4, 8, 14, 18)  # where _block_arguments puts the four linears' "packed?" flags


def _block_arguments(block: nn.Module) -> tuple | None:
    """The block's weights as decode_block takes them (kept on the block until its modules change), or
    None when a linear does not keep GGUF blocks or a norm is not float32."""
    mlp = block.mlp
    swiglu = hasattr(mlp, "gate_up")
    qkv, proj, up, down = (getattr(m, "base_layer", m) for m in _linears(block))  # LoRA: the base layer
    modules = (block.attn_norm, qkv, proj, block.mlp_norm, up, down)
    cached = block.__dict__.get("_fused_arguments")
    if cached is not None and cached[0] == tuple(map(id, modules)):
        return cached[1]
    arguments = None
    linears = modules[1:3] + modules[4:]
    norms_fp32 = all(norm.weight.dtype == torch.float32 for norm in (block.attn_norm, block.mlp_norm))
    if all(hasattr(linear, "qweight") for linear in linears) and norms_fp32:
        attn_norm, qkv, proj, mlp_norm, up, down = modules
        arguments = (
            *_norm(attn_norm),
            *_linear(qkv),
            *_linear(proj),
            *_norm(mlp_norm),
            *_linear(up),
            *_linear(down),
        )
        block._fused_config = (
            block.attn.n_head,
            1 if isinstance(attn_norm, nn.LayerNorm) else 0,
            float(attn_norm.eps),
            MLP_KINDS["swiglu" if swiglu else mlp.approximate],
            mlp.ffn_dim if swiglu else mlp.up.out_features,
        )
    block.__dict__["_fused_arguments"] = (tuple(map(id, modules)), arguments)
    return arguments


def _linears(block: nn.Module) -> tuple[nn.Module, ...]:
    """The block's four linear modules: qkv, proj, the MLP's up (or gate_up) and down."""
    mlp = block.mlp
    return block.attn.qkv, block.attn.proj, mlp.gate_up if hasattr(mlp, "gate_up") else mlp.up, mlp.down


def _norm(norm: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    return norm.weight, norm.bias


def _linear(linear: nn.Module) -> tuple:
    """(data, ggml type, packed?, bias) of a GGMLLinear."""
    weight = linear.qweight
    return weight.data, weight.ggml_type, weight.packed, linear.bias
