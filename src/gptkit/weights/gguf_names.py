"""GGUF tensor names -> gptkit parameter names, and the shape the config implies for each GGUF tensor.

Each of our parameters is the row-wise concatenation of one or more GGUF tensors (``BLOCK_RULES``,
``GLOBAL_RULES``; the first alternative whose tensors are all present wins).
"""

from __future__ import annotations

import re

from gptkit.config import GPT4Config
from gptkit.errors import WeightsError

# Each of our parameters = row-wise concatenation of the GGUF tensors listed (first alternative present).
BLOCK_RULES: dict[str, tuple[tuple[str, ...], ...]] = {
    "attn_norm.{p}": (("attn_norm.{p}",),),
    "attn.qkv.{p}": (("attn_qkv.{p}",), ("attn_q.{p}", "attn_k.{p}", "attn_v.{p}")),
    "attn.proj.{p}": (("attn_output.{p}",),),
    "mlp_norm.{p}": (("ffn_norm.{p}",),),
    "mlp.gate_up.{p}": (("ffn_gate.{p}", "ffn_up.{p}"),),
    "mlp.up.{p}": (("ffn_up.{p}",),),
    "mlp.down.{p}": (("ffn_down.{p}",),),
    "attn.q_norm.{p}": (("attn_q_norm.{p}",),),
    "attn.k_norm.{p}": (("attn_k_norm.{p}",),),
    "attn_post_norm.{p}": (("post_attention_norm.{p}",),),
    "mlp_post_norm.{p}": (("post_ffw_norm.{p}",),),
    "mlp.router.{p}": (("ffn_gate_inp.{p}",),),
    "mlp.gate_up_exps.{p}": (("ffn_gate_exps.{p}", "ffn_up_exps.{p}"),),  # 3-D: joined along dim 1
    "mlp.down_exps.{p}": (("ffn_down_exps.{p}",),),
}
# Architectures whose tensors differ from the table above: Phi-3 stores [gate; up] fused in ffn_up.
ARCH_BLOCK_RULES: dict[str, dict[str, tuple[tuple[str, ...], ...]]] = {
    "phi3": {"mlp.gate_up.{p}": (("ffn_up.{p}",),)},
}
ROPE_FACTORS = {"short": "rope_factors_short.weight", "long": "rope_factors_long.weight"}  # read into config
GLOBAL_RULES: dict[str, str] = {
    "embed.weight": "token_embd.weight",
    "pos_embed.weight": "position_embd.weight",
    "norm.{p}": "output_norm.{p}",
    "lm_head.weight": "output.weight",
}
_BLOCK_NAME = re.compile(r"blocks\.(\d+)\.(.+)\.(weight|bias)")


def gguf_sources(name: str, available: set[str] | dict, arch: str | None = None) -> tuple[str, ...]:
    """The GGUF tensor names that make up our parameter ``name`` (e.g. blk.3.attn_q/k/v.weight)."""
    match = _BLOCK_NAME.fullmatch(name)
    if match:
        layer, module, kind = match.groups()
        rules = {**BLOCK_RULES, **ARCH_BLOCK_RULES.get(arch, {})}
        alternatives = rules.get(f"{module}.{{p}}")
        if alternatives is None:
            raise WeightsError(f"no GGUF mapping for parameter {name!r}")
        candidates = [tuple(f"blk.{layer}.{s.format(p=kind)}" for s in alt) for alt in alternatives]
        return next((c for c in candidates if all(s in available for s in c)), candidates[-1])
    module, _, kind = name.rpartition(".")
    source = GLOBAL_RULES.get(name) or GLOBAL_RULES.get(f"{module}.{{p}}")
    if source is None:
        raise WeightsError(f"no GGUF mapping for parameter {name!r}")
    return (source.format(p=kind),)


def source_shapes(config: GPT4Config, arch: str | None = None) -> dict[str, tuple[int, ...]]:
    """The shape the config implies for every GGUF weight kind (a bias has the weight's first dim)."""
    d, hd, f = config.n_embd, config.dim_per_head, config.ffn_dim
    q, kv = config.n_head * hd, config.kv_heads * hd
    full = config.qk_norm.value == "full"
    e, fe, rotary = config.n_experts, config.expert_ffn_dim, config.rotary_width // 2
    return {
        "token_embd": (config.vocab_size, d), "position_embd": (config.context_length, d),
        "output": (config.vocab_size, d), "output_norm": (d,), "attn_norm": (d,), "ffn_norm": (d,),
        "attn_q": (q, d), "attn_k": (kv, d), "attn_v": (kv, d), "attn_qkv": (q + 2 * kv, d),
        "attn_output": (d, q), "ffn_gate": (f, d), "ffn_up": (2 * f if arch in ARCH_BLOCK_RULES else f, d),
        "ffn_down": (d, f), "attn_q_norm": (q if full else hd,), "attn_k_norm": (kv if full else hd,),
        "post_attention_norm": (d,), "post_ffw_norm": (d,), "ffn_gate_inp": (e, d), "ffn_gate_exps": (e, fe, d),
        "ffn_up_exps": (e, fe, d), "ffn_down_exps": (e, d, fe), "rope_factors_short": (rotary,),
        "rope_factors_long": (rotary,),
    }  # fmt: skip


def tensor_kind(gguf_name: str) -> tuple[str, str]:
    """``blk.3.attn_q.weight`` -> (``attn_q``, ``weight``)."""
    parts = gguf_name.split(".")
    return parts[-2], parts[-1]


def check_shape(tensor, shapes: dict[str, tuple[int, ...]]) -> None:
    """Refuse a GGUF tensor whose shape disagrees with the metadata."""
    kind, suffix = tensor_kind(tensor.name)
    expected = shapes[kind] if suffix == "weight" else shapes[kind][:1]
    if tensor.shape != expected:
        raise WeightsError(
            f"tensor {tensor.name!r} has shape {tensor.shape} (GGUF dims {tuple(reversed(tensor.shape))}), "
            f"but the metadata implies {expected}"
        )
