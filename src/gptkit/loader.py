"""One way to load a model and its tokenizer by name: ``gptkit.load`` (defined here); and ``describe`` for `gptkit info`.

Every command, the server, the pipelines, the evaluation harness and fine-tuning load through ``load``, so
an option (``dtype``, ``quantize``, ``device``) means the same everywhere; gptkit.options declares the same
options once for the command line.
"""

from __future__ import annotations

from pathlib import Path

import torch

from gptkit import kernels
from gptkit.engine.engine import DEFAULT_MAX_SEQ_LEN
from gptkit.errors import TokenizerError
from gptkit.modeling import GPT4LMHeadModel
from gptkit.quant.ggml import KERNEL_TYPES, PACKED_TYPES, dense_dtype
from gptkit.registry import DEFAULT_MODEL, ModelSource, SourceKind
from gptkit.tokenizer import GPT4Tokenizer
from gptkit.weights.gguf_file import read_header
from gptkit.weights.hf_config import family_for
from gptkit.weights.loading import check_model, load_config


def load(
    name_or_path: str | Path = DEFAULT_MODEL,
    *,
    dtype: torch.dtype | str | None = None,
    quantize: str | None = None,
    device: torch.device | str | None = None,
    needs_chat_template: bool = False,
    lora: str | Path | None = None,
) -> tuple[GPT4LMHeadModel, GPT4Tokenizer]:
    """(model in eval mode, tokenizer) of a registered name, a .gguf file or a Hugging Face directory.

    The tokenizer is read first: it is quick, and a wrong name fails before any weights are read. With no
    options the model takes the fast default path (see gptkit.weights.loading.load_pretrained);
    ``dtype="float32"`` is the exact reference path; ``quantize`` is "gguf", "none", "int8" or "int4[-g64/128]".
    ``needs_chat_template``: a tokenizer without one is refused (TokenizerError) before the weights load.
    ``lora``: a LoRA adapter directory, merged into float weights / applied beside quantized ones.
    """
    tokenizer = GPT4Tokenizer.from_pretrained(name_or_path)
    if needs_chat_template and tokenizer.chat_template is None:
        raise TokenizerError(f"{name_or_path} has no chat template: a chat (instruct) model is needed")
    model = GPT4LMHeadModel.from_pretrained(
        name_or_path, dtype=dtype, quantize=quantize, device=device, lora=lora
    )
    return model.eval(), tokenizer


def describe(name_or_path: str | Path, *, metadata_only: bool = False) -> dict[str, str]:
    """A human summary of a model (family, size, quantization, context, tokenizer, file), after checking
    the whole file (``metadata_only``: only the config / header is read)."""
    config, source = load_config(name_or_path) if metadata_only else check_model(name_or_path)
    extra = config.extra
    family = extra.get("gguf_architecture") or extra.get("hf_model_type") or family_for(config)
    attention = f"{config.n_head} heads, {config.kv_heads} kv heads, head_dim {config.dim_per_head}"
    window = min(config.context_length, DEFAULT_MAX_SEQ_LEN)
    return {
        "name": source.name,
        "family": f"{family} ({config.positions.value} positions, {config.norm.value}, {config.mlp.value})",
        "parameters": f"{config.num_parameters() / 1e6:.1f}M",
        "layers": f"{config.n_layer} x width {config.n_embd}, {attention}",
        "quantization": str(extra.get("quantization") or extra.get("hf_dtype") or "float32"),
        "context length": f"{config.context_length} tokens (what the model was trained on)",
        "chat/serve window": f"{window} tokens by default (KV-cache slots of at most {DEFAULT_MAX_SEQ_LEN}; "
        "serve --max-seq-len changes it)",
        "vocabulary": str(config.vocab_size),
        "runs on": runs_on(source),
        "tokenizer": "embedded GGUF vocabulary" if source.kind is SourceKind.GGUF else "tokenizer.json",
        "format": source.kind.value,
        "path": str(source.path),
        "checked": "metadata only" if metadata_only else "every tensor's type, shape, size and offset",
    }


def runs_on(source: ModelSource) -> str:
    """Which compute path ``from_pretrained`` gives this model by default, in words."""
    reference = "dtype=float32 / --dtype float32 gives the float32 reference path"
    if source.kind is not SourceKind.GGUF:
        return f"torch, {str(dense_dtype()).removeprefix('torch.')} weights ({reference})"
    types = {t.type_id for t in read_header(source.path).tensors if len(t.dims) == 2}
    if not types & KERNEL_TYPES:
        return "torch, float32 weights (the file holds no quantized blocks the kernels read)"
    isa = kernels.isa_name()
    if isa == "off":
        return f"the file's quantized blocks, dequantized by torch (native kernels unavailable; {reference})"
    packed = "repacked x16" if types & PACKED_TYPES else "as stored"
    return f"native {isa} kernels on the file's quantized blocks ({packed}); {reference}"
