"""Helpers that write tiny GGUF files with gguf.GGUFWriter (imported by the other test_gguf_* modules)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gguf
import numpy as np
import torch
from gguf import GGML_QUANT_SIZES
from gguf import GGMLQuantizationType as Q

# Byte offsets of the fp16 scale fields (d, dmin) inside one K-quant block.
K_QUANT_SCALE_FIELDS = {Q.Q2_K: (80, 82), Q.Q3_K: (108,), Q.Q4_K: (0, 2), Q.Q5_K: (0, 2), Q.Q6_K: (208,)}
QUANTIZABLE = (Q.F32, Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1)  # gguf.quants.quantize can
ALL_TYPES = QUANTIZABLE + tuple(K_QUANT_SCALE_FIELDS)

# A tiny Llama whose every row length is a multiple of 256, so K-quants fit.
TINY_LLAMA = dict(vocab=32, n_embd=256, n_head=4, n_kv_head=2, ffn=512, n_layer=2, context=64)


def write_gguf(
    path: Path, arch: str, metadata: dict[str, Any], tensors: dict[str, tuple[np.ndarray, Q | None]]
):
    """Write a GGUF file: ``metadata`` keys as given, ``tensors`` name -> (array, raw ggml type or None)."""
    writer = gguf.GGUFWriter(str(path), arch)
    for key, value in metadata.items():
        if key != "general.architecture":  # the writer adds it
            _add_value(writer, key, value)
    for name, (array, raw_dtype) in tensors.items():
        writer.add_tensor(name, array, raw_dtype=raw_dtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _add_value(writer: gguf.GGUFWriter, key: str, value: Any) -> None:
    if isinstance(value, bool):
        writer.add_bool(key, value)
    elif isinstance(value, int):
        writer.add_uint32(key, value)
    elif isinstance(value, float):
        writer.add_float32(key, value)
    elif isinstance(value, str):
        writer.add_string(key, value)
    else:
        writer.add_array(key, list(value))


def llama_metadata(arch: str = "llama", **s: Any) -> dict[str, Any]:
    """``{arch}.*`` keys for sizes like TINY_LLAMA's."""
    s = {**TINY_LLAMA, **s}
    meta = {
        "general.architecture": arch, f"{arch}.block_count": s["n_layer"], f"{arch}.context_length": s["context"],
        f"{arch}.embedding_length": s["n_embd"], f"{arch}.feed_forward_length": s["ffn"],
        f"{arch}.attention.head_count": s["n_head"], f"{arch}.attention.head_count_kv": s["n_kv_head"],
        f"{arch}.rope.freq_base": 10000.0, f"{arch}.attention.layer_norm_rms_epsilon": 1e-6,
        f"{arch}.rope.dimension_count": s["n_embd"] // s["n_head"], f"{arch}.vocab_size": s["vocab"],
        "tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2,
    }  # fmt: skip
    return meta


def llama_shapes(**s: Any) -> dict[str, tuple[int, ...]]:
    """GGUF tensor names of a Llama and their row-major shapes."""
    s = {**TINY_LLAMA, **s}
    d, f, hd = s["n_embd"], s["ffn"], s["n_embd"] // s["n_head"]
    shapes = {
        "token_embd.weight": (s["vocab"], d),
        "output_norm.weight": (d,),
        "output.weight": (s["vocab"], d),
    }
    for i in range(s["n_layer"]):
        shapes |= {
            f"blk.{i}.attn_norm.weight": (d,), f"blk.{i}.ffn_norm.weight": (d,),
            f"blk.{i}.attn_q.weight": (s["n_head"] * hd, d), f"blk.{i}.attn_k.weight": (s["n_kv_head"] * hd, d),
            f"blk.{i}.attn_v.weight": (s["n_kv_head"] * hd, d), f"blk.{i}.attn_output.weight": (d, d),
            f"blk.{i}.ffn_gate.weight": (f, d), f"blk.{i}.ffn_up.weight": (f, d), f"blk.{i}.ffn_down.weight": (d, f),
        }  # fmt: skip
    return shapes


def encode(values: np.ndarray, qtype: Q) -> tuple[np.ndarray, Q | None]:
    """Float values -> (array for GGUFWriter.add_tensor, raw dtype) with gguf's own quantizer."""
    if qtype == Q.F32:
        return values.astype(np.float32), None
    if qtype == Q.F16:
        return values.astype(np.float16), None
    return gguf.quants.quantize(values.astype(np.float32), qtype), qtype


def random_k_quant(shape: tuple[int, ...], qtype: Q, rng: np.random.Generator) -> tuple[np.ndarray, Q]:
    """Random K-quant blocks whose fp16 scales are small finite numbers (gguf cannot quantize K-quants)."""
    block_size, type_size = GGML_QUANT_SIZES[qtype]
    n_blocks = int(np.prod(shape)) // block_size
    blocks = rng.integers(0, 256, (n_blocks, type_size), dtype=np.uint8)
    for offset in K_QUANT_SCALE_FIELDS[qtype]:
        scales = rng.uniform(-0.05, 0.05, (n_blocks, 1)).astype(np.float16)
        blocks[:, offset : offset + 2] = scales.view(np.uint8)
    return blocks.reshape(*shape[:-1], shape[-1] // block_size * type_size), qtype


def random_llama_tensors(qtype: Q, seed: int = 0, **sizes: Any) -> dict[str, tuple[np.ndarray, Q | None]]:
    """Every tensor of a tiny Llama; 2-D weights in ``qtype``, norms in F32."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in llama_shapes(**sizes).items():
        if len(shape) == 1:
            out[name] = (rng.uniform(0.5, 1.5, shape).astype(np.float32), None)
        elif qtype in K_QUANT_SCALE_FIELDS:
            out[name] = random_k_quant(shape, qtype, rng)
        else:
            out[name] = encode(rng.normal(0, 0.05, shape), qtype)
    return out


def write_tiny_llama(path: Path, qtype: Q = Q.F32, *, drop: tuple[str, ...] = (), add=None, **meta) -> Path:
    """A tiny random Llama GGUF; ``drop`` omits tensors, ``add`` adds some, ``meta`` overrides keys."""
    tensors = {k: v for k, v in random_llama_tensors(qtype).items() if k not in drop} | (add or {})
    metadata = llama_metadata() | {k.replace("__", "."): v for k, v in meta.items()}
    return write_gguf(path, "llama", metadata, tensors)


# ---- from a transformers model -------------------------------------------------------------------
def llama_cpp_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp convert_hf_to_gguf's Q/K permute (rotate-half -> interleaved pairs)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def hf_llama_to_gguf(model, *, permute: bool) -> dict[str, tuple[np.ndarray, None]]:
    """A transformers Llama/Qwen2 state dict in GGUF names (F32), Q/K permuted like llama.cpp if asked."""
    c = model.config
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    out = {
        "token_embd.weight": sd["model.embed_tokens.weight"],
        "output_norm.weight": sd["model.norm.weight"],
    }
    if not c.tie_word_embeddings:
        out["output.weight"] = sd["lm_head.weight"]
    names = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
             "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
             "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}  # fmt: skip
    heads = {"attn_q": c.num_attention_heads, "attn_k": c.num_key_value_heads}
    for key, value in sd.items():
        parts = key.split(".")
        if parts[:2] != ["model", "layers"]:
            continue
        kind = names[".".join(parts[3:-1])]
        if permute and kind in heads:
            value = llama_cpp_permute(value, heads[kind])
        out[f"blk.{parts[2]}.{kind}.{parts[-1]}"] = value
    return {k: (np.ascontiguousarray(v), None) for k, v in out.items()}


def hf_gpt2_to_gguf(model) -> dict[str, tuple[np.ndarray, None]]:
    """A transformers GPT-2 state dict in GGUF names (Conv1D weights transposed, like llama.cpp)."""
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    out = {"token_embd.weight": sd["transformer.wte.weight"], "position_embd.weight": sd["transformer.wpe.weight"],
           "output_norm.weight": sd["transformer.ln_f.weight"], "output_norm.bias": sd["transformer.ln_f.bias"]}  # fmt: skip
    names = {"ln_1": "attn_norm", "ln_2": "ffn_norm", "attn.c_attn": "attn_qkv", "attn.c_proj": "attn_output",
             "mlp.c_fc": "ffn_up", "mlp.c_proj": "ffn_down"}  # fmt: skip
    for key, value in sd.items():
        parts = key.split(".")
        if parts[:2] != ["transformer", "h"] or ".".join(parts[3:-1]) not in names:
            continue
        kind = names[".".join(parts[3:-1])]
        if parts[-1] == "weight" and not kind.endswith("norm"):
            value = value.T
        out[f"blk.{parts[2]}.{kind}.{parts[-1]}"] = value
    return {k: (np.ascontiguousarray(v), None) for k, v in out.items()}


def hf_metadata(model, arch: str) -> dict[str, Any]:
    """``{arch}.*`` metadata for a transformers Llama, Qwen2 or GPT-2 config."""
    c = model.config
    if arch == "gpt2":
        return {"gpt2.block_count": c.n_layer, "gpt2.context_length": c.n_positions, "gpt2.embedding_length": c.n_embd,
                "gpt2.feed_forward_length": 4 * c.n_embd, "gpt2.attention.head_count": c.n_head,
                "gpt2.attention.layer_norm_epsilon": c.layer_norm_epsilon, "gpt2.vocab_size": c.vocab_size}  # fmt: skip
    return {
        f"{arch}.block_count": c.num_hidden_layers, f"{arch}.context_length": c.max_position_embeddings,
        f"{arch}.embedding_length": c.hidden_size, f"{arch}.feed_forward_length": c.intermediate_size,
        f"{arch}.attention.head_count": c.num_attention_heads,
        f"{arch}.attention.head_count_kv": c.num_key_value_heads,
        f"{arch}.rope.freq_base": float(c.rope_parameters["rope_theta"]),
        f"{arch}.attention.layer_norm_rms_epsilon": c.rms_norm_eps,
        f"{arch}.rope.dimension_count": c.hidden_size // c.num_attention_heads, f"{arch}.vocab_size": c.vocab_size,
    }  # fmt: skip


def test_written_file_reads_back_with_gguf(tmp_path):
    """The builders produce files the reference reader accepts, with the shapes we meant."""
    path = write_tiny_llama(tmp_path / "tiny.gguf", Q.Q4_K)
    reader = gguf.GGUFReader(path)
    shapes = {t.name: tuple(reversed(t.shape.tolist())) for t in reader.tensors}
    assert shapes == llama_shapes()
    assert torch.isfinite(torch.from_numpy(gguf.quants.dequantize(reader.tensors[0].data, Q.Q4_K))).all()
