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
from gptkit.model.adapters import MultiLoRALinear
from gptkit.model.attention import AttentionInputs

MLP_KINDS = {"swiglu": 0, "none": 1, "tanh": 2}  # SwiGLU, GELU (erf), GELU (tanh)


def fused_decode(block: nn.Module, x: torch.Tensor, inputs: AttentionInputs) -> torch.Tensor | None:
    """x (B, 1, C) -> the block's output through gptkit_native::decode_block, or None when it does not apply."""
    if x.shape[1] != 1 or inputs.cache is None or inputs.columns is None or x.dtype != torch.float32:
        return None
    if block.training or torch.is_grad_enabled() or torch.compiler.is_compiling():
        return None
    if any(isinstance(linear, MultiLoRALinear) and linear.adapter_active for linear in _linears(block)):
        return None  # a LoRA adapter applies to some row: the modules run (gptkit.model.adapters)
    weights = _block_arguments(block)
    native = kernels.ops() if weights is not None else None
    if native is None or inputs.cache.k[0].dtype != torch.float32 or x.device.type != "cpu":
        return None
    if block.attn_norm.weight.dtype != torch.float32:  # model.to(dtype) keeps the objects, not their dtype
        return None
    B = x.shape[0]
    cos, sin = inputs.rotary if inputs.rotary is not None else (_EMPTY, _EMPTY)
    layer = block.attn.layer
    out = native.decode_block.default(
        x.reshape(B, -1).contiguous(),
        *weights,
        cos.reshape(B, -1).contiguous(),
        sin.reshape(B, -1).contiguous(),
        inputs.cache.k[layer],
        inputs.cache.v[layer],
        inputs.columns.reshape(B),
        inputs.mask[:, 0, 0],
        *block._fused_config,
    )
    return out.view(B, 1, -1)


_EMPTY = torch.empty(0)


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
