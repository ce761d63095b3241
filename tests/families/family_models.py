"""Tiny random transformers models of each family (built offline from a config), and their GGUF copies
written with the ``gguf`` package the way llama.cpp's converter writes them. Imported by the tests here."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

VOCAB = 96
COMMON = dict(
    vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, max_position_embeddings=128, rms_norm_eps=1e-6, tie_word_embeddings=False,
    bos_token_id=1, eos_token_id=2, pad_token_id=0,
)  # fmt: skip
ROPE = {"rope_type": "default", "rope_theta": 5000.0}
FAMILIES: dict[str, tuple[str, dict]] = {
    "qwen3": ("Qwen3Config", dict(head_dim=32, rope_parameters=ROPE)),
    "gemma2": (
        "Gemma2Config",
        dict(head_dim=32, query_pre_attn_scalar=24, sliding_window=6, attn_logit_softcapping=3.0,
             final_logit_softcapping=4.0, tie_word_embeddings=True, rope_parameters=ROPE),
    ),
    "gemma3": (
        "Gemma3TextConfig",
        dict(head_dim=32, query_pre_attn_scalar=32, sliding_window=6, tie_word_embeddings=True, num_hidden_layers=6,
             rope_parameters={"sliding_attention": {"rope_type": "default", "rope_theta": 1000.0},
                              "full_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 20000.0}}),
    ),
    "phi3": (
        "Phi3Config",
        dict(original_max_position_embeddings=32, rope_parameters={
            "rope_type": "longrope", "rope_theta": 5000.0, "partial_rotary_factor": 0.75,
            "short_factor": [1.0 + 0.1 * i for i in range(6)], "long_factor": [2.0 + 0.5 * i for i in range(6)]}),
    ),
    "olmo2": ("Olmo2Config", dict(rope_parameters=ROPE)),
    "smollm3": ("SmolLM3Config", dict(num_hidden_layers=4, no_rope_layers=[1, 1, 1, 0], rope_parameters=ROPE)),
    "qwen3moe": (
        "Qwen3MoeConfig",
        dict(head_dim=16, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=64, norm_topk_prob=True,
             rope_parameters=ROPE),
    ),
    "mixtral": ("MixtralConfig", dict(num_local_experts=4, num_experts_per_tok=2, rope_parameters=ROPE)),
    "olmoe": (
        "OlmoeConfig", dict(num_experts=4, num_experts_per_tok=2, norm_topk_prob=False, rope_parameters=ROPE)
    ),
}  # fmt: skip


def tiny_hf(family: str, seed: int = 0, **overrides):
    """A tiny random transformers model of ``family`` (fp32, eval, eager attention), with weights wide
    enough that every mapping, norm and switch changes the logits."""
    class_name, extra = FAMILIES[family]
    config = getattr(transformers, class_name)(**{**COMMON, **extra, **overrides})
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(-0.5, 0.5) if family.startswith("gemma") else p.uniform_(0.5, 1.5)
            else:
                p.normal_(0, 0.15 if "embed" not in name else 1.0)
    return model


GGUF_ARCH = {"gemma3": "gemma3", "mixtral": "llama"}  # family -> general.architecture (default: family)
PERMUTED = {"mixtral", "smollm3"}  # llama.cpp permutes Q/K rows of these (Llama's converter)
GGUF_LAYER_NAMES = {
    "input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output", "self_attn.qkv_proj": "attn_qkv",
    "self_attn.q_norm": "attn_q_norm", "self_attn.k_norm": "attn_k_norm", "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down", "mlp.gate_up_proj": "ffn_up",
    "pre_feedforward_layernorm": "ffn_norm", "post_feedforward_layernorm": "post_ffw_norm",
    "mlp.gate": "ffn_gate_inp", "block_sparse_moe.gate": "ffn_gate_inp",
}  # fmt: skip
EXPERT_NAMES = {"gate_proj": "ffn_gate_exps", "up_proj": "ffn_up_exps", "down_proj": "ffn_down_exps",
                "w1": "ffn_gate_exps", "w3": "ffn_up_exps", "w2": "ffn_down_exps"}  # fmt: skip


def gguf_tensors(model, family: str) -> dict[str, np.ndarray]:
    """The model's saved tensors under llama.cpp's GGUF names (experts stacked, Q/K permuted where
    llama.cpp permutes, Gemma's norms stored as 1 + w), float32."""
    import tempfile

    from safetensors.torch import load_file

    with tempfile.TemporaryDirectory() as directory:
        model.save_pretrained(directory)
        saved = load_file(f"{directory}/model.safetensors")
    c = model.config
    out, experts = {"token_embd.weight": saved.pop("model.embed_tokens.weight")}, {}
    out["output_norm.weight"] = saved.pop("model.norm.weight")
    if "lm_head.weight" in saved:
        out["output.weight"] = saved.pop("lm_head.weight")
    post_attention = "post_attention_norm" if family in ("gemma2", "gemma3", "olmo2") else "ffn_norm"
    for name, value in saved.items():
        parts = name.split(".")
        layer, module = parts[2], ".".join(parts[3:-1])
        if ".experts." in name:
            experts.setdefault((layer, EXPERT_NAMES[parts[-2]]), {})[int(parts[-3])] = value
            continue
        kind = post_attention if module == "post_attention_layernorm" else GGUF_LAYER_NAMES[module]
        if family in PERMUTED and kind in ("attn_q", "attn_k"):
            value = permute(value, c.num_attention_heads if kind == "attn_q" else c.num_key_value_heads)
        out[f"blk.{layer}.{kind}.weight"] = value
    for (layer, kind), per_expert in experts.items():
        out[f"blk.{layer}.{kind}.weight"] = torch.stack([per_expert[e] for e in sorted(per_expert)])
    if family.startswith("gemma"):
        out = {k: v + 1 if k.endswith("norm.weight") else v for k, v in out.items()}
    return {k: v.float().numpy() for k, v in out.items()}


def permute(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """llama.cpp's Q/K permute (rotate-half -> interleaved pairs)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def gguf_metadata(model, family: str) -> dict:
    """``{arch}.*`` keys as llama.cpp's converter writes them for this family."""
    c, arch = model.config, GGUF_ARCH.get(family, family)
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    rope = c.rope_parameters.get("full_attention", c.rope_parameters)
    meta = {
        "block_count": c.num_hidden_layers, "context_length": c.max_position_embeddings,
        "embedding_length": c.hidden_size, "feed_forward_length": c.intermediate_size,
        "attention.head_count": c.num_attention_heads, "attention.head_count_kv": c.num_key_value_heads,
        "attention.key_length": head_dim, "attention.value_length": head_dim,
        "rope.freq_base": float(rope["rope_theta"]), "attention.layer_norm_rms_epsilon": c.rms_norm_eps,
        "rope.dimension_count": int(head_dim * rope.get("partial_rotary_factor", 1.0)), "vocab_size": c.vocab_size,
    }  # fmt: skip
    meta.update(_family_metadata(c, family))
    return {"general.architecture": arch, **{f"{arch}.{k}": v for k, v in meta.items()}}


def _family_metadata(c, family: str) -> dict:
    meta = {}
    if family.startswith("gemma"):
        meta["attention.sliding_window"] = c.sliding_window
    if family == "gemma2":
        meta |= {
            "attn_logit_softcapping": c.attn_logit_softcapping,
            "final_logit_softcapping": c.final_logit_softcapping,
        }
    if family == "gemma3":
        local, full = c.rope_parameters["sliding_attention"], c.rope_parameters["full_attention"]
        meta |= {"rope.freq_base_swa": float(local["rope_theta"]), "rope.scaling.type": full["rope_type"]}
        meta |= {"rope.scaling.factor": float(full["factor"])} if "factor" in full else {}
    if family == "phi3":
        original = c.rope_parameters["original_max_position_embeddings"]
        scale = c.max_position_embeddings / original
        meta |= {"rope.scaling.original_context_length": original,
                 "rope.scaling.attn_factor": math.sqrt(1 + math.log(scale) / math.log(original))}  # fmt: skip
    if family in ("qwen3moe", "mixtral"):
        meta |= {"expert_count": c.num_experts if family == "qwen3moe" else c.num_local_experts,
                 "expert_used_count": c.num_experts_per_tok}  # fmt: skip
        meta |= {"expert_feed_forward_length": c.moe_intermediate_size} if family == "qwen3moe" else {}
    return meta


def write_family_gguf(model, family: str, path: Path, qtype=None) -> Path:
    """The model as a GGUF file: 2-D and 3-D weights in ``qtype`` (default F32), norms, router and RoPE
    factors in F32, as llama.cpp keeps them."""
    import gguf
    from gguf import GGMLQuantizationType as Q

    qtype = qtype or Q.F32
    meta = gguf_metadata(model, family)
    tensors = gguf_tensors(model, family)
    if family == "phi3":
        p = model.config.rope_parameters
        tensors |= {
            f"rope_factors_{k}.weight": np.array(p[f"{k}_factor"], dtype=np.float32)
            for k in ("short", "long")
        }
    writer = gguf.GGUFWriter(str(path), meta.pop("general.architecture"))
    for key, value in meta.items():
        if isinstance(value, bool):
            writer.add_bool(key, value)
        elif isinstance(value, int):
            writer.add_uint32(key, value)
        elif isinstance(value, float):
            writer.add_float32(key, value)
        else:
            writer.add_string(key, value)
    for name, array in tensors.items():
        keep_float = array.ndim == 1 or "ffn_gate_inp" in name or qtype == Q.F32
        data = array if keep_float else gguf.quants.quantize(array, qtype)
        writer.add_tensor(name, data, raw_dtype=None if keep_float else qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def save_hf(model, directory: Path) -> Path:
    model.save_pretrained(directory)
    return directory


def greedy_hf(model, prompt: torch.Tensor, steps: int) -> list[int]:
    """Greedy continuation with transformers' own cache (plain forwards)."""
    result, out = model(prompt, use_cache=True), []
    for _ in range(steps):
        out.append(int(result.logits[0, -1].argmax()))
        cache = {"cache": result.cache} if "cache" in result else {"past_key_values": result.past_key_values}
        result = model(torch.tensor([[out[-1]]]), use_cache=True, **cache)
    return out


def greedy_ours(model, prompt: torch.Tensor, steps: int) -> list[int]:
    """Greedy continuation with gptkit's KV cache."""
    cache = model.new_cache(1, prompt.shape[1] + steps)
    logits, out = model(prompt, cache=cache).logits, []
    for _ in range(steps):
        out.append(int(logits[0, -1].argmax()))
        logits = model(torch.tensor([[out[-1]]]), cache=cache).logits
    return out


def sqrt_scale(model) -> float:
    return math.sqrt(model.config.hidden_size)


__all__ = ["FAMILIES", "VOCAB", "greedy_hf", "greedy_ours", "save_hf", "tiny_hf", "write_family_gguf"]
