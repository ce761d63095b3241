"""One entry point for loading a pretrained model from any supported source."""

from __future__ import annotations

from pathlib import Path

import torch

from gptkit.registry import SourceKind, resolve


def resolve_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    """Accept torch dtypes or their names ("float32", "bf16", "auto"/None keeps the loader's default)."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    names = {"auto": None, "float32": torch.float32, "fp32": torch.float32, "float16": torch.float16,
             "fp16": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}  # fmt: skip
    if dtype not in names:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {', '.join(names)}")
    return names[dtype]


def load_pretrained(
    name_or_path: str | Path,
    *,
    dtype: torch.dtype | str | None = None,
    device: torch.device | str | None = None,
    quantize: str | None = None,
):
    """Resolve ``name_or_path`` and load the model it names (GGUF or HF safetensors), in eval mode.

    ``quantize`` ("int8", "int4", "int4-g64", "int4-g128") swaps the linear layers for weight-only quantized ones (see gptkit.quant).
    """
    from gptkit.model.decoder import GPT4LMHeadModel

    source = resolve(name_or_path)
    if source.kind is SourceKind.GGUF:
        from gptkit.weights.gguf_io import load_gguf_state

        config, state = load_gguf_state(source.path)
    else:
        from gptkit.weights.safetensors_io import load_hf_state

        config, state = load_hf_state(source.path)
    model = GPT4LMHeadModel.from_state_dict(config, state, dtype=resolve_dtype(dtype) or torch.float32)
    del state
    if quantize is not None:
        from gptkit.quant import quantize_model

        quantize_model(model, quantize)
    if device is not None:
        model = model.to(device)
    model.source = source
    return model


def load_config(name_or_path: str | Path):
    """The GPT4Config of a model without reading its weights: (config, source)."""
    source = resolve(name_or_path)
    if source.kind is SourceKind.GGUF:
        from gptkit.weights.gguf_config import config_from_gguf
        from gptkit.weights.gguf_file import read_header

        header = read_header(source.path)
        return config_from_gguf(header.metadata, {t.name for t in header.tensors}), source
    from gptkit.weights.safetensors_io import read_hf_config

    return read_hf_config(source.path), source


def describe(name_or_path: str | Path) -> dict[str, str]:
    """A human summary of a model: family, size, quantization, context, tokenizer, file."""
    from gptkit.weights.hf_config import family_for

    config, source = load_config(name_or_path)
    extra = config.extra
    family = extra.get("gguf_architecture") or extra.get("hf_model_type") or family_for(config)
    attention = f"{config.n_head} heads, {config.kv_heads} kv heads, head_dim {config.dim_per_head}"
    return {
        "name": source.name,
        "family": f"{family} ({config.positions.value} positions, {config.norm.value}, {config.mlp.value})",
        "parameters": f"{config.num_parameters() / 1e6:.1f}M",
        "layers": f"{config.n_layer} x width {config.n_embd}, {attention}",
        "quantization": str(extra.get("quantization") or extra.get("hf_dtype") or "float32"),
        "context length": str(config.context_length),
        "vocabulary": str(config.vocab_size),
        "tokenizer": "embedded GGUF vocabulary" if source.kind is SourceKind.GGUF else "tokenizer.json",
        "format": source.kind.value,
        "path": str(source.path),
    }
